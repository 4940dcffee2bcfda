/**
 * How close each part-A scheduler gets to the true distribution when driven by the exact denoiser of a Gaussian
 * mixture (MATH.md §9), at 10, 20 and 50 steps. The tests import {@link mixtureDistance}; run this file to print the
 * table of `docs/schedulers.md` ("Accuracy on an exact model"):
 *
 *     npx tsx --conditions source packages/schedulers/test/accuracy-table.ts
 */
import { Tensor, type TensorLike } from '@denoise/core';
import { DDIMScheduler } from '../src/ddim.js';
import { DDIMInverseScheduler } from '../src/ddim-inverse.js';
import { EulerAncestralDiscreteScheduler } from '../src/euler-ancestral-discrete.js';
import { EulerDiscreteScheduler } from '../src/euler-discrete.js';
import { HeunDiscreteScheduler } from '../src/heun-discrete.js';
import { LCMScheduler } from '../src/lcm.js';
import { LMSDiscreteScheduler } from '../src/lms-discrete.js';
import { PNDMScheduler } from '../src/pndm.js';
import type { Scheduler } from '../src/scheduler.js';
import type { SigmaScheduler, SigmaSchedulerBaseConfig } from '../src/sigma-scheduler.js';
import { exactPrediction, type GaussianMixture, seededNormal, TEST_MIXTURE, wasserstein1 } from './helpers/mixture.js';

/** Samples per run: the Monte Carlo floor of the distance is about 0.8·σ/√N ≈ 0.01. */
export const SAMPLES = 2000;

/** The standard normal as a one-component mixture: the target of DDIM inversion. */
const STANDARD_NORMAL: GaussianMixture = { weights: [1], means: [[0]], stds: [1] };

/** Stable Diffusion's noise schedule, the one these samplers usually run with. */
const SD_SCHEDULE = { beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012 } as const;

/** ᾱ of the VP model input at σ. */
const alphaBarOfSigma = (sigma: number) => 1 / (1 + sigma * sigma);

/** Runs a sigma-based scheduler: noise × initNoiseSigma, the exact ε̂ for the scaled input at each step's σ. */
function runSigmaScheduler<C extends SigmaSchedulerBaseConfig>(scheduler: SigmaScheduler<C>, seed: number): TensorLike {
  const generator = seededNormal(seed);
  const noise = generator.randn([SAMPLES, 1]);
  let x: TensorLike = new Tensor(
    noise.data.map((v) => v * scheduler.initNoiseSigma),
    noise.dims,
  );
  scheduler.timesteps.forEach((t, i) => {
    const input = scheduler.scaleModelInput(x, t);
    const eps = exactPrediction(TEST_MIXTURE, input, alphaBarOfSigma(scheduler.sigmas[i]));
    x = scheduler.step(eps, t, x, { generator }).prevSample;
  });
  return x;
}

/** Runs a scheduler on integer training timesteps (PNDM, LCM): the exact ε̂ at ᾱ_t. */
function runDiscreteScheduler(scheduler: Scheduler, seed: number): TensorLike {
  const generator = seededNormal(seed);
  let x: TensorLike = generator.randn([SAMPLES, 1]);
  for (const t of scheduler.timesteps) {
    const eps = exactPrediction(TEST_MIXTURE, x, scheduler.alphasCumprod[t]);
    x = scheduler.step(eps, t, x, { generator }).prevSample;
  }
  return x;
}

/** Stratified draws from the mixture: component by quantile of the weights, then its Gaussian. */
function mixtureSamples(mixture: GaussianMixture, seed: number): Tensor {
  const z = seededNormal(seed).randn([SAMPLES, 1]);
  const data = new Float32Array(SAMPLES);
  for (let n = 0; n < SAMPLES; n++) {
    let u = (n + 0.5) / SAMPLES;
    let k = 0;
    while (k < mixture.weights.length - 1 && u > mixture.weights[k]) u -= mixture.weights[k++];
    data[n] = mixture.means[k][0] + mixture.stds[k] * z.data[n];
  }
  return new Tensor(data, [SAMPLES, 1]);
}

/** Inverts mixture samples to noise with the exact ε̂ (DDIM inversion); the result should be N(0, 1). */
function runInversion(scheduler: DDIMInverseScheduler, seed: number): TensorLike {
  let x: TensorLike = mixtureSamples(TEST_MIXTURE, seed);
  const stride = Math.floor(scheduler.config.num_train_timesteps / (scheduler.numInferenceSteps as number));
  for (const t of scheduler.timesteps) {
    // ε̂ is evaluated at the level the step starts from, t − T/n (ᾱ = 1 before timestep 0).
    const from = t - stride;
    const eps = exactPrediction(TEST_MIXTURE, x, from >= 0 ? scheduler.alphasCumprod[from] : 1 - 1e-12);
    x = scheduler.step(eps, t, x).prevSample;
  }
  return x;
}

/** One row of the table: a scheduler setup, how to run it, and which distribution it should reach. */
export interface AccuracyCase {
  /** The row label. */
  readonly name: string;
  /**
   * The 1-Wasserstein distance between the scheduler's output and its target distribution after `steps` steps.
   *
   * @param steps - inference steps
   * @param seed - noise seed
   */
  distance(steps: number, seed?: number): number;
}

function sigmaCase(name: string, make: () => SigmaScheduler<SigmaSchedulerBaseConfig>): AccuracyCase {
  return {
    name,
    distance(steps, seed = 1) {
      const scheduler = make();
      scheduler.setTimesteps(steps);
      return wasserstein1(TEST_MIXTURE, runSigmaScheduler(scheduler, seed));
    },
  };
}

function discreteCase(name: string, make: () => Scheduler): AccuracyCase {
  return {
    name,
    distance(steps, seed = 1) {
      const scheduler = make();
      scheduler.setTimesteps(steps);
      return wasserstein1(TEST_MIXTURE, runDiscreteScheduler(scheduler, seed));
    },
  };
}

/** The rows of the table, by scheduler. */
export const ACCURACY_CASES: readonly AccuracyCase[] = [
  sigmaCase('Euler', () => new EulerDiscreteScheduler(SD_SCHEDULE)),
  sigmaCase('Euler, Karras sigmas', () => new EulerDiscreteScheduler({ ...SD_SCHEDULE, use_karras_sigmas: true })),
  sigmaCase('Euler a', () => new EulerAncestralDiscreteScheduler(SD_SCHEDULE)),
  sigmaCase('Heun', () => new HeunDiscreteScheduler(SD_SCHEDULE)),
  sigmaCase('LMS', () => new LMSDiscreteScheduler(SD_SCHEDULE)),
  sigmaCase('LMS Karras', () => new LMSDiscreteScheduler({ ...SD_SCHEDULE, use_karras_sigmas: true })),
  discreteCase('PNDM (PRK + PLMS)', () => new PNDMScheduler(SD_SCHEDULE)),
  discreteCase('PNDM, skip_prk_steps', () => new PNDMScheduler({ ...SD_SCHEDULE, skip_prk_steps: true })),
  discreteCase('LCM (exact model, not distilled)', () => new LCMScheduler(SD_SCHEDULE)),
  discreteCase('DDIM (reference, base engineer)', () => new DDIMScheduler({ ...SD_SCHEDULE, clip_sample: false })),
  {
    name: 'DDIM inverse → N(0, 1)',
    distance(steps, seed = 1) {
      const scheduler = new DDIMInverseScheduler({ ...SD_SCHEDULE, clip_sample: false, timestep_spacing: 'trailing' });
      scheduler.setTimesteps(steps);
      return wasserstein1(STANDARD_NORMAL, runInversion(scheduler, seed));
    },
  },
];

/**
 * The distance of one named case after `steps` steps.
 *
 * @param name - a row of {@link ACCURACY_CASES}
 * @param steps - inference steps
 */
export function mixtureDistance(name: string, steps: number): number {
  const found = ACCURACY_CASES.find((c) => c.name === name);
  if (!found) throw new Error(`No accuracy case "${name}".`);
  return found.distance(steps);
}

/** The step counts of the table. */
export const TABLE_STEPS = [10, 20, 50] as const;

if (process.argv[1]?.endsWith('accuracy-table.ts')) {
  console.log(`| scheduler | ${TABLE_STEPS.map((s) => `${s} steps`).join(' | ')} |`);
  console.log(`| --- | ${TABLE_STEPS.map(() => '---:').join(' | ')} |`);
  for (const c of ACCURACY_CASES) {
    const cells = TABLE_STEPS.map((steps) => c.distance(steps).toFixed(4));
    console.log(`| ${c.name} | ${cells.join(' | ')} |`);
  }
}

/**
 * How close each part-A scheduler gets to the true distribution when driven by the exact denoiser of a Gaussian
 * mixture (`docs/math.md` §9), at 10, 20 and 50 steps. The tests import {@link mixtureDistance}; run this file to print the
 * table of `docs/schedulers.md` ("Accuracy on an exact model"):
 *
 *     npx tsx --conditions source packages/schedulers/test/accuracy-table.ts
 */
import { Tensor, type TensorLike } from '@denoise/core';
import { DDIMScheduler } from '../src/ddim.js';
import { DDIMInverseScheduler } from '../src/ddim-inverse.js';
import { DEISMultistepScheduler } from '../src/deis-multistep.js';
import { DPMSolverSDEScheduler } from '../src/dpm-solver-sde.js';
import { DPMSolverSinglestepScheduler } from '../src/dpm-solver-singlestep.js';
import { EDMDPMSolverMultistepScheduler } from '../src/edm-dpm-solver-multistep.js';
import { EDMEulerScheduler } from '../src/edm-euler.js';
import { EulerAncestralDiscreteScheduler } from '../src/euler-ancestral-discrete.js';
import { EulerDiscreteScheduler } from '../src/euler-discrete.js';
import { FlowMatchEulerDiscreteScheduler } from '../src/flow-match-euler-discrete.js';
import { HeunDiscreteScheduler } from '../src/heun-discrete.js';
import { IPNDMScheduler } from '../src/ipndm.js';
import { KDPM2AncestralDiscreteScheduler } from '../src/kdpm2-ancestral-discrete.js';
import { KDPM2DiscreteScheduler } from '../src/kdpm2-discrete.js';
import { LCMScheduler } from '../src/lcm.js';
import { LMSDiscreteScheduler } from '../src/lms-discrete.js';
import { PNDMScheduler } from '../src/pndm.js';
import type { Scheduler } from '../src/scheduler.js';
import type { SigmaScheduler, SigmaSchedulerBaseConfig } from '../src/sigma-scheduler.js';
import { TCDScheduler } from '../src/tcd.js';
import {
  exactFlowVelocity,
  exactPrediction,
  type GaussianMixture,
  posterior,
  seededNormal,
  TEST_MIXTURE,
  wasserstein1,
} from './helpers/mixture.js';

/** Samples per run: the Monte Carlo floor of the distance is about 0.8·σ/√N ≈ 0.01. */
export const SAMPLES = 2000;

/** The standard normal as a one-component mixture: the target of DDIM inversion. */
const STANDARD_NORMAL: GaussianMixture = { weights: [1], means: [[0]], stds: [1] };

/** Stable Diffusion's noise schedule, the one these samplers usually run with. */
const SD_SCHEDULE = { beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012 } as const;

/** ᾱ of the VP model input at σ. */
const alphaBarOfSigma = (sigma: number) => 1 / (1 + sigma * sigma);

/** The σ the model sees at schedule index `i`: `sigmas[i]`, except for the DPM2 midpoints. */
type ModelSigma = (scheduler: SigmaScheduler<SigmaSchedulerBaseConfig>, i: number) => number;

const scheduleSigma: ModelSigma = (scheduler, i) => scheduler.sigmas[i];

/** Runs a sigma-based scheduler: noise × initNoiseSigma, the exact ε̂ for the scaled input at each step's σ. */
function runSigmaScheduler<C extends SigmaSchedulerBaseConfig>(
  scheduler: SigmaScheduler<C>,
  seed: number,
  modelSigma: ModelSigma = scheduleSigma,
): TensorLike {
  const generator = seededNormal(seed);
  const noise = generator.randn([SAMPLES, 1]);
  let x: TensorLike = new Tensor(
    noise.data.map((v) => v * scheduler.initNoiseSigma),
    noise.dims,
  );
  scheduler.timesteps.forEach((t, i) => {
    const input = scheduler.scaleModelInput(x, t);
    const eps = exactPrediction(TEST_MIXTURE, input, alphaBarOfSigma(modelSigma(scheduler, i)));
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

/** Runs a DPM-Solver-style scheduler on x_t = α·x_0 + σ_t·ε: the exact ε̂ at ᾱ = 1/(1 + σ²) of each step's σ. */
function runSolver(scheduler: Scheduler & { readonly sigmas: Float64Array }, seed: number): TensorLike {
  const generator = seededNormal(seed);
  let x: TensorLike = generator.randn([SAMPLES, 1]);
  scheduler.timesteps.forEach((t, i) => {
    const eps = exactPrediction(TEST_MIXTURE, x, alphaBarOfSigma(scheduler.sigmas[i]));
    x = scheduler.step(eps, t, x, { generator }).prevSample;
  });
  return x;
}

/** Runs a rectified-flow scheduler from pure noise (σ = 1) with the mixture's exact velocity at each step's σ. */
function runFlowScheduler(scheduler: FlowMatchEulerDiscreteScheduler, seed: number): TensorLike {
  let x: TensorLike = seededNormal(seed).randn([SAMPLES, 1]);
  scheduler.timesteps.forEach((t, i) => {
    x = scheduler.step(exactFlowVelocity(TEST_MIXTURE, x, scheduler.sigmas[i]), t, x).prevSample;
  });
  return x;
}

/**
 * The exact EDM network output F at x = x_0 + σ·ε: the denoiser D = E[x_0 | x] is the VP posterior mean of
 * x/√(1 + σ²) at ᾱ = 1/(1 + σ²), and F = (D − c_skip·x)/c_out with EDM's c_skip, c_out (`epsilon` sign).
 */
export function exactEdmOutput(x: TensorLike, sigma: number, sigmaData = 0.5): Tensor {
  const scale = 1 / Math.sqrt(1 + sigma * sigma);
  const { mean } = posterior(
    TEST_MIXTURE,
    x.data.map((v) => v * scale),
    scale * scale,
  );
  const cSkip = sigmaData ** 2 / (sigma * sigma + sigmaData ** 2);
  const cOut = (sigma * sigmaData) / Math.sqrt(sigma * sigma + sigmaData ** 2);
  return new Tensor(
    Float32Array.from(mean, (d, i) => (d - cSkip * x.data[i]) / cOut),
    x.dims,
  );
}

/** A scheduler in EDM's σ parametrisation, as the EDM runs below see it. */
interface EdmScheduler extends Scheduler {
  readonly sigmas: Float64Array;
}

/** Runs an EDM scheduler: noise × initNoiseSigma, the exact F at each step's σ (its inputs: x and σ). */
function runEdmScheduler(scheduler: EdmScheduler, seed: number): TensorLike {
  const generator = seededNormal(seed);
  const noise = generator.randn([SAMPLES, 1]);
  let x: TensorLike = new Tensor(
    noise.data.map((v) => v * scheduler.initNoiseSigma),
    noise.dims,
  );
  scheduler.timesteps.forEach((t, i) => {
    x = scheduler.step(exactEdmOutput(x, scheduler.sigmas[i]), t, x, { generator }).prevSample;
  });
  return x;
}

/** Runs iPNDM on its own schedule with the exact v̂ (ᾱ = α² at each step's α). */
function runIpndm(scheduler: IPNDMScheduler, seed: number): TensorLike {
  let x: TensorLike = seededNormal(seed).randn([SAMPLES, 1]);
  scheduler.timesteps.forEach((t, i) => {
    const v = exactPrediction(TEST_MIXTURE, x, scheduler.signalScales[i] ** 2, 'v_prediction');
    x = scheduler.step(v, t, x).prevSample;
  });
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

function sigmaCase(
  name: string,
  make: () => SigmaScheduler<SigmaSchedulerBaseConfig>,
  modelSigma: ModelSigma = scheduleSigma,
): AccuracyCase {
  return {
    name,
    distance(steps, seed = 1) {
      const scheduler = make();
      scheduler.setTimesteps(steps);
      return wasserstein1(TEST_MIXTURE, runSigmaScheduler(scheduler, seed, modelSigma));
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

function solverCase(name: string, make: () => Scheduler & { readonly sigmas: Float64Array }): AccuracyCase {
  return {
    name,
    distance(steps, seed = 1) {
      const scheduler = make();
      scheduler.setTimesteps(steps);
      return wasserstein1(TEST_MIXTURE, runSolver(scheduler, seed));
    },
  };
}

/** DPM2's corrector (odd indices of a run from the start) evaluates the model at the step's midpoint σ. */
const dpm2Sigma: ModelSigma = (scheduler, i) =>
  i % 2 === 0 ? scheduler.sigmas[i] : (scheduler as KDPM2DiscreteScheduler).sigmasInterpol[i];
const dpm2AncestralSigma: ModelSigma = (scheduler, i) =>
  i % 2 === 0 ? scheduler.sigmas[i] : (scheduler as KDPM2AncestralDiscreteScheduler).sigmasInterpol[i - 1];
/** DPM++ SDE's second half evaluates the model at σ_mid = √(σ_i σ_{i+1}). */
const sdeSigma: ModelSigma = (scheduler, i) =>
  i % 2 === 0 ? scheduler.sigmas[i] : Math.sqrt(scheduler.sigmas[i - 1] * scheduler.sigmas[i]);

function flowCase(name: string, make: () => FlowMatchEulerDiscreteScheduler): AccuracyCase {
  return {
    name,
    distance(steps, seed = 1) {
      const scheduler = make();
      scheduler.setTimesteps(steps);
      return wasserstein1(TEST_MIXTURE, runFlowScheduler(scheduler, seed));
    },
  };
}

function edmCase(name: string, make: () => EdmScheduler): AccuracyCase {
  return {
    name,
    distance(steps, seed = 1) {
      const scheduler = make();
      scheduler.setTimesteps(steps);
      return wasserstein1(TEST_MIXTURE, runEdmScheduler(scheduler, seed));
    },
  };
}

/** The rows of the table, by scheduler. */
export const ACCURACY_CASES: readonly AccuracyCase[] = [
  sigmaCase('Euler', () => new EulerDiscreteScheduler(SD_SCHEDULE)),
  sigmaCase('Euler, Karras sigmas', () => new EulerDiscreteScheduler({ ...SD_SCHEDULE, use_karras_sigmas: true })),
  sigmaCase('Euler a', () => new EulerAncestralDiscreteScheduler(SD_SCHEDULE)),
  sigmaCase('Heun', () => new HeunDiscreteScheduler(SD_SCHEDULE)),
  sigmaCase('DPM2', () => new KDPM2DiscreteScheduler(SD_SCHEDULE), dpm2Sigma),
  sigmaCase('DPM2 Karras', () => new KDPM2DiscreteScheduler({ ...SD_SCHEDULE, use_karras_sigmas: true }), dpm2Sigma),
  sigmaCase('DPM2 a', () => new KDPM2AncestralDiscreteScheduler(SD_SCHEDULE), dpm2AncestralSigma),
  sigmaCase(
    'DPM2 a Karras',
    () => new KDPM2AncestralDiscreteScheduler({ ...SD_SCHEDULE, use_karras_sigmas: true }),
    dpm2AncestralSigma,
  ),
  sigmaCase('LMS', () => new LMSDiscreteScheduler(SD_SCHEDULE)),
  sigmaCase('LMS Karras', () => new LMSDiscreteScheduler({ ...SD_SCHEDULE, use_karras_sigmas: true })),
  sigmaCase('DPM++ SDE', () => new DPMSolverSDEScheduler(SD_SCHEDULE), sdeSigma),
  sigmaCase('DPM++ SDE Karras', () => new DPMSolverSDEScheduler({ ...SD_SCHEDULE, use_karras_sigmas: true }), sdeSigma),
  solverCase('DPM++ 2S', () => new DPMSolverSinglestepScheduler(SD_SCHEDULE)),
  solverCase('DPM++ 2S Karras', () => new DPMSolverSinglestepScheduler({ ...SD_SCHEDULE, use_karras_sigmas: true })),
  solverCase('DPM++ 3S (solver_order 3)', () => new DPMSolverSinglestepScheduler({ ...SD_SCHEDULE, solver_order: 3 })),
  discreteCase('PNDM (PRK + PLMS)', () => new PNDMScheduler(SD_SCHEDULE)),
  discreteCase('PNDM, skip_prk_steps', () => new PNDMScheduler({ ...SD_SCHEDULE, skip_prk_steps: true })),
  discreteCase('LCM (exact model, not distilled)', () => new LCMScheduler(SD_SCHEDULE)),
  discreteCase('DDIM (reference, base engineer)', () => new DDIMScheduler({ ...SD_SCHEDULE, clip_sample: false })),
  discreteCase('TCD, γ = 0.3 (exact model, not distilled)', () => new TCDScheduler(SD_SCHEDULE)),
  discreteCase('DEIS 1 (DDIM)', () => new DEISMultistepScheduler({ ...SD_SCHEDULE, solver_order: 1 })),
  discreteCase('DEIS 2', () => new DEISMultistepScheduler(SD_SCHEDULE)),
  discreteCase('DEIS 3', () => new DEISMultistepScheduler({ ...SD_SCHEDULE, solver_order: 3 })),
  edmCase('Euler (EDM), Karras σ', () => new EDMEulerScheduler()),
  edmCase('Euler (EDM), exponential σ', () => new EDMEulerScheduler({ sigma_schedule: 'exponential' })),
  edmCase('EDM DPM++ 2M', () => new EDMDPMSolverMultistepScheduler()),
  edmCase('EDM DPM++ 3M', () => new EDMDPMSolverMultistepScheduler({ solver_order: 3 })),
  edmCase('EDM DPM++ 2M SDE', () => new EDMDPMSolverMultistepScheduler({ algorithm_type: 'sde-dpmsolver++' })),
  flowCase('Flow Euler (exact velocity)', () => new FlowMatchEulerDiscreteScheduler()),
  flowCase('Flow Euler, shift 3 (SD3)', () => new FlowMatchEulerDiscreteScheduler({ shift: 3 })),
  {
    name: 'iPNDM (exact v-prediction, own schedule)',
    distance(steps, seed = 1) {
      const scheduler = new IPNDMScheduler();
      scheduler.setTimesteps(steps);
      return wasserstein1(TEST_MIXTURE, runIpndm(scheduler, seed));
    },
  },
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

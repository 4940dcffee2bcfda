import { Tensor, type TensorLike } from '@denoise/core';
import {
  DDIMScheduler,
  DDPMScheduler,
  DEISMultistepScheduler,
  DPMSolverMultistepScheduler,
  DPMSolverSDEScheduler,
  DPMSolverSinglestepScheduler,
  EulerAncestralDiscreteScheduler,
  EulerDiscreteScheduler,
  HeunDiscreteScheduler,
  KDPM2AncestralDiscreteScheduler,
  KDPM2DiscreteScheduler,
  LCMScheduler,
  LMSDiscreteScheduler,
  PNDMScheduler,
  type PredictionType,
  type Scheduler,
  TCDScheduler,
  UniPCMultistepScheduler,
} from '@denoise/schedulers';
import { describe, expect, it } from 'vitest';
import { exactPrediction, posterior, seededNormal, TEST_MIXTURE } from './helpers/mixture.js';

/**
 * ε̂, x̂_0 and v̂ are three parametrisations of one denoiser (`docs/math.md` §2): given the exact network output
 * of a Gaussian mixture in each form, a scheduler must take the same path and report the same x̂_0 — the exact
 * posterior mean — whichever `prediction_type` it is configured with. A step that mishandles one prediction type
 * (drops it, uses the wrong σ, the wrong sign) leaves that path; the diffusers loop values cannot see it where the
 * dummy model's v_prediction loop ends near 0.
 */

const SD_SCHEDULE = { beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012 } as const;
const SAMPLES = 64;
const STEPS = 8;
const TYPES: readonly PredictionType[] = ['epsilon', 'sample', 'v_prediction'];

/** The σ (VE) a step's model evaluation sees, so that ᾱ = 1/(1 + σ²). */
type ModelSigma = (scheduler: Scheduler & { readonly sigmas: Float64Array }, i: number) => number;

interface Case {
  readonly name: string;
  readonly types: readonly PredictionType[];
  make(predictionType: PredictionType): Scheduler;
  /** ᾱ of the model evaluation at schedule index i and timestep t. */
  alphaBar(scheduler: Scheduler, i: number, t: number): number;
  /** Whether the model sees `scaleModelInput(x)` (σ-based schedulers) rather than x. */
  readonly scaledInput: boolean;
  /** Whether `predOriginalSample` is the x̂_0 of the model output just given (not of an earlier evaluation). */
  readonly reportsX0: boolean;
  /** How many steps of the schedule to compare (all by default). */
  readonly steps?: number;
}

const alphaBarOfSigma = (sigma: number) => 1 / (1 + sigma * sigma);
const sigmaAt =
  (modelSigma: ModelSigma = (s, i) => s.sigmas[i]) =>
  (scheduler: Scheduler, i: number) =>
    alphaBarOfSigma(modelSigma(scheduler as Scheduler & { readonly sigmas: Float64Array }, i));
const atTimestep = (scheduler: Scheduler, _i: number, t: number) => scheduler.alphasCumprod[t];

function sigmaCase(name: string, make: (p: PredictionType) => Scheduler, modelSigma?: ModelSigma): Case {
  return { name, types: TYPES, make, alphaBar: sigmaAt(modelSigma), scaledInput: true, reportsX0: true };
}

function discreteCase(name: string, make: (p: PredictionType) => Scheduler, reportsX0 = true): Case {
  return { name, types: TYPES, make, alphaBar: atTimestep, scaledInput: false, reportsX0 };
}

function solverCase(name: string, make: (p: PredictionType) => Scheduler): Case {
  return { name, types: TYPES, make, alphaBar: sigmaAt(), scaledInput: false, reportsX0: false };
}

const dpm2Sigma: ModelSigma = (s, i) =>
  i % 2 === 0 ? s.sigmas[i] : (s as unknown as KDPM2DiscreteScheduler).sigmasInterpol[i];
const dpm2AncestralSigma: ModelSigma = (s, i) =>
  i % 2 === 0 ? s.sigmas[i] : (s as unknown as KDPM2AncestralDiscreteScheduler).sigmasInterpol[i - 1];
const sdeSigma: ModelSigma = (s, i) => (i % 2 === 0 ? s.sigmas[i] : Math.sqrt(s.sigmas[i - 1] * s.sigmas[i]));

const config = (prediction_type: PredictionType) => ({ ...SD_SCHEDULE, prediction_type });
/** PNDM takes ε̂ or v̂ only; its cases run with those two. */
const pndmConfig = (prediction_type: PredictionType) => ({
  ...SD_SCHEDULE,
  prediction_type: prediction_type as 'epsilon' | 'v_prediction',
});

const CASES: readonly Case[] = [
  sigmaCase('Euler', (p) => new EulerDiscreteScheduler(config(p))),
  sigmaCase('Euler, Karras sigmas', (p) => new EulerDiscreteScheduler({ ...config(p), use_karras_sigmas: true })),
  sigmaCase('Euler a', (p) => new EulerAncestralDiscreteScheduler(config(p))),
  sigmaCase('Heun', (p) => new HeunDiscreteScheduler(config(p))),
  sigmaCase('DPM2', (p) => new KDPM2DiscreteScheduler(config(p)), dpm2Sigma),
  sigmaCase('DPM2 a', (p) => new KDPM2AncestralDiscreteScheduler(config(p)), dpm2AncestralSigma),
  sigmaCase('LMS', (p) => new LMSDiscreteScheduler(config(p))),
  sigmaCase('DPM++ SDE', (p) => new DPMSolverSDEScheduler(config(p)), sdeSigma),
  discreteCase('DDIM', (p) => new DDIMScheduler({ ...config(p), clip_sample: false })),
  discreteCase('DDIM, η = 1', (p) => new DDIMScheduler({ ...config(p), clip_sample: false })),
  discreteCase('DDPM', (p) => new DDPMScheduler({ ...config(p), clip_sample: false })),
  discreteCase('LCM', (p) => new LCMScheduler(config(p))),
  discreteCase('TCD', (p) => new TCDScheduler(config(p)), false),
  discreteCase('DEIS 2', (p) => new DEISMultistepScheduler(config(p)), false),
  discreteCase('DEIS 3', (p) => new DEISMultistepScheduler({ ...config(p), solver_order: 3 }), false),
  // PNDM converts its combined v̂ estimate to ε with the current sample, as diffusers does, so only its first step
  // (one estimate) is the same for ε̂ and v̂.
  {
    ...discreteCase('PNDM', (p) => new PNDMScheduler(pndmConfig(p)), false),
    types: ['epsilon', 'v_prediction'],
    steps: 1,
  },
  {
    ...discreteCase(
      'PNDM, skip_prk_steps',
      (p) => new PNDMScheduler({ ...pndmConfig(p), skip_prk_steps: true }),
      false,
    ),
    types: ['epsilon', 'v_prediction'],
    steps: 1,
  },
  solverCase('DPM++ 2M', (p) => new DPMSolverMultistepScheduler(config(p))),
  solverCase('DPM++ 3M', (p) => new DPMSolverMultistepScheduler({ ...config(p), solver_order: 3 })),
  solverCase(
    'DPM-Solver 2M',
    (p) =>
      new DPMSolverMultistepScheduler({ ...config(p), algorithm_type: 'dpmsolver', final_sigmas_type: 'sigma_min' }),
  ),
  solverCase(
    'DPM++ 2M SDE',
    (p) => new DPMSolverMultistepScheduler({ ...config(p), algorithm_type: 'sde-dpmsolver++' }),
  ),
  solverCase('DPM++ 2S', (p) => new DPMSolverSinglestepScheduler(config(p))),
  solverCase('DPM++ 3S', (p) => new DPMSolverSinglestepScheduler({ ...config(p), solver_order: 3 })),
  solverCase('UniPC bh2', (p) => new UniPCMultistepScheduler(config(p))),
  solverCase(
    'UniPC bh1, order 3',
    (p) => new UniPCMultistepScheduler({ ...config(p), solver_type: 'bh1', solver_order: 3 }),
  ),
];

interface Run {
  readonly final: Float32Array;
  /** x̂_0 the scheduler reported at each step, and the exact posterior mean it should equal. */
  readonly reported: Float32Array[];
  readonly exact: Float64Array[];
}

function run(c: Case, predictionType: PredictionType, eta?: number): Run {
  const scheduler = c.make(predictionType);
  scheduler.setTimesteps(STEPS);
  const generator = seededNormal(7);
  const noise = generator.randn([SAMPLES, 1]);
  let x: TensorLike = new Tensor(
    noise.data.map((v) => v * scheduler.initNoiseSigma),
    noise.dims,
  );
  const reported: Float32Array[] = [];
  const exact: Float64Array[] = [];
  scheduler.timesteps.slice(0, c.steps).forEach((t, i) => {
    const input = c.scaledInput ? scheduler.scaleModelInput(x, t) : x;
    const alphaBar = c.alphaBar(scheduler, i, t);
    const output = exactPrediction(TEST_MIXTURE, input, alphaBar, predictionType);
    const result = scheduler.step(output, t, x, { generator, ...(eta === undefined ? {} : { eta }) });
    if (c.reportsX0 && result.predOriginalSample) {
      reported.push(result.predOriginalSample.data as Float32Array);
      exact.push(posterior(TEST_MIXTURE, input.data as Float32Array, alphaBar).mean);
    }
    x = result.prevSample;
  });
  return { final: x.data as Float32Array, reported, exact };
}

/** The largest elementwise difference, relative to the larger magnitude (at least 1, the data's scale). */
function maxRelativeDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const scale = Math.max(1, Math.abs(a[i]), Math.abs(b[i]));
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / scale);
  }
  return worst;
}

describe('every prediction type of one exact denoiser gives one sampling path', () => {
  for (const c of CASES) {
    it(c.name, () => {
      const eta = c.name.includes('η = 1') ? 1 : undefined;
      const reference = run(c, 'epsilon', eta);
      // A path of non-trivial samples: the mixture's components lie in [−0.65, 0.75].
      if (c.steps === undefined) expect(Math.max(...reference.final.map(Math.abs))).toBeGreaterThan(0.3);
      for (const type of c.types) {
        const other = run(c, type, eta);
        expect(maxRelativeDifference(other.final, reference.final), type).toBeLessThan(1e-4);
        if (c.reportsX0) {
          expect(other.reported.length, `${type}: x̂_0 reported`).toBe(other.exact.length);
          expect(other.reported.length).toBeGreaterThan(0);
          other.reported.forEach((x0, i) => {
            expect(maxRelativeDifference(x0, other.exact[i]), `${type}: x̂_0 at step ${i}`).toBeLessThan(1e-4);
          });
        }
      }
    });
  }
});

import { Tensor, type TensorLike } from '@denoise/core';
import { assertFiniteStepResult, assertStepTensors } from './checks.js';
import {
  type ConfigSpec,
  configField,
  KARRAS_DIFFUSION_SCHEDULERS,
  NOISE_SCHEDULE_SPEC,
  type SchedulerConfigInput,
} from './config.js';
import { denoisedWeights, PREDICTION_TYPES } from './prediction.js';
import { TIMESTEP_SPACINGS } from './schedule.js';
import type { SchedulerOptions, SchedulerOutput, SetTimestepsOptions, StepOptions } from './scheduler.js';
import { SigmaScheduler, type SigmaSchedulerConfig } from './sigma-scheduler.js';
import { interpolateAt } from './sigmas.js';

/** The config of {@link EulerAncestralDiscreteScheduler}: diffusers' keys and defaults. */
export type EulerAncestralDiscreteSchedulerConfig = SigmaSchedulerConfig;

/** The keys, defaults and checks of {@link EulerAncestralDiscreteSchedulerConfig}. */
export const EULER_ANCESTRAL_DISCRETE_CONFIG_SPEC: ConfigSpec<EulerAncestralDiscreteSchedulerConfig> = {
  ...NOISE_SCHEDULE_SPEC,
  prediction_type: configField.oneOf(PREDICTION_TYPES, 'epsilon'),
  timestep_spacing: configField.oneOf(TIMESTEP_SPACINGS, 'linspace'),
  steps_offset: configField.number(0, { integer: true, min: 0 }),
};

/**
 * Ancestral sampling with Euler steps (k-diffusion's `sample_euler_ancestral`, the "Euler a" of UIs): each step
 * splits the move from σ_i to σ_{i+1} into a deterministic Euler step down to
 * `σ_down = √(σ_{i+1}² − σ_up²)` and fresh noise of standard deviation
 * `σ_up = √(σ_{i+1}² (σ_i² − σ_{i+1}²) / σ_i²)`, so the marginal at σ_{i+1} is right while the path forgets
 * part of its noise. Every step draws noise (the last with σ_up = 0), so a `generator` seeded like diffusers'
 * `torch.Generator` reproduces its results.
 *
 * @example
 * ```ts
 * const scheduler = EulerAncestralDiscreteScheduler.fromConfig(sdConfig);
 * scheduler.setTimesteps(30);
 * const generator = new RandomGenerator(42);
 * for (const t of scheduler.timesteps) {
 *   const eps = await unet(scheduler.scaleModelInput(latents, t), t);
 *   latents = scheduler.step(eps, t, latents, { generator }).prevSample;
 * }
 * ```
 */
export class EulerAncestralDiscreteScheduler extends SigmaScheduler<EulerAncestralDiscreteSchedulerConfig> {
  /** The classes whose configs this one accepts. */
  static override readonly compatibles: readonly string[] = KARRAS_DIFFUSION_SCHEDULERS;

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   */
  constructor(config: SchedulerConfigInput<EulerAncestralDiscreteSchedulerConfig> = {}, options?: SchedulerOptions) {
    super('EulerAncestralDiscreteScheduler', EULER_ANCESTRAL_DISCRETE_CONFIG_SPEC, config, options);
  }

  /**
   * Sets the sampling schedule: timesteps per `timestep_spacing` (or explicit ones), sigmas interpolated from
   * the training sigmas, then 0.
   *
   * @param steps - the number of steps, or `{ numInferenceSteps }` / `{ timesteps }`
   */
  setTimesteps(steps: number | SetTimestepsOptions): void {
    const { numInferenceSteps, timesteps } = this.parseSetTimesteps(steps);
    this.numInferenceSteps = numInferenceSteps;
    const schedule = timesteps ? [...timesteps] : this.spacedTimesteps(numInferenceSteps);
    const sigmas = new Float64Array(schedule.length + 1);
    sigmas.set(interpolateAt(schedule, this.trainingSigmas));
    this.setSchedule(schedule, sigmas);
  }

  /**
   * One ancestral step from σ_i: Euler down to σ_down, then noise σ_up · z with z from `generator` or `noise`.
   *
   * @param modelOutput - ε̂, x̂_0 or v̂ (per `prediction_type`) for the scaled model input
   * @param timestep - the current timestep, one of {@link Scheduler.timesteps}
   * @param sample - the current latents x_i (unscaled)
   * @param options - `generator` or `noise` (required: every step draws noise)
   */
  step(modelOutput: TensorLike, timestep: number, sample: TensorLike, options: StepOptions = {}): SchedulerOutput {
    assertStepTensors(modelOutput, sample);
    const index = this.cursor.stepIndexFor(timestep);
    const sigma = this.sigmas[index];
    const sigmaNext = this.sigmas[index + 1];
    // A step to a larger σ (zero terminal SNR's 2^-24 can sit below its neighbour's ᾱ) adds no noise instead of
    // taking the root of a negative number (NaN in diffusers).
    const sigmaUp = Math.sqrt(Math.max(0, (sigmaNext ** 2 * (sigma ** 2 - sigmaNext ** 2)) / sigma ** 2));
    const sigmaDown = Math.sqrt(sigmaNext ** 2 - sigmaUp ** 2);
    const dt = sigmaDown - sigma;
    const n = sample.data.length;
    const noise = this.stepNoise(options, sample);
    const x = sample.data;
    const m = modelOutput.data;
    const [a, b] = denoisedWeights(this.config.prediction_type, sigma);
    const x0 = new Float32Array(n);
    const prev = new Float32Array(n);
    // Multiplying by 1/σ instead of dividing: a division per element costs about as much as the rest of the loop.
    const inverseSigma = 1 / sigma;
    let nonFinite = 0;
    for (let i = 0; i < n; i++) {
      // x̂_0 = a·x + b·m, d = (x − x̂_0)/σ, then an Euler step to σ_down plus fresh noise of σ_up.
      x0[i] = a * x[i] + b * m[i];
      const derivative = (x[i] - x0[i]) * inverseSigma;
      const value = x[i] + derivative * dt + noise[i] * sigmaUp;
      prev[i] = value;
      nonFinite += value * 0;
    }
    assertFiniteStepResult(nonFinite, modelOutput, sample, timestep, this.className);
    this.cursor.advance();
    return { prevSample: new Tensor(prev, sample.dims), predOriginalSample: new Tensor(x0, sample.dims) };
  }
}

import { Tensor, type TensorLike } from '@denoise/core';
import { assertFiniteStepInputs, assertFiniteStepResult, assertStepTensors } from './checks.js';
import {
  BETA_SCHEDULE_SPEC,
  type ConfigSpec,
  configField,
  KARRAS_DIFFUSION_SCHEDULERS,
  type SchedulerConfigInput,
} from './config.js';
import { sigmaScheduleKind } from './euler-discrete.js';
import { denoisedWeights, PREDICTION_TYPES } from './prediction.js';
import { COMMON_BETA_SCHEDULES, TIMESTEP_SPACINGS } from './schedule.js';
import type { SchedulerOptions, SchedulerOutput, SetTimestepsOptions, StepOptions } from './scheduler.js';
import { type SigmaScheduleKind, SigmaScheduler, type SigmaSchedulerBaseConfig } from './sigma-scheduler.js';

/**
 * The config of {@link HeunDiscreteScheduler}: diffusers' `HeunDiscreteScheduler` keys and defaults (no
 * `rescale_betas_zero_snr`; `beta_schedule` also takes `exp`).
 */
export interface HeunDiscreteSchedulerConfig extends SigmaSchedulerBaseConfig {
  /** Use Karras et al.'s ρ = 7 sigma spacing. */
  use_karras_sigmas: boolean | null;
  /** Space sigmas evenly in log σ. */
  use_exponential_sigmas: boolean | null;
  /** Place sigmas at Beta(0.6, 0.6) quantiles. */
  use_beta_sigmas: boolean | null;
  /** Clamp x̂_0 to `[−clip_sample_range, clip_sample_range]`. */
  clip_sample: boolean;
  /** The clamp bound of `clip_sample`. */
  clip_sample_range: number;
}

const optionalFlag = configField.nullable(configField.boolean(false), false);

/** The keys, defaults and checks of {@link HeunDiscreteSchedulerConfig}. */
export const HEUN_DISCRETE_CONFIG_SPEC: ConfigSpec<HeunDiscreteSchedulerConfig> = {
  ...BETA_SCHEDULE_SPEC,
  beta_schedule: configField.oneOf([...COMMON_BETA_SCHEDULES, 'exp'], 'linear'),
  beta_start: configField.number(0.00085, { min: 0, max: 1 }),
  beta_end: configField.number(0.012, { min: 0, max: 1 }),
  prediction_type: configField.oneOf(PREDICTION_TYPES, 'epsilon'),
  use_karras_sigmas: optionalFlag,
  use_exponential_sigmas: optionalFlag,
  use_beta_sigmas: optionalFlag,
  clip_sample: configField.boolean(false),
  clip_sample_range: configField.number(1, { above: 0 }),
  timestep_spacing: configField.oneOf(TIMESTEP_SPACINGS, 'linspace'),
  steps_offset: configField.number(0, { integer: true, min: 0 }),
};

/**
 * Heun's second-order method on the probability-flow ODE (Karras et al. 2022, Algorithm 1): an Euler predictor
 * from σ_i to σ_{i+1}, then a corrector that averages the slopes at both ends,
 * `x_{i+1} = x_i + (σ_{i+1} − σ_i) · (d_i + d_{i+1})/2`. Each step costs two model evaluations, so the schedule
 * lists every timestep after the first twice (`order = 2`); call `step` once per listed timestep.
 *
 * As diffusers' class, it takes `beta_schedule: 'exp'` and has no `rescale_betas_zero_snr`.
 *
 * @example
 * ```ts
 * const scheduler = HeunDiscreteScheduler.fromConfig(sdConfig);
 * scheduler.setTimesteps(15); // 29 model calls
 * for (const t of scheduler.timesteps) {
 *   const eps = await unet(scheduler.scaleModelInput(latents, t), t);
 *   latents = scheduler.step(eps, t, latents).prevSample;
 * }
 * ```
 */
export class HeunDiscreteScheduler extends SigmaScheduler<HeunDiscreteSchedulerConfig> {
  /** The classes whose configs this one accepts. */
  static override readonly compatibles: readonly string[] = KARRAS_DIFFUSION_SCHEDULERS;
  /** Two model evaluations per step. */
  override order = 2;

  private readonly sigmaKind: SigmaScheduleKind;
  /** The predictor's slope, Δσ and starting sample, kept between the two halves of a step. */
  private predictorDerivative = new Float32Array(0);
  private predictorSample = new Float32Array(0);
  private predictorDt: number | undefined = undefined;

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   */
  constructor(config: SchedulerConfigInput<HeunDiscreteSchedulerConfig> = {}, options?: SchedulerOptions) {
    super('HeunDiscreteScheduler', HEUN_DISCRETE_CONFIG_SPEC, config, options);
    this.sigmaKind = sigmaScheduleKind('HeunDiscreteScheduler', this.config);
  }

  /** Whether the next `step` is a predictor (first-order) half. */
  get stateInFirstOrder(): boolean {
    return this.predictorDt === undefined;
  }

  /**
   * Sets the sampling schedule: n timesteps (spaced or explicit), their sigmas, and the doubled lists Heun
   * walks through. Resets a half-finished step.
   *
   * @param steps - the number of steps, or `{ numInferenceSteps }` / `{ timesteps }`
   */
  setTimesteps(steps: number | SetTimestepsOptions): void {
    const schedule = this.timestepsAndSigmas(steps, this.sigmaKind);
    const { sigmas, timesteps } = schedule;
    // [σ_0, σ_1, σ_1, …, σ_{n−1}, σ_{n−1}, 0] and [t_0, t_1, t_1, …, t_{n−1}, t_{n−1}].
    const doubledSigmas = [sigmas[0]];
    const doubledTimesteps = [timesteps[0]];
    for (let i = 1; i < sigmas.length; i++) {
      doubledSigmas.push(sigmas[i], sigmas[i]);
      doubledTimesteps.push(timesteps[i], timesteps[i]);
    }
    doubledSigmas.push(0);
    this.predictorDt = undefined;
    this.setSchedule(doubledTimesteps, Float64Array.from(doubledSigmas));
  }

  /**
   * The predictor half (an Euler step, remembered) or the corrector half (averaging the two slopes and
   * restarting from the remembered sample), alternately.
   *
   * @param modelOutput - ε̂, x̂_0 or v̂ (per `prediction_type`) for the scaled model input
   * @param timestep - the current timestep, one of {@link Scheduler.timesteps}
   * @param sample - the current latents (unscaled)
   * @param _options - unused: Heun is deterministic
   */
  step(modelOutput: TensorLike, timestep: number, sample: TensorLike, _options: StepOptions = {}): SchedulerOutput {
    assertStepTensors(modelOutput, sample);
    const index = this.cursor.stepIndexFor(timestep);
    const predictor = this.stateInFirstOrder;
    const n = sample.data.length;
    const x = sample.data;
    const m = modelOutput.data;
    // The predictor evaluates the model at σ_i, the corrector at σ_{i+1}.
    const sigma = predictor ? this.sigmas[index] : this.sigmas[index - 1];
    const sigmaNext = predictor ? this.sigmas[index + 1] : this.sigmas[index];
    const sigmaModel = predictor ? sigma : sigmaNext;
    const { clip_sample, clip_sample_range: range } = this.config;
    const x0 = new Float32Array(n);
    const prev = new Float32Array(n);
    if (predictor && this.predictorSample.length !== n) {
      this.predictorSample = new Float32Array(n);
      this.predictorDerivative = new Float32Array(n);
    }
    const dt = predictor ? sigmaNext - sigma : (this.predictorDt as number);
    // Clipping x̂_0 can make an Infinity finite: then check the inputs; otherwise the result (below).
    if (clip_sample) assertFiniteStepInputs(modelOutput, sample, timestep, this.className);
    const bound = clip_sample ? range : Number.POSITIVE_INFINITY;
    // x̂_0 = a·x + b·m at the σ the model saw.
    const [a, b] = denoisedWeights(this.config.prediction_type, sigmaModel);
    const predictorSample = this.predictorSample;
    const predictorDerivative = this.predictorDerivative;
    // Multiplying by 1/σ instead of dividing: a division per element costs about as much as the rest of the loop.
    const inverseSigma = 1 / (predictor ? sigma : sigmaNext);
    let nonFinite = 0;
    if (predictor) {
      // An Euler step x + d·dt with d = (x − x̂_0)/σ_i, remembering x and d for the corrector.
      for (let i = 0; i < n; i++) {
        x0[i] = Math.min(Math.max(a * x[i] + b * m[i], -bound), bound);
        const derivative = Math.fround((x[i] - x0[i]) * inverseSigma);
        predictorDerivative[i] = derivative;
        predictorSample[i] = x[i];
        const value = x[i] + derivative * dt;
        prev[i] = value;
        nonFinite += value * 0;
      }
    } else {
      // From the remembered sample with the average of the two slopes (Karras et al. 2022, Alg. 1).
      for (let i = 0; i < n; i++) {
        x0[i] = Math.min(Math.max(a * x[i] + b * m[i], -bound), bound);
        const derivative = (x[i] - x0[i]) * inverseSigma;
        const value = predictorSample[i] + ((predictorDerivative[i] + derivative) / 2) * dt;
        prev[i] = value;
        nonFinite += value * 0;
      }
    }
    if (!clip_sample) assertFiniteStepResult(nonFinite, modelOutput, sample, timestep, this.className);
    this.predictorDt = predictor ? dt : undefined;
    this.cursor.advance();
    return { prevSample: new Tensor(prev, sample.dims), predOriginalSample: new Tensor(x0, sample.dims) };
  }
}

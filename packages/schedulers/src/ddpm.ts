import { InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import type { PosteriorVariance } from './capabilities.js';
import {
  assertFiniteStepInputs,
  assertFiniteStepResult,
  assertPredictionDefinedAtZeroSnr,
  assertSameDims,
  assertTensorLike,
} from './checks.js';
import {
  type ConfigSpec,
  configField,
  KARRAS_DIFFUSION_SCHEDULERS,
  NOISE_SCHEDULE_SPEC,
  type SchedulerConfigInput,
} from './config.js';
import { originalSampleWeights, PREDICTION_TYPES, type PredictionType } from './prediction.js';
import {
  COMMON_BETA_SCHEDULES,
  type NoiseScheduleConfig,
  spacedTimesteps,
  TIMESTEP_SPACINGS,
  type TimestepSpacing,
} from './schedule.js';
import {
  Scheduler,
  type SchedulerOptions,
  type SchedulerOutput,
  type SetTimestepsOptions,
  type StepOptions,
} from './scheduler.js';
import {
  applyDynamicThresholding,
  stepFromOriginalSample,
  THRESHOLDING_SPEC,
  type ThresholdingConfig,
} from './thresholding.js';

/**
 * The variance σ² of DDPM's ancestral step (`docs/math.md` §3):
 * - `fixed_small`: the posterior variance β̃_t; `fixed_small_log`: the same, computed in log space;
 * - `fixed_large`: β_t; `fixed_large_log`: the same, computed in log space;
 * - `learned`: the model's second half of channels is σ² itself;
 * - `learned_range`: IDDPM, the second half v ∈ [−1, 1] interpolates log σ² between log β̃_t and log β_t.
 */
export type VarianceType =
  | 'fixed_small'
  | 'fixed_small_log'
  | 'fixed_large'
  | 'fixed_large_log'
  | 'learned'
  | 'learned_range';

/** All values `variance_type` accepts. */
export const VARIANCE_TYPES: readonly VarianceType[] = [
  'fixed_small',
  'fixed_small_log',
  'fixed_large',
  'fixed_large_log',
  'learned',
  'learned_range',
];

/** The config of {@link DDPMScheduler}: diffusers' `DDPMScheduler` keys and defaults. */
export interface DDPMSchedulerConfig extends NoiseScheduleConfig, ThresholdingConfig {
  /** The variance of each ancestral step. */
  variance_type: VarianceType;
  /** Clamp x̂_0 to `[−clip_sample_range, clip_sample_range]` (ignored when `thresholding` is on). */
  clip_sample: boolean;
  /** What the model predicts. */
  prediction_type: PredictionType;
  /** The clamp bound of `clip_sample`. */
  clip_sample_range: number;
  /** How `setTimesteps(n)` places its timesteps. */
  timestep_spacing: TimestepSpacing;
  /** Added to every `leading` timestep (Stable Diffusion uses 1). */
  steps_offset: number;
}

/** The keys, defaults and checks of {@link DDPMSchedulerConfig}. */
export const DDPM_CONFIG_SPEC: ConfigSpec<DDPMSchedulerConfig> = {
  ...NOISE_SCHEDULE_SPEC,
  // DDPM is the one diffusers class with the Laplace and GeoDiff sigmoid schedules.
  beta_schedule: configField.oneOf([...COMMON_BETA_SCHEDULES, 'laplace', 'sigmoid'], 'linear'),
  ...THRESHOLDING_SPEC,
  variance_type: configField.oneOf(VARIANCE_TYPES, 'fixed_small'),
  clip_sample: configField.boolean(true),
  prediction_type: configField.oneOf(PREDICTION_TYPES, 'epsilon'),
  clip_sample_range: configField.number(1, { above: 0 }),
  timestep_spacing: configField.oneOf(TIMESTEP_SPACINGS, 'leading'),
  steps_offset: configField.number(0, { integer: true, min: 0 }),
};

/** Everything one DDPM step from `t` to `prev` needs, computed once per schedule. */
interface DDPMStepCoefficients {
  readonly prev: number;
  readonly sqrtAlphaBar: number;
  readonly sqrtOneMinusAlphaBar: number;
  /** Weight of x̂_0 in the posterior mean μ̃ (`docs/math.md` §2). */
  readonly x0Weight: number;
  /** Weight of x_t in the posterior mean μ̃. */
  readonly sampleWeight: number;
  /** log β̃ (clamped to ≥ 1e−20 before the log, as diffusers does). */
  readonly logPosteriorVariance: number;
  /** log β of the effective (respaced) step. */
  readonly logBeta: number;
}

/**
 * Denoising Diffusion Probabilistic Models (Ho et al. 2020), with the respacing and learned variances of Improved
 * DDPM (Nichol & Dhariwal 2021). Each step samples x_{t'} ~ N(μ̃(x_t, x̂_0), σ²) (`docs/math.md` §2–3).
 *
 * Differences from diffusers: `fixed_large_log` uses σ² = β_t (diffusers takes the square root of log β_t and
 * returns NaN); `getVariance` always returns σ² (diffusers' `_get_variance` returns σ for `fixed_small_log` and a
 * log-variance for `learned_range`); `step` from a training timestep off the schedule goes to t − T // n (as
 * diffusers' `DDPMParallelScheduler.batch_step_no_noise`; diffusers' `DDPMScheduler.step` fails there).
 * `clip_sample` (diffusers' default) and `thresholding` are applied in the step's single pass over the data.
 *
 * @example
 * ```ts
 * const scheduler = new DDPMScheduler({ beta_schedule: 'linear', clip_sample: true });
 * scheduler.setTimesteps(50);
 * for (const t of scheduler.timesteps) {
 *   const eps = await unet(sample, t);
 *   sample = scheduler.step(eps, t, sample, { generator }).prevSample;
 * }
 * ```
 */
export class DDPMScheduler extends Scheduler<DDPMSchedulerConfig> implements PosteriorVariance {
  /** The classes whose configs this one accepts. */
  static override readonly compatibles: readonly string[] = KARRAS_DIFFUSION_SCHEDULERS;

  private coefficients = new Map<number, DDPMStepCoefficients>();
  private customTimesteps = false;
  private thresholdScratch = new Float32Array(0);

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   */
  constructor(config: SchedulerConfigInput<DDPMSchedulerConfig> = {}, options?: SchedulerOptions) {
    super('DDPMScheduler', DDPM_CONFIG_SPEC, config, options);
    assertPredictionDefinedAtZeroSnr('DDPMScheduler', this.config);
    this.precomputeCoefficients();
  }

  /**
   * Sets the sampling schedule: `n` timesteps spaced per `timestep_spacing`, or explicit descending timesteps.
   *
   * @param steps - the number of steps, or `{ numInferenceSteps }` / `{ timesteps }`
   */
  setTimesteps(steps: number | SetTimestepsOptions): void {
    const { numInferenceSteps, timesteps } = this.parseSetTimesteps(steps);
    const { timestep_spacing, num_train_timesteps, steps_offset } = this.config;
    this.customTimesteps = timesteps !== undefined;
    this.numInferenceSteps = numInferenceSteps;
    this.timesteps =
      timesteps ?? spacedTimesteps(timestep_spacing, numInferenceSteps, num_train_timesteps, steps_offset);
    this.precomputeCoefficients();
  }

  /**
   * The timestep a step from `timestep` lands on: the next one of the schedule (−1 after the last), or
   * `timestep − 1` before `setTimesteps`; from a training timestep off the schedule, `timestep − T // n`.
   *
   * @param timestep - a timestep of the current schedule, or any training timestep (see {@link DDPMScheduler.step})
   */
  previousTimestep(timestep: number): number {
    return this.coefficientsAt(timestep).prev;
  }

  /**
   * The variance σ² of the step from `timestep` (`docs/math.md` §3). For `learned` / `learned_range` pass the model's
   * variance output v for the element of interest.
   *
   * @param timestep - a timestep of the current schedule
   * @param predictedVariance - v, required for the learned variance types
   */
  getVariance(timestep: number, predictedVariance?: number): number {
    const c = this.coefficientsAt(timestep);
    const type = this.config.variance_type;
    if ((type === 'learned' || type === 'learned_range') && predictedVariance === undefined) {
      throw new InvalidArgumentError(`getVariance needs the model's predicted variance when variance_type is ${type}.`);
    }
    return this.stdDev(c, predictedVariance ?? 0) ** 2;
  }

  /**
   * Σ of the step from `timestep` for mean-form classifier guidance (`docs/math.md` §7): {@link getVariance}
   * with the fixed variance of the config (learned variances come from the model output instead).
   *
   * @param timestep - a timestep of the current schedule
   */
  posteriorVariance(timestep: number): number {
    return this.getVariance(timestep);
  }

  /**
   * One ancestral step x_t → x_{t'} (`docs/math.md` §2–3). For the learned variance types the model output has twice the
   * sample's channels: the prediction, then the variance values. Noise comes from `options.noise` or
   * `options.generator` (one `randn` of the sample's shape per step with `timestep > 0`, like diffusers).
   *
   * `timestep` may also be a training timestep off the schedule (custom loops, SDEdit-style starts): the step then
   * goes to t − T // n (n the number of inference steps, T before `setTimesteps`), as diffusers'
   * `DDPMParallelScheduler.batch_step_no_noise` does; ᾱ_prev = 1 below 0. Timesteps outside [0, T) or not integers
   * throw.
   *
   * @param modelOutput - ε̂, x̂_0 or v̂ (per `prediction_type`), with variance channels for learned types
   * @param timestep - the current timestep: one of the schedule, or any integer in [0, num_train_timesteps)
   * @param sample - x_t
   * @param options - `generator` or `noise`
   */
  step(modelOutput: TensorLike, timestep: number, sample: TensorLike, options: StepOptions = {}): SchedulerOutput {
    assertTensorLike(sample, 'sample');
    assertTensorLike(modelOutput, 'modelOutput');
    const { variance_type, prediction_type } = this.config;
    const learned = variance_type === 'learned' || variance_type === 'learned_range';
    this.checkModelOutputDims(modelOutput, sample, learned);
    const c = this.coefficientsAt(timestep);
    // x̂_0 = a·x_t + b·m (`docs/math.md` §2).
    const [a, b] = originalSampleWeights(prediction_type, c.sqrtAlphaBar, c.sqrtOneMinusAlphaBar);
    const n = sample.data.length;
    const x0 = new Float32Array(n);
    const prev = new Float32Array(n);
    // diffusers draws noise whenever t > 0.
    const noise = timestep > 0 ? this.stepNoise(options, sample) : null;
    if (learned) {
      this.learnedVarianceStep(modelOutput, timestep, sample, noise, a, b, x0, prev);
    } else {
      // μ̃ = x0Weight·x̂_0 + sampleWeight·x_t, plus σ·z, with x̂_0 clipped or thresholded in the same pass.
      if (this.config.thresholding) this.ensureThresholdScratch(n / sample.dims[0]);
      const nonFinite = stepFromOriginalSample(
        { sample, modelOutput, noise, x0, prev, scratch: this.thresholdScratch },
        [a, b],
        this.config,
        { original: c.x0Weight, sample: c.sampleWeight, output: 0, noise: noise ? this.stdDev(c, 0) : 0 },
      );
      assertFiniteStepResult(nonFinite, modelOutput, sample, timestep, this.className);
    }
    return { prevSample: new Tensor(prev, sample.dims), predOriginalSample: new Tensor(x0, sample.dims) };
  }

  /**
   * The step of the learned variance types, whose σ comes per element from the model's variance channels: x̂_0
   * in its own pass (thresholding needs all of an item's x̂_0), then μ̃ + σ·z. Clamping can make an Infinity
   * finite, so it checks its inputs up front.
   */
  private learnedVarianceStep(
    modelOutput: TensorLike,
    timestep: number,
    sample: TensorLike,
    noise: Float32Array | null,
    a: number,
    b: number,
    x0: Float32Array,
    prev: Float32Array,
  ): void {
    assertFiniteStepInputs(modelOutput, sample, timestep, this.className);
    const c = this.coefficientsAt(timestep);
    const { thresholding, clip_sample, clip_sample_range } = this.config;
    const n = sample.data.length;
    const batch = sample.dims[0];
    const itemSize = n / batch;
    const x = sample.data;
    const out = modelOutput.data;
    // Item b's prediction starts at b·2·itemSize and its variance values follow it.
    const outputStride = 2 * itemSize;

    for (let item = 0; item < batch; item++) {
      const base = item * itemSize;
      const outBase = item * outputStride;
      for (let i = 0; i < itemSize; i++) x0[base + i] = a * x[base + i] + b * out[outBase + i];
    }
    if (thresholding) {
      this.ensureThresholdScratch(itemSize);
      const { dynamic_thresholding_ratio, sample_max_value } = this.config;
      applyDynamicThresholding(x0, batch, dynamic_thresholding_ratio, sample_max_value, this.thresholdScratch);
    } else if (clip_sample) {
      for (let i = 0; i < n; i++) x0[i] = Math.min(Math.max(x0[i], -clip_sample_range), clip_sample_range);
    }

    for (let item = 0; item < batch; item++) {
      const base = item * itemSize;
      const varianceBase = item * outputStride + itemSize;
      for (let i = 0; i < itemSize; i++) {
        const k = base + i;
        let value = c.x0Weight * x0[k] + c.sampleWeight * x[k];
        if (noise) value += this.stdDev(c, out[varianceBase + i]) * noise[k];
        prev[k] = value;
      }
    }
  }

  private ensureThresholdScratch(itemSize: number): void {
    if (this.thresholdScratch.length < itemSize) this.thresholdScratch = new Float32Array(itemSize);
  }

  /** σ of a step for this config's variance type; `v` is the model's variance output (learned types only). */
  private stdDev(c: DDPMStepCoefficients, v: number): number {
    switch (this.config.variance_type) {
      case 'fixed_small':
      case 'fixed_small_log':
        return Math.exp(0.5 * c.logPosteriorVariance);
      case 'fixed_large':
      case 'fixed_large_log':
        return Math.exp(0.5 * c.logBeta);
      case 'learned':
        // diffusers reads the variance channels as σ² itself (IDDPM's code reads them as log σ²).
        return Math.sqrt(v);
      case 'learned_range': {
        // IDDPM eq. 15: log σ² = frac·log β + (1 − frac)·log β̃, frac = (v + 1)/2.
        const frac = (v + 1) / 2;
        return Math.exp(0.5 * (frac * c.logBeta + (1 - frac) * c.logPosteriorVariance));
      }
    }
  }

  /**
   * The coefficients of a step from `timestep`: precomputed on the schedule, else for a step to t − T // n (n the
   * number of inference steps, T before `setTimesteps`), the rule of diffusers' `DDPMParallelScheduler`.
   */
  private coefficientsAt(timestep: number): DDPMStepCoefficients {
    const c = this.coefficients.get(timestep);
    if (c) return c;
    const T = this.config.num_train_timesteps;
    return this.stepCoefficients(timestep, timestep - Math.floor(T / (this.numInferenceSteps ?? T)));
  }

  private checkModelOutputDims(modelOutput: TensorLike, sample: TensorLike, learned: boolean): void {
    if (sample.dims.length < 2) {
      throw new InvalidArgumentError(
        `sample must have a batch and a channel axis, got dims [${sample.dims.join(', ')}].`,
      );
    }
    if (!learned) {
      assertSameDims(modelOutput, sample, 'modelOutput', 'sample');
      return;
    }
    const expected = [sample.dims[0], 2 * sample.dims[1], ...sample.dims.slice(2)];
    if (modelOutput.dims.length !== expected.length || modelOutput.dims.some((d, i) => d !== expected[i])) {
      throw new InvalidArgumentError(
        `variance_type "${this.config.variance_type}" needs a model output with twice the sample's channels ` +
          `(prediction, then variance): expected [${expected.join(', ')}], got [${modelOutput.dims.join(', ')}].`,
      );
    }
  }

  /** Per-timestep coefficients of the current schedule (`docs/math.md` §2, respaced: β = 1 − ᾱ_t/ᾱ_{t'}). */
  private precomputeCoefficients(): void {
    const timesteps = this.timesteps;
    const respaced = this.customTimesteps || this.numInferenceSteps !== undefined;
    this.coefficients = new Map();
    for (let i = 0; i < timesteps.length; i++) {
      const t = timesteps[i];
      const prev = respaced ? (i + 1 < timesteps.length ? timesteps[i + 1] : -1) : t - 1;
      this.coefficients.set(t, this.stepCoefficients(t, prev));
    }
  }

  /** The coefficients of a step from training timestep `t` to `prev` (`docs/math.md` §2; `prev < 0`: ᾱ_prev = 1). */
  private stepCoefficients(t: number, prev: number): DDPMStepCoefficients {
    const alphaBar = this.alphaCumprodAt(t);
    const alphaBarPrev = prev >= 0 ? this.alphasCumprod[prev] : 1;
    // Rounded to float32 as torch's division rounds it: β = 1 − α then carries diffusers' own cancellation
    // error (up to 5e-4 relative at t = 1), which its published test values include.
    const alpha = Math.fround(alphaBar / alphaBarPrev);
    const beta = 1 - alpha;
    const posteriorVariance = Math.max(((1 - alphaBarPrev) / (1 - alphaBar)) * beta, 1e-20);
    return {
      prev,
      sqrtAlphaBar: Math.sqrt(alphaBar),
      sqrtOneMinusAlphaBar: Math.sqrt(1 - alphaBar),
      x0Weight: (Math.sqrt(alphaBarPrev) * beta) / (1 - alphaBar),
      sampleWeight: (Math.sqrt(alpha) * (1 - alphaBarPrev)) / (1 - alphaBar),
      logPosteriorVariance: Math.log(posteriorVariance),
      logBeta: Math.log(beta),
    };
  }
}

import { InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import { assertFiniteStepResult, assertPredictionDefinedAtZeroSnr, assertStepTensors } from './checks.js';
import {
  type ConfigSpec,
  configField,
  KARRAS_DIFFUSION_SCHEDULERS,
  NOISE_SCHEDULE_SPEC,
  type SchedulerConfigInput,
} from './config.js';
import { noisePredictionWeights, originalSampleWeights, PREDICTION_TYPES, type PredictionType } from './prediction.js';
import { type NoiseScheduleConfig, spacedTimesteps, TIMESTEP_SPACINGS, type TimestepSpacing } from './schedule.js';
import {
  Scheduler,
  type SchedulerOptions,
  type SchedulerOutput,
  type SetTimestepsOptions,
  type StepOptions,
} from './scheduler.js';
import {
  stepFromOriginalSample,
  THRESHOLDING_SPEC,
  type ThresholdingConfig,
  type UpdateWeights,
} from './thresholding.js';

/** The config of {@link DDIMScheduler}: diffusers' `DDIMScheduler` keys and defaults. */
export interface DDIMSchedulerConfig extends NoiseScheduleConfig, ThresholdingConfig {
  /** Clamp x̂_0 to `[−clip_sample_range, clip_sample_range]` (ignored when `thresholding` is on). */
  clip_sample: boolean;
  /** At the last step use ᾱ_prev = 1 (a fully denoised target); otherwise ᾱ_0. */
  set_alpha_to_one: boolean;
  /** Added to every `leading` timestep (Stable Diffusion uses 1). */
  steps_offset: number;
  /** What the model predicts. */
  prediction_type: PredictionType;
  /** The clamp bound of `clip_sample`. */
  clip_sample_range: number;
  /** How `setTimesteps(n)` places its timesteps. */
  timestep_spacing: TimestepSpacing;
}

/** The keys, defaults and checks of {@link DDIMSchedulerConfig}. */
export const DDIM_CONFIG_SPEC: ConfigSpec<DDIMSchedulerConfig> = {
  ...NOISE_SCHEDULE_SPEC,
  ...THRESHOLDING_SPEC,
  clip_sample: configField.boolean(true),
  set_alpha_to_one: configField.boolean(true),
  steps_offset: configField.number(0, { integer: true, min: 0 }),
  prediction_type: configField.oneOf(PREDICTION_TYPES, 'epsilon'),
  clip_sample_range: configField.number(1, { above: 0 }),
  timestep_spacing: configField.oneOf(TIMESTEP_SPACINGS, 'leading'),
};

/** The options of {@link DDIMScheduler.step}: the noise source of {@link StepOptions} and DDIM's own. */
export interface DDIMStepOptions extends StepOptions {
  /** DDIM's η (eq. 16): 0 is deterministic, 1 matches DDPM's posterior variance. */
  eta?: number;
  /** Recompute ε̂ from the clipped x̂_0 (diffusers' `use_clipped_model_output`, as GLIDE does). */
  useClippedModelOutput?: boolean;
}

/** Everything one DDIM step from `t` needs, computed once per schedule. */
interface DDIMStepCoefficients {
  readonly prev: number;
  readonly sqrtAlphaBar: number;
  readonly sqrtOneMinusAlphaBar: number;
  readonly alphaBarPrev: number;
  /** σ² at η = 1: the DDPM posterior variance of this (possibly long) step. */
  readonly variance: number;
}

/**
 * Denoising Diffusion Implicit Models (Song et al. 2021, eq. 12): x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'} − σ²) ε̂ + σ z
 * with σ = η · √((1 − ᾱ_{t'})/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ_{t'})) (`docs/math.md` §5). η = 0 (the default) is deterministic.
 *
 * As in diffusers, the step from t goes to t − T // n whatever the `timestep_spacing`, from any integer training
 * timestep (not only those of the schedule). `clip_sample` (diffusers' default) and `thresholding` are applied in
 * the step's single pass over the data.
 *
 * Differences from diffusers: custom timesteps (`setTimesteps({ timesteps })`, which diffusers' DDIM does not
 * offer), where each step goes to the next one of the list; zero terminal SNR with ε-prediction is a
 * `ConfigError` (diffusers divides by √ᾱ = 0).
 *
 * @example
 * ```ts
 * const scheduler = DDIMScheduler.fromConfig(ddpm.config);
 * scheduler.setTimesteps(50);
 * for (const t of scheduler.timesteps) {
 *   sample = scheduler.step(await unet(sample, t), t, sample).prevSample;
 * }
 * ```
 */
export class DDIMScheduler extends Scheduler<DDIMSchedulerConfig> {
  /** The classes whose configs this one accepts. */
  static override readonly compatibles: readonly string[] = KARRAS_DIFFUSION_SCHEDULERS;

  private coefficients = new Map<number, DDIMStepCoefficients>();
  private thresholdScratch = new Float32Array(0);

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   */
  constructor(config: SchedulerConfigInput<DDIMSchedulerConfig> = {}, options?: SchedulerOptions) {
    super('DDIMScheduler', DDIM_CONFIG_SPEC, config, options);
    assertPredictionDefinedAtZeroSnr('DDIMScheduler', this.config);
  }

  /** ᾱ of the target of the last step: 1 with `set_alpha_to_one`, else ᾱ_0. */
  get finalAlphaCumprod(): number {
    return this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
  }

  /**
   * Sets the sampling schedule: `n` timesteps spaced per `timestep_spacing`, or explicit descending timesteps.
   *
   * @param steps - the number of steps, or `{ numInferenceSteps }` / `{ timesteps }`
   */
  setTimesteps(steps: number | SetTimestepsOptions): void {
    const { numInferenceSteps, timesteps } = this.parseSetTimesteps(steps);
    const T = this.config.num_train_timesteps;
    this.numInferenceSteps = numInferenceSteps;
    this.timesteps =
      timesteps ?? spacedTimesteps(this.config.timestep_spacing, numInferenceSteps, T, this.config.steps_offset);
    this.coefficients = new Map();
    this.timesteps.forEach((t, i) => {
      const prev = timesteps ? (i + 1 < timesteps.length ? timesteps[i + 1] : -1) : t - this.stride;
      this.coefficients.set(t, this.stepCoefficients(t, prev));
    });
  }

  /** T // n: how far a step goes back in diffusers' DDIM (`num_train_timesteps // num_inference_steps`). */
  private get stride(): number {
    return Math.floor(this.config.num_train_timesteps / (this.numInferenceSteps ?? 1));
  }

  /**
   * The timestep a step from `timestep` lands on (−1 or below means the fully denoised end).
   *
   * @param timestep - a timestep of the current schedule, or any training timestep (see {@link DDIMScheduler.step})
   */
  previousTimestep(timestep: number): number {
    return this.coefficientsAt(timestep).prev;
  }

  /**
   * σ² of a step from `timestep` to `prevTimestep` at η = 1 (`docs/math.md` §5):
   * (1 − ᾱ_{t'})/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ_{t'}). A negative `prevTimestep` stands for the end of sampling.
   *
   * @param timestep - the current training timestep
   * @param prevTimestep - the target training timestep
   */
  getVariance(timestep: number, prevTimestep: number): number {
    const alphaBar = this.alphaCumprodAt(timestep);
    const alphaBarPrev = this.alphaBarBefore(prevTimestep);
    return ((1 - alphaBarPrev) / (1 - alphaBar)) * (1 - alphaBar / alphaBarPrev);
  }

  /**
   * One DDIM step x_t → x_{t'} (`docs/math.md` §5). Options: `eta` (default 0), `useClippedModelOutput` (recompute ε̂ from
   * the clipped x̂_0, as GLIDE does), and for η > 0 the noise: `noise` or `generator`, not both.
   *
   * As in diffusers, `timestep` may be any integer training timestep, not only one of {@link Scheduler.timesteps}
   * (custom loops, SDEdit-style starts): the step then goes to t' = t − T // n (n the number of inference steps),
   * with ᾱ_{t'} = 1 or ᾱ_0 (`set_alpha_to_one`) when t' < 0. Timesteps outside [0, T) or not integers throw.
   *
   * @param modelOutput - ε̂, x̂_0 or v̂ (per `prediction_type`)
   * @param timestep - the current timestep: one of the schedule, or any integer in [0, num_train_timesteps)
   * @param sample - x_t
   * @param options - `eta`, `useClippedModelOutput`, `generator` or `noise`
   */
  step(modelOutput: TensorLike, timestep: number, sample: TensorLike, options: DDIMStepOptions = {}): SchedulerOutput {
    if (this.numInferenceSteps === undefined) {
      throw new InvalidArgumentError(
        'DDIMScheduler.step needs a schedule: call setTimesteps(numInferenceSteps) first.',
      );
    }
    assertStepTensors(modelOutput, sample);
    const eta = options.eta ?? 0;
    if (!(Number.isFinite(eta) && eta >= 0)) {
      throw new InvalidArgumentError(`eta must be a finite number >= 0 (0: DDIM, 1: DDPM variance), got ${eta}.`);
    }
    if (options.noise && options.generator) {
      throw new InvalidArgumentError('Pass either generator or noise to DDIMScheduler.step, not both.');
    }
    const c = this.coefficientsAt(timestep);
    const std = eta * Math.sqrt(c.variance);
    const directionSquared = 1 - c.alphaBarPrev - std * std;
    if (directionSquared < -1e-12) {
      throw new InvalidArgumentError(
        `eta = ${eta} makes the DDIM noise variance exceed 1 − ᾱ_prev at timestep ${timestep}; use eta <= 1.`,
      );
    }
    const alpha = c.sqrtAlphaBar;
    const sigma = c.sqrtOneMinusAlphaBar;
    const { prediction_type } = this.config;
    // ε̂ = aEps·x_t + bEps·m (`docs/math.md` §2), or with useClippedModelOutput ε̂ = (x_t − √ᾱ·x̂_0)/√(1 − ᾱ) from the
    // clamped x̂_0, as GLIDE does.
    const [aEps, bEps] = options.useClippedModelOutput
      ? [1 / sigma, 0]
      : noisePredictionWeights(prediction_type, alpha, sigma);
    const epsilonPerOriginal = options.useClippedModelOutput ? -alpha / sigma : 0;
    // x_{t'} = √ᾱ_{t'}·x̂_0 + √(1 − ᾱ_{t'} − σ²)·ε̂ + σ·z (DDIM eq. 12), with ε̂ written out in x̂_0, x_t and m.
    const directionWeight = Math.sqrt(Math.max(directionSquared, 0));
    const weights: UpdateWeights = {
      original: Math.sqrt(c.alphaBarPrev) + directionWeight * epsilonPerOriginal,
      sample: directionWeight * aEps,
      output: directionWeight * bEps,
      noise: std,
    };
    const noise = eta > 0 ? this.stepNoise(options, sample) : null;
    const n = sample.data.length;
    const x0 = new Float32Array(n);
    const prev = new Float32Array(n);
    if (this.config.thresholding) this.ensureThresholdScratch(n / sample.dims[0]);
    const nonFinite = stepFromOriginalSample(
      { sample, modelOutput, noise, x0, prev, scratch: this.thresholdScratch },
      originalSampleWeights(prediction_type, alpha, sigma),
      this.config,
      weights,
    );
    assertFiniteStepResult(nonFinite, modelOutput, sample, timestep, this.className);
    return { prevSample: new Tensor(prev, sample.dims), predOriginalSample: new Tensor(x0, sample.dims) };
  }

  private ensureThresholdScratch(itemSize: number): void {
    if (this.thresholdScratch.length < itemSize) this.thresholdScratch = new Float32Array(itemSize);
  }

  private alphaBarBefore(prevTimestep: number): number {
    return prevTimestep >= 0 ? this.alphaCumprodAt(prevTimestep) : this.finalAlphaCumprod;
  }

  /** The coefficients of a step from `timestep`: precomputed on the schedule, else for t − T // n (diffusers' rule). */
  private coefficientsAt(timestep: number): DDIMStepCoefficients {
    return this.coefficients.get(timestep) ?? this.stepCoefficients(timestep, timestep - this.stride);
  }

  /** Everything a step from training timestep `t` to `prev` needs (`prev < 0`: the end of sampling). */
  private stepCoefficients(t: number, prev: number): DDIMStepCoefficients {
    const alphaBar = this.alphaCumprodAt(t);
    return {
      prev,
      sqrtAlphaBar: Math.sqrt(alphaBar),
      sqrtOneMinusAlphaBar: Math.sqrt(1 - alphaBar),
      alphaBarPrev: this.alphaBarBefore(prev),
      variance: this.getVariance(t, prev),
    };
  }
}

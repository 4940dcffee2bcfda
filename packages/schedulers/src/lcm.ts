import { Tensor, type TensorLike } from '@denoise/core';
import {
  assertFiniteStepInputs,
  assertFiniteStepResult,
  assertPredictionDefinedAtZeroSnr,
  assertStepTensors,
} from './checks.js';
import { type ConfigSpec, configField, NOISE_SCHEDULE_SPEC, type SchedulerConfigInput } from './config.js';
import { distillationOptions, distillationTimesteps } from './distillation-grid.js';
import { originalSampleWeights, PREDICTION_TYPES, type PredictionType } from './prediction.js';
import type { NoiseScheduleConfig } from './schedule.js';
import {
  Scheduler,
  type SchedulerOptions,
  type SchedulerOutput,
  type SetTimestepsOptions,
  type StepOptions,
} from './scheduler.js';
import { applyDynamicThresholding, THRESHOLDING_SPEC, type ThresholdingConfig } from './thresholding.js';

/** The config of {@link LCMScheduler}: diffusers' `LCMScheduler` keys and defaults. */
export interface LCMSchedulerConfig extends NoiseScheduleConfig, ThresholdingConfig {
  /** The length of the distillation schedule the timesteps are picked from (LCM's "skipping-step" grid). */
  original_inference_steps: number;
  /** Clamp x̂_0 to `[−clip_sample_range, clip_sample_range]` (ignored when `thresholding` is on). */
  clip_sample: boolean;
  /** The clamp bound of `clip_sample`. */
  clip_sample_range: number;
  /** After the last step use ᾱ_prev = 1; otherwise ᾱ_0. */
  set_alpha_to_one: boolean;
  /** Kept for config compatibility; LCM's grid does not use it. */
  steps_offset: number;
  /** What the model predicts. */
  prediction_type: PredictionType;
  /** Kept for config compatibility; LCM's grid does not use it. */
  timestep_spacing: 'leading' | 'linspace' | 'trailing';
  /** Multiplies t in the boundary-condition scalings c_skip, c_out. */
  timestep_scaling: number;
}

/** The keys, defaults and checks of {@link LCMSchedulerConfig}. */
export const LCM_CONFIG_SPEC: ConfigSpec<LCMSchedulerConfig> = {
  ...NOISE_SCHEDULE_SPEC,
  ...THRESHOLDING_SPEC,
  beta_start: configField.number(0.00085, { min: 0, max: 1 }),
  beta_end: configField.number(0.012, { min: 0, max: 1 }),
  beta_schedule: configField.oneOf(['linear', 'scaled_linear', 'squaredcos_cap_v2'], 'scaled_linear'),
  original_inference_steps: configField.number(50, { integer: true, min: 1 }),
  clip_sample: configField.boolean(false),
  clip_sample_range: configField.number(1, { above: 0 }),
  set_alpha_to_one: configField.boolean(true),
  steps_offset: configField.number(0, { integer: true, min: 0 }),
  prediction_type: configField.oneOf(PREDICTION_TYPES, 'epsilon'),
  timestep_spacing: configField.oneOf(['leading', 'linspace', 'trailing'] as const, 'leading'),
  timestep_scaling: configField.number(10, { min: 0 }),
};

/** `setTimesteps` arguments of {@link LCMScheduler}. */
export interface LCMSetTimestepsOptions extends SetTimestepsOptions {
  /** Overrides the config's `original_inference_steps` for this run. */
  originalInferenceSteps?: number;
  /** img2img strength in (0, 1]: only the noisiest `strength` share of the grid is used. */
  strength?: number;
}

/** The data standard deviation of the consistency-model boundary condition (Song et al. 2023). */
const SIGMA_DATA = 0.5;

/**
 * Latent Consistency Models (Luo et al. 2023): every step maps x_t straight to a clean estimate with the
 * consistency function `f(x, t) = c_skip(t) · x + c_out(t) · x̂_0`, `c_skip = σ_d²/((st)² + σ_d²)`,
 * `c_out = st/√((st)² + σ_d²)` (s = `timestep_scaling`), then, except after the last step, re-noises it to the
 * next timestep: `x_{t'} = √ᾱ_{t'} f + √(1 − ᾱ_{t'}) z` (multistep consistency sampling, Algorithm 1 of Song et
 * al. 2023). Timesteps come from the `original_inference_steps`-point distillation grid.
 * Re-noising takes `generator` (same seeds as diffusers) or explicit `noise`.
 */
export class LCMScheduler extends Scheduler<LCMSchedulerConfig> {
  /** diffusers lists no compatible classes for LCM: its timesteps only make sense for distilled models. */
  static override readonly compatibles: readonly string[] = [];

  private thresholdScratch = new Float32Array(0);
  /** x̂_0 of the configs that clamp it, reused across steps (the step returns f(x_t, t), not x̂_0). */
  private x0Scratch = new Float32Array(0);

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   */
  constructor(config: SchedulerConfigInput<LCMSchedulerConfig> = {}, options?: SchedulerOptions) {
    super('LCMScheduler', LCM_CONFIG_SPEC, config, options);
    assertPredictionDefinedAtZeroSnr('LCMScheduler', this.config);
  }

  /** ᾱ after the last step: 1 with `set_alpha_to_one`, else ᾱ_0. */
  get finalAlphaCumprod(): number {
    return this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
  }

  /**
   * Picks n timesteps from the distillation grid `t_j = j·(T // original_steps) − 1`, j = 1 … original_steps·strength,
   * evenly by index from the noisiest; or takes explicit descending timesteps (then `strength` drops the first
   * ones, as diffusers does).
   *
   * @param steps - the number of steps, or `{ numInferenceSteps | timesteps, originalInferenceSteps, strength }`
   */
  setTimesteps(steps: number | LCMSetTimestepsOptions): void {
    const options = typeof steps === 'number' ? {} : steps;
    const T = this.config.num_train_timesteps;
    const { strength, originalSteps } = distillationOptions(options, T, this.config.original_inference_steps);
    const parsed = this.parseSetTimesteps(
      typeof steps === 'number' ? steps : { numInferenceSteps: steps.numInferenceSteps, timesteps: steps.timesteps },
    );
    const k = Math.floor(T / originalSteps);
    const grid = Array.from({ length: Math.trunc(originalSteps * strength) }, (_, j) => (j + 1) * k - 1);
    this.timesteps = distillationTimesteps(this.className, grid, parsed, strength, originalSteps, this.onWarning);
    this.numInferenceSteps = parsed.numInferenceSteps;
    this.cursor.reset();
  }

  /**
   * The timestep a step from `timestep` re-noises to, −1 after the last one.
   *
   * @param timestep - a timestep of the current schedule
   */
  previousTimestep(timestep: number): number {
    const index = this.cursor.indexOf(timestep);
    return index === this.timesteps.length - 1 ? -1 : this.timesteps[index + 1];
  }

  /**
   * The boundary-condition scalings `(c_skip, c_out)` at a timestep.
   *
   * @param timestep - a training timestep
   */
  boundaryScalings(timestep: number): { cSkip: number; cOut: number } {
    const scaled = timestep * this.config.timestep_scaling;
    const denominator = scaled * scaled + SIGMA_DATA * SIGMA_DATA;
    return { cSkip: (SIGMA_DATA * SIGMA_DATA) / denominator, cOut: scaled / Math.sqrt(denominator) };
  }

  /**
   * One consistency step: the denoised estimate f(x_t, t) (returned as `predOriginalSample`) and, unless this is
   * the last step, its re-noised version at the next timestep.
   *
   * @param modelOutput - ε̂, x̂_0 or v̂ (per `prediction_type`)
   * @param timestep - the current timestep, one of {@link Scheduler.timesteps}
   * @param sample - x_t
   * @param options - `generator` or `noise` for the re-noising
   */
  step(modelOutput: TensorLike, timestep: number, sample: TensorLike, options: StepOptions = {}): SchedulerOutput {
    assertStepTensors(modelOutput, sample);
    const index = this.cursor.stepIndexFor(timestep);
    const prevTimestep = index + 1 < this.timesteps.length ? this.timesteps[index + 1] : timestep;
    const alphaBar = this.alphaCumprodAt(timestep);
    const alphaBarPrev = prevTimestep >= 0 ? this.alphaCumprodAt(prevTimestep) : this.finalAlphaCumprod;
    const sqrtA = Math.sqrt(alphaBar);
    const sqrtB = Math.sqrt(1 - alphaBar);
    const { cSkip, cOut } = this.boundaryScalings(timestep);
    const { prediction_type, thresholding, clip_sample, clip_sample_range: range } = this.config;
    const n = sample.data.length;
    const x = sample.data;
    const m = modelOutput.data;
    // x̂_0 = a·x_t + b·m (`docs/math.md` §2); f(x_t, t) = c_skip·x_t + c_out·x̂_0; then, except at the last step,
    // x_{t'} = √ᾱ_{t'}·f + √(1 − ᾱ_{t'})·z.
    const [a, b] = originalSampleWeights(prediction_type, sqrtA, sqrtB);
    // stepIndexFor has checked that setTimesteps ran.
    const renoise = index !== (this.numInferenceSteps as number) - 1;
    const noise = renoise ? this.stepNoise(options, sample) : null;
    const denoised = new Float32Array(n);
    const prev = renoise ? new Float32Array(n) : denoised;
    const signalWeight = Math.sqrt(alphaBarPrev);
    const noiseWeight = Math.sqrt(1 - alphaBarPrev);

    if (thresholding || clip_sample) {
      // Clamping can make an Infinity finite: check the inputs. Thresholding needs all of an item's x̂_0 first.
      assertFiniteStepInputs(modelOutput, sample, timestep, this.className);
      if (this.x0Scratch.length !== n) this.x0Scratch = new Float32Array(n);
      const x0 = this.x0Scratch;
      for (let i = 0; i < n; i++) x0[i] = a * x[i] + b * m[i];
      if (thresholding) {
        const itemSize = n / sample.dims[0];
        if (this.thresholdScratch.length < itemSize) this.thresholdScratch = new Float32Array(itemSize);
        const { dynamic_thresholding_ratio, sample_max_value } = this.config;
        applyDynamicThresholding(
          x0,
          sample.dims[0],
          dynamic_thresholding_ratio,
          sample_max_value,
          this.thresholdScratch,
        );
      } else {
        for (let i = 0; i < n; i++) x0[i] = Math.min(Math.max(x0[i], -range), range);
      }
      for (let i = 0; i < n; i++) denoised[i] = cOut * x0[i] + cSkip * x[i];
      if (noise) for (let i = 0; i < n; i++) prev[i] = signalWeight * denoised[i] + noiseWeight * noise[i];
    } else {
      // x̂_0 and f(x_t, t) are rounded to float32 as the clamped path's buffers round them.
      let nonFinite = 0;
      if (noise === null) {
        for (let i = 0; i < n; i++) {
          const value = cOut * Math.fround(a * x[i] + b * m[i]) + cSkip * x[i];
          denoised[i] = value;
          nonFinite += value * 0;
        }
      } else {
        for (let i = 0; i < n; i++) {
          const value = cOut * Math.fround(a * x[i] + b * m[i]) + cSkip * x[i];
          denoised[i] = value;
          nonFinite += value * 0;
          prev[i] = signalWeight * Math.fround(value) + noiseWeight * noise[i];
        }
      }
      assertFiniteStepResult(nonFinite, modelOutput, sample, timestep, this.className);
    }
    this.cursor.advance();
    return { prevSample: new Tensor(prev, sample.dims), predOriginalSample: new Tensor(denoised, sample.dims) };
  }
}

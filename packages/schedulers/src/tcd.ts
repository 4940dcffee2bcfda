import { InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import { assertFiniteStepResult, assertPredictionDefinedAtZeroSnr, assertStepTensors } from './checks.js';
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
import { THRESHOLDING_SPEC, type ThresholdingConfig } from './thresholding.js';

/** The config of {@link TCDScheduler}: diffusers' `TCDScheduler` keys and defaults (LCM's). */
export interface TCDSchedulerConfig extends NoiseScheduleConfig, ThresholdingConfig {
  /** The length of the distillation schedule the timesteps are picked from. */
  original_inference_steps: number;
  /** Kept for config compatibility: diffusers' TCD step does not clip x̂_0. */
  clip_sample: boolean;
  /** Kept for config compatibility (see `clip_sample`). */
  clip_sample_range: number;
  /** Kept for config compatibility: TCD's last step lands on ᾱ_0, not on this. */
  set_alpha_to_one: boolean;
  /** Kept for config compatibility; TCD's grid does not use it. */
  steps_offset: number;
  /** What the model predicts. */
  prediction_type: PredictionType;
  /** Kept for config compatibility; TCD's grid does not use it. */
  timestep_spacing: 'leading' | 'linspace' | 'trailing';
  /** Kept for config compatibility: TCD has no boundary-condition scaling. */
  timestep_scaling: number;
}

/** The keys, defaults and checks of {@link TCDSchedulerConfig}. */
export const TCD_CONFIG_SPEC: ConfigSpec<TCDSchedulerConfig> = {
  ...NOISE_SCHEDULE_SPEC,
  ...THRESHOLDING_SPEC,
  beta_start: configField.number(0.00085, { min: 0, max: 1 }),
  beta_end: configField.number(0.012, { min: 0, max: 1 }),
  // diffusers' TCD has no sigmoid schedule.
  beta_schedule: configField.oneOf(['linear', 'scaled_linear', 'squaredcos_cap_v2'] as const, 'scaled_linear'),
  original_inference_steps: configField.number(50, { integer: true, min: 1 }),
  clip_sample: configField.boolean(false),
  clip_sample_range: configField.number(1, { above: 0 }),
  set_alpha_to_one: configField.boolean(true),
  steps_offset: configField.number(0, { integer: true, min: 0 }),
  prediction_type: configField.oneOf(PREDICTION_TYPES, 'epsilon'),
  timestep_spacing: configField.oneOf(['leading', 'linspace', 'trailing'] as const, 'leading'),
  timestep_scaling: configField.number(10, { min: 0 }),
};

/** `setTimesteps` arguments of {@link TCDScheduler}. */
export interface TCDSetTimestepsOptions extends SetTimestepsOptions {
  /**
   * Overrides the config's `original_inference_steps`; as in diffusers, passing it makes the grid every training
   * timestep below T·strength instead of the distillation grid.
   */
  originalInferenceSteps?: number;
  /** img2img strength in (0, 1]: only the noisiest `strength` share of the grid is used. */
  strength?: number;
}

/** Step options of {@link TCDScheduler}. */
export interface TCDStepOptions extends StepOptions {
  /** TCD's γ (diffusers' `eta`) in [0, 1]: 0 is deterministic, 1 re-noises from x̂_0 as multistep consistency sampling. Default 0.3. */
  eta?: number;
}

/** The result of {@link TCDScheduler.step}: also the sample x̂_s the step predicted before re-noising. */
export interface TCDSchedulerOutput extends SchedulerOutput {
  /** x̂_s = √ᾱ_s·x̂_0 + √(1 − ᾱ_s)·ε̂ (diffusers' `pred_noised_sample`). */
  predNoisedSample: Tensor;
}

/**
 * Trajectory Consistency Distillation's strategic stochastic sampling (Zheng et al. 2024, "Trajectory Consistency
 * Distillation", §4.2, eq. 12 and Algorithm 4): a step from t to the next timestep t' first moves along the
 * predicted trajectory to s = ⌊(1 − γ)·t'⌋, `x̂_s = √ᾱ_s·x̂_0 + √(1 − ᾱ_s)·ε̂` (a DDIM jump), then, except at the
 * last step, adds back noise to t': `x_{t'} = √(ᾱ_{t'}/ᾱ_s)·x̂_s + √(1 − ᾱ_{t'}/ᾱ_s)·z`. γ = 0 is deterministic
 * (DDIM on the distillation grid), γ = 1 is LCM-style multistep consistency sampling. Timesteps come from the
 * `original_inference_steps`-point distillation grid, like LCM's.
 *
 * @example
 * ```ts
 * const scheduler = TCDScheduler.fromConfig(sdxlConfig);
 * scheduler.setTimesteps(4);
 * for (const t of scheduler.timesteps) {
 *   sample = scheduler.step(await unet(sample, t), t, sample, { eta: 0.3, generator }).prevSample;
 * }
 * ```
 */
export class TCDScheduler extends Scheduler<TCDSchedulerConfig> {
  /** diffusers lists no compatible classes for TCD: its timesteps only make sense for distilled models. */
  static override readonly compatibles: readonly string[] = [];

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   */
  constructor(config: SchedulerConfigInput<TCDSchedulerConfig> = {}, options?: SchedulerOptions) {
    super('TCDScheduler', TCD_CONFIG_SPEC, config, options);
    assertPredictionDefinedAtZeroSnr('TCDScheduler', this.config);
  }

  /**
   * Picks n timesteps from the distillation grid `t_j = j·(T // original_steps) − 1`, j = 1 … original_steps·strength,
   * evenly by index from the noisiest; or takes explicit descending timesteps (then `strength` drops the first ones).
   *
   * @param steps - the number of steps, or `{ numInferenceSteps | timesteps, originalInferenceSteps, strength }`
   */
  setTimesteps(steps: number | TCDSetTimestepsOptions): void {
    const options = typeof steps === 'number' ? {} : steps;
    const T = this.config.num_train_timesteps;
    const { strength, originalSteps } = distillationOptions(options, T, this.config.original_inference_steps);
    const parsed = this.parseSetTimesteps(
      typeof steps === 'number' ? steps : { numInferenceSteps: steps.numInferenceSteps, timesteps: steps.timesteps },
    );
    // The grid, ascending: the distillation grid, or (diffusers' quirk) every timestep when the override is passed.
    const k = Math.floor(T / originalSteps);
    const grid =
      options.originalInferenceSteps === undefined
        ? Array.from({ length: Math.trunc(originalSteps * strength) }, (_, j) => (j + 1) * k - 1)
        : Array.from({ length: Math.trunc(T * strength) }, (_, j) => j);
    this.timesteps = distillationTimesteps(this.className, grid, parsed, strength, originalSteps, this.onWarning);
    this.numInferenceSteps = parsed.numInferenceSteps;
    this.cursor.reset();
  }

  /**
   * The timestep a step from `timestep` goes to, −1 after the last one.
   *
   * @param timestep - a timestep of the current schedule
   */
  previousTimestep(timestep: number): number {
    const index = this.cursor.indexOf(timestep);
    return index === this.timesteps.length - 1 ? -1 : this.timesteps[index + 1];
  }

  /**
   * One TCD step (Zheng et al. 2024, eq. 12): x̂_0 and ε̂ from the model output, the jump to s = ⌊(1 − γ)·t'⌋
   * along the predicted trajectory, and, with γ > 0 and except at the last step, the re-noising to t'.
   *
   * @param modelOutput - ε̂, x̂_0 or v̂ (per `prediction_type`)
   * @param timestep - the current timestep, one of {@link Scheduler.timesteps}
   * @param sample - x_t
   * @param options - `eta` (γ, default 0.3) and `generator` or `noise` for the re-noising
   */
  step(
    modelOutput: TensorLike,
    timestep: number,
    sample: TensorLike,
    options: TCDStepOptions = {},
  ): TCDSchedulerOutput {
    assertStepTensors(modelOutput, sample);
    const gamma = options.eta ?? 0.3;
    if (!(gamma >= 0 && gamma <= 1)) {
      throw new InvalidArgumentError(`TCDScheduler: eta (the paper's γ) must be in [0, 1], got ${gamma}.`);
    }
    const index = this.cursor.stepIndexFor(timestep);
    const isLast = index === this.timesteps.length - 1;
    // diffusers: the last step goes to timestep 0 (ᾱ_0), not to set_alpha_to_one's ᾱ = 1.
    const prevTimestep = isLast ? 0 : this.timesteps[index + 1];
    const s = Math.floor((1 - gamma) * prevTimestep);
    const alphaBar = this.alphaCumprodAt(timestep);
    const alphaBarPrev = this.alphaCumprodAt(prevTimestep);
    const alphaBarS = this.alphaCumprodAt(s);
    const sqrtA = Math.sqrt(alphaBar);
    const sqrtB = Math.sqrt(1 - alphaBar);
    // x̂_0 = a·x + b·m and ε̂ = (x − √ᾱ·x̂_0)/√(1−ᾱ), so x̂_s = √ᾱ_s·x̂_0 + √(1−ᾱ_s)·ε̂ = c·x + d·m.
    const [a, b] = originalSampleWeights(this.config.prediction_type, sqrtA, sqrtB);
    const c = Math.sqrt(alphaBarS) * a + (Math.sqrt(1 - alphaBarS) * (1 - sqrtA * a)) / sqrtB;
    const d = Math.sqrt(alphaBarS) * b - (Math.sqrt(1 - alphaBarS) * sqrtA * b) / sqrtB;
    const x = sample.data;
    const m = modelOutput.data;
    const n = x.length;
    const predicted = new Float32Array(n);
    const renoise = gamma > 0 && !isLast;
    const prev = renoise ? new Float32Array(n) : predicted;
    let nonFinite = 0;
    if (renoise) {
      const noise = this.stepNoise(options, sample);
      const keep = Math.sqrt(alphaBarPrev / alphaBarS);
      const added = Math.sqrt(1 - alphaBarPrev / alphaBarS);
      for (let i = 0; i < n; i++) {
        const value = c * x[i] + d * m[i];
        predicted[i] = value;
        nonFinite += value * 0;
        prev[i] = keep * value + added * noise[i];
      }
    } else {
      for (let i = 0; i < n; i++) {
        const value = c * x[i] + d * m[i];
        predicted[i] = value;
        nonFinite += value * 0;
      }
    }
    assertFiniteStepResult(nonFinite, modelOutput, sample, timestep, this.className);
    this.cursor.advance();
    const predNoisedSample = new Tensor(predicted, sample.dims);
    return { prevSample: renoise ? new Tensor(prev, sample.dims) : predNoisedSample, predNoisedSample };
  }
}

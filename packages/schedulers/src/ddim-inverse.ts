import { ConfigError, InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import { assertFiniteStepInputs, assertFiniteStepResult, assertStepTensors } from './checks.js';
import { type ConfigSpec, configField, NOISE_SCHEDULE_SPEC, type SchedulerConfigInput, warnOnce } from './config.js';
import { noisePredictionWeights, originalSampleWeights, PREDICTION_TYPES, type PredictionType } from './prediction.js';
import { type NoiseScheduleConfig, roundHalfEven } from './schedule.js';
import {
  Scheduler,
  type SchedulerOptions,
  type SchedulerOutput,
  type SetTimestepsOptions,
  type StepOptions,
} from './scheduler.js';

/** The config of {@link DDIMInverseScheduler}: diffusers' `DDIMInverseScheduler` keys and defaults. */
export interface DDIMInverseSchedulerConfig extends NoiseScheduleConfig {
  /** Clamp x̂_0 to `[−clip_sample_range, clip_sample_range]`. */
  clip_sample: boolean;
  /** Use ᾱ = 1 for the (virtual) step before timestep 0; otherwise ᾱ_0. */
  set_alpha_to_one: boolean;
  /** Added to every `leading` timestep. */
  steps_offset: number;
  /** What the model predicts. */
  prediction_type: PredictionType;
  /** The clamp bound of `clip_sample`. */
  clip_sample_range: number;
  /** How `setTimesteps(n)` places its timesteps (`linspace` is not offered by diffusers' inverse DDIM). */
  timestep_spacing: 'leading' | 'trailing';
}

/** The keys, defaults and checks of {@link DDIMInverseSchedulerConfig}. */
export const DDIM_INVERSE_CONFIG_SPEC: ConfigSpec<DDIMInverseSchedulerConfig> = {
  ...NOISE_SCHEDULE_SPEC,
  clip_sample: configField.boolean(true),
  set_alpha_to_one: configField.boolean(true),
  steps_offset: configField.number(0, { integer: true, min: 0 }),
  prediction_type: configField.oneOf(PREDICTION_TYPES, 'epsilon'),
  clip_sample_range: configField.number(1, { above: 0 }),
  timestep_spacing: configField.oneOf(['leading', 'trailing'] as const, 'leading'),
};

/**
 * DDIM inversion (Song et al. 2021, §4.3; Mokady et al. 2023): the deterministic DDIM update run backwards,
 * from data towards noise, `x_t = √ᾱ_t · x̂_0 + √(1 − ᾱ_t) · ε̂` with x̂_0, ε̂ estimated at the previous (less
 * noisy) timestep `t − T/n`. Timesteps ascend. Used to find the latents that regenerate a given image
 * (editing, null-text inversion).
 */
export class DDIMInverseScheduler extends Scheduler<DDIMInverseSchedulerConfig> {
  /** diffusers lists no compatible classes for the inverse scheduler. */
  static override readonly compatibles: readonly string[] = [];

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; the deprecated `set_alpha_to_zero` key is read
   *   as `set_alpha_to_one`, as diffusers does
   * @param options - warning handler
   */
  constructor(config: SchedulerConfigInput<DDIMInverseSchedulerConfig> = {}, options?: SchedulerOptions) {
    super('DDIMInverseScheduler', DDIM_INVERSE_CONFIG_SPEC, migrateDeprecatedKeys(config, options), options);
    this.timesteps = [...this.timesteps].reverse();
    if (this.config.set_alpha_to_one && this.config.prediction_type === 'sample') {
      // The first step starts from ᾱ = 1, a clean sample, where ε = (x − x̂_0)/√(1 − ᾱ) is 0/0 (NaN in diffusers).
      throw new ConfigError(
        'DDIMInverseScheduler with set_alpha_to_one starts from a clean sample, where an x̂_0 prediction cannot ' +
          'give ε; use prediction_type "epsilon" or "v_prediction", or set_alpha_to_one: false.',
      );
    }
  }

  /** ᾱ before timestep 0: 1 with `set_alpha_to_one`, else ᾱ_0. */
  get initialAlphaCumprod(): number {
    return this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
  }

  /**
   * Sets n ascending timesteps: `leading` gives `arange(n) · (T // n) + steps_offset`, `trailing` gives
   * `round(T − k · T/n) − 1` in ascending order.
   *
   * @param steps - the number of steps, or `{ numInferenceSteps }`
   */
  setTimesteps(steps: number | SetTimestepsOptions): void {
    const { numInferenceSteps: n, timesteps } = this.parseSetTimesteps(steps);
    if (timesteps) throw new InvalidArgumentError('DDIMInverseScheduler does not take custom timesteps; pass a count.');
    const T = this.config.num_train_timesteps;
    if (this.config.timestep_spacing === 'leading') {
      const stride = Math.floor(T / n);
      this.timesteps = Array.from({ length: n }, (_, i) => i * stride + this.config.steps_offset);
      if (this.timesteps[n - 1] >= T) {
        throw new InvalidArgumentError(
          `${n} steps with steps_offset ${this.config.steps_offset} reach timestep ${this.timesteps[n - 1]}, past the ` +
            `last training timestep ${T - 1}; use fewer steps or "trailing" spacing.`,
        );
      }
    } else {
      this.timesteps = Array.from({ length: n }, (_, i) => roundHalfEven(T - (n - 1 - i) * (T / n)) - 1);
    }
    this.numInferenceSteps = n;
  }

  /**
   * One inversion step to `timestep` from the timestep T/n before it (ᾱ of `set_alpha_to_one` below 0).
   *
   * @param modelOutput - ε̂, x̂_0 or v̂ (per `prediction_type`), evaluated on `sample`
   * @param timestep - the timestep this step arrives at, one of {@link Scheduler.timesteps}
   * @param sample - the current (less noisy) latents
   * @param _options - unused: inversion is deterministic
   */
  step(modelOutput: TensorLike, timestep: number, sample: TensorLike, _options: StepOptions = {}): SchedulerOutput {
    if (this.numInferenceSteps === undefined) {
      throw new InvalidArgumentError('DDIMInverseScheduler.step needs a schedule: call setTimesteps(n) first.');
    }
    assertStepTensors(modelOutput, sample);
    const T = this.config.num_train_timesteps;
    const from = Math.min(timestep - Math.floor(T / this.numInferenceSteps), T - 1);
    const alphaBar = from >= 0 ? this.alphaCumprodAt(from) : this.initialAlphaCumprod;
    const alphaBarNext = this.alphaCumprodAt(timestep);
    const sqrtA = Math.sqrt(alphaBar);
    const sqrtB = Math.sqrt(1 - alphaBar);
    const sqrtANext = Math.sqrt(alphaBarNext);
    const sqrtBNext = Math.sqrt(1 - alphaBarNext);
    const { prediction_type, clip_sample, clip_sample_range: range } = this.config;
    // Clipping x̂_0 can make an Infinity finite: then check the inputs; otherwise the result (below).
    if (clip_sample) assertFiniteStepInputs(modelOutput, sample, timestep, this.className);
    const bound = clip_sample ? range : Number.POSITIVE_INFINITY;
    // x̂_0 = a·x + b·m and ε̂ = a'·x + b'·m (`docs/math.md` §2), then x_next = √ᾱ_next·x̂_0 + √(1 − ᾱ_next)·ε̂.
    const [a, b] = originalSampleWeights(prediction_type, sqrtA, sqrtB);
    const [aEps, bEps] = noisePredictionWeights(prediction_type, sqrtA, sqrtB);
    const n = sample.data.length;
    const x = sample.data;
    const m = modelOutput.data;
    const x0 = new Float32Array(n);
    const next = new Float32Array(n);
    let nonFinite = 0;
    for (let i = 0; i < n; i++) {
      const original = Math.min(Math.max(a * x[i] + b * m[i], -bound), bound);
      x0[i] = original;
      const value = sqrtANext * original + sqrtBNext * (aEps * x[i] + bEps * m[i]);
      next[i] = value;
      nonFinite += value * 0;
    }
    if (!clip_sample) assertFiniteStepResult(nonFinite, modelOutput, sample, timestep, this.className);
    return { prevSample: new Tensor(next, sample.dims), predOriginalSample: new Tensor(x0, sample.dims) };
  }
}

/** diffusers reads the deprecated `set_alpha_to_zero` as `set_alpha_to_one`. */
function migrateDeprecatedKeys(config: unknown, options?: SchedulerOptions): unknown {
  if (!config || typeof config !== 'object' || !('set_alpha_to_zero' in config)) return config;
  const { set_alpha_to_zero, ...rest } = config as Record<string, unknown>;
  if (set_alpha_to_zero === null || set_alpha_to_zero === undefined) return rest;
  warnOnce('DDIMInverseScheduler: set_alpha_to_zero is deprecated; use set_alpha_to_one.', options?.onWarning);
  return { ...rest, set_alpha_to_one: set_alpha_to_zero };
}

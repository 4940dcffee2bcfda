import { InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import { assertTensorLike } from './checks.js';
import type { ConfigSpec } from './config.js';
import type { PredictionType } from './prediction.js';
import {
  type BetaScheduleConfig,
  type NoiseScheduleConfig,
  spacedTimesteps,
  type TimestepSpacing,
} from './schedule.js';
import { Scheduler, type SchedulerOptions, type SetTimestepsOptions } from './scheduler.js';
import { betaSigmas, exponentialSigmas, interpolateAt, karrasSigmas, sigmasToTimesteps } from './sigmas.js';

const f32 = Math.fround;

/**
 * The config keys every k-diffusion style (sigma-based) scheduler shares, `rescale_betas_zero_snr` aside (LMS and
 * Heun do not take it, as their diffusers namesakes do not).
 */
export interface SigmaSchedulerBaseConfig extends BetaScheduleConfig {
  /** What the model predicts. */
  prediction_type: PredictionType;
  /** How `setTimesteps(n)` places its timesteps. */
  timestep_spacing: TimestepSpacing;
  /** Added to every `leading` timestep. */
  steps_offset: number;
}

/** {@link SigmaSchedulerBaseConfig} with `rescale_betas_zero_snr`, for the classes that take it (Euler, Euler a). */
export interface SigmaSchedulerConfig extends SigmaSchedulerBaseConfig, NoiseScheduleConfig {}

/** Which sigma schedule replaces the interpolated training sigmas (`use_karras_sigmas` and friends). */
export type SigmaScheduleKind = 'interpolated' | 'karras' | 'exponential' | 'beta';

/**
 * The common machinery of the schedulers that work in the variance-exploding parametrisation
 * `x = x_0 + σ ε` (Karras et al. 2022): Euler, Euler ancestral, Heun and LMS. The latents live at scale
 * `√(σ² + 1)` relative to the variance-preserving model input, so {@link SigmaScheduler.scaleModelInput}
 * divides by it and {@link Scheduler.initNoiseSigma} is σ_max (or `√(σ_max² + 1)` with `leading` spacing,
 * as diffusers does).
 *
 * The current position in the schedule is the base class's {@link ScheduleCursor}: found from the first timestep
 * seen and advanced by each step, as in diffusers.
 */
export abstract class SigmaScheduler<
  C extends SigmaSchedulerBaseConfig = SigmaSchedulerBaseConfig,
> extends Scheduler<C> {
  /** σ for each timestep of the schedule, plus the final σ (0 unless configured otherwise); float32 values. */
  sigmas: Float64Array;
  /** `σ_t = √((1−ᾱ_t)/ᾱ_t)` at every training timestep (ascending in t), rounded as torch's float32 math. */
  protected readonly trainingSigmas: Float64Array;
  /** `log σ_t` of {@link SigmaScheduler.trainingSigmas} (float32 values, as numpy's log of them). */
  protected readonly trainingLogSigmas: Float64Array;

  /**
   * @param className - the diffusers class name
   * @param spec - the scheduler's config spec
   * @param config - typed keys or a raw `scheduler_config.json`
   * @param options - warning handler
   */
  protected constructor(className: string, spec: ConfigSpec<C>, config: unknown, options?: SchedulerOptions) {
    super(className, spec, config, options);
    const alphaBars = Float64Array.from(this.alphasCumprod);
    // diffusers: with zero terminal SNR the last ᾱ is 0, which would make σ infinite; it uses 2^-24 instead.
    if (this.rescalesToZeroTerminalSnr) alphaBars[alphaBars.length - 1] = 2 ** -24;
    this.trainingSigmas = alphaBars.map((a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
    this.trainingLogSigmas = this.trainingSigmas.map((s) => f32(Math.log(s)));
    this.sigmas = new Float64Array([...this.trainingSigmas].reverse().concat([0]));
    this.initNoiseSigma = this.noiseSigmaFor(this.sigmas);
  }

  /**
   * Divides the sample by `√(σ² + 1)`, giving the variance-preserving input the model was trained on.
   * Returns a new tensor.
   *
   * @param sample - the current latents `x = x_0 + σ ε`
   * @param timestep - the current timestep, one of {@link Scheduler.timesteps}
   */
  override scaleModelInput(sample: TensorLike, timestep: number): Tensor {
    assertTensorLike(sample, 'sample');
    const sigma = this.modelInputSigma(this.cursor.current(timestep));
    const scale = 1 / Math.sqrt(sigma * sigma + 1);
    const out = new Float32Array(sample.data.length);
    for (let i = 0; i < out.length; i++) out[i] = sample.data[i] * scale;
    return new Tensor(out, sample.dims);
  }

  /**
   * The σ the model sees at schedule index `index`: the schedule's own, except for schedulers whose second model
   * evaluation of a step is at a midpoint σ (DPM2, DPM2 a, DPM++ SDE).
   *
   * @param index - the current step index
   */
  protected modelInputSigma(index: number): number {
    return this.sigmas[index];
  }

  /**
   * The forward process in the sigma parametrisation: `x = x_0 + σ(t) · ε`, with σ of the schedule at `timesteps`
   * (or at the begin index / current step when one is set, as diffusers does for img2img).
   *
   * @param timestep - one of {@link Scheduler.timesteps}
   */
  protected override forwardProcess(timestep: number): readonly [number, number] {
    return [1, this.sigmas[this.cursor.noiseIndex(timestep)]];
  }

  /**
   * Installs a new schedule and resets the per-run state.
   *
   * @param timesteps - the timesteps in sampling order
   * @param sigmas - one σ per timestep plus the final σ
   */
  protected setSchedule(timesteps: readonly number[], sigmas: Float64Array): void {
    this.timesteps = timesteps.map(f32);
    this.sigmas = sigmas.map(f32);
    this.initNoiseSigma = this.noiseSigmaFor(this.sigmas);
    this.cursor.reset();
  }

  /**
   * The timesteps and sigmas `setTimesteps` starts from: the caller's timesteps or `n` spaced ones (also setting
   * `numInferenceSteps`), their σ interpolated from the training sigmas, then respaced by Karras, exponential or
   * beta sigmas when `kind` says so.
   *
   * @param steps - the argument of `setTimesteps`
   * @param kind - the sigma spacing of the config
   */
  protected timestepsAndSigmas(
    steps: number | SetTimestepsOptions,
    kind: SigmaScheduleKind,
  ): { timesteps: number[]; sigmas: Float64Array } {
    const parsed = this.parseSetTimesteps(steps);
    this.numInferenceSteps = parsed.numInferenceSteps;
    const timesteps = parsed.timesteps ? [...parsed.timesteps] : this.spacedTimesteps(parsed.numInferenceSteps);
    const sigmas = interpolateAt(timesteps, this.trainingSigmas);
    return kind === 'interpolated' ? { timesteps, sigmas } : this.convertSigmas(kind, sigmas);
  }

  /**
   * `n` timesteps in sampling order per `timestep_spacing`. Unlike the DDPM family, `linspace` keeps the
   * fractional values (`linspace(0, T − 1, n)` in float32).
   *
   * @param n - the number of inference steps
   */
  protected spacedTimesteps(n: number): number[] {
    const T = this.config.num_train_timesteps;
    if (this.config.timestep_spacing !== 'linspace') {
      return spacedTimesteps(this.config.timestep_spacing, n, T, this.config.steps_offset);
    }
    const step = n === 1 ? 0 : (T - 1) / (n - 1);
    return Array.from({ length: n }, (_, i) => (i === 0 && n > 1 ? T - 1 : f32((n - 1 - i) * step)));
  }

  /**
   * Replaces interpolated sigmas by a Karras, exponential or beta schedule over the same range (or
   * `[sigmaMin, sigmaMax]` when given) and maps the new sigmas back to fractional timesteps.
   *
   * @param kind - which schedule
   * @param sigmas - the interpolated sigmas, descending
   * @param range - optional explicit bounds (Euler's `sigma_min` / `sigma_max`)
   * @param steps - how many sigmas the new schedule has: diffusers' `num_inference_steps`, which is the length
   *   of `sigmas` except for Euler's `log_linear` interpolation (n + 1 sigmas for n steps)
   */
  protected convertSigmas(
    kind: SigmaScheduleKind,
    sigmas: Float64Array,
    range: { sigmaMin?: number | null; sigmaMax?: number | null } = {},
    steps = sigmas.length,
  ): { sigmas: Float64Array; timesteps: number[] } {
    if (kind === 'interpolated') throw new InvalidArgumentError('convertSigmas needs a sigma schedule kind.');
    const sigmaMin = range.sigmaMin ?? sigmas[sigmas.length - 1];
    const sigmaMax = range.sigmaMax ?? sigmas[0];
    const n = steps;
    const converted =
      kind === 'karras'
        ? karrasSigmas(sigmaMin, sigmaMax, n)
        : kind === 'exponential'
          ? exponentialSigmas(sigmaMin, sigmaMax, n)
          : betaSigmas(sigmaMin, sigmaMax, n);
    return { sigmas: converted, timesteps: [...sigmasToTimesteps(converted, this.trainingLogSigmas)] };
  }

  private noiseSigmaFor(sigmas: Float64Array): number {
    let max = 0;
    for (const s of sigmas) max = Math.max(max, s);
    return this.config.timestep_spacing === 'leading' ? f32(Math.sqrt(max * max + 1)) : max;
  }
}

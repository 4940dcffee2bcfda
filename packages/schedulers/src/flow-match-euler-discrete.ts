import { ConfigError, InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import type { CustomSigmas } from './capabilities.js';
import { assertFiniteStepResult, assertSameDims, assertStepTensors, assertTensorLike } from './checks.js';
import { type ConfigSpec, configField, type SchedulerConfigInput } from './config.js';
import { Scheduler, type SchedulerOptions, type SchedulerOutput, type StepOptions } from './scheduler.js';
import { betaSigmas, exponentialSigmas, karrasSigmas } from './sigmas.js';

const f32 = Math.fround;

/** The config of {@link FlowMatchEulerDiscreteScheduler}: diffusers' `FlowMatchEulerDiscreteScheduler` keys. */
export interface FlowMatchEulerDiscreteSchedulerConfig {
  /** The number of training timesteps T; the model sees t = σ·T. */
  num_train_timesteps: number;
  /** The static timestep shift s: σ' = s·σ / (1 + (s − 1)·σ) (SD3 uses 3). */
  shift: number;
  /** Shift by the resolution-dependent `mu` given to `setTimesteps` instead of `shift` (FLUX). */
  use_dynamic_shifting: boolean;
  /** μ at `base_image_seq_len`, for {@link flowMatchMu}. */
  base_shift: number | null;
  /** μ at `max_image_seq_len`, for {@link flowMatchMu}. */
  max_shift: number | null;
  /** The image sequence length of `base_shift`. */
  base_image_seq_len: number;
  /** The image sequence length of `max_shift`. */
  max_image_seq_len: number;
  /** Run σ from 0 up to 1 (time reversed), ending on 1 instead of 0. */
  invert_sigmas: boolean;
  /** Stretch the shifted schedule so that its last σ is this value (LTX-Video); `null` leaves it. */
  shift_terminal: number | null;
  /** Respace the shifted σ range with Karras et al.'s ρ = 7 schedule. */
  use_karras_sigmas: boolean;
  /** Respace the shifted σ range evenly in log σ. */
  use_exponential_sigmas: boolean;
  /** Respace the shifted σ range at Beta(0.6, 0.6) quantiles. */
  use_beta_sigmas: boolean;
  /** The form of the dynamic shift: `exponential` e^μ/(e^μ + (1/σ − 1)), or `linear` μ/(μ + (1/σ − 1)). */
  time_shift_type: 'exponential' | 'linear';
  /** Replace the Euler step by x̂_0 re-noised to the next σ with fresh noise. */
  stochastic_sampling: boolean;
}

/** The keys, defaults and checks of {@link FlowMatchEulerDiscreteSchedulerConfig}. */
export const FLOW_MATCH_EULER_DISCRETE_CONFIG_SPEC: ConfigSpec<FlowMatchEulerDiscreteSchedulerConfig> = {
  num_train_timesteps: configField.number(1000, { integer: true, min: 1, max: 1_000_000 }),
  shift: configField.number(1, { above: 0 }),
  use_dynamic_shifting: configField.boolean(false),
  base_shift: configField.nullable(configField.number(0.5), 0.5),
  max_shift: configField.nullable(configField.number(1.15), 1.15),
  base_image_seq_len: configField.number(256, { integer: true, min: 1 }),
  max_image_seq_len: configField.number(4096, { integer: true, min: 1 }),
  invert_sigmas: configField.boolean(false),
  shift_terminal: configField.nullable(configField.number(0, { min: 0, max: 1 })),
  use_karras_sigmas: configField.boolean(false),
  use_exponential_sigmas: configField.boolean(false),
  use_beta_sigmas: configField.boolean(false),
  time_shift_type: configField.oneOf(['exponential', 'linear'] as const, 'exponential'),
  stochastic_sampling: configField.boolean(false),
};

/** `setTimesteps` arguments of {@link FlowMatchEulerDiscreteScheduler}. */
export interface FlowMatchSetTimestepsOptions {
  /** The number of steps, spaced evenly in σ before the shift. */
  numInferenceSteps?: number;
  /** Explicit σ values in (0, 1], descending, before the shift (FLUX pipelines pass `linspace(1, 1/n, n)`). */
  sigmas?: readonly number[];
  /** Explicit model timesteps t = σ·T, descending, before the shift. */
  timesteps?: readonly number[];
  /** The dynamic shift μ; required with `use_dynamic_shifting` (see {@link flowMatchMu}). */
  mu?: number;
}

/**
 * The resolution-dependent shift μ of FLUX and SD3.5 pipelines (diffusers' `calculate_shift`): linear in the image
 * sequence length, `base_shift` at `base_image_seq_len` and `max_shift` at `max_image_seq_len`.
 *
 * @param imageSeqLen - the number of latent tokens, (height / 16) · (width / 16) for FLUX
 * @param config - the scheduler's config
 */
export function flowMatchMu(
  imageSeqLen: number,
  config: Pick<
    FlowMatchEulerDiscreteSchedulerConfig,
    'base_shift' | 'max_shift' | 'base_image_seq_len' | 'max_image_seq_len'
  >,
): number {
  const baseShift = config.base_shift ?? 0.5;
  const maxShift = config.max_shift ?? 1.15;
  const slope = (maxShift - baseShift) / (config.max_image_seq_len - config.base_image_seq_len);
  return imageSeqLen * slope + (baseShift - slope * config.base_image_seq_len);
}

/**
 * The Euler method on the rectified-flow ODE (Liu et al. 2022, eq. 1; Esser et al. 2024, eq. 2–3): data and noise
 * are joined by straight lines `x_σ = (1 − σ)·x_0 + σ·ε`, the model predicts the velocity `v = ε − x_0`, and a step
 * is `x_{σ'} = x_σ + (σ' − σ)·v̂`. The timesteps are shifted toward the noise end, `σ' = sσ/(1 + (s − 1)σ)`
 * (Esser et al. 2024, eq. 23), statically by `shift` (SD3) or by a resolution-dependent μ (FLUX). The model input
 * is `x_σ` itself at timestep `t = σ·T`.
 *
 * This scheduler has no β schedule: the base class's ᾱ table is not used, and `addNoise` / `getVelocity` follow
 * the flow's own forward process.
 *
 * @example
 * ```ts
 * const scheduler = FlowMatchEulerDiscreteScheduler.fromConfig({ shift: 3 });
 * scheduler.setTimesteps(28);
 * let latents = noise;
 * for (const t of scheduler.timesteps) latents = scheduler.step(await transformer(latents, t), t, latents).prevSample;
 * ```
 */
export class FlowMatchEulerDiscreteScheduler
  extends Scheduler<FlowMatchEulerDiscreteSchedulerConfig>
  implements CustomSigmas
{
  /** diffusers lists no compatible classes: a flow model cannot be sampled with an ε-schedule, nor the reverse. */
  static override readonly compatibles: readonly string[] = [];
  /** `setTimesteps({ sigmas })` takes σ in (0, 1] before the shift, one per step ({@link CustomSigmas}). */
  readonly acceptsCustomSigmas = true;
  /** σ for each timestep of the schedule, then the final σ (0, or 1 with `invert_sigmas`); float32 values. */
  sigmas: Float64Array;

  private readonly sigmaMin: number;
  private readonly sigmaMax: number;

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   */
  constructor(config: SchedulerConfigInput<FlowMatchEulerDiscreteSchedulerConfig> = {}, options?: SchedulerOptions) {
    super('FlowMatchEulerDiscreteScheduler', FLOW_MATCH_EULER_DISCRETE_CONFIG_SPEC, config, options);
    const { use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas } = this.config;
    if (Number(use_karras_sigmas) + Number(use_exponential_sigmas) + Number(use_beta_sigmas) > 1) {
      throw new ConfigError(
        'FlowMatchEulerDiscreteScheduler: only one of use_karras_sigmas, use_exponential_sigmas and use_beta_sigmas may be true.',
      );
    }
    // The training grid σ = t/T for t = T … 1, shifted unless the shift is dynamic (it then comes with μ).
    const T = this.config.num_train_timesteps;
    const trainingSigmas = Float64Array.from({ length: T }, (_, i) => f32(f32(T - i) / T));
    this.sigmas = this.config.use_dynamic_shifting ? trainingSigmas : trainingSigmas.map((s) => this.staticShift(s));
    this.timesteps = Array.from(this.sigmas, (s) => f32(s * T));
    this.sigmaMax = this.sigmas[0];
    this.sigmaMin = this.sigmas[T - 1];
  }

  /**
   * Sets the sampling schedule: `n` values of σ evenly spaced between the largest and smallest training σ (or
   * explicit `sigmas` / `timesteps`), shifted (by `shift`, or by `mu` with `use_dynamic_shifting`), stretched to
   * `shift_terminal`, optionally respaced (Karras, exponential, beta), with the final σ appended.
   *
   * @param steps - the number of steps, or `{ numInferenceSteps, sigmas, timesteps, mu }`
   */
  setTimesteps(steps: number | FlowMatchSetTimestepsOptions): void {
    const options = typeof steps === 'number' ? { numInferenceSteps: steps } : (steps ?? {});
    const { mu } = options;
    const T = this.config.num_train_timesteps;
    if (this.config.use_dynamic_shifting && (mu === undefined || !Number.isFinite(mu))) {
      throw new InvalidArgumentError(
        `FlowMatchEulerDiscreteScheduler: use_dynamic_shifting needs a finite mu, got ${mu}; pass setTimesteps({ numInferenceSteps, mu }) with mu = flowMatchMu(imageSeqLen, scheduler.config).`,
      );
    }
    let sigmas = this.unshiftedSigmas(options);
    const n = sigmas.length;
    sigmas = this.config.use_dynamic_shifting
      ? sigmas.map((s) => this.dynamicShift(mu as number, s))
      : sigmas.map((s) => (this.config.shift * s) / (1 + (this.config.shift - 1) * s));
    const terminal = this.config.shift_terminal;
    if (terminal) {
      // Stretch 1 − σ so that the last σ lands on shift_terminal (diffusers' stretch_shift_to_terminal).
      const scale = (1 - sigmas[n - 1]) / (1 - terminal);
      sigmas = sigmas.map((s) => 1 - (1 - s) / scale);
    }
    const first = sigmas[0];
    const last = sigmas[n - 1];
    if (this.config.use_karras_sigmas) sigmas = karrasSigmas(last, first, n);
    else if (this.config.use_exponential_sigmas) sigmas = exponentialSigmas(last, first, n);
    else if (this.config.use_beta_sigmas) sigmas = betaSigmas(last, first, n);
    const schedule = new Float64Array(n + 1);
    for (let i = 0; i < n; i++) schedule[i] = f32(this.config.invert_sigmas ? 1 - f32(sigmas[i]) : sigmas[i]);
    schedule[n] = this.config.invert_sigmas ? 1 : 0;
    this.sigmas = schedule;
    this.timesteps = Array.from(schedule.subarray(0, n), (s) => f32(s * T));
    this.numInferenceSteps = n;
    this.cursor.reset();
  }

  /**
   * One Euler step of the flow ODE from σ to the next σ: `x + (σ' − σ)·v̂` (Esser et al. 2024, eq. 3). With
   * `stochastic_sampling`, x̂_0 = x − σ·v̂ is re-noised instead: `(1 − σ')·x̂_0 + σ'·z`, z from `generator` or `noise`.
   *
   * @param modelOutput - the predicted velocity v̂ = ε − x_0
   * @param timestep - the current timestep, one of {@link Scheduler.timesteps}
   * @param sample - the current latents x_σ
   * @param options - the noise source of `stochastic_sampling`
   */
  step(modelOutput: TensorLike, timestep: number, sample: TensorLike, options: StepOptions = {}): SchedulerOutput {
    assertStepTensors(modelOutput, sample);
    const index = this.cursor.stepIndexFor(timestep);
    const sigma = this.sigmas[index];
    const sigmaNext = this.sigmas[index + 1];
    const x = sample.data;
    const v = modelOutput.data;
    const n = x.length;
    const prev = new Float32Array(n);
    let nonFinite = 0;
    if (this.config.stochastic_sampling) {
      const noise = this.stepNoise(options, sample);
      for (let i = 0; i < n; i++) {
        const value = (1 - sigmaNext) * (x[i] - sigma * v[i]) + sigmaNext * noise[i];
        prev[i] = value;
        nonFinite += value * 0;
      }
    } else {
      const dt = sigmaNext - sigma;
      for (let i = 0; i < n; i++) {
        const value = x[i] + dt * v[i];
        prev[i] = value;
        nonFinite += value * 0;
      }
    }
    assertFiniteStepResult(nonFinite, modelOutput, sample, timestep, this.className);
    this.cursor.advance();
    return { prevSample: new Tensor(prev, sample.dims) };
  }

  /**
   * The flow's forward process (diffusers' `scale_noise`): `x_σ = (1 − σ)·x_0 + σ·ε` with σ of the schedule at
   * `timesteps` (or at the begin index / current step once a pipeline set one, as diffusers does for img2img).
   *
   * @param timestep - one of {@link Scheduler.timesteps}
   */
  protected override forwardProcess(timestep: number): readonly [number, number] {
    const sigma = this.sigmas[this.cursor.noiseIndex(timestep)];
    return [1 - sigma, sigma];
  }

  /**
   * The training target of a flow model, `v = ε − x_0`, the same at every timestep.
   *
   * @param sample - x_0
   * @param noise - ε, same dims
   * @param _timesteps - unused: the velocity of a straight path does not depend on time
   */
  override getVelocity(sample: TensorLike, noise: TensorLike, _timesteps: number | readonly number[]): Tensor {
    assertTensorLike(sample, 'sample');
    assertTensorLike(noise, 'noise');
    assertSameDims(sample, noise, 'sample', 'noise');
    const out = new Float32Array(sample.data.length);
    for (let i = 0; i < out.length; i++) out[i] = noise.data[i] - sample.data[i];
    return new Tensor(out, sample.dims);
  }

  /** σ' = sσ / (1 + (s − 1)σ) in float32 steps, as torch computes the training grid. */
  private staticShift(sigma: number): number {
    const s = this.config.shift;
    return f32(f32(s * sigma) / f32(1 + f32((s - 1) * sigma)));
  }

  /** The dynamic shift of FLUX: e^μ/(e^μ + (1/σ − 1)) (or μ/(μ + (1/σ − 1)) for `linear`). */
  private dynamicShift(mu: number, sigma: number): number {
    const scale = this.config.time_shift_type === 'exponential' ? Math.exp(mu) : mu;
    return scale / (scale + (1 / sigma - 1));
  }

  /** σ before the shift: explicit, from explicit timesteps, or `n` evenly spaced from σ_max to σ_min. */
  private unshiftedSigmas(options: FlowMatchSetTimestepsOptions): Float64Array {
    const T = this.config.num_train_timesteps;
    const { numInferenceSteps, sigmas, timesteps } = options;
    const given = sigmas ?? timesteps;
    if (sigmas !== undefined && timesteps !== undefined) {
      throw new InvalidArgumentError('setTimesteps takes sigmas or timesteps, not both.');
    }
    if (given !== undefined) {
      const upper = sigmas !== undefined ? 1 : T;
      if (given.length === 0 || !given.every((v) => Number.isFinite(v) && v > 0 && v <= upper)) {
        throw new InvalidArgumentError(
          `setTimesteps: ${sigmas !== undefined ? 'sigmas must be in (0, 1]' : `timesteps must be in (0, ${T}]`}, one per step, not empty.`,
        );
      }
      if (numInferenceSteps !== undefined && numInferenceSteps !== given.length) {
        throw new InvalidArgumentError(
          `setTimesteps: numInferenceSteps (${numInferenceSteps}) must equal the number of ${sigmas !== undefined ? 'sigmas' : 'timesteps'} (${given.length}).`,
        );
      }
      return Float64Array.from(given, (v) => (sigmas !== undefined ? f32(v) : f32(f32(v) / T)));
    }
    if (!Number.isInteger(numInferenceSteps) || (numInferenceSteps as number) < 1) {
      throw new InvalidArgumentError(`numInferenceSteps must be a positive integer, got ${numInferenceSteps}.`);
    }
    const n = numInferenceSteps as number;
    // numpy's linspace(σ_max·T, σ_min·T, n) / T, in double precision.
    const start = this.sigmaMax * T;
    const step = n === 1 ? 0 : (this.sigmaMin * T - start) / (n - 1);
    return Float64Array.from(
      { length: n },
      (_, i) => (n > 1 && i === n - 1 ? this.sigmaMin * T : start + i * step) / T,
    );
  }
}

/** The base class of every scheduler and the types of its contract (`setTimesteps`, `step`). */
import { ConfigError, InvalidArgumentError, RandomGenerator, Tensor, type TensorLike } from '@denoise/core';
import { assertSameDims, assertTensorLike } from './checks.js';
import { type ConfigSpec, KARRAS_DIFFUSION_SCHEDULERS, resolveConfig, type WarningHandler } from './config.js';
import {
  alphasCumprodFromBetas,
  type BetaScheduleConfig,
  betasFromConfig,
  type NoiseScheduleConfig,
} from './schedule.js';
import { ScheduleCursor } from './schedule-cursor.js';

/** A source of standard normal noise; `RandomGenerator` from `@denoise/core` is one. */
export interface NoiseGenerator {
  /**
   * Fills `out` with independent N(0, 1) samples, exactly as `randn` of that many elements would.
   *
   * @param out - the buffer to fill
   */
  randnInto(out: Float32Array): Float32Array;
}

/**
 * Options of {@link Scheduler.step} that every scheduler understands: where the noise of a stochastic step comes
 * from. Schedulers with options of their own extend it (`DDIMStepOptions`, `TCDStepOptions`, …) and ignore keys
 * they do not know, so one options object can serve any scheduler (diffusers' `prepare_extra_step_kwargs`).
 */
export interface StepOptions {
  /** Draws the noise of stochastic steps; the same seed reproduces diffusers' `torch.Generator` results. */
  generator?: NoiseGenerator;
  /** Explicit noise for a stochastic step, shaped like the sample (diffusers' `variance_noise`). */
  noise?: TensorLike;
}

/** The result of one {@link Scheduler.step}. The tensors are new and belong to the caller. */
export interface SchedulerOutput {
  /** The sample at the previous (less noisy) timestep: the next loop input. */
  prevSample: Tensor;
  /** The scheduler's estimate of the clean sample x̂_0, when it forms one. */
  predOriginalSample?: Tensor;
}

/** The argument of {@link Scheduler.setTimesteps} in object form. */
export interface SetTimestepsOptions {
  /** The number of denoising steps; the scheduler spaces them per `timestep_spacing`. */
  numInferenceSteps?: number;
  /** Explicit training timesteps in sampling (descending) order, instead of `numInferenceSteps`. */
  timesteps?: readonly number[];
}

/** The checked argument of `setTimesteps`, as {@link Scheduler.parseSetTimesteps} returns it. */
export interface ParsedSetTimesteps {
  /** The number of steps (the length of `timesteps` when those are given). */
  numInferenceSteps: number;
  /** A copy of the custom timesteps, when given. */
  timesteps?: readonly number[];
}

/** Options of a scheduler constructor and of `fromConfig`. */
export interface SchedulerOptions {
  /** Receives warnings such as ignored config keys (each once); defaults to the process-wide handler. */
  onWarning?: WarningHandler;
}

/** The one config key every scheduler has: the length of the training schedule. */
export interface SchedulerConfig {
  /** T, the number of training timesteps (diffusers' `num_train_timesteps`). */
  num_train_timesteps: number;
}

/**
 * Whether a config describes its noise by β (diffusers' `beta_schedule` and friends), rather than by σ directly
 * (flow matching, EDM, iPNDM), which have no β table.
 *
 * @param config - a resolved scheduler config
 */
function definesBetas(config: SchedulerConfig): config is SchedulerConfig & BetaScheduleConfig {
  return 'beta_schedule' in config;
}

/**
 * The base of every scheduler: a resolved, frozen config; the β/ᾱ schedule (for the classes defined by one); the common forward-process helpers
 * (`addNoise`, `getVelocity`); and the contract each scheduler implements (`setTimesteps`, `step`,
 * `scaleModelInput`). Subclasses declare their config with a {@link ConfigSpec} and pass it to the constructor.
 *
 * @typeParam C - the scheduler's config, snake_case keys as in diffusers' `scheduler_config.json`
 */
export abstract class Scheduler<C extends SchedulerConfig = SchedulerConfig> {
  /** The diffusers class names whose configs this class accepts (diffusers' `_compatibles`). */
  static readonly compatibles: readonly string[] = KARRAS_DIFFUSION_SCHEDULERS;

  /** The resolved config: every key present with its diffusers default if it was not given. JSON-safe, frozen. */
  readonly config: Readonly<C>;
  /** β_t for t = 0 … T−1 (float32 values); empty for the σ-defined classes (flow matching, EDM, iPNDM). */
  readonly betas: Float64Array;
  /** α_t = 1 − β_t (float32 values); empty for the σ-defined classes. */
  readonly alphas: Float64Array;
  /**
   * ᾱ_t = ∏_{s ≤ t} α_s (float32 values); guidance and custom samplers read it. Do not modify. Empty for the
   * σ-defined classes, whose noise levels are their `sigmas`.
   */
  readonly alphasCumprod: Float64Array;
  /** The timesteps of the current schedule in sampling order; all training timesteps until `setTimesteps`. */
  timesteps: readonly number[];
  /** The number of inference steps of the current schedule, `undefined` before `setTimesteps`. */
  numInferenceSteps: number | undefined = undefined;
  /** The standard deviation of the initial noise: multiply N(0, I) latents by it before the loop. */
  initNoiseSigma = 1;
  /** How many model evaluations one step consumes (1 for single-step schedulers). */
  order = 1;
  /** The diffusers class name of this scheduler (`_class_name` in `scheduler_config.json`). */
  readonly className: string;
  /** Where this instance reports warnings. */
  protected readonly onWarning: WarningHandler | undefined;
  /**
   * The step index of a run, for schedulers that index their state by step (sigma-based and multistep ones); those
   * that step from the timestep itself (DDPM, DDIM, PNDM) do not read it.
   */
  protected readonly cursor: ScheduleCursor = new ScheduleCursor(this);
  /** The noise source of stochastic steps called without `generator` or `noise`, created on first use. */
  private unseededGenerator: NoiseGenerator | undefined;
  /** The buffer {@link Scheduler.stepNoise} fills, reused across steps. */
  private noiseBuffer = new Float32Array(0);

  /**
   * @param className - the diffusers class name, for messages and `toJSON`
   * @param spec - the config keys this scheduler understands
   * @param config - a typed config or a raw `scheduler_config.json` object
   * @param options - warning handler
   */
  protected constructor(className: string, spec: ConfigSpec<C>, config: unknown, options: SchedulerOptions = {}) {
    this.className = className;
    this.onWarning = options.onWarning;
    const { compatibles } = new.target as unknown as { compatibles: readonly string[] };
    this.config = resolveConfig(className, spec, config, options.onWarning, compatibles);
    // A σ-defined class has no β keys, and no ᾱ table to derive from them: its noise levels are its sigmas.
    this.betas = definesBetas(this.config) ? betasFromConfig(this.config) : new Float64Array(0);
    this.alphas = this.betas.map((b) => Math.fround(1 - b));
    this.alphasCumprod = alphasCumprodFromBetas(this.betas);
    // ᾱ must fall strictly from below 1: a β of 0 (or below float32 resolution) repeats a noise level, where
    // posteriors and multistep differences are 0/0. ᾱ = 0 means pure noise (σ = ∞, x̂_0 undefined); only zero
    // terminal SNR puts it there on purpose, at T − 1.
    const alphaBars = this.alphasCumprod;
    const lastPositive = this.rescalesToZeroTerminalSnr ? alphaBars.length - 1 : alphaBars.length;
    const degenerate = alphaBars.findIndex(
      (a, t) => !(a < (t === 0 ? 1 : alphaBars[t - 1]) && (a > 0 || t >= lastPositive)),
    );
    if (degenerate >= 0) {
      throw new ConfigError(
        `${className}: the noise schedule gives ᾱ = ${alphaBars[degenerate]} at timestep ${degenerate}; ᾱ must ` +
          'fall strictly from below 1 and stay above 0 (every β in (0, 1), with no product underflowing float32). ' +
          'Use 0 < beta_start <= beta_end < 1 or fix trained_betas (zero terminal SNR is rescale_betas_zero_snr: true).',
      );
    }
    const T = this.config.num_train_timesteps;
    this.timesteps = Array.from({ length: T }, (_, i) => T - 1 - i);
  }

  /** Whether the config has `rescale_betas_zero_snr: true` (classes without the key never rescale). */
  protected get rescalesToZeroTerminalSnr(): boolean {
    return (this.config as Partial<NoiseScheduleConfig>).rescale_betas_zero_snr === true;
  }

  /**
   * Builds a scheduler of this class from a config: this class's own, another compatible scheduler's `config`,
   * or a raw `scheduler_config.json` (metadata keys such as `_class_name` are skipped; keys this class does not
   * use are ignored, silently when a compatible class or the config's `_class_name` takes them, as in diffusers,
   * else reported in one warning).
   *
   * @param config - the config object
   * @param options - warning handler
   */
  static fromConfig<S>(
    this: new (
      config?: Record<string, unknown>,
      options?: SchedulerOptions,
    ) => S,
    config: object,
    options?: SchedulerOptions,
  ): S {
    return new this(config as Record<string, unknown>, options);
  }

  /**
   * Prepares the schedule for a sampling run and resets any per-run state.
   *
   * @param steps - the number of inference steps, or `{ numInferenceSteps }` / `{ timesteps }`
   */
  abstract setTimesteps(steps: number | SetTimestepsOptions): void;

  /**
   * One reverse-diffusion step from `timestep` to the previous timestep of the schedule.
   *
   * @param modelOutput - the network output at `timestep` for `sample`
   * @param timestep - the current timestep, one of {@link Scheduler.timesteps}
   * @param sample - the current noisy sample x_t
   * @param options - noise source and scheduler-specific options
   * @returns new tensors; the inputs are not modified
   */
  abstract step(modelOutput: TensorLike, timestep: number, sample: TensorLike, options?: StepOptions): SchedulerOutput;

  /**
   * Scales the denoising input as the model expects at `timestep`. Identity (the same object, no copy) for
   * schedulers that work on x_t directly; sigma-based schedulers divide by √(σ² + 1).
   *
   * @param sample - the noisy sample
   * @param _timestep - the current timestep
   */
  scaleModelInput(sample: TensorLike, _timestep: number): TensorLike {
    return sample;
  }

  /**
   * Makes the next run start at this index of {@link Scheduler.timesteps} instead of locating its first timestep
   * (diffusers' `set_begin_index`; image-to-image pipelines call it after `setTimesteps`). Schedulers that step from
   * the timestep itself (DDPM, DDIM, PNDM) need no begin index and keep it only for `addNoise`'s sake.
   *
   * @param beginIndex - an index into {@link Scheduler.timesteps}
   */
  setBeginIndex(beginIndex = 0): void {
    this.cursor.setBeginIndex(beginIndex);
  }

  /**
   * The position of `timestep` in the current schedule: its first occurrence, or its second when it occurs twice
   * (see {@link ScheduleCursor}).
   *
   * @param timestep - one of {@link Scheduler.timesteps}
   */
  indexForTimestep(timestep: number): number {
    return this.cursor.indexOf(timestep);
  }

  /**
   * The forward process (`docs/math.md` §1): x_t = a·x_0 + c·ε, with (a, c) from {@link Scheduler.forwardProcess}:
   * (√ᾱ_t, √(1 − ᾱ_t)) at a training timestep here; at the schedule's σ in the σ-based and multistep schedulers, as
   * diffusers' `add_noise` of each.
   *
   * @param originalSamples - x_0
   * @param noise - ε, same dims
   * @param timesteps - one timestep for the whole batch, or one per batch item
   * @param out - receives x_t instead of a new buffer (x_0's length): a loop that noises every step (diffusers'
   *   legacy inpainting) reuses one
   */
  addNoise(
    originalSamples: TensorLike,
    noise: TensorLike,
    timesteps: number | readonly number[],
    out?: Float32Array,
  ): Tensor {
    return this.combinePerItem(originalSamples, noise, timesteps, out, (t) => this.forwardProcess(t));
  }

  /**
   * (a, c) of {@link Scheduler.addNoise}'s x_t = a·x_0 + c·ε at `timestep`: (√ᾱ_t, √(1 − ᾱ_t)) of the training
   * schedule. Throws for a timestep outside it.
   *
   * @param timestep - a training timestep
   */
  protected forwardProcess(timestep: number): readonly [number, number] {
    const alphaBar = this.alphaCumprodAt(timestep);
    return [Math.sqrt(alphaBar), Math.sqrt(1 - alphaBar)];
  }

  /**
   * The forward process of diffusers' multistep solvers: (α, σ_t) of the current schedule's σ at `timestep` (or at
   * the begin index, when set); before `setTimesteps`, the training schedule's.
   *
   * @param timestep - one of {@link Scheduler.timesteps}
   * @param sigmas - the schedule's σ, aligned with {@link Scheduler.timesteps}
   * @param alphaSigma - (α, σ_t) of a schedule σ
   */
  protected forwardProcessAtScheduleSigmas(
    timestep: number,
    sigmas: ArrayLike<number>,
    alphaSigma: (sigma: number) => { alphaT: number; sigmaT: number },
  ): readonly [number, number] {
    if (this.numInferenceSteps === undefined) return Scheduler.prototype.forwardProcess.call(this, timestep);
    const { alphaT, sigmaT } = alphaSigma(sigmas[this.cursor.noiseIndex(timestep)]);
    return [alphaT, sigmaT];
  }

  /**
   * The velocity target of v-prediction (Salimans & Ho 2022, `docs/math.md` §1): v = √ᾱ_t · ε − √(1 − ᾱ_t) · x_0.
   *
   * @param sample - x_0
   * @param noise - ε, same dims
   * @param timesteps - one training timestep for the whole batch, or one per batch item
   */
  getVelocity(sample: TensorLike, noise: TensorLike, timesteps: number | readonly number[]): Tensor {
    return this.combinePerItem(sample, noise, timesteps, undefined, (t) => {
      const alphaBar = this.alphaCumprodAt(t);
      return [-Math.sqrt(1 - alphaBar), Math.sqrt(alphaBar)];
    });
  }

  /** The config as diffusers writes `scheduler_config.json`: `_class_name` plus every key. */
  toJSON(): Record<string, unknown> {
    return { _class_name: this.className, ...this.config };
  }

  /**
   * The noise of a stochastic step: `options.noise` when given (checked against the sample's dims, not copied),
   * else `buffer` filled by `options.generator`, else by an unseeded generator of this instance (like diffusers
   * with `generator=None`, which draws from torch's global generator).
   *
   * @param options - the step options
   * @param sample - the sample the noise must match
   * @param buffer - a reusable buffer of the sample's size
   */
  protected varianceNoise(options: StepOptions, sample: TensorLike, buffer: Float32Array): Float32Array {
    if (options.noise) {
      assertTensorLike(options.noise, 'noise');
      assertSameDims(options.noise, sample, 'noise', 'sample');
      return options.noise.data;
    }
    if (options.generator !== undefined && typeof options.generator?.randnInto !== 'function') {
      throw new InvalidArgumentError(
        `generator must be a NoiseGenerator with randnInto(out), such as new RandomGenerator(seed) from @denoise/core; got ${typeof options.generator}.`,
      );
    }
    this.unseededGenerator ??= new RandomGenerator(Math.floor(Math.random() * 2 ** 32));
    return (options.generator ?? this.unseededGenerator).randnInto(buffer);
  }

  /**
   * {@link Scheduler.varianceNoise} into a buffer of this instance, reused across steps: the noise of a step that
   * draws one noise tensor.
   *
   * @param options - the step options
   * @param sample - the sample the noise must match
   */
  protected stepNoise(options: StepOptions, sample: TensorLike): Float32Array {
    if (this.noiseBuffer.length !== sample.data.length) this.noiseBuffer = new Float32Array(sample.data.length);
    return this.varianceNoise(options, sample, this.noiseBuffer);
  }

  /**
   * Normalises the argument of `setTimesteps`. Throws for a non-positive or non-integer step count, for more
   * steps than training timesteps, for both or neither of the two forms, and for custom timesteps that are not
   * strictly descending integers in [0, T).
   *
   * @param steps - the argument of `setTimesteps`
   */
  protected parseSetTimesteps(steps: number | SetTimestepsOptions): ParsedSetTimesteps {
    const T = this.config.num_train_timesteps;
    const options = typeof steps === 'number' ? { numInferenceSteps: steps } : (steps ?? {});
    const { numInferenceSteps, timesteps } = options;
    if ((numInferenceSteps === undefined) === (timesteps === undefined)) {
      throw new InvalidArgumentError('setTimesteps needs exactly one of numInferenceSteps or timesteps.');
    }
    if (timesteps !== undefined) {
      if (timesteps.length === 0) throw new InvalidArgumentError('setTimesteps: timesteps must not be empty.');
      for (let i = 0; i < timesteps.length; i++) {
        const t = timesteps[i];
        if (!Number.isInteger(t) || t < 0 || t >= T) {
          throw new InvalidArgumentError(
            `setTimesteps: custom timesteps must be integers in [0, ${T}) (num_train_timesteps), got ${t}.`,
          );
        }
        if (i > 0 && t >= timesteps[i - 1]) {
          throw new InvalidArgumentError('setTimesteps: custom timesteps must be in strictly descending order.');
        }
      }
      return { numInferenceSteps: timesteps.length, timesteps: [...timesteps] };
    }
    if (!Number.isInteger(numInferenceSteps) || (numInferenceSteps as number) < 1) {
      throw new InvalidArgumentError(`numInferenceSteps must be a positive integer, got ${numInferenceSteps}.`);
    }
    if ((numInferenceSteps as number) > T) {
      throw new InvalidArgumentError(
        `numInferenceSteps (${numInferenceSteps}) cannot exceed num_train_timesteps (${T}) of this scheduler.`,
      );
    }
    return { numInferenceSteps: numInferenceSteps as number };
  }

  /**
   * ᾱ at an integer training timestep, with a clear error for anything else.
   *
   * @param timestep - an integer in [0, T)
   */
  protected alphaCumprodAt(timestep: number): number {
    if (this.alphasCumprod.length === 0) {
      throw new InvalidArgumentError(
        `${this.className} defines its noise levels by σ (scheduler.sigmas), not by a β schedule; it has no ᾱ at a timestep.`,
      );
    }
    if (!Number.isInteger(timestep) || timestep < 0 || timestep >= this.alphasCumprod.length) {
      throw new InvalidArgumentError(
        `Timestep ${timestep} is not a training timestep of this scheduler (integers 0 to ${this.alphasCumprod.length - 1}).`,
      );
    }
    return this.alphasCumprod[timestep];
  }

  /**
   * a·x + c·y per batch item, with (a, c) at that item's timestep: the one loop of every `addNoise` and
   * `getVelocity`.
   *
   * @param x - x_0 (or the sample)
   * @param y - the noise, same dims
   * @param timesteps - one timestep for the whole batch, or one per batch item
   * @param out - receives the result instead of a new buffer, or `undefined`
   * @param coefficients - (a, c) at a timestep; throws for a timestep it cannot place
   */
  protected combinePerItem(
    x: TensorLike,
    y: TensorLike,
    timesteps: number | readonly number[],
    out: Float32Array | undefined,
    coefficients: (timestep: number) => readonly [number, number],
  ): Tensor {
    assertTensorLike(x, 'originalSamples');
    assertTensorLike(y, 'noise');
    assertSameDims(x, y, 'originalSamples', 'noise');
    const batch = x.dims.length > 0 ? x.dims[0] : 1;
    const perItem = typeof timesteps === 'number' ? null : timesteps;
    if (perItem && perItem.length !== batch && perItem.length !== 1) {
      throw new InvalidArgumentError(
        `Got ${perItem.length} timesteps for a batch of ${batch}; pass one timestep or one per batch item.`,
      );
    }
    if (out !== undefined && out.length !== x.data.length) {
      throw new InvalidArgumentError(`out holds ${out.length} values; originalSamples has ${x.data.length}.`);
    }
    const result = out ?? new Float32Array(x.data.length);
    const itemSize = x.data.length / batch;
    for (let b = 0; b < batch; b++) {
      const t = perItem ? perItem[perItem.length === 1 ? 0 : b] : (timesteps as number);
      const [a, c] = coefficients(t);
      for (let i = b * itemSize, end = i + itemSize; i < end; i++) result[i] = a * x.data[i] + c * y.data[i];
    }
    return new Tensor(result, x.dims);
  }
}

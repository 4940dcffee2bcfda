import {
  ConfigError,
  InvalidArgumentError,
  NumericError,
  RandomGenerator,
  Tensor,
  type TensorLike,
} from '@denoise/core';
import {
  alphasCumprodFromBetas,
  type BetaScheduleConfig,
  betasFromConfig,
  COMMON_BETA_SCHEDULES,
  type NoiseScheduleConfig,
} from './schedule.js';

/** The kinds of network output a scheduler can interpret (diffusers' `prediction_type`, `docs/math.md` §2). */
export type PredictionType = 'epsilon' | 'sample' | 'v_prediction';

/** All values `prediction_type` accepts. */
export const PREDICTION_TYPES: readonly PredictionType[] = ['epsilon', 'sample', 'v_prediction'];

/**
 * The scheduler classes whose configs are interchangeable (diffusers' `KarrasDiffusionSchedulers`): any of them
 * can be built from another's config with `fromConfig`.
 */
export const KARRAS_DIFFUSION_SCHEDULERS: readonly string[] = [
  'DDIMScheduler',
  'DDPMScheduler',
  'PNDMScheduler',
  'LMSDiscreteScheduler',
  'EulerDiscreteScheduler',
  'HeunDiscreteScheduler',
  'EulerAncestralDiscreteScheduler',
  'DPMSolverMultistepScheduler',
  'DPMSolverSinglestepScheduler',
  'KDPM2DiscreteScheduler',
  'KDPM2AncestralDiscreteScheduler',
  'DEISMultistepScheduler',
  'UniPCMultistepScheduler',
  'DPMSolverSDEScheduler',
  'EDMEulerScheduler',
];

/**
 * The config keys of diffusers' scheduler classes (the parameters of each `__init__`), for the classes denoise
 * implements or that their configs come from. Config resolution stays silent about a key another compatible
 * class, or the config's own `_class_name`, takes (diffusers' `extract_init_dict`).
 */
export const DIFFUSERS_CONFIG_KEYS: Readonly<Record<string, readonly string[]>> = (() => {
  const betas = ['num_train_timesteps', 'beta_start', 'beta_end', 'beta_schedule', 'trained_betas'];
  const thresholding = ['thresholding', 'dynamic_thresholding_ratio', 'sample_max_value'];
  const sigmaKinds = ['use_karras_sigmas', 'use_exponential_sigmas', 'use_beta_sigmas'];
  const spacing = ['timestep_spacing', 'steps_offset'];
  const flow = ['use_flow_sigmas', 'flow_shift'];
  const shifting = ['use_dynamic_shifting', 'time_shift_type'];
  const edm = [
    'sigma_min',
    'sigma_max',
    'sigma_data',
    'sigma_schedule',
    'num_train_timesteps',
    'prediction_type',
    'rho',
  ];
  const consistency = [
    ...betas,
    'original_inference_steps',
    'clip_sample',
    'clip_sample_range',
    'set_alpha_to_one',
    'steps_offset',
    'prediction_type',
    ...thresholding,
    'timestep_spacing',
    'timestep_scaling',
    'rescale_betas_zero_snr',
  ];
  return {
    DDIMScheduler: [
      ...betas,
      'clip_sample',
      'set_alpha_to_one',
      'steps_offset',
      'prediction_type',
      ...thresholding,
      'clip_sample_range',
      'timestep_spacing',
      'rescale_betas_zero_snr',
    ],
    DDIMInverseScheduler: [
      ...betas,
      'clip_sample',
      'set_alpha_to_one',
      'steps_offset',
      'prediction_type',
      'clip_sample_range',
      'timestep_spacing',
      'rescale_betas_zero_snr',
    ],
    DDPMScheduler: [
      ...betas,
      'variance_type',
      'clip_sample',
      'prediction_type',
      ...thresholding,
      'clip_sample_range',
      ...spacing,
      'rescale_betas_zero_snr',
    ],
    PNDMScheduler: [...betas, 'skip_prk_steps', 'set_alpha_to_one', 'prediction_type', ...spacing],
    LMSDiscreteScheduler: [...betas, ...sigmaKinds, 'prediction_type', ...spacing],
    EulerDiscreteScheduler: [
      ...betas,
      'prediction_type',
      'interpolation_type',
      ...sigmaKinds,
      'sigma_min',
      'sigma_max',
      'timestep_spacing',
      'timestep_type',
      'steps_offset',
      'rescale_betas_zero_snr',
      'final_sigmas_type',
    ],
    HeunDiscreteScheduler: [...betas, 'prediction_type', ...sigmaKinds, 'clip_sample', 'clip_sample_range', ...spacing],
    EulerAncestralDiscreteScheduler: [...betas, 'prediction_type', ...spacing, 'rescale_betas_zero_snr'],
    DPMSolverMultistepScheduler: [
      ...betas,
      'solver_order',
      'prediction_type',
      ...thresholding,
      'algorithm_type',
      'solver_type',
      'lower_order_final',
      'euler_at_final',
      ...sigmaKinds,
      'use_lu_lambdas',
      ...flow,
      'final_sigmas_type',
      'lambda_min_clipped',
      'variance_type',
      ...spacing,
      'rescale_betas_zero_snr',
      ...shifting,
    ],
    DPMSolverSinglestepScheduler: [
      ...betas,
      'solver_order',
      'prediction_type',
      ...thresholding,
      'algorithm_type',
      'solver_type',
      'lower_order_final',
      ...sigmaKinds,
      ...flow,
      'final_sigmas_type',
      'lambda_min_clipped',
      'variance_type',
      ...shifting,
    ],
    KDPM2DiscreteScheduler: [...betas, ...sigmaKinds, 'prediction_type', ...spacing],
    KDPM2AncestralDiscreteScheduler: [...betas, ...sigmaKinds, 'prediction_type', ...spacing],
    DEISMultistepScheduler: [
      ...betas,
      'solver_order',
      'prediction_type',
      ...thresholding,
      'algorithm_type',
      'solver_type',
      'lower_order_final',
      ...sigmaKinds,
      ...flow,
      ...spacing,
      ...shifting,
    ],
    UniPCMultistepScheduler: [
      ...betas,
      'solver_order',
      'prediction_type',
      ...thresholding,
      'predict_x0',
      'solver_type',
      'lower_order_final',
      'disable_corrector',
      'solver_p',
      ...sigmaKinds,
      ...flow,
      ...spacing,
      'final_sigmas_type',
      'rescale_betas_zero_snr',
      ...shifting,
      'sigma_min',
      'sigma_max',
      'shift_terminal',
    ],
    DPMSolverSDEScheduler: [...betas, 'prediction_type', ...sigmaKinds, 'noise_sampler_seed', ...spacing],
    EDMEulerScheduler: [...edm, 'final_sigmas_type'],
    EDMDPMSolverMultistepScheduler: [
      ...edm,
      'solver_order',
      ...thresholding,
      'algorithm_type',
      'solver_type',
      'lower_order_final',
      'euler_at_final',
      'final_sigmas_type',
    ],
    LCMScheduler: consistency,
    TCDScheduler: consistency,
    IPNDMScheduler: ['num_train_timesteps', 'trained_betas'],
    FlowMatchEulerDiscreteScheduler: [
      'num_train_timesteps',
      'shift',
      'use_dynamic_shifting',
      'base_shift',
      'max_shift',
      'base_image_seq_len',
      'max_image_seq_len',
      'invert_sigmas',
      'shift_terminal',
      ...sigmaKinds,
      'time_shift_type',
      'stochastic_sampling',
    ],
  };
})();

// ---------------------------------------------------------------------------------------------------------------
// Warnings

/** Receives the warnings of config resolution (e.g. an ignored key). */
export type WarningHandler = (message: string) => void;

let defaultWarningHandler: WarningHandler = (message) => console.warn(`[denoise] ${message}`);
const warnedByHandler = new WeakMap<WarningHandler, Set<string>>();

/**
 * Replaces the process-wide handler of scheduler warnings (by default `console.warn`), e.g. to route them to an
 * application logger or to silence them. Returns the previous handler so it can be restored.
 *
 * @param handler - the new handler
 */
export function setSchedulerWarningHandler(handler: WarningHandler): WarningHandler {
  const previous = defaultWarningHandler;
  defaultWarningHandler = handler;
  return previous;
}

/**
 * Sends `message` to `handler` (default: the process-wide handler) unless that handler has already received the
 * same message, so a repeated condition is reported once.
 *
 * @param message - the warning text
 * @param handler - where to send it
 */
export function warnOnce(message: string, handler: WarningHandler = defaultWarningHandler): void {
  let seen = warnedByHandler.get(handler);
  if (!seen) {
    seen = new Set();
    warnedByHandler.set(handler, seen);
  }
  if (seen.has(message)) return;
  seen.add(message);
  handler(message);
}

// ---------------------------------------------------------------------------------------------------------------
// Config resolution

/** One key of a scheduler config: its default and how a raw JSON value is checked and converted. */
export interface ConfigField<V> {
  /** The diffusers default. */
  readonly default: V;
  /**
   * Returns the value to use, or throws a `ConfigError` naming the key and the allowed values.
   *
   * @param value - the raw value from the config object (never `undefined`)
   * @param key - the key, for messages
   */
  parse(value: unknown, key: string): V;
}

/** The description of a whole config: one {@link ConfigField} per key. */
export type ConfigSpec<C> = { readonly [K in keyof C]-?: ConfigField<C[K]> };

/** What a scheduler constructor accepts: typed known keys plus any other JSON keys (warned about and ignored). */
export type SchedulerConfigInput<C> = Partial<C> & { readonly [key: string]: unknown };

function describe(value: unknown): string {
  return typeof value === 'string' ? `"${value}"` : (JSON.stringify(value) ?? String(value));
}

/** Builders for the usual {@link ConfigField} kinds, so each scheduler declares its config in a few lines. */
export const configField = {
  /**
   * A finite number, optionally an integer and bounded.
   *
   * @param defaultValue - the diffusers default
   * @param bounds - inclusive `min`/`max`, exclusive `above`, and `integer`
   */
  number(
    defaultValue: number,
    bounds: { min?: number; max?: number; above?: number; integer?: boolean } = {},
  ): ConfigField<number> {
    return {
      default: defaultValue,
      parse(value, key) {
        const ok =
          typeof value === 'number' &&
          Number.isFinite(value) &&
          (!bounds.integer || Number.isInteger(value)) &&
          (bounds.min === undefined || value >= bounds.min) &&
          (bounds.max === undefined || value <= bounds.max) &&
          (bounds.above === undefined || value > bounds.above);
        if (!ok) {
          const parts = [bounds.integer ? 'an integer' : 'a finite number'];
          if (bounds.min !== undefined) parts.push(`>= ${bounds.min}`);
          if (bounds.above !== undefined) parts.push(`> ${bounds.above}`);
          if (bounds.max !== undefined) parts.push(`<= ${bounds.max}`);
          throw new ConfigError(`Config key "${key}" must be ${parts.join(' ')}, got ${describe(value)}.`);
        }
        return value as number;
      },
    };
  },

  /**
   * `true` or `false`.
   *
   * @param defaultValue - the diffusers default
   */
  boolean(defaultValue: boolean): ConfigField<boolean> {
    return {
      default: defaultValue,
      parse(value, key) {
        if (typeof value !== 'boolean') {
          throw new ConfigError(`Config key "${key}" must be true or false, got ${describe(value)}.`);
        }
        return value;
      },
    };
  },

  /**
   * One string out of a fixed set.
   *
   * @param values - the allowed strings
   * @param defaultValue - the diffusers default
   */
  oneOf<T extends string>(values: readonly T[], defaultValue: T): ConfigField<T> {
    return {
      default: defaultValue,
      parse(value, key) {
        if (typeof value !== 'string' || !values.includes(value as T)) {
          throw new ConfigError(
            `Config key "${key}" must be one of ${values.map((v) => `"${v}"`).join(', ')}, got ${describe(value)}.`,
          );
        }
        return value as T;
      },
    };
  },

  /**
   * A list of finite numbers, or `null` (the default).
   */
  numberListOrNull(): ConfigField<number[] | null> {
    return {
      default: null,
      parse(value, key) {
        if (value === null) return null;
        if (!Array.isArray(value) || !value.every((v) => typeof v === 'number' && Number.isFinite(v))) {
          throw new ConfigError(
            `Config key "${key}" must be a list of finite numbers or null, got ${describe(value)}.`,
          );
        }
        return [...value];
      },
    };
  },

  /**
   * Accepts `null` in addition to what `field` accepts.
   *
   * @param field - the non-null field
   * @param defaultValue - the default, `null` unless given
   */
  nullable<V>(field: ConfigField<V>, defaultValue: V | null = null): ConfigField<V | null> {
    return {
      default: defaultValue,
      parse: (value, key) => (value === null ? null : field.parse(value, key)),
    };
  },
};

/**
 * The keys a scheduler ignores without a word, as diffusers' `extract_init_dict` does: keys of any class in
 * `compatibles` and keys of the config's own `_class_name` (both per {@link DIFFUSERS_CONFIG_KEYS}), except the
 * keys of the scheduler's own diffusers namesake: one of those that denoise does not implement is worth a warning,
 * since diffusers would act on it.
 */
function keysOfOtherClasses(
  className: string,
  raw: Record<string, unknown>,
  compatibles: readonly string[],
): Set<string> {
  const origin = typeof raw._class_name === 'string' ? raw._class_name : undefined;
  const known = new Set<string>();
  for (const other of origin === undefined ? compatibles : [...compatibles, origin]) {
    for (const key of DIFFUSERS_CONFIG_KEYS[other] ?? []) known.add(key);
  }
  for (const key of DIFFUSERS_CONFIG_KEYS[className] ?? []) known.delete(key);
  return known;
}

/**
 * Resolves a raw config object (a typed object or a parsed `scheduler_config.json`) against a spec: known keys are
 * validated, missing keys get their diffusers default, metadata keys starting with `_` (`_class_name`,
 * `_diffusers_version`) are skipped, and any other key is ignored. As in diffusers, keys that a compatible class
 * or the config's own `_class_name` takes are ignored silently (a PNDM config's `skip_prk_steps` given to Euler);
 * the rest, and keys of this class's diffusers namesake that denoise does not implement, are reported in one
 * warning through `onWarning` (the same warning once per handler).
 *
 * @param className - the scheduler's class name, for messages
 * @param spec - the keys the scheduler understands
 * @param input - the raw config
 * @param onWarning - where ignored keys are reported
 * @param compatibles - the diffusers classes whose keys are ignored silently (the class's `compatibles`)
 * @returns a frozen, JSON-safe config with every key present
 * @throws ConfigError when a value is of the wrong type, out of range or not an allowed enum value
 */
export function resolveConfig<C extends object>(
  className: string,
  spec: ConfigSpec<C>,
  input: unknown,
  onWarning?: WarningHandler,
  compatibles: readonly string[] = [],
): Readonly<C> {
  if (input === undefined || input === null) input = {};
  if (typeof input !== 'object' || Array.isArray(input)) {
    throw new ConfigError(
      `${className} expects a config object (a parsed scheduler_config.json), got ${describe(input)}.`,
    );
  }
  const raw = input as Record<string, unknown>;
  const resolved: Record<string, unknown> = {};
  for (const key of Object.keys(spec) as (keyof C & string)[]) {
    const field = spec[key] as ConfigField<unknown>;
    const value = raw[key];
    resolved[key] = value === undefined ? field.default : field.parse(value, key);
  }
  const ignored = Object.keys(raw).filter((key) => !key.startsWith('_') && !(key in spec));
  if (ignored.length > 0) {
    const otherClassKeys = keysOfOtherClasses(className, raw, compatibles);
    const unknown = ignored.filter((key) => !otherClassKeys.has(key));
    if (unknown.length > 0) {
      const list = unknown.map((key) => `"${key}"`).join(', ');
      const keys = unknown.length === 1 ? 'key' : 'keys';
      warnOnce(`${className} ignores the config ${keys} ${list}, which it does not use.`, onWarning);
    }
  }
  for (const value of Object.values(resolved)) if (Array.isArray(value)) Object.freeze(value);
  return Object.freeze(resolved) as Readonly<C>;
}

/**
 * The config spec entries of {@link BetaScheduleConfig}, with diffusers' defaults, for schedulers to spread. Its
 * `beta_schedule` takes the schedules every class takes; DDPM and Heun override it with their extra ones.
 */
export const BETA_SCHEDULE_SPEC: ConfigSpec<BetaScheduleConfig> = {
  num_train_timesteps: configField.number(1000, { integer: true, min: 1, max: 1_000_000 }),
  beta_start: configField.number(0.0001, { min: 0, max: 1 }),
  beta_end: configField.number(0.02, { min: 0, max: 1 }),
  beta_schedule: configField.oneOf(COMMON_BETA_SCHEDULES, 'linear'),
  trained_betas: configField.numberListOrNull(),
};

/**
 * The config spec entries of {@link NoiseScheduleConfig} ({@link BETA_SCHEDULE_SPEC} and
 * `rescale_betas_zero_snr`), with diffusers' defaults, for schedulers to spread.
 */
export const NOISE_SCHEDULE_SPEC: ConfigSpec<NoiseScheduleConfig> = {
  ...BETA_SCHEDULE_SPEC,
  rescale_betas_zero_snr: configField.boolean(false),
};

/**
 * Throws a `ConfigError` for zero terminal SNR with ε-prediction in a scheduler that steps from ᾱ itself (DDPM,
 * DDIM, PNDM, LCM): at ᾱ_{T−1} = 0, x̂_0 = (x_t − √(1 − ᾱ)·ε̂)/√ᾱ divides by zero (diffusers returns Infinity or
 * NaN there). Zero-SNR models predict v (Lin et al. 2023, §3.2), for which the step is finite.
 *
 * @param className - the scheduler's class name, for the message
 * @param config - the resolved config
 */
export function assertPredictionDefinedAtZeroSnr(
  className: string,
  config: { readonly rescale_betas_zero_snr: boolean; readonly prediction_type: PredictionType },
): void {
  if (config.rescale_betas_zero_snr && config.prediction_type === 'epsilon') {
    throw new ConfigError(
      `${className}: rescale_betas_zero_snr makes ᾱ = 0 at the first step, where an ε-prediction cannot give x̂_0; ` +
        'zero-SNR models use prediction_type "v_prediction" (or "sample"). Set that, or rescale_betas_zero_snr: false.',
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Tensor checks

/**
 * Throws an `InvalidArgumentError` unless `value` is a float32 tensor-like whose dims match its data.
 *
 * @param value - the argument
 * @param name - its name, for messages
 */
export function assertTensorLike(value: unknown, name: string): asserts value is TensorLike {
  const t = value as TensorLike | undefined;
  if (!t || !(t.data instanceof Float32Array) || !Array.isArray(t.dims)) {
    throw new InvalidArgumentError(
      `${name} must be a float32 tensor ({ data: Float32Array, dims: number[] }); convert float16 outputs first.`,
    );
  }
  let size = 1;
  for (const d of t.dims) size *= d;
  if (size !== t.data.length) {
    throw new InvalidArgumentError(
      `${name} has dims [${t.dims.join(', ')}] (${size} elements) but ${t.data.length} values.`,
    );
  }
}

/**
 * Throws an `InvalidArgumentError` unless both tensors have the same dims.
 *
 * @param a - the first tensor
 * @param b - the second tensor
 * @param nameA - the first tensor's name, for messages
 * @param nameB - the second tensor's name, for messages
 */
export function assertSameDims(a: TensorLike, b: TensorLike, nameA: string, nameB: string): void {
  if (a.dims.length !== b.dims.length || a.dims.some((d, i) => d !== b.dims[i])) {
    throw new InvalidArgumentError(
      `${nameA} has dims [${a.dims.join(', ')}] but ${nameB} has dims [${b.dims.join(', ')}]; they must match.`,
    );
  }
}

/**
 * Checks the two tensors every `step` receives: both float32 tensors whose dims match their data, with the same dims.
 *
 * @param modelOutput - the network output of the step
 * @param sample - the current latents
 */
export function assertStepTensors(modelOutput: unknown, sample: unknown): asserts modelOutput is TensorLike {
  assertTensorLike(sample, 'sample');
  assertTensorLike(modelOutput, 'modelOutput');
  assertSameDims(modelOutput, sample, 'modelOutput', 'sample');
}

/**
 * Throws a `NumericError` naming the step when the model output or the sample of a step holds NaN or ±Infinity,
 * so that a diverged model (e.g. a float16 overflow) stops at the step where it happened instead of decoding noise.
 *
 * @param modelOutput - the network output of the step
 * @param sample - the sample x_t of the step
 * @param timestep - the step's timestep, for the message
 * @param className - the scheduler's class name, for the message
 */
export function assertFiniteStepInputs(
  modelOutput: TensorLike,
  sample: TensorLike,
  timestep: number,
  className: string,
): void {
  for (const [name, tensor] of [
    ['sample', sample],
    ['modelOutput', modelOutput],
  ] as const) {
    const values = tensor.data;
    for (let i = 0; i < values.length; i++) {
      if (Number.isFinite(values[i])) continue;
      const cause =
        name === 'modelOutput'
          ? 'the model diverged; with a float16 model, try the fp32 variant or a smaller guidance scale'
          : 'the latents were already non-finite; check initial latents and values returned by callbacks';
      throw new NumericError(
        `${className}.step at timestep ${timestep}: ${name} holds ${values[i]} at index ${i} (${cause}).`,
      );
    }
  }
}

/**
 * The finiteness check of a step, made on its result so that it costs no extra pass over the inputs: a NaN or
 * ±Infinity in the model output or the sample propagates to the step's output, so the step's own output loop
 * accumulates `nonFinite += value * 0` (0 for a finite value, NaN otherwise) and passes the sum here. Only when it
 * is not 0 are the inputs scanned, to throw {@link assertFiniteStepInputs}'s `NumericError` naming the culprit; a
 * non-finite result of finite inputs is left to the next step, as before. Steps that clamp x̂_0 (`clip_sample`,
 * thresholding) can turn an Infinity finite, so they accumulate over x̂_0 before clamping instead (a·x_t + b·m is
 * non-finite whenever an input is, even with a = 0, since 0·∞ is NaN).
 *
 * @param nonFinite - Σ 0·value over the step's output
 * @param modelOutput - the network output of the step
 * @param sample - the sample x_t of the step
 * @param timestep - the step's timestep, for the message
 * @param className - the scheduler's class name, for the message
 */
export function assertFiniteStepResult(
  nonFinite: number,
  modelOutput: TensorLike,
  sample: TensorLike,
  timestep: number,
  className: string,
): void {
  if (nonFinite !== 0) assertFiniteStepInputs(modelOutput, sample, timestep, className);
}

/**
 * The weights (a, b) of x̂_0 = a·x_t + b·m for a model output m at a noise level with √ᾱ = `alpha` and
 * √(1 − ᾱ) = `sigma` (`docs/math.md` §2): ε: x̂_0 = (x_t − σ·ε̂)/α; sample: x̂_0 = m; v: x̂_0 = α·x_t − σ·v̂. Computed once
 * per step, so the element loop is one multiply-add whatever the prediction type.
 *
 * @param predictionType - what the network predicts
 * @param alpha - √ᾱ of the step
 * @param sigma - √(1 − ᾱ) of the step
 */
export function originalSampleWeights(
  predictionType: PredictionType,
  alpha: number,
  sigma: number,
): [sampleWeight: number, outputWeight: number] {
  switch (predictionType) {
    case 'epsilon':
      return [1 / alpha, -sigma / alpha];
    case 'sample':
      return [0, 1];
    case 'v_prediction':
      return [alpha, -sigma];
  }
}

/**
 * The weights (a, b) of ε̂ = a·x_t + b·m for a model output m at a noise level with √ᾱ = `alpha` and
 * √(1 − ᾱ) = `sigma` (`docs/math.md` §2): ε: ε̂ = m; sample: ε̂ = (x_t − α·x̂_0)/σ; v: ε̂ = α·v̂ + σ·x_t.
 *
 * @param predictionType - what the network predicts
 * @param alpha - √ᾱ of the step
 * @param sigma - √(1 − ᾱ) of the step
 */
export function noisePredictionWeights(
  predictionType: PredictionType,
  alpha: number,
  sigma: number,
): [sampleWeight: number, outputWeight: number] {
  switch (predictionType) {
    case 'epsilon':
      return [0, 1];
    case 'sample':
      return [1 / sigma, -alpha / sigma];
    case 'v_prediction':
      return [sigma, alpha];
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Dynamic thresholding

/** The config keys of Imagen's dynamic thresholding, shared by every scheduler that offers it. */
export interface ThresholdingConfig {
  /** Imagen dynamic thresholding of x̂_0 (pixel-space models only). */
  thresholding: boolean;
  /** The quantile of |x̂_0| used as the threshold. */
  dynamic_thresholding_ratio: number;
  /**
   * The largest threshold dynamic thresholding may use: the threshold is clamped to `[1, sample_max_value]`, and a
   * value below 1 (diffusers' own DPM-Solver test uses 0.5) makes it exactly `sample_max_value`, as `torch.clamp` does.
   */
  sample_max_value: number;
}

/**
 * The keys, diffusers' defaults and checks of {@link ThresholdingConfig}, to spread into a scheduler's spec. The
 * checks accept every value diffusers' own configs and tests use.
 */
export const THRESHOLDING_SPEC: ConfigSpec<ThresholdingConfig> = {
  thresholding: configField.boolean(false),
  dynamic_thresholding_ratio: configField.number(0.995, { min: 0, max: 1 }),
  sample_max_value: configField.number(1, { above: 0 }),
};

/**
 * Moves the k-th smallest of `values[left..right]` to index k, with nothing larger before it and nothing smaller
 * after it (Floyd & Rivest, "Expected time bounds for selection", CACM 1975, Algorithm 489 SELECT). On long
 * ranges it first selects within a small sample around k's expected place, so that the partition's pivot lands
 * next to the answer: about n + min(k, n − k) comparisons, against n log n for a sort.
 *
 * @param values - the values, reordered in place
 * @param k - the rank to find, in [left, right]
 * @param left - the first index of the range
 * @param right - the last index of the range
 */
export function selectInPlace(values: Float32Array, k: number, left = 0, right = values.length - 1): void {
  while (right > left) {
    if (right - left > 600) {
      const size = right - left + 1;
      const rank = k - left + 1;
      const logSize = Math.log(size);
      const sampleSize = 0.5 * Math.exp((2 * logSize) / 3);
      const spread = 0.5 * Math.sqrt((logSize * sampleSize * (size - sampleSize)) / size) * Math.sign(rank - size / 2);
      const sampleLeft = Math.max(left, Math.floor(k - (rank * sampleSize) / size + spread));
      const sampleRight = Math.min(right, Math.floor(k + ((size - rank) * sampleSize) / size + spread));
      selectInPlace(values, k, sampleLeft, sampleRight);
    }
    // Partition around the value now at k; the sample step made it close to the k-th smallest.
    const pivot = values[k];
    let i = left;
    let j = right;
    swap(values, left, k);
    if (values[right] > pivot) swap(values, right, left);
    while (i < j) {
      swap(values, i, j);
      i++;
      j--;
      while (values[i] < pivot) i++;
      while (values[j] > pivot) j--;
    }
    if (values[left] === pivot) {
      swap(values, left, j);
    } else {
      j++;
      swap(values, j, right);
    }
    // The pivot is at j now: continue on the side that holds k.
    if (j <= k) left = j + 1;
    if (k <= j) right = j - 1;
  }
}

function swap(values: Float32Array, i: number, j: number): void {
  const value = values[i];
  values[i] = values[j];
  values[j] = value;
}

/**
 * The `ratio` quantile of `values` with linear interpolation between neighbouring order statistics, as
 * `torch.quantile` computes it, by selection instead of a sort. `values` is reordered.
 *
 * @param values - the values (Imagen's thresholding passes |x̂_0| of one batch item)
 * @param ratio - the quantile, in [0, 1]
 */
export function quantileInPlace(values: Float32Array, ratio: number): number {
  return valueAtRank(values, ratio * (values.length - 1));
}

/** The value at fractional rank `rank` of `values`, interpolating between the two neighbouring order statistics. */
function valueAtRank(values: Float32Array, rank: number): number {
  const below = Math.floor(rank);
  selectInPlace(values, below);
  const low = values[below];
  if (rank === below) return low;
  // Everything after `below` is at least `low`; the next order statistic is the smallest of them.
  let high = values[below + 1];
  for (let i = below + 2; i < values.length; i++) if (values[i] < high) high = values[i];
  return low + (rank - below) * (high - low);
}

/** How many values of a batch item {@link thresholdOfItem} samples to bound its quantile from below. */
const THRESHOLD_SAMPLE_SIZE = 256;

/**
 * Imagen's threshold s of one batch item of x̂_0 = a·x + b·m over [start, end), without writing |x̂_0| out: the
 * quantile of a strided sample, four standard deviations of the sample quantile below the wanted rank, bounds the
 * wanted quantile from below; one read pass collects the few values at or above that bound into `scratch`; the
 * quantile is selected among them (every smaller value ranks below all of them). A sample that did not bound it
 * (fewer candidates than values from the wanted rank up) falls back to selecting among all values.
 */
function thresholdOfItem(
  x: Float32Array,
  m: Float32Array,
  a: number,
  b: number,
  start: number,
  end: number,
  clamp: ThresholdingConfig,
  scratch: Float32Array,
): number {
  const n = end - start;
  const rank = clamp.dynamic_thresholding_ratio * (n - 1);
  const stride = Math.floor(n / THRESHOLD_SAMPLE_SIZE);
  let candidates = 0;
  if (stride >= 2) {
    const p = rank / (n - 1);
    const margin = 4 * Math.sqrt(THRESHOLD_SAMPLE_SIZE * p * (1 - p));
    const sampleRank = Math.floor(p * (THRESHOLD_SAMPLE_SIZE - 1) - margin) - 1;
    if (sampleRank >= 0) {
      for (let j = 0; j < THRESHOLD_SAMPLE_SIZE; j++) {
        const i = start + j * stride;
        scratch[j] = Math.abs(a * x[i] + b * m[i]);
      }
      const sample = scratch.subarray(0, THRESHOLD_SAMPLE_SIZE);
      selectInPlace(sample, sampleRank);
      const lowerBound = sample[sampleRank];
      for (let i = start; i < end; i++) {
        const value = Math.abs(a * x[i] + b * m[i]);
        if (value >= lowerBound) scratch[candidates++] = value;
      }
    }
  }
  const smaller = n - candidates;
  let quantile: number;
  if (candidates > 0 && rank >= smaller) {
    quantile = valueAtRank(scratch.subarray(0, candidates), rank - smaller);
  } else {
    for (let i = start; i < end; i++) scratch[i - start] = Math.abs(a * x[i] + b * m[i]);
    quantile = valueAtRank(scratch.subarray(0, n), rank);
  }
  return Math.min(Math.max(quantile, 1), clamp.sample_max_value);
}

/**
 * Imagen's threshold s of one batch item (Saharia et al. 2022, §2.3): the `ratio` quantile of |x̂_0|, clamped to
 * `[1, maxValue]` (a `maxValue` below 1 gives `maxValue`, as `torch.clamp` does).
 *
 * @param absValues - |x̂_0| of the item; reordered
 * @param ratio - diffusers' `dynamic_thresholding_ratio`
 * @param maxValue - diffusers' `sample_max_value`
 */
export function dynamicThreshold(absValues: Float32Array, ratio: number, maxValue: number): number {
  return Math.min(Math.max(quantileInPlace(absValues, ratio), 1), maxValue);
}

/**
 * Imagen's dynamic thresholding (Saharia et al. 2022, §2.3), in place on a buffer the caller owns: for each batch
 * item, `s` is the `ratio` quantile of |x| (linear interpolation, as `torch.quantile`), clamped to
 * `[1, maxValue]`; values are clamped to `[−s, s]` and divided by `s`.
 *
 * @param values - the x̂_0 values, batch-major; overwritten with the result
 * @param batchSize - the number of batch items (the first dim)
 * @param ratio - diffusers' `dynamic_thresholding_ratio`
 * @param maxValue - diffusers' `sample_max_value`
 * @param scratch - a buffer of at least `values.length / batchSize` elements for the selection
 */
export function applyDynamicThresholding(
  values: Float32Array,
  batchSize: number,
  ratio: number,
  maxValue: number,
  scratch: Float32Array,
): void {
  const itemSize = values.length / batchSize;
  const absValues = scratch.subarray(0, itemSize);
  for (let b = 0; b < batchSize; b++) {
    const item = values.subarray(b * itemSize, (b + 1) * itemSize);
    for (let i = 0; i < itemSize; i++) absValues[i] = Math.abs(item[i]);
    const s = dynamicThreshold(absValues, ratio, maxValue);
    for (let i = 0; i < itemSize; i++) item[i] = Math.min(Math.max(item[i], -s), s) / s;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The step of the DDPM family from a clamped x̂_0

/**
 * The update of a DDPM-family step written in x̂_0, x_t and the model output m:
 * x_{t'} = original·x̂_0 + sample·x_t + output·m + noise·z. DDPM's posterior mean (`docs/math.md` §2) and DDIM's eq. 12
 * with ε̂ expanded in x_t and m (or in x_t and the clamped x̂_0) both take this form.
 */
export interface UpdateWeights {
  /** The weight of x̂_0 (after clipping or thresholding). */
  readonly original: number;
  /** The weight of x_t. */
  readonly sample: number;
  /** The weight of the model output m. */
  readonly output: number;
  /** The weight of the noise z (ignored without noise). */
  readonly noise: number;
}

/** The keys that decide how x̂_0 is clamped in DDPM and DDIM (diffusers' `clip_sample` / `thresholding`). */
export interface OriginalSampleClampConfig extends ThresholdingConfig {
  /** Clamp x̂_0 to `[−clip_sample_range, clip_sample_range]` (ignored when `thresholding` is on). */
  readonly clip_sample: boolean;
  /** The clamp bound of `clip_sample`. */
  readonly clip_sample_range: number;
}

/** The tensors of {@link stepFromOriginalSample}: inputs as `step` receives them, outputs the step allocated. */
export interface OriginalSampleStepBuffers {
  /** x_t. */
  readonly sample: TensorLike;
  /** m, shaped like the sample. */
  readonly modelOutput: TensorLike;
  /** z, or `null` for a step without noise. */
  readonly noise: Float32Array | null;
  /** Receives x̂_0 (clamped). */
  readonly x0: Float32Array;
  /** Receives x_{t'}. */
  readonly prev: Float32Array;
  /** With thresholding, at least one batch item long; holds |x̂_0| while its quantile is found. */
  readonly scratch: Float32Array;
}

/**
 * One DDPM-family step in a single pass where the config allows it: x̂_0 = a·x_t + b·m (`docs/math.md` §2), clipped to
 * ±`clip_sample_range` or, with thresholding, clamped to ±s and divided by s, then the update of `weights`. Clipping
 * costs a few arithmetic operations per element; thresholding adds one read pass per batch item that finds s
 * (see `thresholdOfItem`), and recomputes x̂_0 in the update pass instead of reading it back. Returns Σ 0·x̂_0 before clamping (0 unless an input is NaN or ±Infinity, which clamping could hide) for
 * {@link assertFiniteStepResult}.
 *
 * @param buffers - the step's inputs and outputs
 * @param originalWeights - (a, b) of x̂_0 = a·x_t + b·m, from {@link originalSampleWeights}
 * @param clamp - the config's clipping and thresholding keys
 * @param weights - the update
 */
export function stepFromOriginalSample(
  buffers: OriginalSampleStepBuffers,
  originalWeights: readonly [number, number],
  clamp: OriginalSampleClampConfig,
  weights: UpdateWeights,
): number {
  const x = buffers.sample.data;
  const m = buffers.modelOutput.data;
  const [a, b] = originalWeights;
  if (!clamp.thresholding) {
    const bound = clamp.clip_sample ? clamp.clip_sample_range : Number.POSITIVE_INFINITY;
    return clampedUpdate(buffers, a, b, bound, 1, weights, 0, x.length);
  }
  const batch = buffers.sample.dims[0];
  const itemSize = x.length / batch;
  let nonFinite = 0;
  for (let item = 0; item < batch; item++) {
    const start = item * itemSize;
    const s = thresholdOfItem(x, m, a, b, start, start + itemSize, clamp, buffers.scratch);
    nonFinite += clampedUpdate(buffers, a, b, s, 1 / s, weights, start, start + itemSize);
  }
  return nonFinite;
}

/**
 * The fused pass of {@link stepFromOriginalSample} over [start, end): x̂_0 = clamp(a·x + b·m, ±bound)·scale, then the
 * update. The clamp is (|r + bound| − |r − bound|)/2, which is exact up to rounding and has no branch: `Math.min`
 * and `Math.max` compile to compare-and-branch, and on x̂_0 values scattered around the bound (the low-noise steps
 * of `clip_sample`) the mispredictions made the step 3–4 times dearer. Without a bound there is no clamp at all.
 */
function clampedUpdate(
  buffers: OriginalSampleStepBuffers,
  a: number,
  b: number,
  bound: number,
  scale: number,
  weights: UpdateWeights,
  start: number,
  end: number,
): number {
  const { x0, prev } = buffers;
  const x = buffers.sample.data;
  const m = buffers.modelOutput.data;
  const { original, sample, output } = weights;
  // Without noise, the loop reads m in its place with weight 0 (m is finite whenever the step succeeds), so one
  // loop serves both cases.
  const noise = buffers.noise ?? m;
  const noiseWeight = buffers.noise ? weights.noise : 0;
  let nonFinite = 0;
  if (bound === Number.POSITIVE_INFINITY) {
    for (let i = start; i < end; i++) {
      const value = a * x[i] + b * m[i];
      nonFinite += value * 0;
      x0[i] = value;
      prev[i] = original * value + sample * x[i] + output * m[i] + noiseWeight * noise[i];
    }
    return nonFinite;
  }
  const halfScale = 0.5 * scale;
  for (let i = start; i < end; i++) {
    const raw = a * x[i] + b * m[i];
    nonFinite += raw * 0;
    const clamped = (Math.abs(raw + bound) - Math.abs(raw - bound)) * halfScale;
    x0[i] = clamped;
    prev[i] = original * clamped + sample * x[i] + output * m[i] + noiseWeight * noise[i];
  }
  return nonFinite;
}

// ---------------------------------------------------------------------------------------------------------------
// The scheduler interface

/** A source of standard normal noise; `RandomGenerator` from `@denoise/core` is one. */
export interface NoiseGenerator {
  /**
   * Fills `out` with independent N(0, 1) samples, exactly as `randn` of that many elements would.
   *
   * @param out - the buffer to fill
   */
  randnInto(out: Float32Array): Float32Array;
}

/** Options of {@link Scheduler.step}. Each scheduler documents which ones it uses. */
export interface StepOptions {
  /** Draws the noise of stochastic steps; the same seed reproduces diffusers' `torch.Generator` results. */
  generator?: NoiseGenerator;
  /** Explicit noise for a stochastic step, shaped like the sample (diffusers' `variance_noise`). */
  noise?: TensorLike;
  /** DDIM's η: 0 is deterministic, 1 matches DDPM's posterior variance. */
  eta?: number;
  /** DDIM: recompute ε̂ from the clipped x̂_0 (diffusers' `use_clipped_model_output`). */
  useClippedModelOutput?: boolean;
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

/**
 * Where classifier guidance enters a step (`docs/math.md` §7): `'mean'` for ancestral DDPM-type steps, which shift the
 * posterior mean by s·Σ·g; `'epsilon'` for DDIM-type and sigma-based steps, which use ε̂' = ε̂ − √(1−ᾱ_t)·s·g.
 */
export type ClassifierGuidanceMode = 'mean' | 'epsilon';

/**
 * The base of every scheduler: a resolved, frozen config; the β/ᾱ schedule; the common forward-process helpers
 * (`addNoise`, `getVelocity`); and the contract each scheduler implements (`setTimesteps`, `step`,
 * `scaleModelInput`). Subclasses declare their config with a {@link ConfigSpec} and pass it to the constructor.
 *
 * @typeParam C - the scheduler's config, snake_case keys as in diffusers' `scheduler_config.json`
 */
export abstract class Scheduler<C extends BetaScheduleConfig = BetaScheduleConfig> {
  /** The diffusers class names whose configs this class accepts (diffusers' `_compatibles`). */
  static readonly compatibles: readonly string[] = KARRAS_DIFFUSION_SCHEDULERS;

  /** The resolved config: every key present with its diffusers default if it was not given. JSON-safe, frozen. */
  readonly config: Readonly<C>;
  /** β_t for t = 0 … T−1 (float32 values). */
  readonly betas: Float64Array;
  /** α_t = 1 − β_t (float32 values). */
  readonly alphas: Float64Array;
  /** ᾱ_t = ∏_{s ≤ t} α_s (float32 values); guidance and custom samplers read it. Do not modify. */
  readonly alphasCumprod: Float64Array;
  /** The timesteps of the current schedule in sampling order; all training timesteps until `setTimesteps`. */
  timesteps: readonly number[];
  /** The number of inference steps of the current schedule, `undefined` before `setTimesteps`. */
  numInferenceSteps: number | undefined = undefined;
  /** The standard deviation of the initial noise: multiply N(0, I) latents by it before the loop. */
  initNoiseSigma = 1;
  /** How many model evaluations one step consumes (1 for single-step schedulers). */
  order = 1;
  /** How classifier guidance is applied with this scheduler (`docs/math.md` §7). */
  abstract readonly classifierGuidance: ClassifierGuidanceMode;
  /** The diffusers class name of this scheduler (`_class_name` in `scheduler_config.json`). */
  readonly className: string;
  /** Where this instance reports warnings. */
  protected readonly onWarning: WarningHandler | undefined;
  /** The noise source of stochastic steps called without `generator` or `noise`, created on first use. */
  private unseededGenerator: NoiseGenerator | undefined;

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
    this.betas = betasFromConfig(this.config);
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
   * The forward process in closed form (`docs/math.md` §1): x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε.
   *
   * @param originalSamples - x_0
   * @param noise - ε, same dims
   * @param timesteps - one training timestep for the whole batch, or one per batch item
   */
  addNoise(originalSamples: TensorLike, noise: TensorLike, timesteps: number | readonly number[]): Tensor {
    return this.combinePerItem(originalSamples, noise, timesteps, (alphaBar) => [
      Math.sqrt(alphaBar),
      Math.sqrt(1 - alphaBar),
    ]);
  }

  /**
   * The velocity target of v-prediction (Salimans & Ho 2022, `docs/math.md` §1): v = √ᾱ_t · ε − √(1 − ᾱ_t) · x_0.
   *
   * @param sample - x_0
   * @param noise - ε, same dims
   * @param timesteps - one training timestep for the whole batch, or one per batch item
   */
  getVelocity(sample: TensorLike, noise: TensorLike, timesteps: number | readonly number[]): Tensor {
    return this.combinePerItem(sample, noise, timesteps, (alphaBar) => [-Math.sqrt(1 - alphaBar), Math.sqrt(alphaBar)]);
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
    if (!Number.isInteger(timestep) || timestep < 0 || timestep >= this.alphasCumprod.length) {
      throw new InvalidArgumentError(
        `Timestep ${timestep} is not a training timestep of this scheduler (integers 0 to ${this.alphasCumprod.length - 1}).`,
      );
    }
    return this.alphasCumprod[timestep];
  }

  /** a·x + b·y per batch item, with (a, b) from ᾱ at that item's timestep. */
  private combinePerItem(
    x: TensorLike,
    y: TensorLike,
    timesteps: number | readonly number[],
    coefficients: (alphaBar: number) => [number, number],
  ): Tensor {
    assertTensorLike(x, 'sample');
    assertTensorLike(y, 'noise');
    assertSameDims(x, y, 'sample', 'noise');
    const batch = x.dims.length > 0 ? x.dims[0] : 1;
    const perItem = typeof timesteps === 'number' ? null : timesteps;
    if (perItem && perItem.length !== batch && perItem.length !== 1) {
      throw new InvalidArgumentError(
        `Got ${perItem.length} timesteps for a batch of ${batch}; pass one timestep or one per batch item.`,
      );
    }
    const out = new Float32Array(x.data.length);
    const itemSize = x.data.length / batch;
    for (let b = 0; b < batch; b++) {
      const t = perItem ? perItem[perItem.length === 1 ? 0 : b] : (timesteps as number);
      const [a, c] = coefficients(this.alphaCumprodAt(t));
      for (let i = b * itemSize, end = i + itemSize; i < end; i++) out[i] = a * x.data[i] + c * y.data[i];
    }
    return new Tensor(out, x.dims);
  }
}

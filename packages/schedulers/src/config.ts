/**
 * Scheduler configs: diffusers' config keys per class, the declarative {@link ConfigSpec} each scheduler describes
 * its keys with, their resolution against a raw `scheduler_config.json`, and the warnings about ignored keys.
 */
import { ConfigError } from '@denoise/core';
import { type BetaScheduleConfig, COMMON_BETA_SCHEDULES, type NoiseScheduleConfig } from './schedule.js';

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

import { ConfigError } from '@denoise/core';
import { acceptsCustomSigmas } from './capabilities.js';
import { DDIMScheduler } from './ddim.js';
import { DDIMInverseScheduler } from './ddim-inverse.js';
import { DDPMScheduler } from './ddpm.js';
import { DEISMultistepScheduler } from './deis-multistep.js';
import { DPMSolverMultistepScheduler } from './dpm-solver-multistep.js';
import { DPMSolverSDEScheduler } from './dpm-solver-sde.js';
import { DPMSolverSinglestepScheduler } from './dpm-solver-singlestep.js';
import { EDMDPMSolverMultistepScheduler } from './edm-dpm-solver-multistep.js';
import { EDMEulerScheduler } from './edm-euler.js';
import { EulerAncestralDiscreteScheduler } from './euler-ancestral-discrete.js';
import { EulerDiscreteScheduler } from './euler-discrete.js';
import { FlowMatchEulerDiscreteScheduler } from './flow-match-euler-discrete.js';
import { HeunDiscreteScheduler } from './heun-discrete.js';
import { IPNDMScheduler } from './ipndm.js';
import { KDPM2AncestralDiscreteScheduler } from './kdpm2-ancestral-discrete.js';
import { KDPM2DiscreteScheduler } from './kdpm2-discrete.js';
import { LCMScheduler } from './lcm.js';
import { LMSDiscreteScheduler } from './lms-discrete.js';
import { PNDMScheduler } from './pndm.js';
import type { Scheduler, SchedulerOptions } from './scheduler.js';
import { TCDScheduler } from './tcd.js';
import { UniPCMultistepScheduler } from './unipc-multistep.js';

/** A scheduler class as the registry sees it: constructible from a config, with its compatible class names. */
export interface SchedulerClass {
  /**
   * @param config - typed keys or a raw `scheduler_config.json`
   * @param options - warning handler
   */
  new (config?: Record<string, unknown>, options?: SchedulerOptions): Scheduler;
  /** The diffusers class names whose configs this class accepts. */
  readonly compatibles: readonly string[];
}

/** Every scheduler class denoise implements, by its diffusers class name (`_class_name`). */
export const SCHEDULER_CLASSES: Readonly<Record<string, SchedulerClass>> = Object.freeze({
  DDPMScheduler,
  DDIMScheduler,
  DDIMInverseScheduler,
  PNDMScheduler,
  EulerDiscreteScheduler,
  EulerAncestralDiscreteScheduler,
  HeunDiscreteScheduler,
  LMSDiscreteScheduler,
  LCMScheduler,
  DPMSolverMultistepScheduler,
  UniPCMultistepScheduler,
  // The DPM2 / DPM++ 2S / DPM++ SDE family (issue #15).
  KDPM2DiscreteScheduler,
  KDPM2AncestralDiscreteScheduler,
  DPMSolverSinglestepScheduler,
  DPMSolverSDEScheduler,
  // Issue #15 (zoo, part 2): flow matching, EDM, DEIS, TCD, iPNDM.
  FlowMatchEulerDiscreteScheduler,
  EDMEulerScheduler,
  DEISMultistepScheduler,
  TCDScheduler,
  IPNDMScheduler,
  EDMDPMSolverMultistepScheduler,
} as Record<string, SchedulerClass>);

function knownClassNames(): string {
  return Object.keys(SCHEDULER_CLASSES).join(', ');
}

/**
 * The scheduler class registered under a diffusers class name.
 *
 * @param className - e.g. `'EulerDiscreteScheduler'`
 * @throws ConfigError naming the known classes when there is none
 */
export function schedulerClass(className: string): SchedulerClass {
  const found = Object.hasOwn(SCHEDULER_CLASSES, className) ? SCHEDULER_CLASSES[className] : undefined;
  if (!found) {
    throw new ConfigError(`Unknown scheduler class "${className}". denoise implements: ${knownClassNames()}.`);
  }
  return found;
}

/**
 * Builds the scheduler a `scheduler_config.json` describes: the class comes from its `_class_name`, the rest
 * of the keys configure it (keys that class does not use are warned about once and ignored).
 *
 * @param json - a parsed `scheduler_config.json`
 * @param options - warning handler
 * @throws ConfigError when `_class_name` is missing or names a class denoise does not implement
 *
 * @example
 * ```ts
 * const scheduler = schedulerFromConfig(JSON.parse(await readFile('scheduler/scheduler_config.json', 'utf8')));
 * ```
 */
export function schedulerFromConfig(json: Record<string, unknown>, options?: SchedulerOptions): Scheduler {
  const className = json?._class_name;
  if (typeof className !== 'string') {
    throw new ConfigError(
      'The scheduler config has no "_class_name"; build the class directly with X.fromConfig(config) or use getScheduler(name, config).',
    );
  }
  const Class = schedulerClass(className);
  return new Class(json, options);
}

/**
 * The registered classes that can be built from a config of `className` (diffusers' `compatibles`), the class
 * itself included.
 *
 * @param className - a diffusers class name
 */
export function compatibleSchedulers(className: string): string[] {
  return Object.entries(SCHEDULER_CLASSES)
    .filter(([name, Class]) => name === className || Class.compatibles.includes(className))
    .map(([name]) => name);
}

/**
 * The registered classes whose `setTimesteps` takes custom sigmas ({@link acceptsCustomSigmas}), to name the
 * alternatives when a scheduler does not.
 */
export function customSigmasSchedulers(): string[] {
  return Object.entries(SCHEDULER_CLASSES)
    .filter(([, Class]) => acceptsCustomSigmas(new Class()))
    .map(([name]) => name);
}

/** A sampler name known from UIs (A1111, ComfyUI) and the diffusers class plus config overrides it means. */
export interface SchedulerAlias {
  /** The UI name, e.g. `'DPM++ 2M Karras'`. */
  readonly name: string;
  /** The diffusers class name. */
  readonly className: string;
  /** Config keys set on top of the base config. */
  readonly overrides: Readonly<Record<string, unknown>>;
}

/**
 * The UI sampler names and what they are in diffusers terms (diffusers' scheduler overview table). Overrides
 * reset the keys the name implies, so "Euler" from a Karras config is plain Euler again.
 */
export const SCHEDULER_ALIASES: readonly SchedulerAlias[] = Object.freeze(
  [
    {
      name: 'DPM++ 2M',
      className: 'DPMSolverMultistepScheduler',
      overrides: { algorithm_type: 'dpmsolver++', solver_order: 2, solver_type: 'midpoint', use_karras_sigmas: false },
    },
    {
      name: 'DPM++ 2M Karras',
      className: 'DPMSolverMultistepScheduler',
      overrides: { algorithm_type: 'dpmsolver++', solver_order: 2, solver_type: 'midpoint', use_karras_sigmas: true },
    },
    {
      name: 'DPM++ 2M SDE',
      className: 'DPMSolverMultistepScheduler',
      overrides: {
        algorithm_type: 'sde-dpmsolver++',
        solver_order: 2,
        solver_type: 'midpoint',
        use_karras_sigmas: false,
      },
    },
    {
      name: 'DPM++ 2M SDE Karras',
      className: 'DPMSolverMultistepScheduler',
      overrides: {
        algorithm_type: 'sde-dpmsolver++',
        solver_order: 2,
        solver_type: 'midpoint',
        use_karras_sigmas: true,
      },
    },
    // A1111's names for k-diffusion's dpmpp_2m_sde with solver_type 'heun' (the same update as diffusers').
    {
      name: 'DPM++ 2M SDE Heun',
      className: 'DPMSolverMultistepScheduler',
      overrides: { algorithm_type: 'sde-dpmsolver++', solver_order: 2, solver_type: 'heun', use_karras_sigmas: false },
    },
    {
      name: 'DPM++ 2M SDE Heun Karras',
      className: 'DPMSolverMultistepScheduler',
      overrides: { algorithm_type: 'sde-dpmsolver++', solver_order: 2, solver_type: 'heun', use_karras_sigmas: true },
    },
    { name: 'Euler', className: 'EulerDiscreteScheduler', overrides: { use_karras_sigmas: false } },
    { name: 'Euler a', className: 'EulerAncestralDiscreteScheduler', overrides: {} },
    { name: 'Heun', className: 'HeunDiscreteScheduler', overrides: { use_karras_sigmas: false } },
    { name: 'LMS', className: 'LMSDiscreteScheduler', overrides: { use_karras_sigmas: false } },
    { name: 'LMS Karras', className: 'LMSDiscreteScheduler', overrides: { use_karras_sigmas: true } },
    { name: 'DDIM', className: 'DDIMScheduler', overrides: {} },
    { name: 'DDPM', className: 'DDPMScheduler', overrides: {} },
    { name: 'PNDM', className: 'PNDMScheduler', overrides: {} },
    { name: 'UniPC', className: 'UniPCMultistepScheduler', overrides: {} },
    { name: 'LCM', className: 'LCMScheduler', overrides: {} },
    // The DPM2 / DPM++ 2S / DPM++ SDE family (issue #15).
    { name: 'DPM2', className: 'KDPM2DiscreteScheduler', overrides: { use_karras_sigmas: false } },
    { name: 'DPM2 Karras', className: 'KDPM2DiscreteScheduler', overrides: { use_karras_sigmas: true } },
    { name: 'DPM2 a', className: 'KDPM2AncestralDiscreteScheduler', overrides: { use_karras_sigmas: false } },
    { name: 'DPM2 a Karras', className: 'KDPM2AncestralDiscreteScheduler', overrides: { use_karras_sigmas: true } },
    {
      name: 'DPM++ 2S',
      className: 'DPMSolverSinglestepScheduler',
      overrides: { algorithm_type: 'dpmsolver++', solver_order: 2, use_karras_sigmas: false },
    },
    {
      name: 'DPM++ 2S Karras',
      className: 'DPMSolverSinglestepScheduler',
      overrides: { algorithm_type: 'dpmsolver++', solver_order: 2, use_karras_sigmas: true },
    },
    { name: 'DPM++ SDE', className: 'DPMSolverSDEScheduler', overrides: { use_karras_sigmas: false } },
    { name: 'DPM++ SDE Karras', className: 'DPMSolverSDEScheduler', overrides: { use_karras_sigmas: true } },
    // Issue #15 (zoo, part 2): flow matching, EDM, DEIS, TCD, iPNDM.
    { name: 'Flow Euler', className: 'FlowMatchEulerDiscreteScheduler', overrides: {} },
    { name: 'Euler (EDM)', className: 'EDMEulerScheduler', overrides: {} },
    { name: 'DEIS', className: 'DEISMultistepScheduler', overrides: {} },
    { name: 'TCD', className: 'TCDScheduler', overrides: {} },
    { name: 'IPNDM', className: 'IPNDMScheduler', overrides: {} },
  ].map((alias) => Object.freeze({ ...alias, overrides: Object.freeze(alias.overrides) })),
);

function normalise(name: string): string {
  return name.trim().replace(/\s+/g, ' ').toLowerCase();
}

/**
 * Every name {@link getScheduler} accepts, UI aliases first, then the class names; for CLIs and menus.
 */
export function listSchedulers(): { name: string; className: string; overrides: Readonly<Record<string, unknown>> }[] {
  return [
    ...SCHEDULER_ALIASES.map(({ name, className, overrides }) => ({ name, className, overrides })),
    ...Object.keys(SCHEDULER_CLASSES).map((className) => ({ name: className, className, overrides: {} })),
  ];
}

/**
 * A scheduler by UI name (`'DPM++ 2M Karras'`, `'Euler a'`, …, case-insensitive) or diffusers class name, built
 * from a model's scheduler config with the alias's overrides on top. Keys of `baseConfig` the target class does
 * not use (e.g. PNDM's `skip_prk_steps` for Euler) are warned about once and ignored.
 *
 * @param name - a UI alias or class name, see {@link listSchedulers}
 * @param baseConfig - the model's `scheduler_config.json` (its β schedule, prediction type, spacing, …)
 * @param options - warning handler
 * @throws ConfigError listing the known names when `name` is unknown
 *
 * @example
 * ```ts
 * const scheduler = getScheduler('DPM++ 2M Karras', modelSchedulerConfig);
 * scheduler.setTimesteps(25);
 * ```
 */
export function getScheduler(
  name: string,
  baseConfig: Record<string, unknown> = {},
  options?: SchedulerOptions,
): Scheduler {
  const wanted = normalise(name);
  const alias = SCHEDULER_ALIASES.find((a) => normalise(a.name) === wanted);
  const className = alias?.className ?? Object.keys(SCHEDULER_CLASSES).find((c) => normalise(c) === wanted);
  if (!className) {
    const names = listSchedulers().map((s) => `"${s.name}"`);
    throw new ConfigError(`Unknown scheduler "${name}". Known names: ${names.join(', ')}.`);
  }
  const Class = schedulerClass(className);
  return new Class({ ...baseConfig, ...alias?.overrides }, options);
}

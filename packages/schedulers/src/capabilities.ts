/**
 * What a scheduler can do beyond the {@link Scheduler} contract, declared as interfaces so that a denoising loop
 * asks the scheduler through one typed guard instead of probing its members. Every scheduler can start part-way
 * through its schedule ({@link Scheduler.setBeginIndex}), so that one needs no guard.
 */
import type { Scheduler } from './scheduler.js';

/**
 * A scheduler that steps through noise levels σ of the variance-exploding form x = x_0 + σ·ε (Karras et al. 2022):
 * `sigmas[i]` is the noise level of the model evaluation at `timesteps[i]`, followed by the final one.
 */
export interface SigmaSchedule {
  /** σ of each model evaluation of the current schedule, then the final σ. */
  readonly sigmas: ArrayLike<number>;
}

/**
 * A scheduler whose step is ancestral, x_{t'} = μ̃(x_t, x̂_0) + σ·z, with a posterior variance it can report: the
 * `'mean'` form of classifier guidance (`docs/math.md` §7) shifts μ̃ by s·Σ·g. Only DDPM's step has this form.
 */
export interface PosteriorVariance {
  /**
   * Σ = σ² of the step from `timestep` with the scheduler's fixed variance (`docs/math.md` §3).
   *
   * @param timestep - a timestep of the current schedule
   */
  posteriorVariance(timestep: number): number;
}

/**
 * A scheduler whose `setTimesteps` also takes an explicit noise schedule, `setTimesteps({ sigmas })`, in sampling
 * order (diffusers' `set_timesteps(sigmas=...)`). What the values are is the scheduler's own: σ values with the
 * final one for `EulerDiscreteScheduler`, σ in (0, 1] before the shift for
 * `FlowMatchEulerDiscreteScheduler`, ramp positions in [0, 1] for `EDMEulerScheduler`.
 */
export interface CustomSigmas {
  /** Declares the capability, so that a caller asks {@link acceptsCustomSigmas} instead of probing `setTimesteps`. */
  readonly acceptsCustomSigmas: true;
  /**
   * Sets the sampling schedule from a step count or from explicit sigmas.
   *
   * @param steps - the number of steps, or `{ sigmas }` (and the scheduler's other forms)
   */
  setTimesteps(steps: number | { sigmas?: readonly number[] }): void;
}

/**
 * Whether `scheduler` takes `setTimesteps({ sigmas })` ({@link CustomSigmas}).
 *
 * @param scheduler - any scheduler
 */
export function acceptsCustomSigmas(scheduler: Scheduler): scheduler is Scheduler & CustomSigmas {
  return (scheduler as Partial<CustomSigmas>).acceptsCustomSigmas === true;
}

/**
 * Whether `scheduler` steps through noise levels σ ({@link SigmaSchedule}).
 *
 * @param scheduler - any scheduler
 */
export function hasSigmaSchedule(scheduler: Scheduler): scheduler is Scheduler & SigmaSchedule {
  const { sigmas } = scheduler as Partial<SigmaSchedule>;
  return sigmas !== undefined && typeof sigmas.length === 'number';
}

/**
 * Whether `scheduler` takes mean-form guidance ({@link PosteriorVariance}).
 *
 * @param scheduler - any scheduler
 */
export function hasPosteriorVariance(scheduler: Scheduler): scheduler is Scheduler & PosteriorVariance {
  return typeof (scheduler as Partial<PosteriorVariance>).posteriorVariance === 'function';
}

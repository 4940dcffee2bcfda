/**
 * The contract between a denoising loop and the guidances it applies. A guidance reads the model's
 * predictions for one step and edits the running prediction (or the scheduler step's mean) in place;
 * a pipeline applies a list of them in order, so they compose (e.g. classifier-free guidance, then a
 * classifier gradient on the guided prediction).
 */
import { InvalidArgumentError, type TensorLike } from '@denoise/core';
import { hasPosteriorVariance, type PredictionType, type Scheduler } from '@denoise/schedulers';

export type { PredictionType } from '@denoise/schedulers';

/**
 * Where a guidance that adds a gradient must act for the current scheduler (`docs/math.md` §7):
 * `'mean'` for ancestral samplers (shift the step's mean by `s·Σ·g`), `'epsilon'` for DDIM-type and
 * sigma-based samplers (shift the noise estimate by $-\sqrt{1-\bar\alpha_t}\, s\, g$).
 */
export type ClassifierGuidanceForm = 'mean' | 'epsilon';

/**
 * The form gradient guidance takes under `scheduler`: `'mean'` when its step is ancestral with a posterior variance
 * (DDPM, see `PosteriorVariance` in `@denoise/schedulers`), else `'epsilon'`.
 *
 * @param scheduler - the scheduler of the run
 */
export function classifierGuidanceForm(scheduler: Scheduler): ClassifierGuidanceForm {
  return hasPosteriorVariance(scheduler) ? 'mean' : 'epsilon';
}

/**
 * A model pass of one step that a guidance can ask for: `'conditional'` (with the condition; every step runs it),
 * `'unconditional'` (without it, for classifier-free guidance), or a name of your own that a denoiser of your own
 * serves (e.g. a pass with perturbed self-attention).
 */
export type ModelBranch = 'conditional' | 'unconditional' | (string & Record<never, never>);

/** No branch beyond the conditional one: what a guidance that reads only the conditional prediction asks for. */
export const NO_EXTRA_BRANCHES: readonly ModelBranch[] = Object.freeze([]);

/** Where a step sits in the schedule, which is all a guidance needs to decide whether it is active. */
export interface GuidanceStepPosition {
  /** The 0-based index of the model evaluation in this generation. */
  readonly stepIndex: number;
  /** The number of model evaluations of this generation (`timesteps.length`). */
  readonly numInferenceSteps: number;
  /** The scheduler timestep of this evaluation (possibly fractional for sigma-based schedulers). */
  readonly timestep: number;
}

/** Everything a guidance sees and may edit at one denoising step. Batch size `B` throughout. */
export interface GuidanceStep extends GuidanceStepPosition {
  /** The scheduler's current sample `x_t`, `[B, C, H, W]`. Read only. */
  readonly sample: TensorLike;
  /**
   * The conditional model input (`scheduleModelInput(x_t)`), `[B, C, H, W]`: for every scheduler this is the
   * variance-preserving `x_t` on which a classifier gradient is evaluated. Read only.
   */
  readonly modelInput: TensorLike;
  /** $\bar\alpha_t$ of this step; for sigma-based schedulers $1/(1+\sigma^2)$ of the step's $\sigma$. */
  readonly alphaProd: number;
  /**
   * The per-element variance `Σ` of this step's ancestral update when the scheduler uses the `'mean'` form
   * (a scalar for fixed variances), else `undefined`.
   */
  readonly variance: number | TensorLike | undefined;
  /** The model's prediction with the condition, `[B, C, H, W]` (the prediction channels only). Read only. */
  readonly conditional: TensorLike;
  /** The model's prediction without the condition, present when some guidance asked for it this step. */
  readonly unconditional: TensorLike | undefined;
  /**
   * The prediction of every branch evaluated this step, `[B, C, H, W]` each, the conditional and unconditional ones
   * included: a guidance reads the branches it asked for from {@link Guidance.branches} here. Read only.
   */
  readonly predictions: ReadonlyMap<ModelBranch, TensorLike>;
  /**
   * The running guided prediction, `[B, C, H, W]`, starting as a copy of {@link conditional}. Guidances
   * update its `data` in place, in list order; the scheduler steps with the final value.
   */
  readonly prediction: TensorLike;
  /**
   * Added to the scheduler's `prevSample` after the step (`'mean'` form guidance), `[B, C, H, W]`, zero at the
   * start of each step. Guidances add into its `data`. Under a scheduler of the `'epsilon'` form reading it throws
   * an `InvalidArgumentError`, since the step could not take the shift.
   */
  readonly meanShift: TensorLike;
  /** What {@link prediction} means: ε, v or x₀. */
  readonly predictionType: PredictionType;
  /** The form the current scheduler needs for gradient guidance. */
  readonly classifierGuidanceForm: ClassifierGuidanceForm;
  /** The caller's signal, for guidances that run models of their own. */
  readonly signal: AbortSignal | undefined;
}

/**
 * A guidance: anything that edits the model's prediction at each step. Implement this interface to write
 * your own (see docs/guidance.md).
 *
 * @example
 * ```ts
 * // Push every prediction towards zero in the first half of the schedule.
 * const damp: Guidance = {
 *   branches: () => NO_EXTRA_BRANCHES,
 *   apply(step) {
 *     if (step.stepIndex >= step.numInferenceSteps / 2) return;
 *     for (let i = 0; i < step.prediction.data.length; i++) step.prediction.data[i] *= 0.9;
 *   },
 * };
 * ```
 */
export interface Guidance {
  /**
   * The branches this guidance needs at this step beyond the conditional one, which always runs: `['unconditional']`
   * for classifier-free guidance, none for a guidance that edits the conditional prediction. The loop evaluates the
   * union of every guidance's branches in one denoiser request (one batched model call for classifier-free
   * guidance), so a branch no guidance asks for costs nothing.
   */
  branches(position: GuidanceStepPosition): readonly ModelBranch[];
  /** Edits `step.prediction` and/or `step.meanShift` in place. */
  apply(step: GuidanceStep): void | Promise<void>;
}

/**
 * A part of the schedule, as fractions of the number of steps: a guidance is active at step `i` of `n` when
 * `start ≤ i/n < end`. `{ start: 0, end: 1 }` is the whole schedule.
 */
export interface GuidanceInterval {
  /** First fraction of the schedule where the guidance applies, in `[0, 1]`. */
  readonly start: number;
  /** Fraction of the schedule where the guidance stops applying, in `[start, 1]`. */
  readonly end: number;
}

/** The whole schedule. */
export const WHOLE_SCHEDULE: GuidanceInterval = Object.freeze({ start: 0, end: 1 });

/**
 * Checks an interval and returns it, throwing an {@link InvalidArgumentError} that names `owner` when the
 * fractions are out of order or outside `[0, 1]`.
 *
 * @param interval - the interval to check
 * @param owner - the option being checked, for the message
 */
export function checkInterval(interval: GuidanceInterval, owner: string): GuidanceInterval {
  const { start, end } = interval;
  if (!(start >= 0 && start <= end && end <= 1)) {
    throw new InvalidArgumentError(
      `${owner} must satisfy 0 <= start <= end <= 1, got { start: ${start}, end: ${end} }. ` +
        'Give the interval as fractions of the schedule, e.g. { start: 0, end: 0.5 } for the first half.',
    );
  }
  return interval;
}

/** Whether step `stepIndex` of `numInferenceSteps` lies in `interval` (`start ≤ i/n < end`). */
export function intervalContains(interval: GuidanceInterval, position: GuidanceStepPosition): boolean {
  const fraction = position.stepIndex / position.numInferenceSteps;
  return fraction >= interval.start && fraction < interval.end;
}

/**
 * Where a sampling run is in its schedule, for the schedulers that index their state (sigmas, multistep history) by
 * step rather than by timestep, as diffusers' `_step_index` / `_begin_index` / `index_for_timestep` do.
 */
import { InvalidArgumentError } from '@denoise/core';

/** What the cursor reads of its scheduler. */
export interface CursorSchedule {
  /** The scheduler's class name, for messages. */
  readonly className: string;
  /** The timesteps of the current schedule, in sampling order. */
  readonly timesteps: readonly number[];
  /** `undefined` until `setTimesteps` has run. */
  readonly numInferenceSteps: number | undefined;
}

/**
 * The step index of a run and its one rule for finding a timestep in the schedule:
 *
 * - a timestep's position ({@link ScheduleCursor.indexOf}) is its first occurrence in `timesteps`, or its second
 *   when it occurs twice (Heun and DPM2 repeat timesteps; rounding may repeat one), so an image-to-image run that
 *   enters mid-schedule does not skip a noise level; a timestep not in the schedule is an error;
 * - the first step of a run is at the begin index when a pipeline set one, at 0 when it is the first timestep
 *   (even when rounding repeated it: the second-occurrence rule would run past the end), else at the position;
 * - each step then advances by one; the timestep a later step is given is not looked up again (diffusers reads it
 *   only to locate the first step), so the state of a run follows its steps, not the timesteps passed.
 *
 * `setTimesteps` resets it; {@link ScheduleCursor.reset} forgets the begin index too.
 */
export class ScheduleCursor {
  private index: number | undefined = undefined;
  private begin: number | undefined = undefined;

  /** @param schedule - the scheduler whose timesteps the cursor walks */
  constructor(private readonly schedule: CursorSchedule) {}

  /** The index of the current step, `undefined` until the first step (or input scaling) of a run located it. */
  get stepIndex(): number | undefined {
    return this.index;
  }

  /** The index a pipeline fixed with {@link ScheduleCursor.setBeginIndex}, if any. */
  get beginIndex(): number | undefined {
    return this.begin;
  }

  /** Starts over for a new schedule: no step taken, no begin index. */
  reset(): void {
    this.index = undefined;
    this.begin = undefined;
  }

  /**
   * Makes the next run start at `beginIndex` without looking its timestep up (diffusers' `set_begin_index`).
   *
   * @param beginIndex - an index into the scheduler's `timesteps`
   */
  setBeginIndex(beginIndex: number): void {
    const { timesteps } = this.schedule;
    if (!Number.isInteger(beginIndex) || beginIndex < 0 || beginIndex >= timesteps.length) {
      throw new InvalidArgumentError(
        `beginIndex must be an integer in [0, ${timesteps.length}) (an index into scheduler.timesteps), got ${beginIndex}.`,
      );
    }
    this.begin = beginIndex;
  }

  /**
   * The position of `timestep` in the schedule: its first occurrence, or its second when it occurs twice.
   *
   * @param timestep - one of the scheduler's `timesteps`
   */
  indexOf(timestep: number): number {
    const { timesteps } = this.schedule;
    const first = timesteps.indexOf(timestep);
    if (first < 0) {
      throw new InvalidArgumentError(
        `Timestep ${timestep} is not in the current schedule of ${this.schedule.className}; pass one of scheduler.timesteps.`,
      );
    }
    const second = timesteps.indexOf(timestep, first + 1);
    return second < 0 ? first : second;
  }

  /**
   * The index of the model evaluation at `timestep`: located on the first call of a run (see the class comment),
   * then the one the last {@link ScheduleCursor.advance} moved to.
   *
   * @param timestep - the current timestep
   */
  current(timestep: number): number {
    this.index ??= this.begin ?? (timestep === this.schedule.timesteps[0] ? 0 : this.indexOf(timestep));
    return this.index;
  }

  /**
   * {@link ScheduleCursor.current} for a step: throws unless `setTimesteps` has run and a step is left.
   *
   * @param timestep - the timestep the step was given
   */
  stepIndexFor(timestep: number): number {
    const { className, timesteps, numInferenceSteps } = this.schedule;
    if (numInferenceSteps === undefined) {
      throw new InvalidArgumentError(`${className}.step needs a schedule: call setTimesteps(n) first.`);
    }
    const index = this.current(timestep);
    if (index >= timesteps.length) {
      throw new InvalidArgumentError(
        `${className} has already taken every step of its schedule; call setTimesteps(n) to start a new run.`,
      );
    }
    return index;
  }

  /** Moves to the next step, after a step has succeeded. */
  advance(): void {
    this.index = (this.index ?? 0) + 1;
  }

  /**
   * The schedule index `addNoise` uses for `timestep`: with a begin index (image-to-image), the current step or
   * the begin index, whatever the timestep, as diffusers does; else the timestep's position.
   *
   * @param timestep - a timestep of the schedule
   */
  noiseIndex(timestep: number): number {
    return this.begin === undefined ? this.indexOf(timestep) : (this.index ?? this.begin);
  }
}

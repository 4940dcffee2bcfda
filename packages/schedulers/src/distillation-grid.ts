/**
 * The timesteps of the consistency-distilled schedulers (LCM, TCD): a subset of the distillation grid
 * t_j = j·(T // original_steps) − 1 the model was distilled on, or explicit timesteps, with image-to-image
 * `strength` keeping only the noisiest share.
 */
import { InvalidArgumentError } from '@denoise/core';
import { type WarningHandler, warnOnce } from './config.js';
import type { ParsedSetTimesteps, SetTimestepsOptions } from './scheduler.js';

/** The `setTimesteps` options LCM and TCD add to the common ones. */
export interface DistillationSetTimestepsOptions extends SetTimestepsOptions {
  /** Overrides the config's `original_inference_steps` for this run. */
  originalInferenceSteps?: number;
  /** img2img strength in (0, 1]: only the noisiest `strength` share of the grid is used. */
  strength?: number;
}

/**
 * The checked `strength` and `original_inference_steps` of one `setTimesteps` call.
 *
 * @param options - the call's options
 * @param numTrainTimesteps - T
 * @param configuredSteps - the config's `original_inference_steps`
 */
export function distillationOptions(
  options: DistillationSetTimestepsOptions,
  numTrainTimesteps: number,
  configuredSteps: number,
): { strength: number; originalSteps: number } {
  const strength = options.strength ?? 1;
  if (!(strength > 0 && strength <= 1)) {
    throw new InvalidArgumentError(`strength must be in (0, 1], got ${strength}.`);
  }
  const originalSteps = options.originalInferenceSteps ?? configuredSteps;
  if (!Number.isInteger(originalSteps) || originalSteps < 1 || originalSteps > numTrainTimesteps) {
    throw new InvalidArgumentError(
      `original_inference_steps must be an integer from 1 to num_train_timesteps (${numTrainTimesteps}), got ${originalSteps}.`,
    );
  }
  return { strength, originalSteps };
}

/**
 * The schedule's timesteps from an ascending `grid`: n of them picked evenly by index from the noisiest, at indices
 * ⌊linspace(0, size, n, endpoint=False)⌋ as numpy computes them; or the caller's timesteps, of which `strength`
 * keeps the last share (as diffusers does), with a warning for any that is off the grid.
 *
 * @param className - for messages
 * @param grid - the grid, ascending
 * @param parsed - the checked step count or custom timesteps
 * @param strength - the img2img strength
 * @param originalSteps - `original_inference_steps` of this run
 * @param onWarning - where the off-grid warning goes
 */
export function distillationTimesteps(
  className: string,
  grid: readonly number[],
  parsed: ParsedSetTimesteps,
  strength: number,
  originalSteps: number,
  onWarning: WarningHandler | undefined,
): number[] {
  const { numInferenceSteps: n, timesteps: custom } = parsed;
  if (custom) {
    const onGrid = new Set(grid);
    const offGrid = custom.filter((t) => !onGrid.has(t));
    if (offGrid.length > 0) {
      warnOnce(
        `${className}: timesteps ${offGrid.join(', ')} are not on the distillation grid; results may suffer.`,
        onWarning,
      );
    }
    const keep = Math.min(Math.trunc(n * strength), n);
    return custom.slice(Math.max(n - keep, 0));
  }
  if (n > originalSteps) {
    throw new InvalidArgumentError(
      `numInferenceSteps (${n}) cannot exceed original_inference_steps (${originalSteps}): the schedule is a subset of that grid.`,
    );
  }
  if (Math.floor(grid.length / n) < 1) {
    throw new InvalidArgumentError(
      `original_inference_steps × strength (${originalSteps} × ${strength}) gives fewer grid points than numInferenceSteps (${n}); lower the steps or raise strength.`,
    );
  }
  const stride = grid.length / n;
  return Array.from({ length: n }, (_, i) => grid[grid.length - 1 - Math.floor(i * stride)]);
}

/**
 * Classifier-free guidance (Ho & Salimans 2022) with optional guidance rescale (Lin et al. 2023) and an
 * interval of the schedule where it applies.
 */
import { InvalidArgumentError } from '@denoise/core';
import {
  checkInterval,
  type Guidance,
  type GuidanceInterval,
  type GuidanceStep,
  type GuidanceStepPosition,
  intervalContains,
  WHOLE_SCHEDULE,
} from './guidance.js';

/** Options of {@link ClassifierFreeGuidance}. */
export interface ClassifierFreeGuidanceOptions {
  /** diffusers' `guidance_scale` `w`; `w ≤ 1` applies no guidance and skips the unconditional pass. */
  guidanceScale: number;
  /** diffusers' `guidance_rescale` `φ ∈ [0, 1]` (Lin et al. 2023, §3.4); 0 (the default) leaves CFG as is. */
  guidanceRescale?: number;
  /** The part of the schedule where guidance applies; the whole schedule by default. */
  interval?: GuidanceInterval;
}

/**
 * Classifier-free guidance: `ε̂ = ε̂_u + w·(ε̂_c − ε̂_u)` (Ho & Salimans 2022, Eq. 6 in diffusers' convention,
 * where `w = 1` is the conditional model), then optionally rescaled towards the conditional prediction's
 * standard deviation per sample: `ε̂ ← φ·ε̂·std(ε̂_c)/std(ε̂) + (1−φ)·ε̂` (Lin et al. 2023, Eq. 15–16).
 * It combines the running prediction with the unconditional one, so list it first when composing.
 */
export class ClassifierFreeGuidance implements Guidance {
  /** The guidance scale `w`. */
  readonly guidanceScale: number;
  /** The rescale factor `φ`. */
  readonly guidanceRescale: number;
  /** The part of the schedule where guidance applies. */
  readonly interval: GuidanceInterval;

  /** @param options - scale, rescale and interval; see {@link ClassifierFreeGuidanceOptions} */
  constructor(options: ClassifierFreeGuidanceOptions) {
    const { guidanceScale, guidanceRescale = 0 } = options;
    if (!Number.isFinite(guidanceScale)) {
      throw new InvalidArgumentError(`guidanceScale must be a finite number, got ${guidanceScale}.`);
    }
    if (!(guidanceRescale >= 0 && guidanceRescale <= 1)) {
      throw new InvalidArgumentError(`guidanceRescale must be in [0, 1], got ${guidanceRescale}.`);
    }
    this.guidanceScale = guidanceScale;
    this.guidanceRescale = guidanceRescale;
    this.interval = checkInterval(options.interval ?? WHOLE_SCHEDULE, 'The classifier-free guidance interval');
  }

  /** True inside the interval when `guidanceScale > 1`. */
  requiresUnconditional(position: GuidanceStepPosition): boolean {
    return this.guidanceScale > 1 && intervalContains(this.interval, position);
  }

  /** Replaces `step.prediction` by the guided (and rescaled) prediction. */
  apply(step: GuidanceStep): void {
    if (!this.requiresUnconditional(step)) return;
    const { unconditional, conditional } = step;
    if (unconditional === undefined) {
      throw new InvalidArgumentError('Classifier-free guidance needs the unconditional prediction at this step.');
    }
    const w = this.guidanceScale;
    const guided = step.prediction.data;
    const uncond = unconditional.data;
    for (let i = 0; i < guided.length; i++) guided[i] = uncond[i] + w * (guided[i] - uncond[i]);
    if (this.guidanceRescale > 0) rescaleToStd(guided, conditional.data, conditional.dims[0], this.guidanceRescale);
  }
}

/** Standard deviation of `values[from, to)` (the n−1 normaliser cancels in the ratio it is used for). */
function std(values: Float32Array, from: number, to: number): number {
  let mean = 0;
  for (let i = from; i < to; i++) mean += values[i];
  mean /= to - from;
  let squares = 0;
  for (let i = from; i < to; i++) squares += (values[i] - mean) ** 2;
  return Math.sqrt(squares / (to - from));
}

/** In place, per batch item: `guided ← φ·guided·std(reference)/std(guided) + (1−φ)·guided`. */
function rescaleToStd(guided: Float32Array, reference: Float32Array, batch: number, phi: number): void {
  const size = guided.length / batch;
  for (let b = 0; b < batch; b++) {
    const from = b * size;
    const to = from + size;
    const spread = std(guided, from, to);
    const factor = spread > 0 ? phi * (std(reference, from, to) / spread) + (1 - phi) : 1;
    for (let i = from; i < to; i++) guided[i] *= factor;
  }
}

/**
 * Classifier-free guidance (Ho & Salimans 2022) over an interval of the schedule, and guidance rescale
 * (Lin et al. 2023), which composes after it.
 */
import { InvalidArgumentError } from '@denoise/core';
import {
  checkInterval,
  type Guidance,
  type GuidanceInterval,
  type GuidanceStep,
  type GuidanceStepPosition,
  intervalContains,
  type ModelBranch,
  NO_EXTRA_BRANCHES,
  WHOLE_SCHEDULE,
} from './guidance.js';

const UNCONDITIONAL: readonly ModelBranch[] = Object.freeze(['unconditional']);

/** Options of {@link ClassifierFreeGuidance}. */
export interface ClassifierFreeGuidanceOptions {
  /** diffusers' `guidance_scale` `w`; `w ≤ 1` applies no guidance and skips the unconditional pass. */
  guidanceScale: number;
  /** The part of the schedule where guidance applies; the whole schedule by default. */
  interval?: GuidanceInterval;
}

/**
 * Classifier-free guidance: `ε̂ = ε̂_u + w·(ε̂_c − ε̂_u)` (Ho & Salimans 2022, Eq. 6 in diffusers' convention,
 * where `w = 1` is the conditional model; docs/math.md §7). It combines the running prediction with the
 * unconditional one, so list it first when composing.
 */
export class ClassifierFreeGuidance implements Guidance {
  /** The guidance scale `w`. */
  readonly guidanceScale: number;
  /** The part of the schedule where guidance applies. */
  readonly interval: GuidanceInterval;

  /** @param options - scale, rescale and interval; see {@link ClassifierFreeGuidanceOptions} */
  constructor(options: ClassifierFreeGuidanceOptions) {
    const { guidanceScale } = options;
    if (!Number.isFinite(guidanceScale)) {
      throw new InvalidArgumentError(`guidanceScale must be a finite number, got ${guidanceScale}.`);
    }
    this.guidanceScale = guidanceScale;
    this.interval = checkInterval(options.interval ?? WHOLE_SCHEDULE, 'The classifier-free guidance interval');
  }

  /** The unconditional branch inside the interval when `guidanceScale > 1`, else none. */
  branches(position: GuidanceStepPosition): readonly ModelBranch[] {
    return this.#active(position) ? UNCONDITIONAL : NO_EXTRA_BRANCHES;
  }

  /** Replaces `step.prediction` by the guided prediction. */
  apply(step: GuidanceStep): void {
    if (!this.#active(step)) return;
    const { unconditional } = step;
    if (unconditional === undefined) {
      throw new InvalidArgumentError('Classifier-free guidance needs the unconditional prediction at this step.');
    }
    const w = this.guidanceScale;
    const guided = step.prediction.data;
    const uncond = unconditional.data;
    for (let i = 0; i < guided.length; i++) guided[i] = uncond[i] + w * (guided[i] - uncond[i]);
  }

  #active(position: GuidanceStepPosition): boolean {
    return this.guidanceScale > 1 && intervalContains(this.interval, position);
  }
}

/**
 * Guidance rescale (Lin et al. 2023, §3.4; docs/math.md §7): per sample, the running prediction moves towards the
 * conditional prediction's standard deviation, `ε̂ ← φ·ε̂·std(ε̂_c)/std(ε̂) + (1−φ)·ε̂`, which undoes the
 * over-exposure strong classifier-free guidance causes with zero-terminal-SNR schedules. List it after
 * {@link ClassifierFreeGuidance}; like diffusers, it acts only at steps where the unconditional prediction was
 * made, i.e. where classifier-free guidance applied.
 */
export class GuidanceRescale implements Guidance {
  /** The rescale factor `φ`. */
  readonly guidanceRescale: number;

  /** @param guidanceRescale - diffusers' `guidance_rescale` `φ ∈ [0, 1]`; 0 changes nothing */
  constructor(guidanceRescale: number) {
    if (!(guidanceRescale >= 0 && guidanceRescale <= 1)) {
      throw new InvalidArgumentError(`guidanceRescale must be in [0, 1], got ${guidanceRescale}.`);
    }
    this.guidanceRescale = guidanceRescale;
  }

  /** None: it rescales what classifier-free guidance made, and asks for nothing itself. */
  branches(): readonly ModelBranch[] {
    return NO_EXTRA_BRANCHES;
  }

  /** Rescales `step.prediction` in place at the steps that had an unconditional prediction. */
  apply(step: GuidanceStep): void {
    if (step.unconditional === undefined || this.guidanceRescale === 0) return;
    const { conditional } = step;
    rescaleToStd(step.prediction.data, conditional.data, conditional.dims[0], this.guidanceRescale);
  }
}

/** What {@link classifierFreeGuidances} builds the default guidance list from: diffusers' call options. */
export interface DefaultGuidanceOptions {
  /** `w` of classifier-free guidance. */
  guidanceScale: number;
  /** `φ` of guidance rescale; 0 or absent adds none. */
  guidanceRescale?: number;
  /** Where classifier-free guidance applies. */
  guidanceInterval?: GuidanceInterval;
}

/**
 * The guidance list a pipeline uses when the call gives none: classifier-free guidance, then guidance rescale when
 * `guidanceRescale > 0`. Pass your own list as `guidances` to replace it, e.g.
 * `[...classifierFreeGuidances({ guidanceScale: 5 }), new ClassifierGuidance(...)]`.
 *
 * @param options - scale, rescale and interval
 */
export function classifierFreeGuidances(options: DefaultGuidanceOptions): Guidance[] {
  const guidances: Guidance[] = [
    new ClassifierFreeGuidance({ guidanceScale: options.guidanceScale, interval: options.guidanceInterval }),
  ];
  const rescale = options.guidanceRescale ?? 0;
  // Anything but 0 is checked, so NaN is refused rather than dropped.
  if (rescale !== 0) guidances.push(new GuidanceRescale(rescale));
  return guidances;
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

/**
 * Classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs", Algorithms 1 and 2): steer a
 * sampler with the gradient $g = \nabla_{x_t} \log p_\phi(y \mid x_t, t)$ of a noise-aware classifier.
 */
import { InvalidArgumentError, type TensorLike } from '@denoise/core';
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

/** What a classifier gradient is evaluated on. */
export interface ClassifierGradientInput {
  /** The variance-preserving `x_t`, `[B, C, H, W]`. */
  readonly sample: TensorLike;
  /** The scheduler timestep (fractional for sigma-based schedulers). */
  readonly timestep: number;
  /** $\bar\alpha_t$ of the step, for classifiers conditioned on the noise level rather than the timestep. */
  readonly alphaProd: number;
  /** The requested class of each batch item. */
  readonly classLabels: readonly number[];
  /** The caller's signal. */
  readonly signal: AbortSignal | undefined;
}

/**
 * Returns $\nabla_{x_t} \log p(y \mid x_t, t)$ with the shape of `input.sample`. ONNX Runtime has no autograd, so a
 * classifier is exported with its gradient (see docs/guidance.md) or written as a JS function.
 */
export type ClassifierGradient = (input: ClassifierGradientInput) => TensorLike | Promise<TensorLike>;

/** Options of {@link ClassifierGuidance}. */
export interface ClassifierGuidanceOptions {
  /** The gradient of the classifier's log-probability. */
  gradient: ClassifierGradient;
  /** The class to steer each batch item towards (one label is repeated over the batch). */
  classLabels: number | readonly number[];
  /** The scale `s` (Dhariwal & Nichol's "gradient scale"); 1 samples from `p(x | y)` for an exact classifier. */
  classifierScale: number;
  /** The part of the schedule where guidance applies; the whole schedule by default. */
  interval?: GuidanceInterval;
}

/**
 * Classifier guidance. For ancestral schedulers (`'mean'` form) it adds `s·Σ·g` to the step's mean
 * (Algorithm 1); for DDIM-type and sigma-based schedulers (`'epsilon'` form) it shifts the noise estimate,
 * $\hat\epsilon' = \hat\epsilon - \sqrt{1-\bar\alpha_t}\, s\, g$ (Algorithm 2), converted to the model's prediction type at fixed `x_t`:
 * $\Delta v = \Delta\epsilon / \sqrt{\bar\alpha_t}$ and $\Delta\hat x_0 = -\sqrt{1-\bar\alpha_t} / \sqrt{\bar\alpha_t} \cdot \Delta\epsilon$ (`docs/math.md` §2).
 */
export class ClassifierGuidance implements Guidance {
  /** The scale `s`. */
  readonly classifierScale: number;
  /** The part of the schedule where guidance applies. */
  readonly interval: GuidanceInterval;
  readonly #gradient: ClassifierGradient;
  readonly #classLabels: number | readonly number[];

  /** @param options - gradient, labels, scale and interval; see {@link ClassifierGuidanceOptions} */
  constructor(options: ClassifierGuidanceOptions) {
    if (typeof options.gradient !== 'function') {
      throw new InvalidArgumentError('ClassifierGuidance needs a gradient function, e.g. from onnxClassifierGradient.');
    }
    if (!Number.isFinite(options.classifierScale)) {
      throw new InvalidArgumentError(`classifierScale must be a finite number, got ${options.classifierScale}.`);
    }
    const labels = typeof options.classLabels === 'number' ? [options.classLabels] : options.classLabels;
    if (labels.length === 0 || !labels.every((y) => Number.isInteger(y) && y >= 0)) {
      throw new InvalidArgumentError(
        `classLabels must be non-negative integers, got [${labels.join(', ')}]. Give one label or one per image.`,
      );
    }
    this.#gradient = options.gradient;
    this.#classLabels = options.classLabels;
    this.classifierScale = options.classifierScale;
    this.interval = checkInterval(options.interval ?? WHOLE_SCHEDULE, 'The classifier guidance interval');
  }

  /** None: classifier guidance uses the conditional prediction only. */
  branches(_position: GuidanceStepPosition): readonly ModelBranch[] {
    return NO_EXTRA_BRANCHES;
  }

  /** Evaluates the gradient on `step.modelInput` and shifts the prediction or the mean. */
  async apply(step: GuidanceStep): Promise<void> {
    if (this.classifierScale === 0 || !intervalContains(this.interval, step)) return;
    const batch = step.modelInput.dims[0];
    const classLabels = this.#labelsFor(batch);
    const g = await this.#gradient({
      sample: step.modelInput,
      timestep: step.timestep,
      alphaProd: step.alphaProd,
      classLabels,
      signal: step.signal,
    });
    if (g.data.length !== step.modelInput.data.length) {
      throw new InvalidArgumentError(
        `The classifier gradient has ${g.data.length} values but x_t has ${step.modelInput.data.length} ` +
          `([${step.modelInput.dims.join(', ')}]); it must return one value per element of x_t.`,
      );
    }
    const s = this.classifierScale;
    if (step.classifierGuidanceForm === 'mean') {
      addMeanShift(step.meanShift.data, g.data, s, step.variance);
      return;
    }
    const a = step.alphaProd;
    // Δε = −√(1−ᾱ)·s·g, expressed in the unit of the prediction.
    const epsilonShift = -Math.sqrt(1 - a) * s;
    const perUnit =
      step.predictionType === 'epsilon'
        ? 1
        : step.predictionType === 'v_prediction'
          ? 1 / Math.sqrt(a)
          : -Math.sqrt(1 - a) / Math.sqrt(a);
    const factor = epsilonShift * perUnit;
    const prediction = step.prediction.data;
    for (let i = 0; i < prediction.length; i++) prediction[i] += factor * g.data[i];
  }

  #labelsFor(batch: number): readonly number[] {
    const labels = this.#classLabels;
    if (typeof labels === 'number') return new Array<number>(batch).fill(labels);
    if (labels.length === batch) return labels;
    if (labels.length === 1) return new Array<number>(batch).fill(labels[0]);
    throw new InvalidArgumentError(`Got ${labels.length} class labels for a batch of ${batch}; give 1 or ${batch}.`);
  }
}

/** `meanShift += s·Σ·g` with `Σ` a scalar or one variance per element. */
function addMeanShift(
  meanShift: Float32Array,
  g: Float32Array,
  s: number,
  variance: number | TensorLike | undefined,
): void {
  if (variance === undefined) {
    throw new InvalidArgumentError(
      "Classifier guidance in the 'mean' form needs the step's variance; this scheduler does not provide it.",
    );
  }
  if (typeof variance === 'number') {
    for (let i = 0; i < meanShift.length; i++) meanShift[i] += s * variance * g[i];
    return;
  }
  const v = variance.data;
  for (let i = 0; i < meanShift.length; i++) meanShift[i] += s * v[i] * g[i];
}

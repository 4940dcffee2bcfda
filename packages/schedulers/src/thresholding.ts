/**
 * Clamping x̂_0 in the DDPM family: `clip_sample` and Imagen's dynamic thresholding (an exact `torch.quantile` by
 * selection), fused with the step's update into as few passes as the config allows.
 */
import type { TensorLike } from '@denoise/core';
import { type ConfigSpec, configField } from './config.js';

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
 * Imagen's threshold s of one batch item of x̂_0 = a·x + b·m over [start, end), without writing |x̂_0| out:
 * - the quantile of a strided sample, four standard deviations of the sample quantile below the wanted rank, bounds
 *   the wanted quantile from below;
 * - one read pass collects the few values at or above that bound into `scratch` (a branch taken for a few percent of
 *   the values costs less than writing every one);
 * - s is `sample_max_value` as soon as n − ⌊rank⌋ values exceed it, since the order statistic at ⌊rank⌋, and so the
 *   interpolated quantile, then does too: the pass stops there, which is where the noisy early steps of a run are;
 * - otherwise the quantile is selected among the candidates (every smaller value ranks below all of them). A sample
 *   that did not bound it (fewer candidates than values from the wanted rank up) falls back to selecting among all
 *   values.
 */
function thresholdOfItem(
  x: Float32Array,
  m: Float32Array,
  a: number,
  b: number,
  start: number,
  end: number,
  ratio: number,
  maxValue: number,
  scratch: Float32Array,
): number {
  const n = end - start;
  const rank = ratio * (n - 1);
  const sampled = sampledLowerBound(x, m, a, b, start, n, rank, scratch);
  if (sampled !== undefined) {
    // A lower bound above sample_max_value is lowered to it: more values then count towards the early return.
    const lowerBound = Math.min(sampled, maxValue);
    const beyondMaxNeeded = n - Math.floor(rank);
    let candidates = 0;
    let beyondMax = 0;
    for (let i = start; i < end; i++) {
      const value = Math.abs(a * x[i] + b * m[i]);
      if (value >= lowerBound) {
        scratch[candidates++] = value;
        if (value > maxValue && ++beyondMax === beyondMaxNeeded) return maxValue;
      }
    }
    const smaller = n - candidates;
    if (rank >= smaller) return clampThreshold(valueAtRank(scratch.subarray(0, candidates), rank - smaller), maxValue);
  }
  for (let i = start; i < end; i++) scratch[i - start] = Math.abs(a * x[i] + b * m[i]);
  return clampThreshold(valueAtRank(scratch.subarray(0, n), rank), maxValue);
}

/**
 * A value of |x̂_0| that, with high probability, lies below its order statistic at `rank`: the order statistic of a
 * strided sample of {@link THRESHOLD_SAMPLE_SIZE} values four standard deviations (of a binomial count) below the
 * rank's place in the sample. `undefined` when the item is too short to sample or the rank too low to bound.
 */
function sampledLowerBound(
  x: Float32Array,
  m: Float32Array,
  a: number,
  b: number,
  start: number,
  n: number,
  rank: number,
  scratch: Float32Array,
): number | undefined {
  const stride = Math.floor(n / THRESHOLD_SAMPLE_SIZE);
  if (stride < 2) return undefined;
  const p = rank / (n - 1);
  const margin = 4 * Math.sqrt(THRESHOLD_SAMPLE_SIZE * p * (1 - p));
  const sampleRank = Math.floor(p * (THRESHOLD_SAMPLE_SIZE - 1) - margin) - 1;
  if (sampleRank < 0) return undefined;
  for (let j = 0; j < THRESHOLD_SAMPLE_SIZE; j++) {
    const i = start + j * stride;
    scratch[j] = Math.abs(a * x[i] + b * m[i]);
  }
  const sample = scratch.subarray(0, THRESHOLD_SAMPLE_SIZE);
  selectInPlace(sample, sampleRank);
  return sample[sampleRank];
}

/** s = clamp(q, 1, `maxValue`), as `torch.clamp` computes it (a `maxValue` below 1 gives `maxValue`). */
function clampThreshold(quantile: number, maxValue: number): number {
  return Math.min(Math.max(quantile, 1), maxValue);
}

/**
 * The threshold when it does not depend on the values: s = clamp(q, 1, `sample_max_value`) is `sample_max_value`
 * whatever the quantile q when `sample_max_value` ≤ 1 (`torch.clamp` with min > max gives max), as with diffusers'
 * default of 1. Thresholding is then a clip to ±s and a division by s, one pass like `clip_sample`.
 *
 * @param maxValue - diffusers' `sample_max_value`
 */
function fixedThreshold(maxValue: number): number | undefined {
  return maxValue <= 1 ? maxValue : undefined;
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
  const fixed = fixedThreshold(maxValue);
  for (let b = 0; b < batchSize; b++) {
    const start = b * itemSize;
    // x̂_0 = 1·values + 0·values: the threshold of the step functions' a·x + b·m form.
    const s = fixed ?? thresholdOfItem(values, values, 1, 0, start, start + itemSize, ratio, maxValue, scratch);
    const item = values.subarray(start, start + itemSize);
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
 * costs a few arithmetic operations per element; thresholding costs the same when `sample_max_value` ≤ 1 fixes s
 * (see `fixedThreshold`), else one read pass per batch item that finds s (see `thresholdOfItem`), recomputing x̂_0
 * in the update pass instead of reading it back. Returns Σ 0·x̂_0 before clamping (0 unless an input is NaN or ±Infinity, which clamping could hide) for
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
  const fixed = fixedThreshold(clamp.sample_max_value);
  if (fixed !== undefined) return clampedUpdate(buffers, a, b, fixed, 1 / fixed, weights, 0, x.length);
  const batch = buffers.sample.dims[0];
  const itemSize = x.length / batch;
  let nonFinite = 0;
  for (let item = 0; item < batch; item++) {
    const start = item * itemSize;
    const { dynamic_thresholding_ratio: ratio, sample_max_value: maxValue } = clamp;
    const s = thresholdOfItem(x, m, a, b, start, start + itemSize, ratio, maxValue, buffers.scratch);
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

import { NumericError, RandomGenerator, Tensor } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import {
  applyDynamicThresholding,
  DDIMScheduler,
  DDPMScheduler,
  type OriginalSampleClampConfig,
  quantileInPlace,
  selectInPlace,
  stepFromOriginalSample,
  type UpdateWeights,
} from '../src/index.js';

/** `torch.quantile(values, ratio)`: sort, then interpolate linearly between the two neighbouring ranks. */
function sortedQuantile(values: ArrayLike<number>, ratio: number): number {
  const sorted = Float32Array.from(values).sort();
  const rank = ratio * (sorted.length - 1);
  const below = Math.floor(rank);
  const above = Math.ceil(rank);
  return sorted[below] + (rank - below) * (sorted[above] - sorted[below]);
}

/** Test arrays: Gaussian, heavy ties, sorted, reversed, constant, and an image-like gradient with a few outliers. */
function arrays(length: number): Float32Array[] {
  const gaussian = new RandomGenerator(length).randn([length]).data;
  const ties = gaussian.map((v) => Math.round(v * 2) + 0); // + 0: no −0, which sorts apart from 0
  const sorted = Float32Array.from(gaussian).sort();
  const reversed = Float32Array.from(sorted).reverse();
  const constant = new Float32Array(length).fill(0.25);
  const gradient = Float32Array.from({ length }, (_, i) => i / length + (i % 997 === 0 ? 50 : 0));
  return [gaussian, ties, sorted, reversed, constant, gradient];
}

describe('selection (Floyd & Rivest) and the quantile of dynamic thresholding', () => {
  it('selectInPlace puts the k-th smallest at k, nothing larger before it, nothing smaller after it', () => {
    for (const length of [1, 2, 7, 601, 602, 5000]) {
      for (const values of arrays(length)) {
        for (const k of [0, Math.floor(length / 2), Math.floor(0.995 * (length - 1)), length - 1]) {
          const copy = Float32Array.from(values);
          selectInPlace(copy, k);
          expect(copy[k]).toBe(Float32Array.from(values).sort()[k]);
          for (let i = 0; i < k; i++) expect(copy[i]).toBeLessThanOrEqual(copy[k]);
          for (let i = k + 1; i < length; i++) expect(copy[i]).toBeGreaterThanOrEqual(copy[k]);
        }
      }
    }
  });

  it('quantileInPlace equals the sorted quantile for every ratio', () => {
    for (const length of [1, 3, 4096, 16384]) {
      for (const values of arrays(length)) {
        for (const ratio of [0, 0.25, 0.5, 0.9, 0.995, 1]) {
          expect(quantileInPlace(Float32Array.from(values), ratio)).toBe(sortedQuantile(values, ratio));
        }
      }
    }
  });
});

describe("applyDynamicThresholding: the multistep solvers' thresholding of a materialised x̂_0", () => {
  it('clamps each item to ±s and divides by s, with s the clamped torch.quantile of |x̂_0|', () => {
    for (const [ratio, maxValue] of [
      [0.995, 1.5],
      [0.995, 100],
      [0.9, 3],
      [0.995, 0.5],
    ]) {
      for (const values of arrays(5000)) {
        const batch = [values.map((v) => 3 * v), values.map((v) => 0.2 * v)];
        const x0 = new Float32Array(10000);
        x0.set(batch[0], 0);
        x0.set(batch[1], 5000);
        applyDynamicThresholding(x0, 2, ratio, maxValue, new Float32Array(5000));
        batch.forEach((item, b) => {
          const s = Math.min(Math.max(sortedQuantile(item.map(Math.abs), ratio), 1), maxValue);
          for (let i = 0; i < 5000; i++) {
            expect(x0[b * 5000 + i]).toBe(Math.fround(Math.min(Math.max(item[i], -s), s) / s));
          }
        });
      }
    }
  });
});

describe('stepFromOriginalSample: clipping and thresholding fused into the step pass', () => {
  const weights: UpdateWeights = { original: 0.7, sample: 0.2, output: -0.1, noise: 0.05 };
  const clampConfig = (overrides: Partial<OriginalSampleClampConfig>): OriginalSampleClampConfig => ({
    thresholding: false,
    dynamic_thresholding_ratio: 0.995,
    sample_max_value: 1,
    clip_sample: false,
    clip_sample_range: 1,
    ...overrides,
  });

  /** The unfused reference: x̂_0 = a·x + b·m, clamped as diffusers does (torch.quantile on |x̂_0| per item), then the update. */
  function reference(
    x: Float32Array,
    m: Float32Array,
    z: Float32Array,
    batch: number,
    [a, b]: [number, number],
    clamp: OriginalSampleClampConfig,
  ): { x0: Float32Array; prev: Float32Array } {
    const x0 = x.map((v, i) => a * v + b * m[i]);
    const itemSize = x.length / batch;
    for (let item = 0; item < batch; item++) {
      const values = x0.subarray(item * itemSize, (item + 1) * itemSize);
      if (clamp.thresholding) {
        const quantile = sortedQuantile(
          values.map((v) => Math.abs(v)),
          clamp.dynamic_thresholding_ratio,
        );
        const s = Math.min(Math.max(quantile, 1), clamp.sample_max_value);
        for (let i = 0; i < itemSize; i++) values[i] = Math.min(Math.max(values[i], -s), s) / s;
      } else if (clamp.clip_sample) {
        const r = clamp.clip_sample_range;
        for (let i = 0; i < itemSize; i++) values[i] = Math.min(Math.max(values[i], -r), r);
      }
    }
    const prev = x0.map(
      (v, i) => weights.original * v + weights.sample * x[i] + weights.output * m[i] + weights.noise * z[i],
    );
    return { x0, prev };
  }

  it.each([
    ['no clamp', {}],
    ['clip_sample', { clip_sample: true }],
    ['clip_sample, range 0.3', { clip_sample: true, clip_sample_range: 0.3 }],
    ['thresholding 0.995, the quantile (about 12) below the max', { thresholding: true, sample_max_value: 100 }],
    ['thresholding 0.995, the quantile above max 4 (s = 4)', { thresholding: true, sample_max_value: 4 }],
    ['thresholding 0.995, the quantile below 1 (s = 1)', { thresholding: true, sample_max_value: 4 }, false, 0.05],
    ['thresholding 0.5', { thresholding: true, dynamic_thresholding_ratio: 0.5, sample_max_value: 4 }],
    ['thresholding, max 0.5 (s = 0.5)', { thresholding: true, sample_max_value: 0.5 }],
    ['thresholding, outliers on the sampling stride', { thresholding: true, sample_max_value: 100 }, true],
  ])('%s: the reference computation to float32 precision', (_name, overrides, outliersOnStride = false, scale = 3) => {
    const clamp = clampConfig(overrides);
    const dims = [2, 4, 32, 32];
    const generator = new RandomGenerator(7);
    const sample = generator.randn(dims);
    const modelOutput = generator.randn(dims);
    const noise = generator.randn(dims).data;
    // Spatial structure and scale so that x̂_0 crosses the bounds: a ramp across each item, times `scale`.
    for (let i = 0; i < sample.data.length; i++) sample.data[i] = scale * (sample.data[i] + ((i % 4096) / 4096 - 0.5));
    // Every 4th value of an item large: the threshold's sample of 256 of 4,096 values takes every 16th, so it sees
    // only large ones, its bound lies above the wanted quantile, and the threshold must come from all values.
    if (outliersOnStride) for (let i = 0; i < sample.data.length; i += 4) sample.data[i] += 40;
    const n = sample.data.length;
    const x0 = new Float32Array(n);
    const prev = new Float32Array(n);
    const scratch = new Float32Array(n / 2);
    const ab: [number, number] = [1.3, -0.4 * Math.min(1, scale)];
    const nonFinite = stepFromOriginalSample({ sample, modelOutput, noise, x0, prev, scratch }, ab, clamp, weights);
    expect(nonFinite).toBe(0);
    const expected = reference(sample.data, modelOutput.data, noise, 2, ab, clamp);
    for (let i = 0; i < n; i++) {
      expect(Math.abs(x0[i] - expected.x0[i])).toBeLessThanOrEqual(2e-7 * Math.max(1, Math.abs(expected.x0[i])));
      expect(Math.abs(prev[i] - expected.prev[i])).toBeLessThanOrEqual(2e-7 * Math.max(1, Math.abs(expected.prev[i])));
    }
  });

  it('s is sample_max_value exactly when the values beyond it reach the order statistic below the wanted rank', () => {
    // 4,096 values of 0.5, of which `beyond` are 2.01 (off the sampling stride, so the sample sees only 0.5s and
    // every value is a candidate). Rank 0.995 · 4095 = 4074.525: with 22 = 4096 − 4074 values beyond max 2, the
    // order statistic at 4074 is 2.01 and s = 2; with 21 it is 0.5, and s = 0.5 + 0.525 · (2.01 − 0.5).
    for (const [beyond, s] of [
      [22, 2],
      [21, Math.fround(0.5) + 0.525 * (Math.fround(2.01) - Math.fround(0.5))],
    ]) {
      const dims = [1, 1, 64, 64];
      const sample = new Tensor(new Float32Array(4096).fill(0.5), dims);
      for (let k = 0; k < beyond; k++) sample.data[16 * k + 5] = 2.01;
      const modelOutput = new Tensor(new Float32Array(4096), dims);
      const x0 = new Float32Array(4096);
      const prev = new Float32Array(4096);
      const clamp = clampConfig({ thresholding: true, sample_max_value: 2 });
      const buffers = { sample, modelOutput, noise: null, x0, prev, scratch: new Float32Array(4096) };
      stepFromOriginalSample(buffers, [1, 0], clamp, weights);
      expect(x0[0]).toBeCloseTo(0.5 / s, 6);
      expect(x0[5]).toBe(Math.fround(Math.min(Math.fround(2.01), s) / s));
    }
  });

  it('a NaN or an Infinity that clipping would hide is still reported, naming the input', () => {
    for (const Class of [DDPMScheduler, DDIMScheduler]) {
      for (const bad of [Number.POSITIVE_INFINITY, Number.NaN]) {
        for (const clamp of [{ clip_sample: true }, { thresholding: true }]) {
          const s = new Class(clamp);
          s.setTimesteps(10);
          const dims = [1, 4, 8, 8];
          const sample = new RandomGenerator(1).randn(dims);
          const modelOutput = new Tensor(new Float32Array(256), dims);
          sample.data[17] = bad;
          const noise = new Tensor(new Float32Array(256), dims);
          expect(() => s.step(modelOutput, s.timesteps[0], sample, { noise })).toThrow(NumericError);
          expect(() => s.step(modelOutput, s.timesteps[0], sample, { noise })).toThrow(/sample holds .* at index 17/);
        }
      }
    }
  });
});

import { Tensor, type TensorLike } from '@denoise/core';
import type { NoiseGenerator, PredictionType } from '../../src/index.js';

/**
 * The exact denoiser of a Gaussian mixture (`docs/math.md` §9), for property tests of samplers: driven by it, a correct
 * sampler returns samples distributed like the mixture. Data items are vectors of `dimension` values; a batch is a
 * tensor `[N, dimension]` (batch axis first, the dimension as the channel axis).
 *
 * For p(x_0) = Σ_k π_k N(m_k, s_k² I) and x_t = √ᾱ x_0 + √(1−ᾱ) ε, each component gives
 * x_t | k ~ N(√ᾱ m_k, (ᾱ s_k² + 1 − ᾱ) I), so the posterior over components is a softmax and
 * E[x_0 | x_t, k] = m_k + √ᾱ s_k² / (ᾱ s_k² + 1 − ᾱ) · (x_t − √ᾱ m_k). With s_k = 0 this is the data-set
 * denoiser of `docs/math.md` §9.
 */
export interface GaussianMixture {
  /** Component probabilities π_k (summing to 1). */
  readonly weights: readonly number[];
  /** Component means m_k, each of length `dimension`. */
  readonly means: readonly (readonly number[])[];
  /** Isotropic component standard deviations s_k (0 for a point mass). */
  readonly stds: readonly number[];
}

/** A 1-D mixture of three well-separated narrow components inside [−1, 1] (so clip_sample is harmless). */
export const TEST_MIXTURE: GaussianMixture = {
  weights: [0.5, 0.2, 0.3],
  means: [[-0.6], [0.1], [0.7]],
  stds: [0.05, 0.05, 0.05],
};

/** The posterior over components and x_0 at one noise level, for a whole batch. */
export interface Posterior {
  /** E[x_0 | x_t], `[N, dimension]` flattened. */
  readonly mean: Float64Array;
  /** Var[x_0 | x_t] per element (the diagonal of the posterior covariance). */
  readonly variance: Float64Array;
}

/** The exact posterior of x_0 given x_t = √ᾱ x_0 + √(1−ᾱ) ε under `mixture`. */
export function posterior(mixture: GaussianMixture, xt: Float32Array, alphaBar: number): Posterior {
  const K = mixture.weights.length;
  const D = mixture.means[0].length;
  const N = xt.length / D;
  const sqrtA = Math.sqrt(alphaBar);
  const mean = new Float64Array(N * D);
  const variance = new Float64Array(N * D);
  const logW = new Float64Array(K);
  const marginalVar = mixture.stds.map((s) => alphaBar * s * s + 1 - alphaBar);
  for (let n = 0; n < N; n++) {
    let maxLog = -Infinity;
    for (let k = 0; k < K; k++) {
      let sq = 0;
      for (let d = 0; d < D; d++) sq += (xt[n * D + d] - sqrtA * mixture.means[k][d]) ** 2;
      logW[k] = Math.log(mixture.weights[k]) - 0.5 * D * Math.log(marginalVar[k]) - sq / (2 * marginalVar[k]);
      maxLog = Math.max(maxLog, logW[k]);
    }
    let total = 0;
    for (let k = 0; k < K; k++) {
      logW[k] = Math.exp(logW[k] - maxLog);
      total += logW[k];
    }
    for (let d = 0; d < D; d++) {
      let m1 = 0;
      let m2 = 0;
      for (let k = 0; k < K; k++) {
        const w = logW[k] / total;
        const s2 = mixture.stds[k] ** 2;
        const gain = (sqrtA * s2) / marginalVar[k];
        const ek = mixture.means[k][d] + gain * (xt[n * D + d] - sqrtA * mixture.means[k][d]);
        const vk = (s2 * (1 - alphaBar)) / marginalVar[k];
        m1 += w * ek;
        m2 += w * (vk + ek * ek);
      }
      mean[n * D + d] = m1;
      variance[n * D + d] = Math.max(m2 - m1 * m1, 0);
    }
  }
  return { mean, variance };
}

/**
 * The exact network output at x_t for a prediction type (`docs/math.md` §2, §9): x̂_0 = E[x_0 | x_t],
 * ε̂ = (x_t − √ᾱ x̂_0)/√(1−ᾱ), v̂ = √ᾱ ε̂ − √(1−ᾱ) x̂_0.
 */
export function exactPrediction(
  mixture: GaussianMixture,
  xt: TensorLike,
  alphaBar: number,
  predictionType: PredictionType = 'epsilon',
): Tensor {
  const { mean } = posterior(mixture, xt.data, alphaBar);
  const sqrtA = Math.sqrt(alphaBar);
  const sqrtB = Math.sqrt(1 - alphaBar);
  const out = new Float32Array(xt.data.length);
  for (let i = 0; i < out.length; i++) {
    const eps = (xt.data[i] - sqrtA * mean[i]) / sqrtB;
    out[i] = predictionType === 'sample' ? mean[i] : predictionType === 'epsilon' ? eps : sqrtA * eps - sqrtB * mean[i];
  }
  return new Tensor(out, xt.dims);
}

/**
 * ᾱ at a possibly fractional timestep, interpolating log σ (σ² = (1−ᾱ)/ᾱ) linearly between integer timesteps —
 * the inverse of the σ → t interpolation sigma-based schedulers use, so the exact model is consistent with them.
 */
export function alphaBarAtTimestep(alphasCumprod: ArrayLike<number>, t: number): number {
  const logSigma = (i: number) => 0.5 * Math.log((1 - alphasCumprod[i]) / alphasCumprod[i]);
  const low = Math.max(0, Math.min(alphasCumprod.length - 1, Math.floor(t)));
  const high = Math.min(alphasCumprod.length - 1, low + 1);
  const w = t - low;
  const sigma = Math.exp((1 - w) * logSigma(low) + w * logSigma(high));
  return 1 / (1 + sigma * sigma);
}

/**
 * The exact model as a function of (model input, timestep), like a UNet: the input is the VP-scaled x_t (what
 * `scaleModelInput` returns) and ᾱ comes from `alphasCumprod` at the timestep.
 */
export function exactModel(
  mixture: GaussianMixture,
  alphasCumprod: ArrayLike<number>,
  predictionType: PredictionType = 'epsilon',
): (modelInput: TensorLike, timestep: number) => Tensor {
  return (modelInput, timestep) =>
    exactPrediction(mixture, modelInput, alphaBarAtTimestep(alphasCumprod, timestep), predictionType);
}

/**
 * A small seeded N(0, 1) source (mulberry32 + Box–Muller) for property tests that need many independent draws
 * but no torch parity.
 */
export function seededNormal(seed: number): NoiseGenerator & { randn(dims: readonly number[]): Tensor } {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return (((z ^ (z >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  const randnInto = (out: Float32Array) => {
    for (let i = 0; i < out.length; i += 2) {
      const r = Math.sqrt(-2 * Math.log(uniform()));
      const theta = 2 * Math.PI * uniform();
      out[i] = r * Math.cos(theta);
      if (i + 1 < out.length) out[i + 1] = r * Math.sin(theta);
    }
    return out;
  };
  return {
    randnInto,
    randn: (dims) => new Tensor(randnInto(new Float32Array(dims.reduce((a, b) => a * b, 1))), dims),
  };
}

/** The fraction of samples nearest to each component mean. */
export function componentFractions(mixture: GaussianMixture, samples: TensorLike): number[] {
  const D = mixture.means[0].length;
  const N = samples.data.length / D;
  const counts = mixture.weights.map(() => 0);
  for (let n = 0; n < N; n++) {
    let best = 0;
    let bestDistance = Infinity;
    mixture.means.forEach((m, k) => {
      let sq = 0;
      for (let d = 0; d < D; d++) sq += (samples.data[n * D + d] - m[d]) ** 2;
      if (sq < bestDistance) {
        bestDistance = sq;
        best = k;
      }
    });
    counts[best]++;
  }
  return counts.map((c) => c / N);
}

/** The standard deviation of coordinate `d` of the samples nearest to each component mean (`NaN` if none). */
export function componentStds(mixture: GaussianMixture, samples: TensorLike, d = 0): number[] {
  const D = mixture.means[0].length;
  const N = samples.data.length / D;
  const sums = mixture.weights.map(() => [0, 0, 0]);
  for (let n = 0; n < N; n++) {
    let best = 0;
    let bestDistance = Infinity;
    mixture.means.forEach((m, k) => {
      let sq = 0;
      for (let j = 0; j < D; j++) sq += (samples.data[n * D + j] - m[j]) ** 2;
      if (sq < bestDistance) {
        bestDistance = sq;
        best = k;
      }
    });
    const v = samples.data[n * D + d];
    sums[best][0]++;
    sums[best][1] += v;
    sums[best][2] += v * v;
  }
  return sums.map(([count, s1, s2]) => Math.sqrt(s2 / count - (s1 / count) ** 2));
}

/** Mean and variance of coordinate `d` over the batch. */
export function sampleMoments(samples: TensorLike, dimension: number, d = 0): { mean: number; variance: number } {
  const N = samples.data.length / dimension;
  let s1 = 0;
  let s2 = 0;
  for (let n = 0; n < N; n++) {
    const v = samples.data[n * dimension + d];
    s1 += v;
    s2 += v * v;
  }
  const mean = s1 / N;
  return { mean, variance: s2 / N - mean * mean };
}

/** Mean and variance of coordinate `d` under the mixture itself. */
export function mixtureMoments(mixture: GaussianMixture, d = 0): { mean: number; variance: number } {
  let m1 = 0;
  let m2 = 0;
  mixture.weights.forEach((w, k) => {
    const m = mixture.means[k][d];
    m1 += w * m;
    m2 += w * (mixture.stds[k] ** 2 + m * m);
  });
  return { mean: m1, variance: m2 - m1 * m1 };
}

/** The complementary error function (Numerical Recipes' Chebyshev fit, relative error < 1.2e−7). */
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const poly =
    -z * z -
    1.26551223 +
    t *
      (1.00002368 +
        t *
          (0.37409196 +
            t *
              (0.09678418 +
                t *
                  (-0.18628806 +
                    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  const r = t * Math.exp(poly);
  return x >= 0 ? r : 2 - r;
}

/** The CDF of coordinate `d` of the mixture. */
function mixtureCdf(mixture: GaussianMixture, x: number, d: number): number {
  let cdf = 0;
  mixture.weights.forEach((w, k) => {
    const m = mixture.means[k][d];
    const s = mixture.stds[k];
    cdf += w * (s === 0 ? (x >= m ? 1 : 0) : 0.5 * erfc(-(x - m) / (s * Math.SQRT2)));
  });
  return cdf;
}

/**
 * The 1-Wasserstein distance ∫ |F_N(x) − F(x)| dx between the empirical distribution of coordinate `d` of the
 * samples and the mixture's marginal, integrated on a fine grid. It includes the Monte Carlo error of N samples
 * (about 0.8·σ/√N for a smooth distribution), so compare it between samplers run on the same noise.
 */
export function wasserstein1(mixture: GaussianMixture, samples: TensorLike, d = 0): number {
  const D = mixture.means[0].length;
  const N = samples.data.length / D;
  const values = new Float64Array(N);
  for (let n = 0; n < N; n++) values[n] = samples.data[n * D + d];
  values.sort();
  let lo = values[0];
  let hi = values[N - 1];
  mixture.means.forEach((m, k) => {
    lo = Math.min(lo, m[d] - 6 * mixture.stds[k]);
    hi = Math.max(hi, m[d] + 6 * mixture.stds[k]);
  });
  const cells = 20000;
  const dx = (hi - lo) / cells;
  let distance = 0;
  let below = 0;
  for (let i = 0; i < cells; i++) {
    const x = lo + (i + 0.5) * dx;
    while (below < N && values[below] <= x) below++;
    distance += Math.abs(below / N - mixtureCdf(mixture, x, d)) * dx;
  }
  return distance;
}

/**
 * The exact rectified-flow velocity of the mixture (Liu et al. 2022): for x_σ = (1 − σ)·x_0 + σ·ε the network's
 * target is E[ε − x_0 | x_σ]. Substituting ε = (x_σ − (1 − σ)·x_0)/σ gives E[v | x_σ] = (x_σ − E[x_0 | x_σ])/σ, and
 * for each component x_σ | k ~ N((1 − σ)·m_k, ((1 − σ)²·s_k² + σ²) I), so
 * E[x_0 | x_σ, k] = m_k + (1 − σ)·s_k² / ((1 − σ)²·s_k² + σ²) · (x_σ − (1 − σ)·m_k), weighted by the posterior
 * over components (a softmax of the component log-densities).
 */
export function exactFlowVelocity(mixture: GaussianMixture, x: TensorLike, sigma: number): Tensor {
  const K = mixture.weights.length;
  const D = mixture.means[0].length;
  const N = x.data.length / D;
  const a = 1 - sigma;
  const marginalVar = mixture.stds.map((s) => a * a * s * s + sigma * sigma);
  const logW = new Float64Array(K);
  const out = new Float32Array(x.data.length);
  for (let n = 0; n < N; n++) {
    let maxLog = -Infinity;
    for (let k = 0; k < K; k++) {
      let sq = 0;
      for (let d = 0; d < D; d++) sq += (x.data[n * D + d] - a * mixture.means[k][d]) ** 2;
      logW[k] = Math.log(mixture.weights[k]) - 0.5 * D * Math.log(marginalVar[k]) - sq / (2 * marginalVar[k]);
      maxLog = Math.max(maxLog, logW[k]);
    }
    let total = 0;
    for (let k = 0; k < K; k++) {
      logW[k] = Math.exp(logW[k] - maxLog);
      total += logW[k];
    }
    for (let d = 0; d < D; d++) {
      const xi = x.data[n * D + d];
      let x0 = 0;
      for (let k = 0; k < K; k++) {
        const m = mixture.means[k][d];
        const gain = (a * mixture.stds[k] ** 2) / marginalVar[k];
        x0 += (logW[k] / total) * (m + gain * (xi - a * m));
      }
      out[n * D + d] = (xi - x0) / sigma;
    }
  }
  return new Tensor(out, x.dims);
}

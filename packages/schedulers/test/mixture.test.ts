import { Tensor, type TensorLike } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import { DDIMScheduler, DDPMScheduler, type Scheduler } from '../src/index.js';
import {
  componentFractions,
  componentStds,
  exactPrediction,
  type GaussianMixture,
  mixtureMoments,
  posterior,
  sampleMoments,
  seededNormal,
  TEST_MIXTURE,
  wasserstein1,
} from './helpers/mixture.js';

// Property tests from closed forms (`docs/math.md` §9): driven by the exact denoiser of a Gaussian mixture, a correct
// sampler returns samples distributed like the mixture.
const N = 2000;

/** Binomial standard error of a fraction estimated from N samples, times 4. */
const fractionTolerance = (p: number) => 4 * Math.sqrt((p * (1 - p)) / N);

/**
 * Checks component fractions, global moments and the 1-Wasserstein distance; with `componentStdTolerance`, also
 * the spread within each component (relative), which separates correct from too small or too large step variances.
 */
function expectMixtureSamples(samples: TensorLike, componentStdTolerance?: number): void {
  const mixture = TEST_MIXTURE;
  const fractions = componentFractions(mixture, samples);
  mixture.weights.forEach((w, k) => {
    expect(Math.abs(fractions[k] - w)).toBeLessThan(fractionTolerance(w));
  });
  const truth = mixtureMoments(mixture);
  const got = sampleMoments(samples, 1);
  expect(Math.abs(got.mean - truth.mean)).toBeLessThan(4 * Math.sqrt(truth.variance / N));
  expect(Math.abs(got.variance / truth.variance - 1)).toBeLessThan(0.1);
  // Monte Carlo alone gives about 0.8·σ/√N ≈ 0.01 here.
  expect(wasserstein1(mixture, samples)).toBeLessThan(0.03);
  if (componentStdTolerance !== undefined) {
    componentStds(mixture, samples).forEach((std, k) => {
      expect(Math.abs(std / mixture.stds[k] - 1)).toBeLessThan(componentStdTolerance);
    });
  }
}

function sample(scheduler: Scheduler, seed: number, options: { eta?: number } = {}): TensorLike {
  const generator = seededNormal(seed);
  let x: TensorLike = generator.randn([N, 1]);
  for (const t of scheduler.timesteps) {
    const eps = exactPrediction(TEST_MIXTURE, x, scheduler.alphasCumprod[t]);
    x = scheduler.step(eps, t, x, { generator, ...options }).prevSample;
  }
  return x;
}

describe('samplers driven by the exact denoiser reproduce the mixture', () => {
  it('DDPM, 1000 steps', () => {
    // The last steps shrink each component a little (E[x_0 | x_1] is a shrunk estimate), hence 15 %.
    expectMixtureSamples(sample(new DDPMScheduler(), 1), 0.15);
  });

  it('DDPM respaced to 100 steps', () => {
    const s = new DDPMScheduler();
    s.setTimesteps(100);
    expectMixtureSamples(sample(s, 2));
  });

  it('DDIM, 50 steps (eta = 0)', () => {
    const s = new DDIMScheduler();
    s.setTimesteps(50);
    expectMixtureSamples(sample(s, 3));
  });

  it('IDDPM: cosine schedule, learned_range with the exact variance fraction, 50 steps', () => {
    const s = new DDPMScheduler({ beta_schedule: 'squaredcos_cap_v2', variance_type: 'learned_range' });
    s.setTimesteps(50);
    const generator = seededNormal(4);
    let x: TensorLike = generator.randn([N, 1]);
    for (const t of s.timesteps) {
      const prev = s.previousTimestep(t);
      const alphaBar = s.alphasCumprod[t];
      const alphaBarPrev = prev >= 0 ? s.alphasCumprod[prev] : 1;
      const beta = 1 - alphaBar / alphaBarPrev;
      const posteriorVariance = Math.max(((1 - alphaBarPrev) / (1 - alphaBar)) * beta, 1e-20);
      const x0Weight = (Math.sqrt(alphaBarPrev) * beta) / (1 - alphaBar);
      // The covariance of x_{t'} given x_t is β̃ + (x0Weight)²·Var[x_0 | x_t]; v places its log in [log β̃, log β].
      const { variance } = posterior(TEST_MIXTURE, x.data, alphaBar);
      const eps = exactPrediction(TEST_MIXTURE, x, alphaBar);
      const output = new Float32Array(2 * N);
      for (let n = 0; n < N; n++) {
        const target = posteriorVariance + x0Weight ** 2 * variance[n];
        const frac = (Math.log(target) - Math.log(posteriorVariance)) / (Math.log(beta) - Math.log(posteriorVariance));
        output[2 * n] = eps.data[n];
        output[2 * n + 1] = 2 * Math.min(Math.max(frac, 0), 1) - 1;
      }
      x = s.step(new Tensor(output, [N, 2]), t, x, { generator }).prevSample;
    }
    // With v = −1 (fixed_small) the components come out about 25 % too narrow, with v = +1 (fixed_large) about
    // 33 % too wide; the exact fraction lands within 20 %.
    expectMixtureSamples(x, 0.2);
  });

  it('DDIM at 10 steps is further from the mixture than at 50 steps', () => {
    const distance = (steps: number) => {
      const s = new DDIMScheduler();
      s.setTimesteps(steps);
      return wasserstein1(TEST_MIXTURE, sample(s, 5));
    };
    expect(distance(10)).toBeGreaterThan(distance(50));
  });
});

describe('addNoise and the exact x̂_0 prediction', () => {
  it('recover the data point of a point-mass mixture through the scheduler step', () => {
    const points: GaussianMixture = { weights: [0.25, 0.25, 0.5], means: [[-0.8], [0], [0.6]], stds: [0, 0, 0] };
    const x0 = new Tensor(
      Float32Array.from({ length: 300 }, (_, i) => points.means[i % 3][0]),
      [300, 1],
    );
    const noise = seededNormal(6).randn([300, 1]);
    const s = new DDPMScheduler({ clip_sample: false });
    for (const t of [0, 5, 20]) {
      const xt = s.addNoise(x0, noise, t);
      const eps = exactPrediction(points, xt, s.alphasCumprod[t]);
      const { predOriginalSample } = s.step(eps, t, xt, { noise });
      for (let i = 0; i < 300; i++) expect(predOriginalSample!.data[i]).toBeCloseTo(x0.data[i], 4);
    }
  });

  it('getVelocity is consistent with addNoise: x̂_0 = √ᾱ x_t − √(1−ᾱ) v', () => {
    const s = new DDIMScheduler();
    const x0 = seededNormal(7).randn([4, 2, 3]);
    const noise = seededNormal(8).randn([4, 2, 3]);
    const timesteps = [10, 300, 700, 999];
    const xt = s.addNoise(x0, noise, timesteps);
    const v = s.getVelocity(x0, noise, timesteps);
    for (let i = 0; i < x0.data.length; i++) {
      const a = s.alphasCumprod[timesteps[Math.floor(i / 6)]];
      expect(Math.sqrt(a) * xt.data[i] - Math.sqrt(1 - a) * v.data[i]).toBeCloseTo(x0.data[i], 5);
      expect(Math.sqrt(1 - a) * xt.data[i] + Math.sqrt(a) * v.data[i]).toBeCloseTo(noise.data[i], 5);
    }
    expect(() => s.addNoise(x0, noise, [1, 2])).toThrow(/one per batch item/);
    expect(() => s.addNoise(x0, noise, 1000)).toThrow(/not a training timestep/);
  });
});

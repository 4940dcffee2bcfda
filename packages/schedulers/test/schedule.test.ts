import { ConfigError } from '@denoise/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  alphasCumprodFromBetas,
  betasFromConfig,
  cosineBetas,
  type NoiseScheduleConfig,
  rescaleZeroTerminalSnr,
  roundHalfEven,
  spacedTimesteps,
} from '../src/index.js';

const base: NoiseScheduleConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  rescale_betas_zero_snr: false,
};

/** Relative float32 precision. */
const F32 = 2 ** -23;

describe('beta schedules (docs/math.md §4)', () => {
  it('linear: evenly spaced from beta_start to beta_end, float32', () => {
    const betas = betasFromConfig(base);
    for (let i = 0; i < 1000; i++) {
      const exact = 0.0001 + (i * (0.02 - 0.0001)) / 999;
      expect(Math.abs(betas[i] - exact)).toBeLessThanOrEqual(2 * F32 * exact);
      expect(Math.fround(betas[i])).toBe(betas[i]);
    }
  });

  it('scaled_linear: √β evenly spaced', () => {
    const betas = betasFromConfig({ ...base, beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012 });
    const a = Math.sqrt(0.00085);
    const b = Math.sqrt(0.012);
    for (const i of [0, 1, 500, 998, 999]) {
      const exact = (a + ((b - a) * i) / 999) ** 2;
      expect(Math.abs(betas[i] - exact)).toBeLessThanOrEqual(4 * F32 * exact);
    }
  });

  it('sigmoid: beta_start + (beta_end − beta_start)·sigmoid(linspace(−6, 6))', () => {
    const betas = betasFromConfig({ ...base, beta_schedule: 'sigmoid', num_train_timesteps: 101 });
    expect(betas[50]).toBeCloseTo((0.0001 + 0.02) / 2, 7);
    expect(betas[0]).toBeCloseTo(0.0001 + 0.0199 / (1 + Math.exp(6)), 7);
    expect(betas[100]).toBeCloseTo(0.0001 + 0.0199 / (1 + Math.exp(-6)), 7);
  });

  it('squaredcos_cap_v2: ᾱ_t telescopes to ᾱ((t+1)/T)/ᾱ(0), and the last β is capped at 0.999', () => {
    const T = 1000;
    const f = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    const alphasCumprod = alphasCumprodFromBetas(cosineBetas(T));
    for (const t of [0, 10, 250, 500, 900, 990]) {
      const exact = f((t + 1) / T) / f(0);
      expect(Math.abs(alphasCumprod[t] - exact)).toBeLessThan(1e-5 * Math.max(exact, 1e-2));
    }
    expect(cosineBetas(T)[T - 1]).toBe(Math.fround(0.999));
  });

  it("laplace (DDPM): diffusers' ᾱ(t) = √(SNR/(1 + SNR)), λ = −½·sign(½ − t)·log(1 − 2|½ − t| + 1e−6), telescoping", () => {
    // ᾱ(0) = √(1000/1001) (SNR = 1e−6^(−½) = 1000), ᾱ(½) = √(SNR/(1 + SNR)) with SNR = (1 + 1e−6)^(−½) ≈ 1,
    // ᾱ(1) = √(0.001/1.001); ᾱ_t = ᾱ((t+1)/T)/ᾱ(0): ᾱ_499 = 0.7074603, ᾱ_999 = √0.001 = 0.0316228.
    const alphaBar = (t: number) => {
      const snr = Math.exp(-0.5 * (0.5 - t >= 0 ? 1 : -1) * Math.log(1 - 2 * Math.abs(0.5 - t) + 1e-6));
      return Math.sqrt(snr / (1 + snr));
    };
    const betas = betasFromConfig({ ...base, beta_schedule: 'laplace' });
    expect(betas[0]).toBeCloseTo(1 - alphaBar(0.001) / alphaBar(0), 7);
    const alphasCumprod = alphasCumprodFromBetas(betas);
    expect(alphasCumprod[499]).toBeCloseTo(0.7074603, 6);
    expect(alphasCumprod[999]).toBeCloseTo(Math.sqrt(0.001), 6);
    expect(alphasCumprod[999] / (alphaBar(1) / alphaBar(0)) - 1).toBeLessThan(1e-5);
  });

  it('exp (Heun): ᾱ(t) = e^(−12t), so every β is 1 − e^(−12/T) = 0.011928287 and ᾱ_999 = e^(−12) = 6.1442e−6', () => {
    const betas = betasFromConfig({ ...base, beta_schedule: 'exp' });
    for (const i of [0, 500, 999]) expect(betas[i]).toBe(Math.fround(1 - Math.exp(-12 / 1000)));
    const alphasCumprod = alphasCumprodFromBetas(betas);
    expect(Math.abs(alphasCumprod[999] / Math.exp(-12) - 1)).toBeLessThan(1e-4);
  });

  it('trained_betas override the schedule and must have one value per timestep', () => {
    const trained = Array.from({ length: 10 }, (_, i) => 0.01 * (i + 1));
    const betas = betasFromConfig({ ...base, num_train_timesteps: 10, trained_betas: trained });
    expect(Array.from(betas)).toEqual(trained.map(Math.fround));
    expect(() => betasFromConfig({ ...base, trained_betas: trained })).toThrow(ConfigError);
  });

  it('rescale_betas_zero_snr: ᾱ_{T−1} = 0, ᾱ_0 kept, √ᾱ an affine map of the original', () => {
    const original = alphasCumprodFromBetas(betasFromConfig({ ...base, beta_schedule: 'scaled_linear' }));
    const rescaled = alphasCumprodFromBetas(
      betasFromConfig({ ...base, beta_schedule: 'scaled_linear', rescale_betas_zero_snr: true }),
    );
    expect(rescaled[999]).toBe(0);
    expect(rescaled[0]).toBeCloseTo(original[0], 6);
    const a0 = Math.sqrt(original[0]);
    const aT = Math.sqrt(original[999]);
    for (const t of [1, 100, 500, 900, 998]) {
      const expected = ((Math.sqrt(original[t]) - aT) * a0) / (a0 - aT);
      expect(Math.sqrt(rescaled[t])).toBeCloseTo(expected, 5);
    }
    expect(Array.from(rescaleZeroTerminalSnr([0.1, 0.2, 0.3])).at(-1)).toBe(1);
  });

  it('rejects schedules whose β leave [0, 1]', () => {
    expect(() => betasFromConfig({ ...base, beta_end: 1.5 })).toThrow(/outside \[0, 1\]/);
  });
});

describe('timestep spacing (docs/math.md §6)', () => {
  it('matches numpy for leading, linspace and trailing', () => {
    // numpy: (arange(n) * (T // n)).round()[::-1] + offset; round(linspace(0, T-1, n))[::-1];
    // round(arange(T, 0, -T/n)) - 1.
    expect(spacedTimesteps('leading', 5, 1000, 1)).toEqual([801, 601, 401, 201, 1]);
    expect(spacedTimesteps('linspace', 7, 1000)).toEqual([999, 832, 666, 500, 333, 166, 0]);
    expect(spacedTimesteps('trailing', 7, 1000)).toEqual([999, 856, 713, 570, 428, 285, 142]);
    expect(spacedTimesteps('trailing', 3, 1000)).toEqual([999, 666, 332]);
    expect(spacedTimesteps('linspace', 1, 1000)).toEqual([0]);
    expect(spacedTimesteps('trailing', 1, 1000)).toEqual([999]);
  });

  it('always yields n strictly descending training timesteps (diffusers yields n + 1 for trailing n = 61)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1000 }),
        fc.integer({ min: 1, max: 1000 }),
        fc.constantFrom('leading' as const, 'linspace' as const, 'trailing' as const),
        (T, k, spacing) => {
          const n = Math.min(k, T);
          const timesteps = spacedTimesteps(spacing, n, T);
          expect(timesteps).toHaveLength(n);
          timesteps.forEach((t, i) => {
            expect(Number.isInteger(t) && t >= 0 && t < T).toBe(true);
            if (i > 0) expect(t).toBeLessThan(timesteps[i - 1]);
          });
        },
      ),
    );
  });

  it('rounds half to even like numpy', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999].map(roundHalfEven)).toEqual([0, 2, 2, 0, -2, 2]);
  });
});

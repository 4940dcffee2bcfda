import { InvalidArgumentError } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import {
  betaQuantile,
  betaSigmas,
  exponentialSigmas,
  interpolateAt,
  karrasSigmas,
  logSigmas,
  sigmasFromAlphasCumprod,
  sigmasToTimesteps,
  sigmaToAlphaSigma,
  sigmaToTimestep,
} from '../src/sigmas.js';

/** Stable Diffusion's scaled_linear schedule, in float64. */
function sdAlphasCumprod(): Float64Array {
  const n = 1000;
  const a = new Float64Array(n);
  let prod = 1;
  for (let i = 0; i < n; i++) {
    const sqrtBeta = Math.sqrt(0.00085) + ((Math.sqrt(0.012) - Math.sqrt(0.00085)) * i) / (n - 1);
    prod *= 1 - sqrtBeta * sqrtBeta;
    a[i] = prod;
  }
  return a;
}

describe('sigmas', () => {
  it('maps alphas_cumprod to sigma = sqrt((1 - a) / a) and back through sigmaToAlphaSigma', () => {
    const ac = sdAlphasCumprod();
    const sigmas = sigmasFromAlphasCumprod(ac);
    // Stable Diffusion's well-known range: sigma_min ≈ 0.0292, sigma_max ≈ 14.6146.
    expect(sigmas[0]).toBeCloseTo(0.029168, 5);
    expect(sigmas[999]).toBeCloseTo(14.614642, 4);
    for (const t of [0, 17, 500, 999]) {
      const { alphaT, sigmaT } = sigmaToAlphaSigma(sigmas[t]);
      expect(alphaT * alphaT).toBeCloseTo(ac[t], 12);
      expect(sigmaT * sigmaT).toBeCloseTo(1 - ac[t], 12);
    }
  });

  it('interpolates a table linearly and clamps outside it', () => {
    expect([...interpolateAt([-1, 0, 0.25, 1.5, 2, 9], [10, 20, 40])]).toEqual([10, 10, 12.5, 30, 40, 40]);
  });

  it('places training sigmas at their own timestep and log-midpoints halfway between', () => {
    const table = logSigmas(sigmasFromAlphasCumprod(sdAlphasCumprod()));
    for (const t of [0, 1, 250, 998, 999]) expect(sigmaToTimestep(Math.exp(table[t]), table)).toBeCloseTo(t, 9);
    const mid = Math.exp(0.5 * (table[300] + table[301]));
    expect(sigmaToTimestep(mid, table)).toBeCloseTo(300.5, 9);
    // Beyond the table: clamp to its ends; sigma 0 is timestep 0.
    expect(sigmaToTimestep(1e6, table)).toBe(999);
    expect(sigmaToTimestep(0, table)).toBe(0);
    // The smallest table: two entries, log σ = 0 and 1.
    expect(sigmaToTimestep(Math.exp(0.25), [0, 1])).toBeCloseTo(0.25, 12);
    expect([...sigmasToTimesteps([Math.exp(table[7]), Math.exp(table[9])], table)].map(Math.round)).toEqual([7, 9]);
  });

  it('builds Karras sigmas from sigma_max to sigma_min (rho = 1 is a straight line)', () => {
    const k = karrasSigmas(0.1, 10, 5);
    expect(k[0]).toBeCloseTo(10, 12);
    expect(k[4]).toBeCloseTo(0.1, 12);
    // Middle point of EDM eq. 5 with rho = 7.
    expect(k[2]).toBeCloseTo(((10 ** (1 / 7) + 0.1 ** (1 / 7)) / 2) ** 7, 12);
    expect([...karrasSigmas(1, 5, 5, 1)].map((s) => +s.toFixed(12))).toEqual([5, 4, 3, 2, 1]);
    expect(karrasSigmas(1, 5, 1)).toHaveLength(1);
    expect(karrasSigmas(1, 5, 1)[0]).toBeCloseTo(5, 12);
  });

  it('builds exponential sigmas evenly spaced in log sigma', () => {
    expect([...exponentialSigmas(0.01, 100, 5)].map((s) => +s.toPrecision(12))).toEqual([100, 10, 1, 0.1, 0.01]);
  });

  it('inverts Beta CDFs with closed forms', () => {
    for (const p of [0.01, 0.2, 0.5, 0.77, 0.999]) {
      expect(betaQuantile(p, 1, 1)).toBeCloseTo(p, 12); // uniform
      expect(betaQuantile(p, 2, 1)).toBeCloseTo(Math.sqrt(p), 12); // CDF x²
      expect(betaQuantile(p, 1, 3)).toBeCloseTo(1 - (1 - p) ** (1 / 3), 12); // CDF 1 − (1−x)³
      expect(betaQuantile(p, 0.5, 0.5)).toBeCloseTo(Math.sin((Math.PI * p) / 2) ** 2, 12); // arcsine law
    }
    expect(betaQuantile(0.5, 0.6, 0.6)).toBeCloseTo(0.5, 12);
    // scipy.stats.beta.ppf reference values.
    expect(betaQuantile(0.1, 0.6, 0.6)).toBeCloseTo(0.03958440558878085, 13);
    expect(betaQuantile(0.75, 0.6, 0.6)).toBeCloseTo(0.824319621347305, 13);
    expect(betaQuantile(0.2, 2.5, 0.7)).toBeCloseTo(0.6147277357589892, 13);
    expect(betaQuantile(0.3, 0.6, 0.6) + betaQuantile(0.7, 0.6, 0.6)).toBeCloseTo(1, 12);
    // Shape parameters below ½ (log Γ by its reflection formula): CDF x^¼ and 1 − (1 − x)^¼.
    for (const p of [0.05, 0.5, 0.9]) {
      expect(betaQuantile(p, 0.25, 1)).toBeCloseTo(p ** 4, 12);
      expect(betaQuantile(p, 1, 0.25)).toBeCloseTo(1 - (1 - p) ** 4, 12);
    }
    // The ends are exact, not the last bisection midpoint.
    expect([betaQuantile(0, 0.6, 0.6), betaQuantile(1, 0.6, 0.6)]).toEqual([0, 1]);
  });

  it('places beta sigmas at Beta(0.6, 0.6) quantiles between sigma_max and sigma_min', () => {
    const s = betaSigmas(0.5, 10.5, 5);
    expect(s[0]).toBeCloseTo(10.5, 12);
    expect(s[2]).toBeCloseTo(5.5, 12);
    expect(s[4]).toBeCloseTo(0.5, 12);
    expect([s[0], s[4]]).toEqual([10.5, 0.5]);
    expect(s[1] - 5.5).toBeCloseTo(5.5 - s[3], 12);
  });

  it('rejects impossible ranges with a clear error', () => {
    expect(() => karrasSigmas(0, 1, 5)).toThrow(InvalidArgumentError);
    expect(() => exponentialSigmas(2, 1, 5)).toThrow(/sigmaMin ≤ sigmaMax/);
    expect(() => betaSigmas(0.1, 1, 0)).toThrow(/positive integer number of steps/);
    expect(() => betaQuantile(1.5, 1, 1)).toThrow(InvalidArgumentError);
    expect(() => betaQuantile(0.5, 0, 1)).toThrow(InvalidArgumentError);
    expect(() => betaQuantile(0.5, 1, 0)).toThrow(InvalidArgumentError);
    expect(() => sigmaToTimestep(1, [0])).toThrow(/at least 2 log-sigmas/);
    // An empty range is a constant schedule, not an error.
    expect([...karrasSigmas(2, 2, 3)].map((v) => +v.toFixed(12))).toEqual([2, 2, 2]);
  });
});

import { describe, expect, it } from 'vitest';
import {
  denoisedFromModelOutput,
  denoisedWeights,
  noisePredictionWeights,
  originalSampleWeights,
  type PredictionType,
} from '../src/prediction.js';

/**
 * One noisy sample of a known x_0 and ε, and the three exact network outputs for it (`docs/math.md` §2): every
 * prediction type's weights must give back x_0 (and ε) exactly.
 */
const X0 = 0.7;
const EPS = -1.3;
const TYPES: readonly PredictionType[] = ['epsilon', 'sample', 'v_prediction'];

describe('prediction weights recover x_0 and ε from each exact output', () => {
  it.each([0.05, 0.5, 0.96])('variance-preserving x_t = α·x_0 + σ·ε with α = %f, σ = √(1 − α²)', (alpha) => {
    const sigma = Math.sqrt(1 - alpha * alpha);
    const sample = alpha * X0 + sigma * EPS;
    const outputs: Record<PredictionType, number> = {
      epsilon: EPS,
      sample: X0,
      v_prediction: alpha * EPS - sigma * X0,
    };
    for (const type of TYPES) {
      const [a, b] = originalSampleWeights(type, alpha, sigma);
      expect(a * sample + b * outputs[type]).toBeCloseTo(X0, 12);
      const [c, d] = noisePredictionWeights(type, alpha, sigma);
      expect(c * sample + d * outputs[type]).toBeCloseTo(EPS, 12);
    }
  });

  it.each([0.03, 1, 14.6])('variance-exploding x = x_0 + σ·ε with σ = %f (Karras et al. 2022, Table 1)', (sigma) => {
    const sample = X0 + sigma * EPS;
    // v of the variance-preserving sample x/√(σ² + 1): α·ε − σ_vp·x_0 with α = 1/√(σ² + 1), σ_vp = σ·α.
    const alpha = 1 / Math.sqrt(sigma * sigma + 1);
    const outputs: Record<PredictionType, number> = {
      epsilon: EPS,
      sample: X0,
      v_prediction: alpha * EPS - sigma * alpha * X0,
    };
    for (const type of TYPES) {
      const [a, b] = denoisedWeights(type, sigma);
      expect(a * sample + b * outputs[type]).toBeCloseTo(X0, 12);
      expect(denoisedFromModelOutput(type, outputs[type], sample, sigma)).toBeCloseTo(X0, 12);
    }
  });
});

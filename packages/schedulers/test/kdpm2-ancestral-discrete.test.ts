import { RandomGenerator, Tensor, type TensorLike } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import { KDPM2AncestralDiscreteScheduler } from '../src/kdpm2-ancestral-discrete.js';
import type { PredictionType } from '../src/prediction.js';
import { mixtureDistance, TABLE_STEPS } from './accuracy-table.js';
import { absSumMean, dummyModel, dummyNoiseDeter, dummySampleDeter } from './helpers/diffusers-fixtures.js';
import { expectPublished } from './helpers/published.js';

/** diffusers' `KDPM2AncestralDiscreteSchedulerTest.get_scheduler_config`. */
const BASE = { num_train_timesteps: 1100, beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear' } as const;

function scaled(x: TensorLike, factor: number): Tensor {
  return new Tensor(
    x.data.map((v) => Math.fround(v * factor)),
    x.dims,
  );
}

/** diffusers' loop: torch.manual_seed(0), 10 steps, the scaled sample passed on to step. */
function fullLoop(prediction_type: PredictionType, tStart = 0) {
  const scheduler = new KDPM2AncestralDiscreteScheduler({ ...BASE, prediction_type });
  scheduler.setTimesteps(10);
  const generator = new RandomGenerator(0);
  let sample: TensorLike = scaled(dummySampleDeter(), scheduler.initNoiseSigma);
  const timesteps = scheduler.timesteps.slice(tStart * scheduler.order);
  if (tStart > 0) sample = scheduler.addNoise(sample, dummyNoiseDeter(), timesteps[0]);
  for (const t of timesteps) {
    sample = scheduler.scaleModelInput(sample, t);
    sample = scheduler.step(dummyModel(sample, t), t, sample, { generator }).prevSample;
  }
  return absSumMean(sample);
}

describe('KDPM2AncestralDiscreteScheduler', () => {
  it('reproduces diffusers test_full_loop_no_noise / _device with torch.manual_seed(0) (sum 13979.9433, mean 18.2030)', () => {
    const { sum, mean } = fullLoop('epsilon');
    expect(Math.abs(sum - 13979.9433)).toBeLessThan(1e-2);
    expectPublished(mean, '18.203');
  });

  it('reproduces diffusers test_full_loop_with_v_prediction (sum 331.8133, mean 0.4320)', () => {
    const { sum, mean } = fullLoop('v_prediction');
    expect(Math.abs(sum - 331.8133)).toBeLessThan(1e-2);
    expectPublished(mean, '0.432');
  });

  it('reproduces diffusers test_full_loop_with_noise (sum 93087.3437, mean 121.2074)', () => {
    const { sum, mean } = fullLoop('epsilon', 8);
    expect(Math.abs(sum - 93087.3437)).toBeLessThan(1e-2);
    expectPublished(mean, '121.2074');
  });

  it('splits each step so that σ_down² + σ_up² = σ_next², with σ_mid = √(σ·σ_down), and ends on a noiseless Euler step', () => {
    const s = new KDPM2AncestralDiscreteScheduler(BASE);
    s.setTimesteps(4);
    expect(s.timesteps).toHaveLength(7);
    expect(s.sigmas).toHaveLength(8);
    for (const k of [0, 1, 2]) {
      // The step σ_k → σ_{k+1} owns indices 2k (predictor) and 2k + 1 (corrector).
      const sigma = s.sigmas[2 * k];
      const next = s.sigmas[2 * k + 1];
      const [up, down, mid] = [s.sigmasUp[2 * k], s.sigmasDown[2 * k], s.sigmasInterpol[2 * k]];
      expect((down ** 2 + up ** 2) / next ** 2).toBeCloseTo(1, 5);
      expect(down).toBeCloseTo(next ** 2 / sigma, 3);
      expect(mid / Math.sqrt(sigma * down)).toBeCloseTo(1, 6);
    }
    const x = dummySampleDeter();
    const eps = dummyModel(x, 1);
    const ones = new Tensor(new Float32Array(x.data.length).fill(1), x.dims);
    // Two runs that differ only in the corrector noise differ by exactly σ_up · Δz.
    const corrector = (noise: TensorLike) => {
      s.setTimesteps(4);
      s.step(eps, s.timesteps[0], x);
      return s.step(eps, s.timesteps[1], x, { noise }).prevSample;
    };
    const withZero = corrector(Tensor.zeros(x.dims));
    const withOnes = corrector(ones);
    for (let i = 0; i < x.data.length; i += 37) {
      expect(withOnes.data[i] - withZero.data[i]).toBeCloseTo(s.sigmasUp[0], 3);
    }
    // The last step draws nothing: no generator is needed, and its result is x̂_0 (Euler to σ = 0).
    s.setTimesteps(1);
    const last = s.step(eps, s.timesteps[0], x);
    expect(Array.from(last.prevSample.data)).toEqual(Array.from(last.predOriginalSample!.data));
  });

  it('DPM2 a: on the exact denoiser of a Gaussian mixture the distance shrinks over 10, 20, 50 steps to < 0.03', () => {
    const [d10, d20, d50] = TABLE_STEPS.map((steps) => mixtureDistance('DPM2 a', steps));
    expect(d20).toBeLessThan(d10);
    expect(d50).toBeLessThan(d20);
    expect(d50).toBeLessThan(0.03);
  });
});

import { InvalidArgumentError, RandomGenerator, Tensor, type TensorLike } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import { EulerAncestralDiscreteScheduler } from '../src/euler-ancestral-discrete.js';
import type { PredictionType } from '../src/prediction.js';
import { mixtureDistance, TABLE_STEPS } from './accuracy-table.js';
import { absSumMean, dummyModel, dummyNoiseDeter, dummySampleDeter } from './helpers/diffusers-fixtures.js';
import { expectPublished } from './helpers/published.js';

/** diffusers' `EulerAncestralDiscreteSchedulerTest.get_scheduler_config`. */
const BASE = { num_train_timesteps: 1100, beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear' } as const;

function scaled(x: TensorLike, factor: number): Tensor {
  return new Tensor(
    x.data.map((v) => Math.fround(v * factor)),
    x.dims,
  );
}

/** diffusers' loop: torch.manual_seed(0), the scaled sample passed to step, noise drawn at every step. */
function fullLoop(prediction_type: PredictionType, tStart = 0) {
  const scheduler = new EulerAncestralDiscreteScheduler({ ...BASE, prediction_type });
  scheduler.setTimesteps(10);
  const generator = new RandomGenerator(0);
  let sample: TensorLike = scaled(dummySampleDeter(), scheduler.initNoiseSigma);
  const timesteps = scheduler.timesteps.slice(tStart);
  if (tStart > 0) sample = scheduler.addNoise(sample, dummyNoiseDeter(), timesteps[0]);
  for (const t of timesteps) {
    sample = scheduler.scaleModelInput(sample, t);
    sample = scheduler.step(dummyModel(sample, t), t, sample, { generator }).prevSample;
  }
  return absSumMean(sample);
}

describe('EulerAncestralDiscreteScheduler', () => {
  it('reproduces diffusers test_full_loop_no_noise with torch.manual_seed(0) (sum 152.3192, mean 0.1983)', () => {
    const { sum, mean } = fullLoop('epsilon');
    expect(Math.abs(sum - 152.3192)).toBeLessThan(1e-2);
    expectPublished(mean, '0.1983');
  });

  it('reproduces diffusers test_full_loop_with_v_prediction (sum 108.4439, mean 0.1412)', () => {
    const { sum, mean } = fullLoop('v_prediction');
    expect(Math.abs(sum - 108.4439)).toBeLessThan(1e-2);
    expectPublished(mean, '0.1412');
  });

  it('reproduces diffusers test_full_loop_with_noise (sum 56163.0508, mean 73.1290)', () => {
    const { sum, mean } = fullLoop('epsilon', 8);
    expect(Math.abs(sum - 56163.0508)).toBeLessThan(1e-2);
    expectPublished(mean, '73.129');
  });

  it('splits each step into σ_down and σ_up with σ_down² + σ_up² = σ_next² (explicit noise)', () => {
    const s = new EulerAncestralDiscreteScheduler(BASE);
    s.setTimesteps(4);
    const x = dummySampleDeter();
    const zero = Tensor.zeros(x.dims);
    const ones = new Tensor(new Float32Array(x.data.length).fill(1), x.dims);
    const t = s.timesteps[0];
    // With ε̂ = 0 the Euler part keeps x; the noise part adds σ_up · z.
    const withoutNoise = s.step(zero, t, x, { noise: zero }).prevSample;
    s.setTimesteps(4);
    const withNoise = s.step(zero, t, x, { noise: ones }).prevSample;
    const [sigma, next] = [s.sigmas[0], s.sigmas[1]];
    const sigmaUp = Math.sqrt((next ** 2 * (sigma ** 2 - next ** 2)) / sigma ** 2);
    expect(withoutNoise.data[5]).toBeCloseTo(x.data[5], 6);
    expect(withNoise.data[5] - withoutNoise.data[5]).toBeCloseTo(sigmaUp, 4);
  });

  it('needs a schedule and noise shaped like the sample', () => {
    const s = new EulerAncestralDiscreteScheduler(BASE);
    const x = dummySampleDeter();
    expect(() => s.step(x, 1099, x, { generator: new RandomGenerator(0) })).toThrow(/setTimesteps/);
    s.setTimesteps(3);
    const wrongNoise = Tensor.zeros([1, 3, 8, 8]);
    expect(() => s.step(x, s.timesteps[0], x, { noise: wrongNoise })).toThrow(InvalidArgumentError);
  });
  it('Euler a: on the exact denoiser of a Gaussian mixture the distance shrinks over 10, 20, 50 steps to < 0.04', () => {
    const [d10, d20, d50] = TABLE_STEPS.map((steps) => mixtureDistance('Euler a', steps));
    expect(d20).toBeLessThan(d10);
    expect(d50).toBeLessThan(d20);
    expect(d50).toBeLessThan(0.04);
  });
});

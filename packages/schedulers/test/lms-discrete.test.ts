import { InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import type { SchedulerConfigInput } from '../src/config.js';
import { LMSDiscreteScheduler, type LMSDiscreteSchedulerConfig } from '../src/lms-discrete.js';
import { mixtureDistance, TABLE_STEPS } from './accuracy-table.js';
import { absSumMean, dummyModel, dummyNoiseDeter, dummySampleDeter } from './helpers/diffusers-fixtures.js';
import { expectPublished } from './helpers/published.js';

/** diffusers' `LMSDiscreteSchedulerTest.get_scheduler_config`. */
const BASE = { num_train_timesteps: 1100, beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear' } as const;

function scaled(x: TensorLike, factor: number): Tensor {
  return new Tensor(
    x.data.map((v) => Math.fround(v * factor)),
    x.dims,
  );
}

/** diffusers' LMS loop: the scaled sample is passed on to step. */
function fullLoop(config: SchedulerConfigInput<LMSDiscreteSchedulerConfig> = {}, tStart = 0) {
  const scheduler = new LMSDiscreteScheduler({ ...BASE, ...config });
  scheduler.setTimesteps(10);
  let sample: TensorLike = scaled(dummySampleDeter(), scheduler.initNoiseSigma);
  const timesteps = scheduler.timesteps.slice(tStart);
  if (tStart > 0) sample = scheduler.addNoise(sample, dummyNoiseDeter(), timesteps[0]);
  for (const t of timesteps) {
    sample = scheduler.scaleModelInput(sample, t);
    sample = scheduler.step(dummyModel(sample, t), t, sample).prevSample;
  }
  return absSumMean(sample);
}

describe('LMSDiscreteScheduler', () => {
  it('reproduces diffusers test_full_loop_no_noise (sum 1006.388, mean 1.31)', () => {
    const { sum, mean } = fullLoop();
    expect(Math.abs(sum - 1006.388)).toBeLessThan(1e-2);
    expectPublished(mean, '1.31');
  });

  it('reproduces diffusers test_full_loop_with_v_prediction (sum 0.0017)', () => {
    const { sum, mean } = fullLoop({ prediction_type: 'v_prediction' });
    expectPublished(sum, '0.0017');
    expectPublished(mean, '2.2676e-6');
  });

  it('reproduces diffusers test_full_loop_device_karras_sigmas (sum 3812.9927, mean 4.9648)', () => {
    const { sum, mean } = fullLoop({ use_karras_sigmas: true });
    expect(Math.abs(sum - 3812.9927)).toBeLessThan(2e-2);
    expectPublished(mean, '4.9648');
  });

  it('reproduces diffusers test_full_loop_with_noise (sum 27663.6895, mean 36.0204)', () => {
    const { sum, mean } = fullLoop({}, 8);
    expect(Math.abs(sum - 27663.6895)).toBeLessThan(1e-2);
    expectPublished(mean, '36.0204');
  });

  it('has coefficients that integrate polynomials exactly: they sum to the step length', () => {
    const s = new LMSDiscreteScheduler(BASE);
    s.setTimesteps(10);
    for (const order of [1, 2, 3, 4]) {
      const i = 5;
      let total = 0;
      let firstMoment = 0;
      for (let k = 0; k < order; k++) {
        const c = s.lmsCoefficient(order, i, k);
        total += c;
        firstMoment += c * s.sigmas[i - k];
      }
      const [a, b] = [s.sigmas[i], s.sigmas[i + 1]];
      expect(total).toBeCloseTo(b - a, 10); // ∫ 1 dτ
      if (order > 1) expect(firstMoment).toBeCloseTo((b * b - a * a) / 2, 8); // ∫ τ dτ
    }
  });

  it('forgets its slopes on setTimesteps, so a second run repeats the first', () => {
    const s = new LMSDiscreteScheduler(BASE);
    const run = () => {
      s.setTimesteps(6);
      let x: TensorLike = dummySampleDeter();
      for (const t of s.timesteps) x = s.step(dummyModel(s.scaleModelInput(x, t), t), t, x).prevSample;
      return x.data;
    };
    expect(run()).toEqual(run());
    expect(() => s.step(dummySampleDeter(), s.timesteps[0], dummySampleDeter(), { order: 5 })).toThrow(
      InvalidArgumentError,
    );
  });
  it('LMS: on the exact denoiser of a Gaussian mixture the distance shrinks over 10, 20, 50 steps to < 0.025', () => {
    const [d10, d20, d50] = TABLE_STEPS.map((steps) => mixtureDistance('LMS', steps));
    expect(d20).toBeLessThan(d10);
    expect(d50).toBeLessThan(d20);
    expect(d50).toBeLessThan(0.025);
  });

  it('LMS Karras: on the exact denoiser of a Gaussian mixture the distance shrinks over 10, 20, 50 steps to < 0.025', () => {
    const [d10, d20, d50] = TABLE_STEPS.map((steps) => mixtureDistance('LMS Karras', steps));
    expect(d20).toBeLessThan(d10);
    expect(d50).toBeLessThan(d20);
    expect(d50).toBeLessThan(0.025);
  });
});

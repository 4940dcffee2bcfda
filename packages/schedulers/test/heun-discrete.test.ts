import { Tensor, type TensorLike } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import type { SchedulerConfigInput } from '../src/config.js';
import { HeunDiscreteScheduler, type HeunDiscreteSchedulerConfig } from '../src/heun-discrete.js';
import { mixtureDistance, TABLE_STEPS } from './accuracy-table.js';
import { absSumMean, dummyModel, dummyNoiseDeter, dummySampleDeter } from './helpers/diffusers-fixtures.js';
import { expectPublished } from './helpers/published.js';

/** diffusers' `HeunDiscreteSchedulerTest.get_scheduler_config`. */
const BASE = { num_train_timesteps: 1100, beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear' } as const;

function scaled(x: TensorLike, factor: number): Tensor {
  return new Tensor(
    x.data.map((v) => Math.fround(v * factor)),
    x.dims,
  );
}

/** diffusers' Heun `full_loop`: the scaled sample is passed on to step. */
function fullLoop(config: SchedulerConfigInput<HeunDiscreteSchedulerConfig> = {}, tStart = 0) {
  const scheduler = new HeunDiscreteScheduler({ ...BASE, ...config });
  scheduler.setTimesteps(10);
  let sample: TensorLike = scaled(dummySampleDeter(), scheduler.initNoiseSigma);
  const timesteps = scheduler.timesteps.slice(tStart * scheduler.order);
  if (tStart > 0) sample = scheduler.addNoise(sample, dummyNoiseDeter(), timesteps[0]);
  for (const t of timesteps) {
    sample = scheduler.scaleModelInput(sample, t);
    sample = scheduler.step(dummyModel(sample, t), t, sample).prevSample;
  }
  return { ...absSumMean(sample), scheduler };
}

describe('HeunDiscreteScheduler', () => {
  it('reproduces diffusers test_full_loop_no_noise (sum 0.1233, mean 0.0002)', () => {
    const { sum, mean, scheduler } = fullLoop();
    expectPublished(sum, '0.1233');
    expectPublished(mean, '0.0002');
    expect(scheduler.timesteps).toHaveLength(19);
  });

  it('reproduces diffusers test_full_loop_with_v_prediction (sum 4.6934e-07)', () => {
    // diffusers' 4.6934e-7 (the same figure as its KDPM2 test) is float32 residue of a loop that ends at ≈ 0:
    // held against the start (|x| ≈ 0.5·σ_max per element) rather than by an absolute 1e-2 that zeros pass.
    const { sum, scheduler } = fullLoop({ prediction_type: 'v_prediction' });
    const start = scheduler.initNoiseSigma * absSumMean(dummySampleDeter()).sum;
    expect(sum / start).toBeLessThan(1e-10);
  });

  it('reproduces diffusers test_full_loop_device_karras_sigmas (sum 0.00015)', () => {
    const { sum, mean } = fullLoop({ use_karras_sigmas: true });
    expectPublished(sum, '0.00015');
    expectPublished(mean, '1.9869554535034695e-7');
  });

  it('reproduces diffusers test_full_loop_with_noise (sum 75074.8906, mean 97.7538)', () => {
    const { sum, mean } = fullLoop({}, 8);
    expect(Math.abs(sum - 75074.8906)).toBeLessThan(1e-2);
    expectPublished(mean, '97.7538');
  });

  it('doubles every timestep after the first and ends on sigma 0', () => {
    const s = new HeunDiscreteScheduler({ timestep_spacing: 'leading', steps_offset: 1 });
    s.setTimesteps(3);
    expect(s.timesteps).toEqual([667, 334, 334, 1, 1]);
    expect(s.sigmas).toHaveLength(6);
    expect(s.sigmas[1]).toBe(s.sigmas[2]);
    expect(s.sigmas[5]).toBe(0);
    const x = dummySampleDeter();
    expect(s.stateInFirstOrder).toBe(true);
    s.step(x, 667, x);
    expect(s.stateInFirstOrder).toBe(false);
    s.step(x, 334, x);
    expect(s.stateInFirstOrder).toBe(true);
    // A new schedule drops a half-finished step.
    s.step(x, 334, x);
    s.setTimesteps(3);
    expect(s.stateInFirstOrder).toBe(true);
  });
  it('Heun: on the exact denoiser of a Gaussian mixture the distance shrinks over 10, 20, 50 steps to < 0.025', () => {
    const [d10, d20, d50] = TABLE_STEPS.map((steps) => mixtureDistance('Heun', steps));
    expect(d20).toBeLessThan(d10);
    expect(d50).toBeLessThan(d20);
    expect(d50).toBeLessThan(0.025);
  });
});

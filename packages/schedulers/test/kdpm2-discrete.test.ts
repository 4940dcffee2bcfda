import { Tensor, type TensorLike } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import type { SchedulerConfigInput } from '../src/config.js';
import { KDPM2DiscreteScheduler, type KDPM2DiscreteSchedulerConfig } from '../src/kdpm2-discrete.js';
import { mixtureDistance, TABLE_STEPS } from './accuracy-table.js';
import { absSumMean, dummyModel, dummyNoiseDeter, dummySampleDeter } from './helpers/diffusers-fixtures.js';
import { expectPublished } from './helpers/published.js';

/** diffusers' `KDPM2DiscreteSchedulerTest.get_scheduler_config`. */
const BASE = { num_train_timesteps: 1100, beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear' } as const;

function scaled(x: TensorLike, factor: number): Tensor {
  return new Tensor(
    x.data.map((v) => Math.fround(v * factor)),
    x.dims,
  );
}

/** diffusers' KDPM2 `full_loop`: 10 steps, the scaled sample is passed on to step. */
function fullLoop(config: SchedulerConfigInput<KDPM2DiscreteSchedulerConfig> = {}, tStart = 0) {
  const scheduler = new KDPM2DiscreteScheduler({ ...BASE, ...config });
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

describe('KDPM2DiscreteScheduler', () => {
  it('reproduces diffusers test_full_loop_no_noise and test_full_loop_device (sum 20.4125, mean 0.0266)', () => {
    const { sum, mean, scheduler } = fullLoop();
    expect(Math.abs(sum - 20.4125)).toBeLessThan(1e-2);
    expectPublished(mean, '0.0266');
    expect(scheduler.timesteps).toHaveLength(19);
  });

  it('reproduces diffusers test_full_loop_with_v_prediction (sum 4.6934e-07, mean 6.1112e-10)', () => {
    const { mean } = fullLoop({ prediction_type: 'v_prediction' });
    // The last step lands on x̂_0 ≈ 0 from latents of order 100: what is left is float32 cancellation (diffusers'
    // own value is rounding noise too), so it must be tiny against the starting |x| (mean ≈ 0.5·σ_max).
    expect(mean).toBeLessThan(1e-6);
  });

  it('reproduces diffusers test_full_loop_with_noise (sum 70408.4062, mean 91.6776)', () => {
    const { sum, mean } = fullLoop({}, 8);
    expect(Math.abs(sum - 70408.4062)).toBeLessThan(1e-2);
    expectPublished(mean, '91.6776');
  });

  it('interleaves midpoint timesteps, σ_mid = √(σ_i σ_{i+1}), and ends on an Euler step to σ = 0', () => {
    const s = new KDPM2DiscreteScheduler(BASE);
    s.setTimesteps(3);
    // [t_0, t_mid1, t_1, t_mid2, t_2]; σ: [σ_0, σ_1, σ_1, σ_2, σ_2, 0].
    expect(s.timesteps).toHaveLength(5);
    expect(Array.from(s.sigmas.subarray(1, 5))).toEqual([s.sigmas[1], s.sigmas[1], s.sigmas[3], s.sigmas[3]]);
    expect(s.sigmas[5]).toBe(0);
    expect(s.sigmasInterpol[1] / Math.sqrt(s.sigmas[0] * s.sigmas[1])).toBeCloseTo(1, 6);
    expect(s.sigmasInterpol[3] / Math.sqrt(s.sigmas[1] * s.sigmas[3])).toBeCloseTo(1, 6);
    // The midpoint timesteps lie between their neighbours.
    expect(s.timesteps[1]).toBeLessThan(s.timesteps[0]);
    expect(s.timesteps[1]).toBeGreaterThan(s.timesteps[2]);
    const x = dummySampleDeter();
    const eps = dummyModel(x, 1);
    expect(s.stateInFirstOrder).toBe(true);
    s.step(eps, s.timesteps[0], x);
    expect(s.stateInFirstOrder).toBe(false);
    s.step(eps, s.timesteps[1], x);
    s.step(eps, s.timesteps[2], x);
    s.step(eps, s.timesteps[3], x);
    const last = s.step(eps, s.timesteps[4], x);
    expect(Array.from(last.prevSample.data)).toEqual(Array.from(last.predOriginalSample!.data));
    // A new schedule drops a half-finished step.
    s.setTimesteps(3);
    expect(s.stateInFirstOrder).toBe(true);
  });

  it('with ε̂ = const the two stages reproduce the closed form x_{i+1} = x_i + (σ_{i+1} − σ_i)·ε̂', () => {
    // For the data x_0 = x − σ·c of a constant ε̂ = c, the ODE dx/dσ = c is solved exactly by any step.
    const s = new KDPM2DiscreteScheduler({ ...BASE, use_karras_sigmas: true });
    s.setTimesteps(5);
    const x = dummySampleDeter();
    const c = new Tensor(new Float32Array(x.data.length).fill(0.3), x.dims);
    let sample: TensorLike = x;
    for (const t of s.timesteps) sample = s.step(c, t, sample).prevSample;
    for (let i = 0; i < x.data.length; i += 23) {
      expect(sample.data[i]).toBeCloseTo(x.data[i] - s.sigmas[0] * 0.3, 3);
    }
  });

  it('Karras, exponential and beta sigmas keep σ_max and σ_min of the training range; Karras rounds the timesteps', () => {
    for (const key of ['use_karras_sigmas', 'use_exponential_sigmas', 'use_beta_sigmas']) {
      const s = new KDPM2DiscreteScheduler({ ...BASE, [key]: true });
      s.setTimesteps(6);
      const plain = new KDPM2DiscreteScheduler(BASE);
      plain.setTimesteps(6);
      expect(s.sigmas[0], key).toBeCloseTo(plain.sigmas[0], 2);
      expect(s.sigmas[s.sigmas.length - 2], key).toBeCloseTo(plain.sigmas[plain.sigmas.length - 2], 5);
      const main = s.timesteps.filter((_, i) => i % 2 === 0);
      if (key === 'use_karras_sigmas') expect(main.every(Number.isInteger), key).toBe(true);
    }
  });

  it('DPM2: on the exact denoiser of a Gaussian mixture the distance shrinks over 10, 20, 50 steps to < 0.025', () => {
    const [d10, d20, d50] = TABLE_STEPS.map((steps) => mixtureDistance('DPM2', steps));
    expect(d20).toBeLessThan(d10);
    expect(d50).toBeLessThan(d20);
    expect(d50).toBeLessThan(0.025);
  });

  it('DPM2 Karras: the distance shrinks over 10, 20, 50 steps to < 0.025', () => {
    const [d10, d20, d50] = TABLE_STEPS.map((steps) => mixtureDistance('DPM2 Karras', steps));
    expect(d20).toBeLessThan(d10);
    expect(d50).toBeLessThan(d20);
    expect(d50).toBeLessThan(0.025);
  });
});

import { Tensor, type TensorLike } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import type { SchedulerConfigInput } from '../src/config.js';
import { DDIMScheduler } from '../src/ddim.js';
import { DDIMInverseScheduler, type DDIMInverseSchedulerConfig } from '../src/ddim-inverse.js';
import { mixtureDistance, TABLE_STEPS } from './accuracy-table.js';
import { absSumMean, dummyModel, dummySampleDeter } from './helpers/diffusers-fixtures.js';
import { expectPublished } from './helpers/published.js';

/** diffusers' `DDIMInverseSchedulerTest.get_scheduler_config`. */
const BASE = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  clip_sample: true,
} as const;

/** diffusers' inverse DDIM `full_loop`: 10 ascending steps from `dummy_sample_deter`. */
function fullLoop(config: SchedulerConfigInput<DDIMInverseSchedulerConfig> = {}) {
  const scheduler = new DDIMInverseScheduler({ ...BASE, ...config });
  scheduler.setTimesteps(10);
  let sample: TensorLike = dummySampleDeter();
  for (const t of scheduler.timesteps) sample = scheduler.step(dummyModel(sample, t), t, sample).prevSample;
  return absSumMean(sample);
}

describe('DDIMInverseScheduler', () => {
  it('spaces ascending timesteps (diffusers test_steps_offset: 1, 201, 401, 601, 801)', () => {
    const s = new DDIMInverseScheduler({ ...BASE, steps_offset: 1 });
    s.setTimesteps(5);
    expect(s.timesteps).toEqual([1, 201, 401, 601, 801]);
    const trailing = new DDIMInverseScheduler({ ...BASE, timestep_spacing: 'trailing' });
    trailing.setTimesteps(5);
    expect(trailing.timesteps).toEqual([199, 399, 599, 799, 999]);
  });

  it('reproduces diffusers test_full_loop_no_noise (sum 671.6816, mean 0.8746)', () => {
    const { sum, mean } = fullLoop();
    expect(Math.abs(sum - 671.6816)).toBeLessThan(1e-2);
    expectPublished(mean, '0.8746');
  });

  it('reproduces diffusers test_full_loop_with_v_prediction (sum 1394.2185, mean 1.8154)', () => {
    const { sum, mean } = fullLoop({ prediction_type: 'v_prediction' });
    expect(Math.abs(sum - 1394.2185)).toBeLessThan(1e-2);
    expectPublished(mean, '1.8154');
  });

  it('reproduces diffusers set_alpha_to_one loops (539.9622 with, 542.6722 without)', () => {
    const on = fullLoop({ set_alpha_to_one: true, beta_start: 0.01 });
    expect(Math.abs(on.sum - 539.9622)).toBeLessThan(1e-2);
    expect(Math.abs(on.mean - 0.7031)).toBeLessThan(1e-3);
    const off = fullLoop({ set_alpha_to_one: false, beta_start: 0.01 });
    expect(Math.abs(off.sum - 542.6722)).toBeLessThan(1e-2);
    expect(Math.abs(off.mean - 0.7066)).toBeLessThan(1e-3);
    // The deprecated key means the same, with a warning.
    const warnings: string[] = [];
    const legacy = new DDIMInverseScheduler({ set_alpha_to_zero: false }, { onWarning: (m) => warnings.push(m) });
    expect(legacy.config.set_alpha_to_one).toBe(false);
    expect(warnings).toHaveLength(1);
  });

  it('is undone by DDIM: inverting then sampling with the same ε returns the start', () => {
    // With an ε that does not depend on x, DDIM's update is affine and inversion is its exact inverse.
    const config = { ...BASE, clip_sample: false, set_alpha_to_one: false, steps_offset: 1 };
    const inverse = new DDIMInverseScheduler(config);
    const ddim = new DDIMScheduler(config);
    inverse.setTimesteps(10);
    ddim.setTimesteps(10);
    const eps = new Tensor(
      dummySampleDeter().data.map((v) => Math.sin(40 * v)),
      dummySampleDeter().dims,
    );
    const x0 = dummySampleDeter();
    let x: TensorLike = x0;
    for (const t of inverse.timesteps) x = inverse.step(eps, t, x).prevSample;
    for (const t of ddim.timesteps) x = ddim.step(eps, t, x).prevSample;
    let worst = 0;
    for (let i = 0; i < x0.data.length; i++) worst = Math.max(worst, Math.abs(x.data[i] - x0.data[i]));
    expect(worst).toBeLessThan(1e-4);
  });

  it('inverts mixture samples towards N(0, 1) on the exact denoiser, closer with more steps', () => {
    // Explicit (start-of-step) ε̂ makes inversion inexact where the data is narrow; the table in
    // docs/schedulers.md shows how slowly this shrinks.
    const [d10, d20, d50] = TABLE_STEPS.map((steps) => mixtureDistance('DDIM inverse → N(0, 1)', steps));
    expect(d20).toBeLessThan(d10);
    expect(d50).toBeLessThan(d20);
    expect(d50).toBeLessThan(0.3);
  });
});

import { InvalidArgumentError, RandomGenerator, type TensorLike } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import { LCMScheduler } from '../src/lcm.js';
import { mixtureDistance, TABLE_STEPS } from './accuracy-table.js';
import { absSumMean, dummyModel, dummySampleDeter } from './helpers/diffusers-fixtures.js';
import { expectPublished } from './helpers/published.js';

/** diffusers' `LCMSchedulerTest.get_scheduler_config`. */
const BASE = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  prediction_type: 'epsilon',
} as const;

/** diffusers' LCM `full_loop`: torch.manual_seed(seed), noise drawn at every step but the last. */
function fullLoop(numInferenceSteps: number, seed = 0) {
  const scheduler = new LCMScheduler(BASE);
  const generator = new RandomGenerator(seed);
  scheduler.setTimesteps(numInferenceSteps);
  let sample: TensorLike = dummySampleDeter();
  for (const t of scheduler.timesteps)
    sample = scheduler.step(dummyModel(sample, t), t, sample, { generator }).prevSample;
  return { ...absSumMean(sample), scheduler };
}

describe('LCMScheduler', () => {
  it('reproduces diffusers test_full_loop_onestep (sum 18.7097, mean 0.0244)', () => {
    const { sum, mean, scheduler } = fullLoop(1);
    expect(scheduler.timesteps).toEqual([999]);
    expect(Math.abs(sum - 18.7097)).toBeLessThan(1e-3);
    expectPublished(mean, '0.0244');
  });

  it('reproduces diffusers test_full_loop_multistep with torch.manual_seed(0) (sum 197.7616, mean 0.2575)', () => {
    const { sum, mean, scheduler } = fullLoop(10);
    expect(scheduler.timesteps).toEqual([999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
    expect(Math.abs(sum - 197.7616)).toBeLessThan(1e-3);
    expectPublished(mean, '0.2575');
  });

  it('picks timesteps from the distillation grid, honouring strength and original_inference_steps', () => {
    const s = new LCMScheduler(BASE);
    s.setTimesteps(4);
    expect(s.timesteps).toEqual([999, 759, 499, 259]);
    s.setTimesteps({ numInferenceSteps: 4, strength: 0.5 });
    expect(s.timesteps).toEqual([499, 379, 259, 139]);
    s.setTimesteps({ numInferenceSteps: 2, originalInferenceSteps: 4 });
    expect(s.timesteps).toEqual([999, 499]);
  });

  it('follows custom timesteps and reports the previous timestep (diffusers test_custom_timesteps)', () => {
    const warnings: string[] = [];
    const s = new LCMScheduler(BASE, { onWarning: (m) => warnings.push(m) });
    s.setTimesteps({ timesteps: [100, 87, 50, 1, 0] });
    expect([100, 87, 50, 1, 0].map((t) => s.previousTimestep(t))).toEqual([87, 50, 1, 0, -1]);
    expect(warnings[0]).toMatch(/not on the distillation grid/);
    expect(() => s.setTimesteps({ timesteps: [100, 87, 50, 51, 0] })).toThrow(/descending/);
    expect(() => s.setTimesteps({ timesteps: [1000] })).toThrow(InvalidArgumentError);
    expect(() => s.setTimesteps({ numInferenceSteps: 5, timesteps: [100, 0] })).toThrow(/exactly one/);
    expect(() => s.setTimesteps(60)).toThrow(/original_inference_steps/);
  });

  it('has the consistency boundary condition f(x, 0) = x: c_skip(0) = 1, c_out(0) = 0', () => {
    const s = new LCMScheduler(BASE);
    expect(s.boundaryScalings(0)).toEqual({ cSkip: 1, cOut: 0 });
    const { cSkip, cOut } = s.boundaryScalings(999);
    expect(cSkip).toBeCloseTo(0.25 / (9990 ** 2 + 0.25), 15);
    expect(cOut).toBeCloseTo(1, 6);
  });
  it('LCM (exact model, not distilled): on the exact denoiser of a Gaussian mixture the distance shrinks over 10, 20, 50 steps to < 0.08', () => {
    const [d10, d20, d50] = TABLE_STEPS.map((steps) => mixtureDistance('LCM (exact model, not distilled)', steps));
    expect(d20).toBeLessThan(d10);
    expect(d50).toBeLessThan(d20);
    expect(d50).toBeLessThan(0.08);
  });
});

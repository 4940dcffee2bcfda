import { InvalidArgumentError, RandomGenerator, type TensorLike } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import { DDIMScheduler } from '../src/ddim.js';
import { TCDScheduler } from '../src/tcd.js';
import { mixtureDistance } from './accuracy-table.js';
import { absSumMean, dummyModel, dummySampleDeter } from './helpers/diffusers-fixtures.js';
import { expectPublished } from './helpers/published.js';

/** diffusers' `TCDSchedulerTest.get_scheduler_config`. */
const BASE = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  prediction_type: 'epsilon',
} as const;

/** diffusers' TCD `full_loop`: eta (γ) = 0, torch.manual_seed(seed). */
function fullLoop(numInferenceSteps: number, eta = 0, seed = 0) {
  const scheduler = new TCDScheduler(BASE);
  const generator = new RandomGenerator(seed);
  scheduler.setTimesteps(numInferenceSteps);
  let sample: TensorLike = dummySampleDeter();
  for (const t of scheduler.timesteps)
    sample = scheduler.step(dummyModel(sample, t), t, sample, { eta, generator }).prevSample;
  return { ...absSumMean(sample), scheduler };
}

describe('TCDScheduler', () => {
  it('reproduces diffusers test_full_loop_onestep_deter (sum 29.8715, mean 0.0389)', () => {
    const { sum, mean, scheduler } = fullLoop(1);
    expect(scheduler.timesteps).toEqual([999]);
    expect(Math.abs(sum - 29.8715)).toBeLessThan(1e-3);
    expectPublished(mean, '0.0389');
  });

  it('reproduces diffusers test_full_loop_multistep_deter (sum 181.2040, mean 0.2359)', () => {
    const { sum, mean, scheduler } = fullLoop(10);
    expect(scheduler.timesteps).toEqual([999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
    expect(Math.abs(sum - 181.204)).toBeLessThan(1e-3);
    expectPublished(mean, '0.2359');
  });

  it('test_custom_timesteps: previousTimestep walks [100, 87, 50, 1, 0] and ends at −1', () => {
    const scheduler = new TCDScheduler(BASE, { onWarning: () => {} });
    scheduler.setTimesteps({ timesteps: [100, 87, 50, 1, 0] });
    expect(scheduler.timesteps.map((t) => scheduler.previousTimestep(t))).toEqual([87, 50, 1, 0, -1]);
  });

  it('test_custom_timesteps_increasing_order / passing both / too large are refused', () => {
    const scheduler = new TCDScheduler(BASE);
    expect(() => scheduler.setTimesteps({ timesteps: [100, 87, 50, 51, 0] })).toThrow(/descending/);
    expect(() => scheduler.setTimesteps({ timesteps: [100, 0], numInferenceSteps: 2 })).toThrow(/exactly one/);
    expect(() => scheduler.setTimesteps({ timesteps: [1000] })).toThrow(/\[0, 1000\)/);
  });

  it('γ = 0 is DDIM on the same timesteps, ending on ᾱ_0 (Zheng et al. 2024, eq. 12 with s = t′)', () => {
    const tcd = new TCDScheduler(BASE);
    tcd.setTimesteps(10);
    const ddim = new DDIMScheduler({
      ...BASE,
      timestep_spacing: 'trailing',
      set_alpha_to_one: false,
      clip_sample: false,
    });
    ddim.setTimesteps(10);
    expect(ddim.timesteps).toEqual(tcd.timesteps);
    let a: TensorLike = dummySampleDeter();
    let b: TensorLike = dummySampleDeter();
    for (const t of tcd.timesteps) {
      a = tcd.step(dummyModel(a, t), t, a, { eta: 0 }).prevSample;
      b = ddim.step(dummyModel(b, t), t, b).prevSample;
    }
    for (let i = 0; i < a.data.length; i += 37) expect(a.data[i]).toBeCloseTo(b.data[i], 5);
  });

  it('γ > 0: x̂_s at s = ⌊(1 − γ)t′⌋, re-noised to t′ with the generator’s noise; the last step does not re-noise', () => {
    const scheduler = new TCDScheduler(BASE);
    scheduler.setTimesteps(4);
    const [t0, t1] = scheduler.timesteps;
    const gamma = 0.3;
    const s = Math.floor((1 - gamma) * t1);
    const x = dummySampleDeter();
    const eps = dummyModel(x, t0);
    const out = scheduler.step(eps, t0, x, { eta: gamma, generator: new RandomGenerator(0) });
    const noise = new RandomGenerator(0).randn(x.dims);
    const [aT, aPrev, aS] = [t0, t1, s].map((t) => scheduler.alphasCumprod[t]);
    for (const i of [0, 55, 400, 767]) {
      const x0 = (x.data[i] - Math.sqrt(1 - aT) * eps.data[i]) / Math.sqrt(aT);
      const xs = Math.sqrt(aS) * x0 + Math.sqrt(1 - aS) * eps.data[i];
      expect(out.predNoisedSample.data[i]).toBeCloseTo(xs, 5);
      expect(out.prevSample.data[i]).toBeCloseTo(
        Math.sqrt(aPrev / aS) * xs + Math.sqrt(1 - aPrev / aS) * noise.data[i],
        5,
      );
    }
    const fresh = new TCDScheduler(BASE);
    fresh.setTimesteps(4);
    fresh.setBeginIndex(3);
    const last = fresh.step(eps, fresh.timesteps[3], x, { eta: gamma, generator: new RandomGenerator(0) });
    expect(last.prevSample).toBe(last.predNoisedSample);
  });

  it('driven by the exact mixture ε̂ (not a distilled model), more steps get closer to the true distribution', () => {
    const [d2, d8, d25] = [2, 8, 25].map((steps) =>
      mixtureDistance('TCD, γ = 0.3 (exact model, not distilled)', steps),
    );
    expect(d8).toBeLessThan(d2);
    expect(d25).toBeLessThan(d8);
    expect(d25).toBeLessThan(0.06);
  });

  it('bad γ, strength, and step counts beyond the distillation grid are clear errors', () => {
    const scheduler = new TCDScheduler(BASE);
    scheduler.setTimesteps(4);
    const x = dummySampleDeter();
    expect(() => scheduler.step(x, scheduler.timesteps[0], x, { eta: 1.5 })).toThrow(InvalidArgumentError);
    expect(() => scheduler.step(x, scheduler.timesteps[0], x, { eta: 1.5 })).toThrow(/eta .* must be in \[0, 1\]/);
    expect(() => scheduler.setTimesteps({ numInferenceSteps: 4, strength: 0 })).toThrow(/strength/);
    expect(() => scheduler.setTimesteps(51)).toThrow(/original_inference_steps \(50\)/);
    expect(() => new TCDScheduler({ beta_schedule: 'sigmoid' as 'linear' })).toThrow(/"beta_schedule" must be one of/);
    expect(TCDScheduler.compatibles).toEqual([]);
  });
});

import { ConfigError, InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import { IPNDMScheduler } from '../src/ipndm.js';
import { mixtureDistance } from './accuracy-table.js';
import { absSumMean, dummyModel, dummySampleDeter } from './helpers/diffusers-fixtures.js';

describe('IPNDMScheduler', () => {
  it('reproduces diffusers test_full_loop_no_noise: two 10-step passes, history kept (mean 2540529 ± 10)', () => {
    const scheduler = new IPNDMScheduler({ num_train_timesteps: 1000 });
    scheduler.setTimesteps(10);
    let sample: TensorLike = dummySampleDeter();
    for (const t of scheduler.timesteps) sample = scheduler.step(dummyModel(sample, t), t, sample).prevSample;
    // diffusers' test resets the private step index (`scheduler._step_index = None`) but keeps the history.
    (scheduler as unknown as { cursor: { reset(): void } }).cursor.reset();
    for (const t of scheduler.timesteps) sample = scheduler.step(dummyModel(sample, t), t, sample).prevSample;
    expect(Math.abs(absSumMean(sample).mean - 2540529)).toBeLessThan(10);
  });

  it('the schedule: σ = sin²(πs/2), α = √(1 − σ²), t = (2/π)·atan2(σ, α), from t = 1 down', () => {
    const scheduler = new IPNDMScheduler();
    expect(scheduler.timesteps).toHaveLength(1000);
    scheduler.setTimesteps(4);
    expect(scheduler.timesteps[0]).toBe(1);
    [1, 0.5 + Math.SQRT1_2 / 2, 0.5, 0.5 - Math.SQRT1_2 / 2, 0].forEach((sigma, i) => {
      expect(scheduler.sigmas[i]).toBeCloseTo(sigma, 6);
    });
    scheduler.sigmas.forEach((s, i) => {
      expect(scheduler.signalScales[i]).toBeCloseTo(Math.sqrt(1 - s * s), 6);
    });
    scheduler.timesteps.forEach((t, i) => {
      expect(t).toBeCloseTo((2 / Math.PI) * Math.atan2(scheduler.sigmas[i], scheduler.signalScales[i]), 6);
    });
  });

  it('with a constant e the Adams–Bashforth extrapolation is e itself: every step is the exact DDIM step', () => {
    // e = σ·x + α·m is held at a constant c by choosing m = (c − σ·x)/α; then x' = α'·(x − σc)/α + σ'c exactly.
    const scheduler = new IPNDMScheduler();
    scheduler.setTimesteps(6);
    const c = 0.37;
    let x: TensorLike = new Tensor(new Float32Array([0.9, -0.2]), [1, 2]);
    scheduler.timesteps.forEach((t, i) => {
      if (i === 0) {
        x = scheduler.step(
          new Tensor(new Float32Array(2), [1, 2]),
          t,
          new Tensor(new Float32Array([c, c]), [1, 2]),
        ).prevSample;
        return;
      }
      const [sigma, alpha] = [scheduler.sigmas[i], scheduler.signalScales[i]];
      const m = new Tensor(
        x.data.map((v) => (c - sigma * v) / alpha),
        x.dims,
      );
      const expected = Array.from(
        x.data,
        (v) => (scheduler.signalScales[i + 1] * (v - sigma * c)) / alpha + scheduler.sigmas[i + 1] * c,
      );
      x = scheduler.step(m, t, x).prevSample;
      x.data.forEach((v, k) => {
        expect(v).toBeCloseTo(expected[k], 5);
      });
    });
  });

  it('driven by the exact mixture v̂ (its schedule: ᾱ = α²), more steps get closer to the true distribution', () => {
    const [d5, d20, d50] = [5, 20, 50].map((steps) =>
      mixtureDistance('iPNDM (exact v-prediction, own schedule)', steps),
    );
    expect(d20).toBeLessThan(d5 * 0.6);
    expect(d50).toBeLessThan(0.04);
  });

  it('refuses explicit trained_betas, bad step counts and steps past the end', () => {
    expect(() => new IPNDMScheduler({ trained_betas: [0.1, 0.2] as unknown as null })).toThrow(ConfigError);
    expect(() => new IPNDMScheduler({ trained_betas: [0.1] as unknown as null })).toThrow(/must be null/);
    const scheduler = new IPNDMScheduler();
    expect(() => scheduler.setTimesteps(0)).toThrow(/positive integer/);
    scheduler.setTimesteps(1);
    const x = dummySampleDeter();
    scheduler.step(x, scheduler.timesteps[0], x);
    expect(() => scheduler.step(x, scheduler.timesteps[0], x)).toThrow(InvalidArgumentError);
    expect(IPNDMScheduler.compatibles).toEqual([]);
  });
});

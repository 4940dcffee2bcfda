import { ConfigError, InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import { DPMSolverMultistepScheduler } from '../src/dpm-solver-multistep.js';
import { UniPCMultistepScheduler, type UniPCMultistepSchedulerConfig } from '../src/unipc-multistep.js';
import { absSumMean, dummyModel, dummyNoiseDeter, dummySampleDeter } from './helpers/diffusers-fixtures.js';

/** `get_scheduler_config` of diffusers' `tests/schedulers/test_scheduler_unipc.py`. */
function testConfig(overrides: Partial<UniPCMultistepSchedulerConfig> = {}) {
  return {
    num_train_timesteps: 1000,
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: 'linear' as const,
    solver_order: 2,
    solver_type: 'bh2' as const,
    final_sigmas_type: 'sigma_min' as const,
    ...overrides,
  };
}

/**
 * The 1-D fixtures of `UniPCMultistepScheduler1DTest`: shape (4, 3, 8), `arange(96)` laid out as (C, W, B) and
 * permuted to (B, C, W), divided by 96; `reversed` gives `dummy_noise_deter`.
 */
function sampleDeter1D(reversed = false): Tensor {
  const [B, C, W] = [4, 3, 8];
  const n = B * C * W;
  const data = new Float32Array(n);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++)
      for (let w = 0; w < W; w++) {
        const index = (c * W + w) * B + b;
        data[(b * C + c) * W + w] = Math.fround((reversed ? n - 1 - index : index) / n);
      }
  return new Tensor(data, [B, C, W]);
}

/** diffusers' UniPC `full_loop`: 10 steps of the dummy model. */
function fullLoop(scheduler: UniPCMultistepScheduler, start: Tensor = dummySampleDeter()): Tensor {
  scheduler.setTimesteps(10);
  let sample = start;
  for (const t of scheduler.timesteps) sample = scheduler.step(dummyModel(sample, t), t, sample).prevSample;
  return sample;
}

function fullLoopMean(overrides: Partial<UniPCMultistepSchedulerConfig> = {}, start?: Tensor): number {
  return absSumMean(fullLoop(new UniPCMultistepScheduler(testConfig(overrides)), start)).mean;
}

/** diffusers' `test_full_loop_with_noise`: noise the sample to timesteps[8] and run the last two steps. */
function loopWithNoise(sample: Tensor, noise: Tensor): { sum: number; mean: number } {
  const scheduler = new UniPCMultistepScheduler(testConfig());
  scheduler.setTimesteps(10);
  const timesteps = scheduler.timesteps.slice(8);
  let x = scheduler.addNoise(sample, noise, timesteps[0]);
  for (const t of timesteps) x = scheduler.step(dummyModel(x, t), t, x).prevSample;
  return absSumMean(x);
}

describe('UniPCMultistepScheduler: diffusers published loop values (4×3×8×8)', () => {
  it('bh2, order 2, 10 steps: mean 0.2464 (test_full_loop_no_noise)', () => {
    expect(Math.abs(fullLoopMean() - 0.2464)).toBeLessThan(1e-3);
  });

  it('Karras sigmas: mean 0.2925', () => {
    expect(Math.abs(fullLoopMean({ use_karras_sigmas: true }) - 0.2925)).toBeLessThan(1e-3);
  });

  it('v_prediction: mean 0.1014', () => {
    expect(Math.abs(fullLoopMean({ prediction_type: 'v_prediction' }) - 0.1014)).toBeLessThan(1e-3);
  });

  it('Karras sigmas with v_prediction: mean 0.1966', () => {
    const mean = fullLoopMean({ prediction_type: 'v_prediction', use_karras_sigmas: true });
    expect(Math.abs(mean - 0.1966)).toBeLessThan(1e-3);
  });

  it('img2img from step 8 with add_noise: sum 315.5757, mean 0.4109', () => {
    const { sum, mean } = loopWithNoise(dummySampleDeter(), dummyNoiseDeter());
    expect(Math.abs(sum - 315.5757)).toBeLessThan(1e-2);
    expect(Math.abs(mean - 0.4109)).toBeLessThan(1e-3);
  });
});

describe('UniPCMultistepScheduler: diffusers published loop values (1-D, 4×3×8)', () => {
  it('mean 0.2441, Karras 0.2898, v_prediction 0.1014, Karras + v_prediction 0.1944', () => {
    const x = sampleDeter1D();
    expect(Math.abs(fullLoopMean({}, x) - 0.2441)).toBeLessThan(1e-3);
    expect(Math.abs(fullLoopMean({ use_karras_sigmas: true }, x) - 0.2898)).toBeLessThan(1e-3);
    expect(Math.abs(fullLoopMean({ prediction_type: 'v_prediction' }, x) - 0.1014)).toBeLessThan(1e-3);
    const karrasV = fullLoopMean({ prediction_type: 'v_prediction', use_karras_sigmas: true }, x);
    expect(Math.abs(karrasV - 0.1944)).toBeLessThan(1e-3);
  });

  it('img2img from step 8 with add_noise: sum 39.0870, mean 0.4072', () => {
    const { sum, mean } = loopWithNoise(sampleDeter1D(), sampleDeter1D(true));
    expect(Math.abs(sum - 39.087)).toBeLessThan(1e-2);
    expect(Math.abs(mean - 0.4072)).toBeLessThan(1e-3);
  });
});

describe('UniPCMultistepScheduler: configuration', () => {
  it("loads DPM-Solver's config with its solver type mapped to bh2 (test_switch)", () => {
    const scheduler = UniPCMultistepScheduler.fromConfig(
      { ...testConfig(), solver_type: 'midpoint', algorithm_type: 'dpmsolver++' },
      { onWarning: () => {} },
    );
    expect(scheduler.config.solver_type).toBe('bh2');
    expect(Math.abs(absSumMean(fullLoop(scheduler)).mean - 0.2464)).toBeLessThan(1e-3);
  });

  it('rejects bad configs and misuse with DenoiseErrors', () => {
    expect(() => new UniPCMultistepScheduler({ solver_type: 'bh3' as 'bh1' })).toThrow(ConfigError);
    expect(() => new UniPCMultistepScheduler({ disable_corrector: [-1] })).toThrow(ConfigError);
    expect(() => new UniPCMultistepScheduler({ predict_x0: false })).toThrow(/sigma_min/);
    expect(() => new UniPCMultistepScheduler({ use_karras_sigmas: true, use_exponential_sigmas: true })).toThrow(
      ConfigError,
    );
    const scheduler = new UniPCMultistepScheduler(testConfig());
    const x = dummySampleDeter();
    expect(() => scheduler.step(x, 999, x)).toThrow(InvalidArgumentError);
    scheduler.setTimesteps(1);
    scheduler.step(x, 999, x);
    expect(() => scheduler.step(x, 999, x)).toThrow(/setTimesteps/);
  });
});

describe('UniPCMultistepScheduler: predictor, corrector and buffers', () => {
  const allSteps = Array.from({ length: 10 }, (_, i) => i);

  function maxAbsDifference(a: TensorLike, b: TensorLike): number {
    let max = 0;
    for (let i = 0; i < a.data.length; i++) max = Math.max(max, Math.abs(a.data[i] - b.data[i]));
    return max;
  }

  it('UniP-2 with B(h) = e^h − 1 and no corrector is DPM-Solver++ 2M (the updates coincide term by term)', () => {
    for (const lower_order_final of [true, false]) {
      const unip = fullLoop(
        new UniPCMultistepScheduler(testConfig({ disable_corrector: allSteps, lower_order_final })),
      );
      const dpm = new DPMSolverMultistepScheduler({ ...testConfig(), solver_type: 'midpoint', lower_order_final });
      dpm.setTimesteps(10);
      let x: Tensor = dummySampleDeter();
      for (const t of dpm.timesteps) x = dpm.step(dummyModel(x, t), t, x).prevSample;
      expect(maxAbsDifference(unip, x)).toBeLessThan(1e-5);
    }
  });

  it('the corrector changes the result, and disable_corrector switches it off step by step', () => {
    const withCorrector = fullLoop(new UniPCMultistepScheduler(testConfig()));
    const without = fullLoop(new UniPCMultistepScheduler(testConfig({ disable_corrector: allSteps })));
    const firstOff = fullLoop(new UniPCMultistepScheduler(testConfig({ disable_corrector: [0] })));
    expect(maxAbsDifference(withCorrector, without)).toBeGreaterThan(1e-3);
    expect(maxAbsDifference(firstOff, withCorrector)).toBeGreaterThan(1e-5);
    expect(maxAbsDifference(firstOff, without)).toBeGreaterThan(1e-5);
  });

  it('thresholding bounds x̂_0, so a run ending at sigma 0 returns values in [-1, 1]', () => {
    const scheduler = new UniPCMultistepScheduler({
      ...testConfig({ final_sigmas_type: 'zero' }),
      thresholding: true,
      dynamic_thresholding_ratio: 0.9,
    });
    const start = new Tensor(
      dummySampleDeter().data.map((v) => 40 * v - 20),
      [4, 3, 8, 8],
    );
    const plain = fullLoop(new UniPCMultistepScheduler(testConfig({ final_sigmas_type: 'zero' })), start);
    expect(Math.max(...plain.data.map(Math.abs))).toBeGreaterThan(1);
    const thresholded = fullLoop(scheduler, start);
    expect(Math.max(...thresholded.data.map(Math.abs))).toBeLessThanOrEqual(1);
  });

  it('never modifies its inputs and resets its history and corrector state on setTimesteps', () => {
    const scheduler = new UniPCMultistepScheduler(testConfig({ solver_order: 3 }));
    const first = fullLoop(scheduler);
    scheduler.setTimesteps(10);
    const sample = dummySampleDeter();
    const output = dummyModel(sample, 999);
    const sampleCopy = Float32Array.from(sample.data);
    const outputCopy = Float32Array.from(output.data);
    const { prevSample } = scheduler.step(output, 999, sample);
    expect(prevSample.data).not.toBe(sample.data);
    expect(sample.data).toEqual(sampleCopy);
    expect(output.data).toEqual(outputCopy);
    expect(maxAbsDifference(fullLoop(scheduler), first)).toBe(0);
  });

  it('runs any order (order 4 on 10 steps) with finite results', () => {
    const sample = fullLoop(new UniPCMultistepScheduler(testConfig({ solver_order: 4 })));
    expect(sample.data.every(Number.isFinite)).toBe(true);
  });
});

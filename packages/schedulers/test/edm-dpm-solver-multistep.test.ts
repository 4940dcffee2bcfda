import { ConfigError, RandomGenerator, type TensorLike } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import type { SchedulerConfigInput } from '../src/config.js';
import {
  EDMDPMSolverMultistepScheduler,
  type EDMDPMSolverMultistepSchedulerConfig,
} from '../src/edm-dpm-solver-multistep.js';
import { EDMEulerScheduler } from '../src/edm-euler.js';
import { mixtureDistance } from './accuracy-table.js';
import { absSumMean, dummyModel, dummyNoiseDeter, dummySampleDeter } from './helpers/diffusers-fixtures.js';
import { expectPublished } from './helpers/published.js';

/** `get_scheduler_config` of diffusers' `tests/schedulers/test_scheduler_edm_dpmsolver_multistep.py`. */
const BASE: SchedulerConfigInput<EDMDPMSolverMultistepSchedulerConfig> = {
  sigma_min: 0.002,
  sigma_max: 80,
  sigma_data: 0.5,
  num_train_timesteps: 1000,
  solver_order: 2,
  prediction_type: 'epsilon',
  thresholding: false,
  sample_max_value: 1,
  algorithm_type: 'dpmsolver++',
  solver_type: 'midpoint',
  lower_order_final: false,
  euler_at_final: false,
  final_sigmas_type: 'sigma_min',
};

const make = (config: SchedulerConfigInput<EDMDPMSolverMultistepSchedulerConfig> = {}) =>
  new EDMDPMSolverMultistepScheduler({ ...BASE, ...config });

/** diffusers' `full_loop`: 10 steps of the dummy model on the raw sample (the test does not precondition). */
function fullLoopMean(config: SchedulerConfigInput<EDMDPMSolverMultistepSchedulerConfig> = {}): number {
  const scheduler = make(config);
  scheduler.setTimesteps(10);
  let sample: TensorLike = dummySampleDeter();
  for (const t of scheduler.timesteps) sample = scheduler.step(dummyModel(sample, t), t, sample).prevSample;
  return absSumMean(sample).mean;
}

describe('EDMDPMSolverMultistepScheduler: diffusers published loop values', () => {
  it('test_full_loop_no_noise: mean 0.0001', () => {
    expect(Math.abs(fullLoopMean() - 0.0001)).toBeLessThan(1e-3);
  });

  it('test_full_loop_with_noise: sum 8.1661, mean 0.0106 (from step 5 after add_noise)', () => {
    const scheduler = make();
    scheduler.setTimesteps(10);
    const timesteps = scheduler.timesteps.slice(5);
    let sample: TensorLike = scheduler.addNoise(dummySampleDeter(), dummyNoiseDeter(), timesteps[0]);
    for (const t of timesteps) sample = scheduler.step(dummyModel(sample, t), t, sample).prevSample;
    const { sum, mean } = absSumMean(sample);
    expectPublished(sum, '8.1661');
    expectPublished(mean, '0.0106');
  });

  it('test_full_loop_no_noise_thres (ratio 0.87, max 0.5): mean 0.0080', () => {
    const mean = fullLoopMean({ thresholding: true, dynamic_thresholding_ratio: 0.87, sample_max_value: 0.5 });
    expectPublished(mean, '0.008');
  });

  it('test_full_loop_with_v_prediction: mean 0.0092', () => {
    expect(Math.abs(fullLoopMean({ prediction_type: 'v_prediction' }) - 0.0092)).toBeLessThan(1e-3);
  });

  it('test_duplicated_timesteps: a 1000-step schedule keeps 1000 timesteps', () => {
    const scheduler = make();
    scheduler.setTimesteps(1000);
    expect(scheduler.timesteps).toHaveLength(1000);
  });
});

describe('EDMDPMSolverMultistepScheduler: the solver', () => {
  it('first order is the EDM Euler step (DPM-Solver-1 = DDIM = Euler in σ for α = 1)', () => {
    const dpm = make({ solver_order: 1, final_sigmas_type: 'zero' });
    const euler = new EDMEulerScheduler({ sigma_min: 0.002, sigma_max: 80 });
    dpm.setTimesteps(8);
    euler.setTimesteps(8);
    // The same σ up to float32 rounding (diffusers computes this schedule in float32, Euler's in float64).
    dpm.sigmas.forEach((s, i) => {
      expect(Math.abs(s - (i < 8 ? euler.sigmas[i] : 0))).toBeLessThanOrEqual(1e-6 * s);
    });
    let a: TensorLike = dummySampleDeter();
    let b: TensorLike = dummySampleDeter();
    for (const t of dpm.timesteps) {
      a = dpm.step(dummyModel(dpm.scaleModelInput(a, t), t), t, a).prevSample;
      b = euler.step(dummyModel(euler.scaleModelInput(b, t), t), t, b).prevSample;
    }
    for (let i = 0; i < a.data.length; i += 31) expect(a.data[i]).toBeCloseTo(b.data[i], 4);
  });

  it('every order and solver type, ODE and SDE, samples finite values; the SDE follows its generator', () => {
    for (const algorithm_type of ['dpmsolver++', 'sde-dpmsolver++'] as const) {
      for (const solver_type of ['midpoint', 'heun'] as const) {
        for (const solver_order of algorithm_type === 'dpmsolver++' ? [1, 2, 3] : [1, 2]) {
          const run = () => {
            const scheduler = make({ algorithm_type, solver_type, solver_order, final_sigmas_type: 'zero' });
            scheduler.setTimesteps(10);
            const generator = new RandomGenerator(0);
            let sample: TensorLike = dummySampleDeter();
            for (const t of scheduler.timesteps) {
              sample = scheduler.step(dummyModel(scheduler.scaleModelInput(sample, t), t), t, sample, {
                generator,
              }).prevSample;
            }
            return Array.from(sample.data);
          };
          const first = run();
          expect(first.every(Number.isFinite)).toBe(true);
          expect(run()).toEqual(first);
        }
      }
    }
  });

  it('driven by the exact mixture denoiser, the distance falls with the steps for orders 2 and 3', () => {
    for (const name of ['EDM DPM++ 2M', 'EDM DPM++ 3M', 'EDM DPM++ 2M SDE']) {
      const [d5, d25] = [5, 25].map((steps) => mixtureDistance(name, steps));
      expect(d25, name).toBeLessThan(d5 * 0.6);
      expect(d25, name).toBeLessThan(0.05);
    }
  });

  it('unsupported values are config errors', () => {
    expect(() => make({ algorithm_type: 'sde-dpmsolver++', solver_order: 3 })).toThrow(/solver_order 1 or 2/);
    expect(() => make({ algorithm_type: 'dpmsolver' as 'dpmsolver++' })).toThrow(ConfigError);
    expect(() => make({ prediction_type: 'sample' as 'epsilon' })).toThrow(/"prediction_type"/);
    expect(make({ algorithm_type: 'deis' as 'dpmsolver++', solver_type: 'logrho' as 'midpoint' }).config).toMatchObject(
      {
        algorithm_type: 'dpmsolver++',
        solver_type: 'midpoint',
      },
    );
    expect(EDMDPMSolverMultistepScheduler.compatibles).toEqual([]);
  });
});

import { ConfigError, InvalidArgumentError, RandomGenerator, type Tensor } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import { DPMSolverMultistepScheduler, type DPMSolverMultistepSchedulerConfig } from '../src/dpm-solver-multistep.js';
import { absSumMean, dummyModel, dummyNoiseDeter, dummySampleDeter } from './helpers/diffusers-fixtures.js';

/** `get_scheduler_config` of diffusers' `tests/schedulers/test_scheduler_dpm_multi.py`. */
function testConfig(overrides: Partial<DPMSolverMultistepSchedulerConfig> = {}) {
  return {
    num_train_timesteps: 1000,
    beta_start: 0.0001,
    beta_end: 0.02,
    beta_schedule: 'linear' as const,
    solver_order: 2,
    prediction_type: 'epsilon' as const,
    thresholding: false,
    sample_max_value: 1.0,
    algorithm_type: 'dpmsolver++' as const,
    solver_type: 'midpoint' as const,
    lower_order_final: false,
    euler_at_final: false,
    lambda_min_clipped: Number.NEGATIVE_INFINITY,
    variance_type: null,
    final_sigmas_type: 'sigma_min' as const,
    ...overrides,
  };
}

/** diffusers' `full_loop`: 10 steps of the dummy model from `dummy_sample_deter`, generator `manual_seed(0)`. */
function fullLoop(scheduler: DPMSolverMultistepScheduler): Tensor {
  scheduler.setTimesteps(10);
  const generator = new RandomGenerator(0);
  let sample: Tensor = dummySampleDeter();
  for (const t of scheduler.timesteps)
    sample = scheduler.step(dummyModel(sample, t), t, sample, { generator }).prevSample;
  return sample;
}

function fullLoopMean(overrides: Partial<DPMSolverMultistepSchedulerConfig> = {}): number {
  return absSumMean(fullLoop(new DPMSolverMultistepScheduler(testConfig(overrides)))).mean;
}

describe('DPMSolverMultistepScheduler: diffusers published loop values', () => {
  it('DPM-Solver++ 2M, 10 steps: mean 0.3301 (test_full_loop_no_noise)', () => {
    expect(Math.abs(fullLoopMean() - 0.3301)).toBeLessThan(1e-3);
  });

  it('thresholding ratio 0.87, max 0.5: mean 1.1364 (test_full_loop_no_noise_thres)', () => {
    const mean = fullLoopMean({ thresholding: true, dynamic_thresholding_ratio: 0.87, sample_max_value: 0.5 });
    expect(Math.abs(mean - 1.1364)).toBeLessThan(1e-3);
  });

  it('v_prediction: mean 0.2251', () => {
    expect(Math.abs(fullLoopMean({ prediction_type: 'v_prediction' }) - 0.2251)).toBeLessThan(1e-3);
  });

  it('Karras sigmas with v_prediction: mean 0.2096', () => {
    const mean = fullLoopMean({ prediction_type: 'v_prediction', use_karras_sigmas: true });
    expect(Math.abs(mean - 0.2096)).toBeLessThan(1e-3);
  });

  it('Lu lambdas with v_prediction: mean 0.1554', () => {
    const mean = fullLoopMean({ prediction_type: 'v_prediction', use_lu_lambdas: true });
    expect(Math.abs(mean - 0.1554)).toBeLessThan(1e-3);
  });

  it('img2img from step 5 with add_noise: sum 318.4111, mean 0.4146 (test_full_loop_with_noise)', () => {
    const scheduler = new DPMSolverMultistepScheduler(testConfig());
    scheduler.setTimesteps(10);
    const timesteps = scheduler.timesteps.slice(5);
    let sample = scheduler.addNoise(dummySampleDeter(), dummyNoiseDeter(), timesteps[0]);
    for (const t of timesteps) sample = scheduler.step(dummyModel(sample, t), t, sample).prevSample;
    const { sum, mean } = absSumMean(sample);
    expect(Math.abs(sum - 318.4111)).toBeLessThan(1e-2);
    expect(Math.abs(mean - 0.4146)).toBeLessThan(1e-3);
  });
});

describe('DPMSolverMultistepScheduler: schedule and configuration', () => {
  it('spaces 10 linspace timesteps like diffusers and ends at sigma_min or zero', () => {
    const scheduler = new DPMSolverMultistepScheduler(testConfig());
    scheduler.setTimesteps(10);
    expect(scheduler.timesteps).toEqual([999, 899, 799, 699, 599, 500, 400, 300, 200, 100]);
    const alphaBar0 = scheduler.alphasCumprod[0];
    expect(scheduler.sigmas[10]).toBeCloseTo(Math.sqrt((1 - alphaBar0) / alphaBar0), 7);
    const zero = new DPMSolverMultistepScheduler(testConfig({ final_sigmas_type: 'zero' }));
    zero.setTimesteps(10);
    expect(zero.sigmas[10]).toBe(0);
  });

  it('drops timesteps below lambda_min_clipped (cosine schedule)', () => {
    const scheduler = new DPMSolverMultistepScheduler(
      testConfig({ beta_schedule: 'squaredcos_cap_v2', lambda_min_clipped: -5.1 }),
    );
    scheduler.setTimesteps(10);
    // λ_t = ½·log(ᾱ_t/(1 − ᾱ_t)) of every timestep used stays at or above the clip.
    for (const t of scheduler.timesteps) {
      const a = scheduler.alphasCumprod[t];
      expect(0.5 * Math.log(a / (1 - a))).toBeGreaterThanOrEqual(-5.1);
    }
    const unclipped = new DPMSolverMultistepScheduler(testConfig({ beta_schedule: 'squaredcos_cap_v2' }));
    unclipped.setTimesteps(10);
    expect(unclipped.timesteps[0]).toBe(999);
    expect(scheduler.timesteps[0]).toBeLessThan(999);
  });

  it('loads the configs of UniPC and DEIS as diffusers does (test_switch)', () => {
    const fromUniPC = DPMSolverMultistepScheduler.fromConfig(
      { ...testConfig(), solver_type: 'bh2', predict_x0: true, _class_name: 'UniPCMultistepScheduler' },
      { onWarning: () => {} },
    );
    expect(fromUniPC.config.solver_type).toBe('midpoint');
    const fromDeis = DPMSolverMultistepScheduler.fromConfig(
      { ...testConfig(), algorithm_type: 'deis', solver_type: 'logrho' },
      { onWarning: () => {} },
    );
    expect(fromDeis.config.algorithm_type).toBe('dpmsolver++');
    expect(Math.abs(absSumMean(fullLoop(fromDeis)).mean - 0.3301)).toBeLessThan(1e-3);
  });

  it('rejects contradictory configs with a ConfigError', () => {
    expect(() => new DPMSolverMultistepScheduler({ algorithm_type: 'dpmsolver' })).toThrow(ConfigError);
    expect(() => new DPMSolverMultistepScheduler({ use_karras_sigmas: true, use_beta_sigmas: true })).toThrow(
      ConfigError,
    );
    expect(
      () =>
        new DPMSolverMultistepScheduler({
          algorithm_type: 'sde-dpmsolver',
          final_sigmas_type: 'sigma_min',
          solver_order: 3,
        }),
    ).toThrow(ConfigError);
    expect(() => new DPMSolverMultistepScheduler({ solver_order: 4 })).toThrow(ConfigError);
    expect(() => new DPMSolverMultistepScheduler({ use_flow_sigmas: true })).toThrow(ConfigError);
  });

  it('keeps the config JSON-safe: lambda_min_clipped -inf resolves to null', () => {
    const scheduler = new DPMSolverMultistepScheduler(testConfig());
    expect(scheduler.config.lambda_min_clipped).toBeNull();
    expect(JSON.parse(JSON.stringify(scheduler.toJSON()))).toEqual(scheduler.toJSON());
  });

  it('explains misuse with an InvalidArgumentError', () => {
    const scheduler = new DPMSolverMultistepScheduler(testConfig());
    const x = dummySampleDeter();
    expect(() => scheduler.step(x, 999, x)).toThrow(InvalidArgumentError);
    scheduler.setTimesteps(2);
    expect(() => scheduler.step({ data: new Float32Array(3), dims: [3] }, 999, x)).toThrow(InvalidArgumentError);
    scheduler.step(x, 999, x);
    scheduler.step(x, 500, x);
    expect(() => scheduler.step(x, 500, x)).toThrow(/setTimesteps/);
    expect(() =>
      new DPMSolverMultistepScheduler({ use_karras_sigmas: true }).setTimesteps({ timesteps: [900, 10] }),
    ).toThrow(InvalidArgumentError);
  });
});

describe('DPMSolverMultistepScheduler: zero terminal SNR', () => {
  it('starts from a finite sigma (last alpha_cumprod 2^-24, as diffusers) and samples finite values', () => {
    const scheduler = new DPMSolverMultistepScheduler(testConfig({ rescale_betas_zero_snr: true }));
    scheduler.setTimesteps(10);
    expect(scheduler.sigmas[0]).toBeCloseTo(Math.sqrt((1 - 2 ** -24) / 2 ** -24), 0);
    const sample = fullLoop(scheduler);
    expect(sample.data.every(Number.isFinite)).toBe(true);
  });
});

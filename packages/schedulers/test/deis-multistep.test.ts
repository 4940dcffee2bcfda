import { ConfigError, InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import type { SchedulerConfigInput } from '../src/config.js';
import { DEISMultistepScheduler, type DEISMultistepSchedulerConfig } from '../src/deis-multistep.js';
import { DPMSolverMultistepScheduler } from '../src/dpm-solver-multistep.js';
import { UniPCMultistepScheduler } from '../src/unipc-multistep.js';
import { mixtureDistance } from './accuracy-table.js';
import { absSumMean, dummyModel, dummyNoiseDeter, dummySampleDeter } from './helpers/diffusers-fixtures.js';
import { expectPublished } from './helpers/published.js';

/** `get_scheduler_config` of diffusers' `tests/schedulers/test_scheduler_deis.py`. */
const BASE = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  solver_order: 2,
} as const;

/** diffusers' `full_loop`: 10 steps of the dummy model from `dummy_sample_deter`. */
function fullLoop(scheduler: {
  setTimesteps(n: number): void;
  timesteps: readonly number[];
  step: DEISMultistepScheduler['step'];
}) {
  scheduler.setTimesteps(10);
  let sample: TensorLike = dummySampleDeter();
  for (const t of scheduler.timesteps) sample = scheduler.step(dummyModel(sample, t), t, sample).prevSample;
  return absSumMean(sample);
}

const deis = (config: SchedulerConfigInput<DEISMultistepSchedulerConfig> = {}) =>
  new DEISMultistepScheduler({ ...BASE, ...config });

describe('DEISMultistepScheduler: diffusers published loop values', () => {
  it('test_full_loop_no_noise: mean 0.23916', () => {
    expect(Math.abs(fullLoop(deis()).mean - 0.23916)).toBeLessThan(1e-3);
  });

  it('test_full_loop_with_v_prediction: mean 0.091', () => {
    expect(Math.abs(fullLoop(deis({ prediction_type: 'v_prediction' })).mean - 0.091)).toBeLessThan(1e-3);
  });

  it('test_full_loop_with_noise: sum 315.3016, mean 0.41054 (from step 8 after add_noise)', () => {
    const scheduler = deis();
    scheduler.setTimesteps(10);
    const timesteps = scheduler.timesteps.slice(8);
    let sample: TensorLike = scheduler.addNoise(dummySampleDeter(), dummyNoiseDeter(), timesteps[0]);
    for (const t of timesteps) sample = scheduler.step(dummyModel(sample, t), t, sample).prevSample;
    const { sum, mean } = absSumMean(sample);
    expect(Math.abs(sum - 315.3016)).toBeLessThan(1e-2);
    expectPublished(mean, '0.41054');
  });

  it('test_switch: DEIS → DPM-Solver → UniPC → DEIS through fromConfig gives the same mean 0.23916', () => {
    const first = deis();
    const back = DEISMultistepScheduler.fromConfig(
      UniPCMultistepScheduler.fromConfig(DPMSolverMultistepScheduler.fromConfig(first.config).config).config,
      { onWarning: () => {} },
    );
    expect(back.config.algorithm_type).toBe('deis');
    expect(back.config.solver_type).toBe('logrho');
    expect(Math.abs(fullLoop(back).mean - 0.23916)).toBeLessThan(1e-3);
  });

  it('test_solver_order_and_type: orders 1–3 with ε and x_0 prediction give finite samples', () => {
    for (const solver_order of [1, 2, 3]) {
      for (const prediction_type of ['epsilon', 'sample'] as const) {
        const scheduler = deis({ solver_order, prediction_type });
        scheduler.setTimesteps(10);
        let sample: TensorLike = dummySampleDeter();
        for (const t of scheduler.timesteps) sample = scheduler.step(dummyModel(sample, t), t, sample).prevSample;
        expect(sample.data.every(Number.isFinite)).toBe(true);
      }
    }
  });
});

describe('DEISMultistepScheduler: the log-ρ Adams–Bashforth coefficients', () => {
  // With ρ = σ (the k-diffusion σ), x/α = x/α|_s + ∫ ε̂ dρ along the ODE. Feeding ε̂_k = p(log σ_k) for a polynomial p
  // of degree order − 1, each step after the warm-up must add exactly ∫ p(log ρ) dρ over [σ_k, σ_{k+1}].
  const antiderivative = [
    (r: number) => r, // ∫ 1 dρ
    (r: number) => r * (Math.log(r) - 1), // ∫ log ρ dρ
    (r: number) => r * (Math.log(r) ** 2 - 2 * Math.log(r) + 2), // ∫ log² ρ dρ
  ];
  const poly = [0.7, -0.3, 0.05];

  it.each([1, 2, 3])('order %i integrates a degree-(order − 1) polynomial in log ρ exactly', (order) => {
    const scheduler = deis({
      solver_order: order,
      lower_order_final: false,
      beta_schedule: 'scaled_linear',
      beta_start: 0.00085,
      beta_end: 0.012,
    });
    scheduler.setTimesteps(12);
    let x: TensorLike = new Tensor(new Float32Array([0.25]), [1, 1]);
    const alphaOf = (sigma: number) => 1 / Math.sqrt(sigma * sigma + 1);
    scheduler.timesteps.forEach((t, k) => {
      const s = scheduler.sigmas[k];
      const next = scheduler.sigmas[k + 1];
      let eps = 0;
      for (let j = 0; j < order; j++) eps += poly[j] * Math.log(s) ** j;
      const prev = scheduler.step(new Tensor(new Float32Array([eps]), [1, 1]), t, x).prevSample;
      if (k >= order - 1) {
        let exact = 0;
        for (let j = 0; j < order; j++) exact += poly[j] * (antiderivative[j](next) - antiderivative[j](s));
        const increment = prev.data[0] / alphaOf(next) - x.data[0] / alphaOf(s);
        expect(Math.abs(increment - exact), `step ${k}`).toBeLessThan(2e-6 * Math.max(1, Math.abs(exact)) + 1e-6);
      }
      x = prev;
    });
  });

  it('driven by the exact mixture ε̂, every order gets closer to the true distribution with more steps', () => {
    // The mixture's narrow components make ε̂ stiff near σ = 0, where multistep extrapolation over the last large
    // log-ρ steps costs accuracy (DPM-Solver behaves alike), so orders are compared at 10 steps only.
    for (const name of ['DEIS 1 (DDIM)', 'DEIS 2', 'DEIS 3']) {
      const [d5, d50] = [5, 50].map((steps) => mixtureDistance(name, steps));
      expect(d50, name).toBeLessThan(d5 * 0.4);
      expect(d50, name).toBeLessThan(0.045);
    }
    expect(mixtureDistance('DEIS 3', 10)).toBeLessThan(mixtureDistance('DEIS 1 (DDIM)', 10));
  });
});

describe('DEISMultistepScheduler: schedule and bad input', () => {
  it('ends on the smallest training σ, not 0; Karras spacing repeats its last σ', () => {
    const plain = deis();
    plain.setTimesteps(10);
    expect(plain.sigmas[10]).toBeGreaterThan(0);
    expect(plain.sigmas[10]).toBeCloseTo(Math.sqrt((1 - plain.alphasCumprod[0]) / plain.alphasCumprod[0]), 6);
    const karras = deis({ use_karras_sigmas: true });
    karras.setTimesteps(10);
    expect(karras.sigmas[10]).toBe(karras.sigmas[9]);
  });

  it('refuses the flow-matching options, two spacings, and a sigmoid β schedule (diffusers has none for DEIS)', () => {
    expect(() => deis({ use_flow_sigmas: true })).toThrow(/FlowMatchEulerDiscreteScheduler/);
    expect(() => deis({ use_karras_sigmas: true, use_beta_sigmas: true })).toThrow(ConfigError);
    expect(() => deis({ beta_schedule: 'sigmoid' as 'linear' })).toThrow(/"beta_schedule" must be one of/);
    expect(() => deis({ algorithm_type: 'unipc' as 'deis' })).toThrow(/"algorithm_type" must be one of "deis"/);
    expect(() => deis({ solver_order: 4 })).toThrow(/"solver_order"/);
    const scheduler = deis();
    scheduler.setTimesteps(10);
    const x = dummySampleDeter();
    expect(() => scheduler.step(x, scheduler.timesteps[1] + 1, x)).toThrow(InvalidArgumentError);
  });
});

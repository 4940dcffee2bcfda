import type { TensorLike } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import type { SchedulerConfigInput } from '../src/config.js';
import { DPMSolverMultistepScheduler } from '../src/dpm-solver-multistep.js';
import {
  DPMSolverSinglestepScheduler,
  type DPMSolverSinglestepSchedulerConfig,
  singlestepOrders,
} from '../src/dpm-solver-singlestep.js';
import { UniPCMultistepScheduler } from '../src/unipc-multistep.js';
import { mixtureDistance, TABLE_STEPS } from './accuracy-table.js';
import { absSumMean, dummyModel, dummyNoiseDeter, dummySampleDeter } from './helpers/diffusers-fixtures.js';
import { expectPublished } from './helpers/published.js';

/** diffusers' `DPMSolverSinglestepSchedulerTest.get_scheduler_config`. */
const BASE = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  solver_order: 2,
  prediction_type: 'epsilon',
  thresholding: false,
  sample_max_value: 1.0,
  algorithm_type: 'dpmsolver++',
  solver_type: 'midpoint',
  lambda_min_clipped: Number.NEGATIVE_INFINITY,
  variance_type: null,
  final_sigmas_type: 'sigma_min',
} as const;

type Config = SchedulerConfigInput<DPMSolverSinglestepSchedulerConfig>;

/** diffusers' `full_loop`: 10 steps from dummy_sample_deter with the dummy model. */
function fullLoop(config: Config = {}, scheduler = new DPMSolverSinglestepScheduler({ ...BASE, ...config })) {
  scheduler.setTimesteps(10);
  let sample: TensorLike = dummySampleDeter();
  for (const t of scheduler.timesteps) sample = scheduler.step(dummyModel(sample, t), t, sample).prevSample;
  return { ...absSumMean(sample), sample, scheduler };
}

describe('DPMSolverSinglestepScheduler', () => {
  it('reproduces diffusers test_full_loop_no_noise (mean 0.2791)', () => {
    expect(Math.abs(fullLoop().mean - 0.2791)).toBeLessThan(1e-3);
  });

  it('reproduces diffusers test_full_loop_with_karras (mean 0.2248)', () => {
    expect(Math.abs(fullLoop({ use_karras_sigmas: true }).mean - 0.2248)).toBeLessThan(1e-3);
  });

  it('reproduces diffusers test_full_loop_with_v_prediction (mean 0.1453)', () => {
    expect(Math.abs(fullLoop({ prediction_type: 'v_prediction' }).mean - 0.1453)).toBeLessThan(1e-3);
  });

  it('reproduces diffusers test_full_loop_with_karras_and_v_prediction (mean 0.0649)', () => {
    const { mean } = fullLoop({ prediction_type: 'v_prediction', use_karras_sigmas: true });
    expectPublished(mean, '0.0649');
  });

  it('reproduces diffusers test_full_uneven_loop: 50 steps entered at the 4th timestep (mean 0.2574)', () => {
    const scheduler = new DPMSolverSinglestepScheduler(BASE);
    scheduler.setTimesteps(50);
    let sample: TensorLike = dummySampleDeter();
    for (const t of scheduler.timesteps.slice(3)) {
      sample = scheduler.step(dummyModel(sample, t), t, sample).prevSample;
    }
    expect(Math.abs(absSumMean(sample).mean - 0.2574)).toBeLessThan(1e-3);
  });

  it('reproduces diffusers test_full_loop_with_noise (sum 269.2187, mean 0.3505)', () => {
    const scheduler = new DPMSolverSinglestepScheduler(BASE);
    scheduler.setTimesteps(10);
    const timesteps = scheduler.timesteps.slice(5);
    let sample: TensorLike = scheduler.addNoise(dummySampleDeter(), dummyNoiseDeter(), timesteps[0]);
    for (const t of timesteps) sample = scheduler.step(dummyModel(sample, t), t, sample).prevSample;
    const { sum, mean } = absSumMean(sample);
    expect(Math.abs(sum - 269.2187)).toBeLessThan(1e-2);
    expectPublished(mean, '0.3505');
  });

  it('reproduces diffusers test_switch: through DPMSolverMultistep and UniPC configs and back (mean 0.2791)', () => {
    // diffusers also passes through DEISMultistepScheduler, which is added separately (issue #15).
    const first = fullLoop();
    expect(Math.abs(first.mean - 0.2791)).toBeLessThan(1e-3);
    const quiet = { onWarning: () => {} };
    const multistep = DPMSolverMultistepScheduler.fromConfig(first.scheduler.config, quiet);
    const unipc = UniPCMultistepScheduler.fromConfig(multistep.config, quiet);
    const back = DPMSolverSinglestepScheduler.fromConfig(unipc.config, quiet);
    expect(Math.abs(fullLoop({}, back).mean - 0.2791)).toBeLessThan(1e-3);
  });

  it('test_solver_order_and_type: every algorithm, solver type, order and prediction type samples finite values', () => {
    for (const algorithm_type of ['dpmsolver', 'dpmsolver++', 'sde-dpmsolver++'] as const) {
      for (const solver_type of ['midpoint', 'heun'] as const) {
        for (const solver_order of [1, 2, 3]) {
          for (const prediction_type of ['epsilon', 'sample'] as const) {
            const { sample } = fullLoop({ algorithm_type, solver_type, solver_order, prediction_type });
            expect(sample.data.every(Number.isFinite), `${algorithm_type} ${solver_type} ${solver_order}`).toBe(true);
          }
        }
      }
    }
  });

  it('test_custom_timesteps: the default timesteps given explicitly give the same samples', () => {
    for (const prediction_type of ['epsilon', 'sample', 'v_prediction'] as const) {
      for (const lower_order_final of [true, false]) {
        for (const final_sigmas_type of ['sigma_min', 'zero'] as const) {
          const config = { ...BASE, prediction_type, lower_order_final, final_sigmas_type };
          const { sample, scheduler } = fullLoop(config);
          const custom = new DPMSolverSinglestepScheduler(config);
          custom.setTimesteps({ timesteps: scheduler.timesteps });
          let x: TensorLike = dummySampleDeter();
          for (const t of custom.timesteps) x = custom.step(dummyModel(x, t), t, x).prevSample;
          let difference = 0;
          for (let i = 0; i < x.data.length; i++) difference += Math.abs(x.data[i] - sample.data[i]);
          expect(difference).toBeLessThan(1e-5);
        }
      }
    }
  });

  it("builds diffusers' order lists, lowering the final orders when asked or when the steps do not divide", () => {
    expect(singlestepOrders(6, 2, false)).toEqual([1, 2, 1, 2, 1, 2]);
    expect(singlestepOrders(6, 2, true)).toEqual([1, 2, 1, 2, 1, 1]);
    expect(singlestepOrders(5, 2, true)).toEqual([1, 2, 1, 2, 1]);
    expect(singlestepOrders(6, 3, true)).toEqual([1, 2, 3, 1, 2, 1]);
    expect(singlestepOrders(7, 3, true)).toEqual([1, 2, 3, 1, 2, 3, 1]);
    expect(singlestepOrders(8, 3, true)).toEqual([1, 2, 3, 1, 2, 3, 1, 2]);
    expect(singlestepOrders(3, 1, true)).toEqual([1, 1, 1]);
    const s = new DPMSolverSinglestepScheduler({ solver_order: 3, final_sigmas_type: 'sigma_min' });
    s.setTimesteps(9);
    expect(s.orderList).toEqual([1, 2, 3, 1, 2, 3, 1, 2, 3]);
    // An odd count or a final σ of 0 switches lower_order_final on, as diffusers does.
    s.setTimesteps(8);
    expect(s.orderList).toEqual([1, 2, 3, 1, 2, 3, 1, 2]);
    const zero = new DPMSolverSinglestepScheduler({ solver_order: 3 });
    zero.setTimesteps(8);
    expect(zero.orderList).toEqual([1, 2, 3, 1, 2, 3, 1, 1]);
  });

  it('on Gaussian data (exact x̂_0 linear in x, closed-form ODE) orders 1, 2, 3 converge at their order', () => {
    // For N(0, s²) data the exact denoiser is x̂_0 = α s²/(α² s² + σ_t²) · x_t; uniform steps in log σ.
    const s2 = 0.25;
    const exact = (config: Config, steps: number) => {
      const scheduler = new DPMSolverSinglestepScheduler({
        ...BASE,
        prediction_type: 'sample',
        final_sigmas_type: 'sigma_min',
        use_exponential_sigmas: true,
        ...config,
      });
      scheduler.setTimesteps(steps);
      const sigmas = scheduler.sigmas;
      let x = 1;
      scheduler.timesteps.forEach((t, i) => {
        const alpha = 1 / Math.sqrt(sigmas[i] ** 2 + 1);
        const sigmaT = sigmas[i] * alpha;
        const x0 = ((alpha * s2) / (alpha * alpha * s2 + sigmaT * sigmaT)) * x;
        x = scheduler.step({ data: new Float32Array([x0]), dims: [1, 1] }, t, {
          data: new Float32Array([x]),
          dims: [1, 1],
        }).prevSample.data[0];
      });
      // The probability-flow ODE scales x by √(α_end² s² + σ_end²)/√(α_0² s² + σ_0²).
      const [a0, aN] = [sigmas[0], sigmas[sigmas.length - 1]].map((s) => 1 / Math.sqrt(s * s + 1));
      const truth = Math.sqrt(
        (aN * aN * s2 + (sigmas[sigmas.length - 1] * aN) ** 2) / (a0 * a0 * s2 + (sigmas[0] * a0) ** 2),
      );
      return Math.abs(x - truth);
    };
    for (const solver_order of [1, 2, 3]) {
      const coarse = exact({ solver_order }, 12);
      const fine = exact({ solver_order }, 24);
      // Halving the step size divides the error by about 2^order.
      expect(coarse / fine, `order ${solver_order}`).toBeGreaterThan(2 ** solver_order * 0.6);
    }
  });

  it('DPM++ 2S and its third order: on the exact denoiser of a Gaussian mixture the distance shrinks over 10, 20, 50 steps', () => {
    // diffusers' linspace timesteps end at t = T/n, from where the last (first-order) step jumps to σ = 0 with
    // x̂_0 = E[x_0 | x_t], which narrows the components: that floor, not the solver, dominates at 50 steps.
    for (const name of ['DPM++ 2S', 'DPM++ 3S (solver_order 3)']) {
      const [d10, d20, d50] = TABLE_STEPS.map((steps) => mixtureDistance(name, steps));
      expect(d20, name).toBeLessThan(d10);
      expect(d50, name).toBeLessThan(d20);
      expect(d50, name).toBeLessThan(0.035);
    }
  });

  it('DPM++ 2S Karras (ending at σ_min): within 0.025 of the mixture from 20 steps on, at the Monte Carlo floor', () => {
    const [d10, d20, d50] = TABLE_STEPS.map((steps) => mixtureDistance('DPM++ 2S Karras', steps));
    expect(d20).toBeLessThan(d10);
    expect(d20).toBeLessThan(0.025);
    expect(d50).toBeLessThan(0.025);
  });
});

import { ConfigError, RandomGenerator, Tensor, type TensorLike } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import type { SchedulerConfigInput } from '../src/config.js';
import { EDMEulerScheduler, type EDMEulerSchedulerConfig } from '../src/edm-euler.js';
import { compatibleSchedulers } from '../src/registry.js';
import { exactEdmOutput, mixtureDistance } from './accuracy-table.js';
import { absSumMean, dummyModel, dummySampleDeter } from './helpers/diffusers-fixtures.js';
import { posterior, seededNormal, TEST_MIXTURE } from './helpers/mixture.js';

function scaled(x: TensorLike, factor: number): Tensor {
  return new Tensor(
    x.data.map((v) => Math.fround(v * factor)),
    x.dims,
  );
}

/** diffusers' `EDMEulerSchedulerTest` loop: `dummy_sample_deter · init_noise_sigma`, c_in-scaled model input. */
function fullLoop(config: SchedulerConfigInput<EDMEulerSchedulerConfig>, steps: number) {
  const scheduler = new EDMEulerScheduler(config);
  scheduler.setTimesteps(steps);
  let sample: TensorLike = scaled(dummySampleDeter(), scheduler.initNoiseSigma);
  for (const t of scheduler.timesteps) {
    const input = scheduler.scaleModelInput(sample, t);
    sample = scheduler.step(dummyModel(input, t), t, sample).prevSample;
  }
  return { scheduler, ...absSumMean(sample) };
}

/**
 * diffusers asserts one loop only; these 3-step figures were computed by hand from diffusers' formulas (float32
 * as torch: Karras σ from a float64 ramp, exponential σ from a float32 torch.linspace of log σ, c_noise = ¼ ln σ,
 * D = c_skip·x + c_out·F); the same script reproduces diffusers' published 34.1855 for the 10-step loop.
 */
const HAND_REFERENCES: {
  name: string;
  config: SchedulerConfigInput<EDMEulerSchedulerConfig>;
  sigmas: number[];
  sum: number;
  mean: number;
}[] = [
  {
    name: 'defaults',
    config: {},
    sigmas: [80, 2.51521897315979, 0.0020000000949949026, 0],
    sum: 80.1666258656187,
    mean: 0.10438362742919101,
  },
  {
    name: 'v_prediction',
    config: { prediction_type: 'v_prediction' },
    sigmas: [80, 2.51521897315979, 0.0020000000949949026, 0],
    sum: 2.5554888706683414,
    mean: 0.0033274594670160695,
  },
  {
    name: 'exponential',
    config: { sigma_schedule: 'exponential' },
    sigmas: [80.00000762939453, 0.3999999761581421, 0.001999999862164259, 0],
    sum: 120.23899792067823,
    mean: 0.15656119520921644,
  },
  {
    name: 'final_sigmas_type sigma_min',
    config: { final_sigmas_type: 'sigma_min' },
    sigmas: [80, 2.51521897315979, 0.0020000000949949026, 0.0020000000949949026],
    sum: 79.27802996546961,
    mean: 0.10322660151753855,
  },
  {
    name: 'sigma_data 1, rho 3',
    config: { sigma_data: 1, rho: 3 },
    sigmas: [80, 10.903104782104492, 0.0020000000949949026, 0],
    sum: 186.41314477997366,
    mean: 0.24272544893225736,
  },
];

describe('EDMEulerScheduler', () => {
  it('reproduces diffusers test_full_loop_no_noise (sum 34.1855, mean 0.044)', () => {
    const { sum, mean } = fullLoop({ num_train_timesteps: 256, sigma_min: 0.002, sigma_max: 80 }, 10);
    expect(Math.abs(sum - 34.1855)).toBeLessThan(1e-3);
    // diffusers prints the mean as 0.044 (truncated, not rounded, from 0.04451); the sum's digits hold it to 1e-3/768.
    expect(Math.abs(mean - 34.1855 / 768)).toBeLessThan(1e-3 / 768);
  });

  it.each(HAND_REFERENCES)('3-step loop, $name: sigmas and sum/mean of |x| from diffusers’ formulas', (ref) => {
    const { scheduler, sum, mean } = fullLoop(ref.config, 3);
    // Within an ulp of float32: torch's float32 exp may round the other way.
    ref.sigmas.forEach((s, i) => {
      expect(Math.abs(scheduler.sigmas[i] - s)).toBeLessThanOrEqual(1e-7 * s);
    });
    scheduler.timesteps.forEach((t, i) => {
      expect(t).toBeCloseTo(0.25 * Math.log(ref.sigmas[i]), 6);
    });
    expect(Math.abs(sum / ref.sum - 1)).toBeLessThan(1e-4);
    expect(Math.abs(mean / ref.mean - 1)).toBeLessThan(1e-4);
  });

  it('the preconditioning of Table 1: c_in·x at the step σ, init noise √(σ_max² + 1)', () => {
    const scheduler = new EDMEulerScheduler({ sigma_data: 0.7 });
    scheduler.setTimesteps(4);
    expect(scheduler.initNoiseSigma).toBe(Math.sqrt(80 ** 2 + 1));
    const x = dummySampleDeter();
    const t = scheduler.timesteps[0];
    const input = scheduler.scaleModelInput(x, t);
    expect(input.data[100]).toBeCloseTo(x.data[100] / Math.sqrt(80 ** 2 + 0.49), 7);
  });

  it('an exact denoiser of a point mass: one Euler step to σ = 0 lands on it (D does not depend on σ)', () => {
    // For x_0 = m, D(x; σ) = m, and x + (0 − σ)·(x − m)/σ = m exactly, whatever x.
    const scheduler = new EDMEulerScheduler({ sigma_data: 0.5 });
    scheduler.setTimesteps(1);
    const sigma = scheduler.sigmas[0];
    const x = seededNormal(1).randn([8, 1]);
    const cSkip = 0.25 / (sigma * sigma + 0.25);
    const cOut = (sigma * 0.5) / Math.sqrt(sigma * sigma + 0.25);
    const f = new Tensor(
      x.data.map((v) => (0.4 - cSkip * v) / cOut),
      x.dims,
    );
    const { prevSample, predOriginalSample } = scheduler.step(f, scheduler.timesteps[0], x);
    for (const v of prevSample.data) expect(v).toBeCloseTo(0.4, 4);
    for (const v of predOriginalSample?.data ?? []) expect(v).toBeCloseTo(0.4, 4);
  });

  it('the exact EDM output of the mixture recovers the posterior mean as D', () => {
    const x = seededNormal(2).randn([32, 1]);
    const sigma = 1.7;
    const f = exactEdmOutput(x, sigma);
    const scale = 1 / Math.sqrt(1 + sigma * sigma);
    const { mean } = posterior(
      TEST_MIXTURE,
      x.data.map((v) => v * scale),
      scale * scale,
    );
    const cSkip = 0.25 / (sigma * sigma + 0.25);
    const cOut = (sigma * 0.5) / Math.sqrt(sigma * sigma + 0.25);
    for (let i = 0; i < 32; i++) expect(cSkip * x.data[i] + cOut * f.data[i]).toBeCloseTo(mean[i], 5);
  });

  it('driven by the exact mixture denoiser, the distance to the true distribution falls with the steps', () => {
    for (const name of ['Euler (EDM), Karras σ', 'Euler (EDM), exponential σ']) {
      const d = [5, 20, 50].map((steps) => mixtureDistance(name, steps));
      expect(d[1], name).toBeLessThan(d[0] * 0.5);
      expect(d[2], name).toBeLessThan(d[1] * 0.6);
      expect(d[2], name).toBeLessThan(0.03);
    }
  });

  it('churn adds √(σ̂² − σ²)·z before the step, with the generator’s noise', () => {
    const run = (options: object) => {
      const scheduler = new EDMEulerScheduler();
      scheduler.setTimesteps(10);
      const t = scheduler.timesteps[3];
      scheduler.setBeginIndex(3);
      return scheduler.step(dummySampleDeter(), t, dummySampleDeter(), options).prevSample;
    };
    const a = run({ sChurn: 2, generator: new RandomGenerator(0) });
    const b = run({ sChurn: 2, generator: new RandomGenerator(0) });
    const plain = run({});
    expect(Array.from(a.data)).toEqual(Array.from(b.data));
    expect(Array.from(a.data)).not.toEqual(Array.from(plain.data));
  });

  it('addNoise is x_0 + σ·ε at the timestep’s σ', () => {
    const scheduler = new EDMEulerScheduler();
    scheduler.setTimesteps(5);
    const out = scheduler.addNoise(dummySampleDeter(), dummySampleDeter(true), scheduler.timesteps[2]);
    const sigma = scheduler.sigmas[2];
    expect(out.data[10]).toBeCloseTo(dummySampleDeter().data[10] + sigma * dummySampleDeter(true).data[10], 5);
  });

  it('is compatible with no β-schedule class; unsupported values are config errors', () => {
    expect(EDMEulerScheduler.compatibles).toEqual([]);
    // diffusers' KarrasDiffusionSchedulers lists EDMEulerScheduler, so DDIM and friends claim its configs, but
    // EDM claims none of theirs.
    expect(compatibleSchedulers('DDIMScheduler')).not.toContain('EDMEulerScheduler');
    expect(() => new EDMEulerScheduler({ sigma_schedule: 'linear' as 'karras' })).toThrow(ConfigError);
    expect(() => new EDMEulerScheduler({ prediction_type: 'sample' as 'epsilon' })).toThrow(
      /"prediction_type" must be one of "epsilon", "v_prediction"/,
    );
    expect(() => new EDMEulerScheduler({ sigma_data: 0 })).toThrow(/"sigma_data" must be a finite number > 0/);
  });
});

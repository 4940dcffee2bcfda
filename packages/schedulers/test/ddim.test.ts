import { InvalidArgumentError, RandomGenerator, Tensor, type TensorLike } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import { DDIMScheduler, DDPMScheduler } from '../src/index.js';
import { absSumMean, dummyModel, dummyNoiseDeter, dummySampleDeter } from './helpers/diffusers-fixtures.js';
import { expectPublished } from './helpers/published.js';

// The config of diffusers' tests/schedulers/test_scheduler_ddim.py.
const testConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  clip_sample: true,
} as const;

function fullLoop(config: ConstructorParameters<typeof DDIMScheduler>[0]): TensorLike {
  const scheduler = new DDIMScheduler({ ...testConfig, ...config });
  scheduler.setTimesteps(10);
  let sample: TensorLike = dummySampleDeter();
  for (const t of scheduler.timesteps) {
    sample = scheduler.step(dummyModel(sample, t), t, sample, { eta: 0 }).prevSample;
  }
  return sample;
}

describe('DDIMScheduler parity with diffusers (test_scheduler_ddim.py)', () => {
  it.each([
    ['epsilon', {}, 172.0067, 0.223967],
    ['v_prediction', { prediction_type: 'v_prediction' as const }, 52.5302, 0.0684],
    ['set_alpha_to_one', { set_alpha_to_one: true, beta_start: 0.01 }, 149.8295, 0.1951],
    ['no set_alpha_to_one', { set_alpha_to_one: false, beta_start: 0.01 }, 149.0784, 0.1941],
  ])('10-step loop, %s: sum %f, mean %f', (_name, config, expectedSum, expectedMean) => {
    const { sum, mean } = absSumMean(fullLoop(config));
    expect(Math.abs(sum - expectedSum)).toBeLessThan(1e-2);
    expect(Math.abs(mean - expectedMean)).toBeLessThan(1e-3);
  });

  it('loop from addNoise at the 9th of 10 timesteps: sum 354.5418, mean 0.4616', () => {
    const s = new DDIMScheduler(testConfig);
    s.setTimesteps(10);
    const timesteps = s.timesteps.slice(8);
    let sample: TensorLike = s.addNoise(dummySampleDeter(), dummyNoiseDeter(), [timesteps[0]]);
    for (const t of timesteps) sample = s.step(dummyModel(sample, t), t, sample).prevSample;
    const { sum, mean } = absSumMean(sample);
    expect(Math.abs(sum - 354.5418)).toBeLessThan(1e-2);
    expectPublished(mean, '0.4616');
  });

  it('getVariance of published timestep pairs', () => {
    const s = new DDIMScheduler(testConfig);
    const cases: [number, number, number][] = [
      [0, 0, 0],
      [420, 400, 0.14771],
      [980, 960, 0.3246],
      [487, 486, 0.00979],
      [999, 998, 0.02],
    ];
    for (const [t, prev, expected] of cases) expect(Math.abs(s.getVariance(t, prev) - expected)).toBeLessThan(1e-5);
  });

  it('steps_offset = 1 gives timesteps [801, 601, 401, 201, 1]', () => {
    const s = new DDIMScheduler({ ...testConfig, steps_offset: 1 });
    s.setTimesteps(5);
    expect(s.timesteps).toEqual([801, 601, 401, 201, 1]);
  });

  it('steps to t − T // n whatever the spacing (as diffusers), and to the next custom timestep', () => {
    const s = new DDIMScheduler({ timestep_spacing: 'trailing' });
    s.setTimesteps(3);
    expect(s.timesteps).toEqual([999, 666, 332]);
    expect(s.timesteps.map((t) => s.previousTimestep(t))).toEqual([666, 333, -1]);
    s.setTimesteps({ timesteps: [999, 800, 500, 0] });
    expect(s.timesteps.map((t) => s.previousTimestep(t))).toEqual([800, 500, 0, -1]);
  });

  it('rejects a step before setTimesteps, zero steps, both noise sources and too large an eta', () => {
    const s = new DDIMScheduler(testConfig);
    const sample = dummySampleDeter();
    expect(() => s.step(sample, 999, sample)).toThrow(/setTimesteps/);
    expect(() => s.setTimesteps(0)).toThrow(InvalidArgumentError);
    s.setTimesteps(10);
    const t = s.timesteps[0];
    const noise = new RandomGenerator(0).randn(sample.dims);
    expect(() => s.step(sample, t, sample, { eta: 1, noise, generator: new RandomGenerator(0) })).toThrow(/not both/);
    expect(() => s.step(sample, t, sample, { eta: 3, noise })).toThrow(/eta <= 1/);
    expect(() => s.step(sample, t, sample, { eta: -1 })).toThrow(/eta/);
  });
});

describe('DDIMScheduler step values', () => {
  it('η = 0 draws no noise: the generator is left as it was', () => {
    const s = new DDIMScheduler(testConfig);
    s.setTimesteps(10);
    const sample = dummySampleDeter();
    const generator = new RandomGenerator(9);
    s.step(dummyModel(sample, 500), 500, sample, { eta: 0, generator });
    expect(generator.randn([8]).data).toEqual(new RandomGenerator(9).randn([8]).data);
  });

  it('dynamic thresholding bounds x̂_0 as DDPM does; ε̂ comes from the unthresholded prediction (DDIM eq. 12)', () => {
    const config = {
      prediction_type: 'sample',
      thresholding: true,
      dynamic_thresholding_ratio: 0.9,
      sample_max_value: 2,
    } as const;
    const s = new DDIMScheduler(config);
    s.setTimesteps(10);
    const sample = dummySampleDeter();
    const x0 = new Tensor(
      Float32Array.from({ length: sample.data.length }, (_, i) => 3 * Math.sin(i)),
      sample.dims,
    );
    const { prevSample, predOriginalSample } = s.step(x0, 500, sample);
    const thresholded = new DDPMScheduler(config).step(x0, 0, sample).predOriginalSample!;
    expect(thresholded.data.every((v) => Math.abs(v) <= 1)).toBe(true);
    const [alphaBar, alphaBarPrev] = [s.alphasCumprod[500], s.alphasCumprod[400]];
    for (let i = 0; i < sample.data.length; i++) {
      expect(predOriginalSample!.data[i]).toBeCloseTo(thresholded.data[i], 6);
      const eps = (sample.data[i] - Math.sqrt(alphaBar) * x0.data[i]) / Math.sqrt(1 - alphaBar);
      const expected = Math.sqrt(alphaBarPrev) * thresholded.data[i] + Math.sqrt(1 - alphaBarPrev) * eps;
      expect(prevSample.data[i]).toBeCloseTo(expected, 5);
    }
  });
});

describe('DDIMScheduler.step from any training timestep, as diffusers (t → t − T // n)', () => {
  it('reproduces DDIMParallelScheduler test_batch_step_no_noise: t = 0, 1, 2 after setTimesteps(10), sum 1147.7904, mean 0.4982', () => {
    // diffusers' test steps dummy_sample_deter at t = 0, itself + 0.1 at t = 1 and itself − 0.1 at t = 2, none of
    // them on the 10-step schedule [900, 800, …, 0]; each goes to t − 100 < 0, i.e. ᾱ_prev = 1.
    const s = new DDIMScheduler(testConfig);
    s.setTimesteps(10);
    const base = dummySampleDeter();
    let sum = 0;
    let count = 0;
    for (const [t, shift] of [
      [0, 0],
      [1, 0.1],
      [2, -0.1],
    ]) {
      const sample = new Tensor(
        base.data.map((v) => Math.fround(v + Math.fround(shift))),
        base.dims,
      );
      expect(s.previousTimestep(t)).toBe(t - 100);
      const prev = s.step(dummyModel(sample, t), t, sample, { eta: 0 }).prevSample;
      sum += absSumMean(prev).sum;
      count += prev.data.length;
    }
    expect(Math.abs(sum - 1147.7904)).toBeLessThan(1e-2);
    expect(Math.abs(sum / count - 0.4982)).toBeLessThan(1e-3);
  });

  it('starts an SDEdit-style loop at a timestep off the schedule: 600 → 580 by DDIM eq. 12', () => {
    const s = new DDIMScheduler({ ...testConfig, clip_sample: false, steps_offset: 1 });
    s.setTimesteps(50);
    expect(s.timesteps).not.toContain(600);
    expect(s.previousTimestep(600)).toBe(580);
    const sample = dummySampleDeter();
    const eps = dummyNoiseDeter();
    const { prevSample, predOriginalSample } = s.step(eps, 600, sample);
    // x̂_0 = (x − √(1 − ᾱ_600)·ε)/√ᾱ_600, x_580 = √ᾱ_580·x̂_0 + √(1 − ᾱ_580)·ε.
    const [alphaBar, alphaBarPrev] = [s.alphasCumprod[600], s.alphasCumprod[580]];
    for (let i = 0; i < sample.data.length; i++) {
      const x0 = (sample.data[i] - Math.sqrt(1 - alphaBar) * eps.data[i]) / Math.sqrt(alphaBar);
      const expected = Math.sqrt(alphaBarPrev) * x0 + Math.sqrt(1 - alphaBarPrev) * eps.data[i];
      expect(predOriginalSample?.data[i]).toBeCloseTo(x0, 5);
      expect(prevSample.data[i]).toBeCloseTo(expected, 5);
    }
  });

  it('still refuses timesteps outside [0, T) and non-integers', () => {
    const s = new DDIMScheduler(testConfig);
    s.setTimesteps(10);
    const sample = dummySampleDeter();
    for (const t of [1000, -1, 600.5, Number.NaN]) {
      expect(() => s.step(sample, t, sample)).toThrow(/not a training timestep/);
    }
  });
});

describe('DDIM with eta = 1 is DDPM fixed_small (docs/math.md §5)', () => {
  it.each([
    ['no clipping', { clip_sample: false }, false],
    ['clipped x̂_0 with useClippedModelOutput', { clip_sample: true }, true],
  ])('%s: same samples from the same noise, 20 steps', (_name, config, useClippedModelOutput) => {
    const ddim = new DDIMScheduler(config);
    const ddpm = new DDPMScheduler({ ...config, variance_type: 'fixed_small' });
    ddim.setTimesteps(20);
    ddpm.setTimesteps(20);
    expect(ddpm.timesteps).toEqual(ddim.timesteps);
    const generator = new RandomGenerator(5);
    let a: TensorLike = generator.randn([4, 3, 8, 8]);
    let b: TensorLike = a;
    for (const t of ddim.timesteps) {
      const noise = generator.randn(a.dims);
      // A model whose x̂_0 leaves [−1, 1] at high noise, so clipping matters in the second case.
      const model = (x: TensorLike) =>
        new Tensor(
          x.data.map((v) => 0.3 * v + 0.4),
          x.dims,
        );
      a = ddim.step(model(a), t, a, { eta: 1, noise, useClippedModelOutput }).prevSample;
      b = ddpm.step(model(b), t, b, { noise }).prevSample;
    }
    // float32 storage of each step's result: agree to a relative 1e-5.
    for (let i = 0; i < a.data.length; i++) {
      expect(Math.abs(a.data[i] - b.data[i])).toBeLessThan(1e-5 * Math.max(1, Math.abs(b.data[i])));
    }
  });
});

import { ConfigError, InvalidArgumentError, RandomGenerator, Tensor } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import { DDIMScheduler, DDPMScheduler, hasPosteriorVariance } from '../src/index.js';
import { absSumMean, dummyModel, dummyNoiseDeter, dummySampleDeter } from './helpers/diffusers-fixtures.js';
import { expectPublished } from './helpers/published.js';

// The config of diffusers' tests/schedulers/test_scheduler_ddpm.py.
const testConfig = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  variance_type: 'fixed_small',
  clip_sample: true,
} as const;

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, digits: number): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < actual.length; i++) expect(actual[i]).toBeCloseTo(expected[i], digits);
}

function fullLoop(scheduler: DDPMScheduler): Tensor {
  const generator = new RandomGenerator(0);
  let sample = dummySampleDeter();
  for (const t of scheduler.timesteps) {
    sample = scheduler.step(dummyModel(sample, t), t, sample, { generator }).prevSample;
  }
  return sample;
}

/** A learned-variance model output: each item's prediction channels, then its variance channels, all `v`. */
function withVarianceChannels(prediction: Tensor, v: number): Tensor {
  const [B, C, ...spatial] = prediction.dims;
  const item = prediction.data.length / B;
  const data = new Float32Array(2 * prediction.data.length);
  for (let b = 0; b < B; b++) {
    data.set(prediction.data.subarray(b * item, (b + 1) * item), 2 * b * item);
    data.fill(v, (2 * b + 1) * item, (2 * b + 2) * item);
  }
  return new Tensor(data, [B, 2 * C, ...spatial]);
}

describe('DDPMScheduler parity with diffusers (test_scheduler_ddpm.py)', () => {
  it('getVariance at t = 0, 487, 999', () => {
    const s = new DDPMScheduler(testConfig);
    expect(Math.abs(s.getVariance(0))).toBeLessThan(1e-5);
    expect(Math.abs(s.getVariance(487) - 0.00979)).toBeLessThan(1e-5);
    expect(Math.abs(s.getVariance(999) - 0.02)).toBeLessThan(1e-5);
  });

  it('full 1000-step loop with torch.manual_seed(0) noise: sum 258.9606, mean 0.3372', () => {
    const { sum, mean } = absSumMean(fullLoop(new DDPMScheduler(testConfig)));
    expect(Math.abs(sum - 258.9606)).toBeLessThan(1e-2);
    expectPublished(mean, '0.3372');
  });

  it('full loop with v_prediction: sum 202.0296, mean 0.2631', () => {
    const { sum, mean } = absSumMean(fullLoop(new DDPMScheduler({ ...testConfig, prediction_type: 'v_prediction' })));
    expect(Math.abs(sum - 202.0296)).toBeLessThan(1e-2);
    expectPublished(mean, '0.2631');
  });

  it('full loop from addNoise at t = 1: sum 387.9466, mean 0.5051', () => {
    const s = new DDPMScheduler(testConfig);
    const generator = new RandomGenerator(0);
    const timesteps = s.timesteps.slice(998);
    let sample = s.addNoise(dummySampleDeter(), dummyNoiseDeter(), timesteps[0]);
    for (const t of timesteps) sample = s.step(dummyModel(sample, t), t, sample, { generator }).prevSample;
    const { sum, mean } = absSumMean(sample);
    expect(Math.abs(sum - 387.9466)).toBeLessThan(1e-2);
    expectPublished(mean, '0.5051');
  });

  it('custom timesteps: previousTimestep is the next timestep, then -1', () => {
    const s = new DDPMScheduler(testConfig);
    const timesteps = [100, 87, 50, 1, 0];
    s.setTimesteps({ timesteps });
    expect(s.timesteps).toEqual(timesteps);
    expect(s.timesteps.map((t) => s.previousTimestep(t))).toEqual([87, 50, 1, 0, -1]);
  });

  it('rejects custom timesteps that are not descending, too large, or given with a step count', () => {
    const s = new DDPMScheduler(testConfig);
    expect(() => s.setTimesteps({ timesteps: [100, 87, 50, 51, 0] })).toThrow(/descending/);
    expect(() => s.setTimesteps({ timesteps: [1000] })).toThrow(InvalidArgumentError);
    expect(() => s.setTimesteps({ numInferenceSteps: 5, timesteps: [100, 87, 50, 1, 0] })).toThrow(/exactly one/);
    expect(() => s.setTimesteps(0)).toThrow(InvalidArgumentError);
    expect(() => s.setTimesteps(1001)).toThrow(/cannot exceed/);
  });

  it('respaced schedules follow timestep_spacing and steps_offset', () => {
    const spaced = (timestep_spacing: 'leading' | 'linspace' | 'trailing', steps_offset = 0) => {
      const s = new DDPMScheduler({ timestep_spacing, steps_offset });
      s.setTimesteps(5);
      return s.timesteps;
    };
    expect(spaced('leading', 1)).toEqual([801, 601, 401, 201, 1]);
    expect(spaced('linspace')).toEqual([999, 749, 500, 250, 0]);
    expect(spaced('trailing')).toEqual([999, 799, 599, 399, 199]);
  });
});

describe('DDPMScheduler step', () => {
  const dims = [2, 3, 4, 4];
  const size = 2 * 3 * 4 * 4;

  it('clips x̂_0 to clip_sample_range and leaves its inputs untouched', () => {
    const s = new DDPMScheduler({ prediction_type: 'sample', clip_sample: true, clip_sample_range: 0.5 });
    const modelOutput = new Tensor(
      Float32Array.from({ length: size }, (_, i) => (i - size / 2) / 10),
      dims,
    );
    const sample = new Tensor(new Float32Array(size).fill(0.25), dims);
    const before = Float32Array.from(modelOutput.data);
    const { predOriginalSample } = s.step(modelOutput, 0, sample);
    predOriginalSample!.data.forEach((v, i) => {
      expect(v).toBeCloseTo(Math.min(Math.max(modelOutput.data[i], -0.5), 0.5), 6);
    });
    expect(modelOutput.data).toEqual(before);
    expect(sample.data.every((v) => v === 0.25)).toBe(true);
  });

  it('dynamic thresholding divides each item by its clamped |x̂_0| quantile', () => {
    const ratio = 0.9;
    const s = new DDPMScheduler({
      prediction_type: 'sample',
      thresholding: true,
      dynamic_thresholding_ratio: ratio,
      sample_max_value: 2,
    });
    // Item 0 spans ±3 (threshold clamped to 2), item 1 spans ±1.5 (threshold = its quantile).
    const values = Float32Array.from({ length: size }, (_, i) => {
      const j = i % 48;
      return (i < 48 ? 3 : 1.5) * ((j / 47) * 2 - 1);
    });
    const { predOriginalSample } = s.step(new Tensor(values, dims), 0, new Tensor(new Float32Array(size), dims));
    for (let b = 0; b < 2; b++) {
      const item = values.slice(b * 48, (b + 1) * 48);
      const sorted = Array.from(item, Math.abs).sort((a, c) => a - c);
      const rank = ratio * 47;
      const low = Math.floor(rank);
      const q = sorted[low] + (rank - low) * (sorted[low + 1] - sorted[low]);
      const threshold = Math.min(Math.max(q, 1), 2);
      if (b === 0) expect(threshold).toBe(2);
      else expect(threshold).toBeLessThan(1.5);
      item.forEach((v, i) => {
        expect(predOriginalSample!.data[b * 48 + i]).toBeCloseTo(
          Math.min(Math.max(v, -threshold), threshold) / threshold,
          6,
        );
      });
    }
  });

  it('explicit noise equals the same noise drawn from a generator', () => {
    const s = new DDPMScheduler();
    const sample = dummySampleDeter();
    const noise = new RandomGenerator(7).randn(sample.dims);
    const a = s.step(dummyModel(sample, 500), 500, sample, { noise }).prevSample;
    const b = s.step(dummyModel(sample, 500), 500, sample, { generator: new RandomGenerator(7) }).prevSample;
    expect(a.data).toEqual(b.data);
  });

  it('learned_range with v = +1 / −1 equals fixed_large / fixed_small (IDDPM eq. 15)', () => {
    const sample = dummySampleDeter();
    const eps = dummyModel(sample, 300);
    const noise = new RandomGenerator(3).randn(sample.dims);
    const withVariance = (v: number) => withVarianceChannels(eps, v);
    for (const [v, fixed] of [
      [1, 'fixed_large'],
      [-1, 'fixed_small'],
    ] as const) {
      for (const steps of [undefined, 20]) {
        const learned = new DDPMScheduler({ variance_type: 'learned_range', beta_schedule: 'squaredcos_cap_v2' });
        const reference = new DDPMScheduler({ variance_type: fixed, beta_schedule: 'squaredcos_cap_v2' });
        if (steps) {
          learned.setTimesteps(steps);
          reference.setTimesteps(steps);
        }
        const t = learned.timesteps[3];
        const a = learned.step(withVariance(v), t, sample, { noise }).prevSample;
        const b = reference.step(eps, t, sample, { noise }).prevSample;
        expectClose(a.data, b.data, 6);
      }
    }
  });

  it('fixed_large_log is fixed_large (diffusers returns NaN here)', () => {
    const sample = dummySampleDeter();
    const noise = new RandomGenerator(1).randn(sample.dims);
    const a = new DDPMScheduler({ variance_type: 'fixed_large_log' }).step(dummyModel(sample, 400), 400, sample, {
      noise,
    });
    const b = new DDPMScheduler({ variance_type: 'fixed_large' }).step(dummyModel(sample, 400), 400, sample, { noise });
    expect(a.prevSample.data.every(Number.isFinite)).toBe(true);
    expectClose(a.prevSample.data, b.prevSample.data, 6);
  });

  it('learned variance types need a model output with 2C channels', () => {
    const s = new DDPMScheduler({ variance_type: 'learned_range' });
    const sample = dummySampleDeter();
    expect(() => s.step(sample, 10, sample, { generator: new RandomGenerator(0) })).toThrow(
      /twice the sample's channels/,
    );
    expect(() => s.getVariance(10)).toThrow(/predicted variance/);
  });

  it('draws unseeded noise without a generator, and rejects timesteps that are not training timesteps', () => {
    const s = new DDPMScheduler();
    const sample = dummySampleDeter();
    const a = s.step(sample, 10, sample).prevSample;
    const b = s.step(sample, 10, sample).prevSample;
    const mean = s.step(sample, 10, sample, { noise: new Tensor(new Float32Array(sample.data.length), sample.dims) });
    expect(a.data).not.toEqual(b.data);
    // Both are the same mean plus σ·z with σ² = getVariance(10).
    const sigma = Math.sqrt(s.getVariance(10));
    let sq = 0;
    for (let i = 0; i < a.data.length; i++) sq += ((a.data[i] - mean.prevSample.data[i]) / sigma) ** 2;
    expect(sq / a.data.length).toBeGreaterThan(0.8);
    expect(sq / a.data.length).toBeLessThan(1.2);
    s.setTimesteps(10);
    for (const t of [1000, -1, 10.5, Number.NaN]) {
      expect(() => s.step(sample, t, sample, { generator: new RandomGenerator(0) })).toThrow(/not a training timestep/);
    }
  });
});

describe('DDPMScheduler learned variances and the last step', () => {
  const sample = dummySampleDeter();
  const epsilon = dummyModel(sample, 300);

  it('learned reads σ² from the variance channels: v = β̃_t is fixed_small; getVariance returns v', () => {
    const fixed = new DDPMScheduler({ variance_type: 'fixed_small' });
    const learned = new DDPMScheduler({ variance_type: 'learned' });
    const posterior = fixed.getVariance(300);
    const noise = new RandomGenerator(4).randn(sample.dims);
    const a = learned.step(withVarianceChannels(epsilon, posterior), 300, sample, { noise }).prevSample;
    const b = fixed.step(epsilon, 300, sample, { noise }).prevSample;
    expectClose(a.data, b.data, 6);
    expect(learned.getVariance(300, 0.003)).toBeCloseTo(0.003, 12);
    expect(() => learned.getVariance(300)).toThrow(/predicted variance/);
  });

  it('learned_range interpolates log σ² (IDDPM eq. 15): v = 0.5 gives β^¾·β̃^¼; posteriorVariance is β̃', () => {
    const small = new DDPMScheduler({ variance_type: 'fixed_small' });
    const large = new DDPMScheduler({ variance_type: 'fixed_large' });
    const range = new DDPMScheduler({ variance_type: 'learned_range' });
    // At t = 1, β̃ = (1 − ᾱ_0)/(1 − ᾱ_1)·β is about β/2, so the interpolation is visible.
    const [beta, posterior] = [large.getVariance(1), small.getVariance(1)];
    expect(beta / posterior).toBeGreaterThan(1.5);
    expect(range.getVariance(1, 0.5) / (beta ** 0.75 * posterior ** 0.25)).toBeCloseTo(1, 12);
    // diffusers' published β̃_487 (test_variance).
    expect(Math.abs(small.posteriorVariance(487) - 0.00979)).toBeLessThan(1e-5);
  });

  it.each([
    ['clip_sample to ±0.5', { clip_sample: true, clip_sample_range: 0.5 }, true],
    ['no clipping', { clip_sample: false }, false],
    ['dynamic thresholding', { thresholding: true, dynamic_thresholding_ratio: 0.9, sample_max_value: 2 }, true],
  ])('the learned step bounds x̂_0 as the fixed step does: %s', (_name, config, boundsToOne) => {
    // x̂_0 predictions spanning ±3, so each bound changes them.
    const x0 = new Tensor(
      Float32Array.from({ length: sample.data.length }, (_, i) => 3 * Math.sin(i)),
      sample.dims,
    );
    const noise = new RandomGenerator(2).randn(sample.dims);
    const common = { prediction_type: 'sample', ...config } as const;
    const fixed = new DDPMScheduler({ ...common, variance_type: 'fixed_small' }).step(x0, 300, sample, { noise });
    const learned = new DDPMScheduler({ ...common, variance_type: 'learned_range' }).step(
      withVarianceChannels(x0, -1),
      300,
      sample,
      { noise },
    );
    expectClose(learned.predOriginalSample!.data, fixed.predOriginalSample!.data, 6);
    expectClose(learned.prevSample.data, fixed.prevSample.data, 6);
    const bounded = fixed.predOriginalSample!.data.every((v) => Math.abs(v) <= 1);
    expect(bounded).toBe(boundsToOne);
  });

  it.each(['fixed_small', 'learned_range'] as const)(
    'the step at t = 0 draws no noise (%s): μ̃ = x̂_0, the generator is left as it was',
    (variance_type) => {
      const s = new DDPMScheduler({ variance_type, prediction_type: 'sample', clip_sample: false });
      const generator = new RandomGenerator(9);
      const output = variance_type === 'fixed_small' ? sample : withVarianceChannels(sample, -1);
      const { prevSample } = s.step(output, 0, sample, { generator });
      // ᾱ_prev = 1: μ̃ = x̂_0 (the model output), σ = 0.
      expectClose(prevSample.data, sample.data, 6);
      expect(generator.randn([8]).data).toEqual(new RandomGenerator(9).randn([8]).data);
    },
  );

  it('rejects a sample without a channel axis and a learned output of another rank', () => {
    const s = new DDPMScheduler({ variance_type: 'learned_range' });
    const flat = new Tensor(new Float32Array(8), [8]);
    expect(() => s.step(flat, 10, flat, { generator: new RandomGenerator(0) })).toThrow(/batch and a channel axis/);
    // [2, 6, 4] has the data of [2, 6, 4, 1], the output a [2, 3, 4, 1] sample needs, but not its rank.
    const sampleWithWidthOne = new Tensor(new Float32Array(24), [2, 3, 4, 1]);
    const output = new Tensor(new Float32Array(48), [2, 6, 4]);
    expect(() => s.step(output, 10, sampleWithWidthOne, { generator: new RandomGenerator(0) })).toThrow(
      /twice the sample's channels/,
    );
  });
});

describe('DDPMScheduler.step from any training timestep (t → t − T // n)', () => {
  const zeroNoise = (dims: readonly number[]) => new Tensor(new Float32Array(dims.reduce((a, b) => a * b, 1)), dims);

  it('reproduces DDPMParallelScheduler test_batch_step_no_noise: t = 0, 1, 2 without setTimesteps, sum 1153.1833, mean 0.5005', () => {
    // diffusers' test steps dummy_sample_deter at t = 0, itself + 0.1 at t = 1 and itself − 0.1 at t = 2, each to
    // t − 1 (n = T before set_timesteps), and reads the posterior mean: the step with zero noise.
    const s = new DDPMScheduler(testConfig);
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
      const prev = s.step(dummyModel(sample, t), t, sample, { noise: zeroNoise(sample.dims) }).prevSample;
      sum += absSumMean(prev).sum;
      count += prev.data.length;
    }
    expect(Math.abs(sum - 1153.1833)).toBeLessThan(1e-2);
    expect(Math.abs(sum / count - 0.5005)).toBeLessThan(1e-3);
  });

  it('after setTimesteps(10), t = 1 (off the schedule) goes to 1 − 100 < 0, where μ̃ is the clipped x̂_0', () => {
    const s = new DDPMScheduler(testConfig);
    s.setTimesteps(10);
    expect(s.timesteps).not.toContain(1);
    expect(s.previousTimestep(1)).toBe(-99);
    const sample = dummySampleDeter();
    const eps = dummyNoiseDeter();
    const { prevSample } = s.step(eps, 1, sample, { noise: zeroNoise(sample.dims) });
    // ᾱ_prev = 1: β = 1 − ᾱ_1, so μ̃ = √1·β/(1 − ᾱ_1)·x̂_0 + √α·(1 − 1)/(1 − ᾱ_1)·x_t = x̂_0, clipped to [−1, 1].
    const alphaBar = s.alphasCumprod[1];
    for (let i = 0; i < sample.data.length; i++) {
      const x0 = (sample.data[i] - Math.sqrt(1 - alphaBar) * eps.data[i]) / Math.sqrt(alphaBar);
      expect(prevSample.data[i]).toBeCloseTo(Math.min(Math.max(x0, -1), 1), 5);
    }
  });
});

describe('scheduler configs', () => {
  it('resolves every key with its diffusers default and round-trips through toJSON / fromConfig', () => {
    const s = new DDPMScheduler({ beta_schedule: 'scaled_linear' });
    expect(s.config).toMatchObject({
      num_train_timesteps: 1000,
      beta_start: 0.0001,
      beta_end: 0.02,
      beta_schedule: 'scaled_linear',
      trained_betas: null,
      variance_type: 'fixed_small',
      clip_sample: true,
      prediction_type: 'epsilon',
      thresholding: false,
      dynamic_thresholding_ratio: 0.995,
      clip_sample_range: 1,
      sample_max_value: 1,
      timestep_spacing: 'leading',
      steps_offset: 0,
      rescale_betas_zero_snr: false,
    });
    const json = JSON.parse(JSON.stringify(s));
    expect(json._class_name).toBe('DDPMScheduler');
    const warnings: string[] = [];
    const copy = DDPMScheduler.fromConfig(json, { onWarning: (m) => warnings.push(m) });
    expect(copy.config).toEqual(s.config);
    expect(Array.from(copy.alphasCumprod)).toEqual(Array.from(s.alphasCumprod));
    expect(warnings).toEqual([]);
  });

  it('loads a raw Stable Diffusion scheduler_config.json without a warning for its PNDM and DDPM keys', () => {
    const raw = {
      _class_name: 'PNDMScheduler',
      _diffusers_version: '0.6.0',
      beta_end: 0.012,
      beta_schedule: 'scaled_linear',
      beta_start: 0.00085,
      num_train_timesteps: 1000,
      set_alpha_to_one: false,
      skip_prk_steps: true,
      steps_offset: 1,
      trained_betas: null,
      clip_sample: false,
    };
    const warnings: string[] = [];
    const onWarning = (m: string) => warnings.push(m);
    const ddim = DDIMScheduler.fromConfig(raw, { onWarning });
    DDIMScheduler.fromConfig(raw, { onWarning });
    expect(ddim.config.set_alpha_to_one).toBe(false);
    expect(ddim.config.steps_offset).toBe(1);
    expect(ddim.toJSON()).not.toHaveProperty('skip_prk_steps');
    // Swapping DDPM → DDIM drops DDPM-only keys (variance_type) silently too: DDPM is a compatible class.
    const ddpm = DDPMScheduler.fromConfig(raw, { onWarning });
    expect(DDIMScheduler.fromConfig(ddpm.config, { onWarning }).toJSON()).not.toHaveProperty('variance_type');
    expect(warnings).toEqual([]);
  });

  it('rejects unknown enum values and impossible settings with ConfigError', () => {
    expect(() => new DDPMScheduler({ variance_type: 'other' as never })).toThrow(ConfigError);
    expect(() => new DDPMScheduler({ beta_schedule: 'cosine' as never })).toThrow(/squaredcos_cap_v2/);
    expect(() => new DDPMScheduler({ num_train_timesteps: 0 })).toThrow(/num_train_timesteps/);
    expect(() => new DDPMScheduler({ trained_betas: [0.1, 0.2] })).toThrow(/trained_betas has 2 values/);
    expect(() => new DDPMScheduler({ beta_start: 0.1, beta_end: 2 })).toThrow(ConfigError);
    expect(() => new DDIMScheduler({ clip_sample: 'yes' as never })).toThrow(/true or false/);
  });

  it('lists the diffusers-compatible classes', () => {
    expect(DDPMScheduler.compatibles).toContain('EulerDiscreteScheduler');
    expect(DDIMScheduler.compatibles).toContain('DDPMScheduler');
    // Only DDPM's ancestral step takes mean-form classifier guidance.
    expect(hasPosteriorVariance(new DDPMScheduler())).toBe(true);
    expect(hasPosteriorVariance(new DDIMScheduler())).toBe(false);
  });
});

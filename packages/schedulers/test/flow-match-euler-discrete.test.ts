import { ConfigError, InvalidArgumentError, RandomGenerator, Tensor, type TensorLike } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import type { SchedulerConfigInput } from '../src/config.js';
import {
  FlowMatchEulerDiscreteScheduler,
  type FlowMatchEulerDiscreteSchedulerConfig,
  flowMatchMu,
} from '../src/flow-match-euler-discrete.js';
import { compatibleSchedulers } from '../src/registry.js';
import { mixtureDistance } from './accuracy-table.js';
import { absSumMean, dummyModel, dummySampleDeter } from './helpers/diffusers-fixtures.js';
import { exactFlowVelocity, type GaussianMixture, posterior, seededNormal, TEST_MIXTURE } from './helpers/mixture.js';

/**
 * diffusers has no numeric test of this class. The reference figures below were computed by hand from diffusers'
 * formulas (numpy/float32 as diffusers does: the float32 training grid linspace(1, T, T)/T shifted, then
 * linspace(σ_max·T, σ_min·T, n)/T in float64, shifted again, cast to float32), for a 3-step loop of
 * `dummy_model` on `dummy_sample_deter` with x ← x + (σ' − σ)·v̂.
 */
function loop(config: SchedulerConfigInput<FlowMatchEulerDiscreteSchedulerConfig>, mu?: number) {
  const scheduler = new FlowMatchEulerDiscreteScheduler(config);
  scheduler.setTimesteps({ numInferenceSteps: 3, mu });
  let sample: TensorLike = dummySampleDeter();
  for (const t of scheduler.timesteps) sample = scheduler.step(dummyModel(sample, t), t, sample).prevSample;
  return { scheduler, ...absSumMean(sample) };
}

const HAND_REFERENCES: {
  name: string;
  config: SchedulerConfigInput<FlowMatchEulerDiscreteSchedulerConfig>;
  mu?: number;
  sigmas: number[];
  sum: number;
  mean: number;
}[] = [
  {
    name: 'shift 1',
    config: {},
    sigmas: [1, 0.5005000233650208, 0.0010000000474974513, 0],
    sum: 96.30581443666597,
    mean: 0.12539819588107548,
  },
  {
    name: 'shift 3 (SD3)',
    config: { shift: 3 },
    sigmas: [1, 0.7511211037635803, 0.008928571827709675, 0],
    sum: 73.97289344042656,
    mean: 0.09631887166722208,
  },
  {
    name: 'dynamic, mu 1.15 (FLUX)',
    config: { use_dynamic_shifting: true },
    mu: 1.15,
    sigmas: [1, 0.759876012802124, 0.0031513916328549385, 0],
    sum: 71.03543248407368,
    mean: 0.0924940527136376,
  },
  {
    name: 'shift 3, shift_terminal 0.1',
    config: { shift: 3, shift_terminal: 0.1 },
    sigmas: [1, 0.773991048336029, 0.10000000149011612, 0],
    sum: 87.44491372571792,
    mean: 0.11386056474702855,
  },
];

describe('FlowMatchEulerDiscreteScheduler', () => {
  it.each(HAND_REFERENCES)('3-step loop, $name: sigmas and sum/mean of |x| from diffusers’ formulas', (ref) => {
    const { scheduler, sum, mean } = loop(ref.config, ref.mu);
    expect(Array.from(scheduler.sigmas)).toEqual(ref.sigmas);
    expect(scheduler.timesteps).toEqual(ref.sigmas.slice(0, 3).map((s) => Math.fround(s * 1000)));
    expect(Math.abs(sum / ref.sum - 1)).toBeLessThan(1e-6);
    expect(Math.abs(mean / ref.mean - 1)).toBeLessThan(1e-6);
  });

  it('the training grid is shifted at construction, the timesteps are σ·T', () => {
    const scheduler = new FlowMatchEulerDiscreteScheduler({ shift: 3 });
    expect(scheduler.timesteps).toHaveLength(1000);
    expect(scheduler.sigmas[0]).toBe(1);
    expect(scheduler.sigmas[999]).toBe(Math.fround(0.003 / 1.002));
    expect(scheduler.timesteps[999]).toBe(Math.fround(scheduler.sigmas[999] * 1000));
  });

  it('invert_sigmas runs σ upward and ends on 1', () => {
    const scheduler = new FlowMatchEulerDiscreteScheduler({ invert_sigmas: true });
    scheduler.setTimesteps(3);
    expect(Array.from(scheduler.sigmas)).toEqual([0, Math.fround(1 - 0.5005000233650208), Math.fround(1 - 0.001), 1]);
  });

  it('explicit sigmas (FLUX pipelines pass linspace(1, 1/n, n)) are shifted by mu', () => {
    const scheduler = new FlowMatchEulerDiscreteScheduler({ use_dynamic_shifting: true });
    scheduler.setTimesteps({ sigmas: [1, 0.5], mu: 0.5 });
    const e = Math.exp(0.5);
    expect(scheduler.sigmas[1]).toBe(Math.fround(e / (e + 1)));
    expect(scheduler.numInferenceSteps).toBe(2);
  });

  it('flowMatchMu is linear in the sequence length, base_shift and max_shift at its ends', () => {
    const config = new FlowMatchEulerDiscreteScheduler().config;
    expect(flowMatchMu(256, config)).toBeCloseTo(0.5, 12);
    expect(flowMatchMu(4096, config)).toBeCloseTo(1.15, 12);
    expect(flowMatchMu(2176, config)).toBeCloseTo(0.825, 12);
  });

  it('the exact velocity of the mixture agrees with the VP posterior of the rescaled sample', () => {
    // x_σ / r with r = √((1−σ)² + σ²) is a VP sample with √ᾱ = (1−σ)/r, so E[x_0 | x_σ] is the VP posterior mean.
    const x = seededNormal(3).randn([64, 1]);
    for (const sigma of [0.95, 0.5, 0.1, 0.01]) {
      const r = Math.hypot(1 - sigma, sigma);
      const scaled = x.data.map((v) => v / r);
      const { mean } = posterior(TEST_MIXTURE, scaled, ((1 - sigma) / r) ** 2);
      const v = exactFlowVelocity(TEST_MIXTURE, x, sigma);
      for (let i = 0; i < 64; i++) {
        const expected = (x.data[i] - mean[i]) / sigma;
        expect(Math.abs(v.data[i] - expected)).toBeLessThan(1e-5 * Math.max(1, Math.abs(expected)));
      }
    }
  });

  it('a point mass has straight flow lines: one Euler step with the exact velocity lands on it', () => {
    const point: GaussianMixture = { weights: [1], means: [[0.3]], stds: [0] };
    const scheduler = new FlowMatchEulerDiscreteScheduler({ shift: 3 });
    scheduler.setTimesteps(1);
    const x = seededNormal(5).randn([16, 1]);
    const t = scheduler.timesteps[0];
    const out = scheduler.step(exactFlowVelocity(point, x, scheduler.sigmas[0]), t, x).prevSample;
    for (const v of out.data) expect(v).toBeCloseTo(0.3, 5);
  });

  it('driven by the exact mixture velocity, the distance to the true distribution falls with the steps', () => {
    for (const name of ['Flow Euler (exact velocity)', 'Flow Euler, shift 3 (SD3)']) {
      const d = [3, 10, 50].map((steps) => mixtureDistance(name, steps));
      expect(d[1], name).toBeLessThan(d[0] * 0.6);
      expect(d[2], name).toBeLessThan(d[1] * 0.6);
      expect(d[2], name).toBeLessThan(0.03);
    }
  });

  it('stochastic_sampling re-noises x̂_0 = x − σ·v̂ to the next σ with the generator’s noise', () => {
    const scheduler = new FlowMatchEulerDiscreteScheduler({ stochastic_sampling: true });
    scheduler.setTimesteps(2);
    const x = dummySampleDeter();
    const v = dummyModel(x, 1);
    const [s0, s1] = [scheduler.sigmas[0], scheduler.sigmas[1]];
    const out = scheduler.step(v, scheduler.timesteps[0], x, { generator: new RandomGenerator(0) }).prevSample;
    const noise = new RandomGenerator(0).randn(x.dims);
    for (const i of [0, 17, 700]) {
      const expected = (1 - s1) * (x.data[i] - s0 * v.data[i]) + s1 * noise.data[i];
      expect(out.data[i]).toBeCloseTo(expected, 6);
    }
  });

  it('addNoise is the flow interpolation, getVelocity its derivative ε − x_0', () => {
    const scheduler = new FlowMatchEulerDiscreteScheduler({ shift: 3 });
    scheduler.setTimesteps(4);
    const x0 = dummySampleDeter();
    const noise = dummySampleDeter(true);
    const t = scheduler.timesteps[2];
    const sigma = scheduler.sigmas[2];
    const noisy = scheduler.addNoise(x0, noise, t);
    const velocity = scheduler.getVelocity(x0, noise, t);
    for (const i of [0, 100, 767]) {
      expect(noisy.data[i]).toBeCloseTo(sigma * noise.data[i] + (1 - sigma) * x0.data[i], 6);
      expect(velocity.data[i]).toBeCloseTo(noise.data[i] - x0.data[i], 6);
    }
  });

  it('is compatible with no ε-schedule class, and refuses what it cannot do', () => {
    expect(compatibleSchedulers('FlowMatchEulerDiscreteScheduler')).toEqual(['FlowMatchEulerDiscreteScheduler']);
    expect(FlowMatchEulerDiscreteScheduler.compatibles).toEqual([]);
    expect(() => new FlowMatchEulerDiscreteScheduler({ use_dynamic_shifting: true }).setTimesteps(4)).toThrow(
      /use_dynamic_shifting needs a finite mu/,
    );
    expect(() => new FlowMatchEulerDiscreteScheduler({ time_shift_type: 'cubic' as 'linear' })).toThrow(ConfigError);
    expect(() => new FlowMatchEulerDiscreteScheduler({ use_karras_sigmas: true, use_beta_sigmas: true })).toThrow(
      /only one of use_karras_sigmas/,
    );
    expect(() => new FlowMatchEulerDiscreteScheduler({ shift: 0 })).toThrow(/"shift" must be a finite number > 0/);
    const scheduler = new FlowMatchEulerDiscreteScheduler();
    expect(() => scheduler.setTimesteps({ sigmas: [1, 0] })).toThrow(InvalidArgumentError);
    scheduler.setTimesteps(2);
    const x = new Tensor(new Float32Array(4), [1, 4]);
    expect(() => scheduler.step(x, 3, x)).toThrow(/Timestep 3 is not in the current schedule/);
  });
});

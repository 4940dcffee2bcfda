import { InvalidArgumentError, RandomGenerator, Tensor } from '@denoise/core';
import {
  EulerAncestralDiscreteScheduler,
  EulerDiscreteScheduler,
  type PredictionType,
  type SchedulerOutput,
} from '@denoise/schedulers';
import { describe, expect, it } from 'vitest';

/**
 * Closed-form steps on a point mass: when the data is one point x_0, a sample at level σ is x = x_0 + σ·ε and the
 * exact network output is ε itself, x_0, or v = √ᾱ·ε − √(1−ᾱ)·x_0 (ᾱ = 1/(1 + σ²)) for the scaled input. Every
 * quantity of Karras et al.'s Euler step (Algorithm 2) and of the ancestral step then has a closed form in x_0, ε
 * and the step's fresh noise z, checked here element by element.
 */

const SD_SCHEDULE = { beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012 } as const;
const N = 12;
const x0 = Float64Array.from({ length: N }, (_, i) => Math.sin(1.3 * i + 0.4) * 0.8);
const eps = Float64Array.from({ length: N }, (_, i) => Math.cos(2.1 * i + 0.2) * 1.1);
const z = Float64Array.from({ length: N }, (_, i) => Math.sin(3.7 * i + 1.1));
const dims = [1, N] as const;

const tensor = (f: (i: number) => number) =>
  new Tensor(
    Float32Array.from({ length: N }, (_, i) => f(i)),
    dims,
  );
const noisy = (sigma: number) => tensor((i) => x0[i] + sigma * eps[i]);

/** The exact network output at σ for the scaled input, in the given form. */
function exactOutput(type: PredictionType, sigma: number): Tensor {
  const sqrtA = 1 / Math.sqrt(1 + sigma * sigma);
  const sqrtB = sigma * sqrtA;
  return tensor((i) => (type === 'epsilon' ? eps[i] : type === 'sample' ? x0[i] : sqrtA * eps[i] - sqrtB * x0[i]));
}

/** |actual − expected| ≤ 1e-5 · max(1, |expected|) for every element: float32 rounding of values of order σ. */
function expectElementwise(actual: ArrayLike<number>, expected: (i: number) => number, what: string) {
  expect(actual.length).toBe(N);
  for (let i = 0; i < N; i++) {
    const e = expected(i);
    expect(Math.abs(actual[i] - e), `${what}[${i}]: ${actual[i]} vs ${e}`).toBeLessThanOrEqual(
      1e-5 * Math.max(1, Math.abs(e)),
    );
  }
}

const TYPES: readonly PredictionType[] = ['epsilon', 'sample', 'v_prediction'];

describe('EulerDiscreteScheduler on a point mass', () => {
  for (const prediction_type of TYPES) {
    it(`${prediction_type}: every step lands on x_0 + σ_{i+1}·ε and reports x̂_0 = x_0`, () => {
      const scheduler = new EulerDiscreteScheduler({ ...SD_SCHEDULE, prediction_type, use_karras_sigmas: true });
      scheduler.setTimesteps(6);
      scheduler.timesteps.forEach((t, i) => {
        const sigma = scheduler.sigmas[i];
        const next = scheduler.sigmas[i + 1];
        const out: SchedulerOutput = scheduler.step(exactOutput(prediction_type, sigma), t, noisy(sigma));
        expectElementwise(out.prevSample.data, (k) => x0[k] + next * eps[k], `step ${i} prevSample`);
        expectElementwise(out.predOriginalSample!.data, (k) => x0[k], `step ${i} x̂_0`);
      });
    });
  }

  it('churn (Karras et al. Alg. 2): σ̂ = σ(1 + γ), x̂ = x + s_noise·√(σ̂² − σ²)·z, then Euler from σ̂', () => {
    const sChurn = 1.2;
    const sNoise = 0.9;
    for (const prediction_type of TYPES) {
      const scheduler = new EulerDiscreteScheduler({ ...SD_SCHEDULE, prediction_type });
      scheduler.setTimesteps(5);
      // γ = min(s_churn / steps, √2 − 1), applied only where s_tmin ≤ σ ≤ s_tmax.
      const steps = scheduler.sigmas.length - 1;
      const gamma = Math.min(sChurn / steps, Math.SQRT2 - 1);
      expect(gamma).toBeGreaterThan(0);
      const sTmin = scheduler.sigmas[3];
      const sTmax = scheduler.sigmas[1];
      scheduler.timesteps.forEach((t, i) => {
        const sigma = scheduler.sigmas[i];
        const next = scheduler.sigmas[i + 1];
        const g = sigma >= sTmin && sigma <= sTmax ? gamma : 0;
        const sigmaHat = sigma * (1 + g);
        const extra = sNoise * Math.sqrt(sigmaHat * sigmaHat - sigma * sigma);
        const churned = (k: number) => x0[k] + sigma * eps[k] + extra * z[k];
        const out = scheduler.step(exactOutput(prediction_type, sigma), t, noisy(sigma), {
          sChurn,
          sTmin,
          sTmax,
          sNoise,
          noise: tensor((k) => z[k]),
        });
        // diffusers: ε̂ is taken at σ̂ (x̂_0 = x̂ − σ̂·ε), v̂ at the σ the model saw (x̂_0 = x̂/(σ² + 1) − σ·v/√(σ² + 1)),
        // x̂_0 as given; then d = (x̂ − x̂_0)/σ̂.
        const v = (k: number) => (eps[k] - sigma * x0[k]) / Math.sqrt(1 + sigma * sigma);
        const denoised = (k: number) =>
          prediction_type === 'epsilon'
            ? churned(k) - sigmaHat * eps[k]
            : prediction_type === 'sample'
              ? x0[k]
              : churned(k) / (sigma * sigma + 1) - (sigma * v(k)) / Math.sqrt(sigma * sigma + 1);
        const derivative = (k: number) => (churned(k) - denoised(k)) / sigmaHat;
        expectElementwise(out.predOriginalSample!.data, denoised, `${prediction_type} step ${i} x̂_0`);
        expectElementwise(
          out.prevSample.data,
          (k) => churned(k) + (next - sigmaHat) * derivative(k),
          `${prediction_type} step ${i} prevSample (γ = ${g})`,
        );
      });
    }
  });

  it('a step without churn draws no noise: a shared generator continues as if the step had not run', () => {
    const scheduler = new EulerDiscreteScheduler(SD_SCHEDULE);
    scheduler.setTimesteps(3);
    const shared = new RandomGenerator(42);
    const sigma = scheduler.sigmas[0];
    scheduler.step(exactOutput('epsilon', sigma), scheduler.timesteps[0], noisy(sigma), { generator: shared });
    // Churn limited to σ ≤ s_tmax below this σ: γ = 0 here too.
    const sigma1 = scheduler.sigmas[1];
    scheduler.step(exactOutput('epsilon', sigma1), scheduler.timesteps[1], noisy(sigma1), {
      generator: shared,
      sChurn: 5,
      sTmax: sigma1 / 2,
    });
    expect([...shared.randn([4]).data]).toEqual([...new RandomGenerator(42).randn([4]).data]);
  });

  it('churn is capped at γ = √2 − 1', () => {
    const scheduler = new EulerDiscreteScheduler(SD_SCHEDULE);
    scheduler.setTimesteps(4);
    const [t] = scheduler.timesteps;
    const sigma = scheduler.sigmas[0];
    const next = scheduler.sigmas[1];
    const sigmaHat = sigma * Math.SQRT2;
    const extra = Math.sqrt(sigmaHat * sigmaHat - sigma * sigma);
    const out = scheduler.step(exactOutput('epsilon', sigma), t, noisy(sigma), {
      sChurn: 100,
      noise: tensor((k) => z[k]),
    });
    expectElementwise(
      out.prevSample.data,
      (k) => x0[k] + sigma * eps[k] + extra * z[k] + (next - sigmaHat) * eps[k],
      'prevSample',
    );
  });
});

describe('EulerDiscreteScheduler schedules', () => {
  it("timestep_type 'continuous' with v_prediction gives the model 0.25·ln σ (EDM's c_noise), else training timesteps", () => {
    const continuous = new EulerDiscreteScheduler({
      ...SD_SCHEDULE,
      prediction_type: 'v_prediction',
      timestep_type: 'continuous',
    });
    const expectCNoise = () =>
      continuous.timesteps.forEach((t, i) => {
        expect(t).toBeCloseTo(0.25 * Math.log(continuous.sigmas[i]), 5);
      });
    expect(continuous.timesteps).toHaveLength(1000);
    expectCNoise();
    continuous.setTimesteps(5);
    expect(continuous.timesteps).toHaveLength(5);
    expectCNoise();
    // With ε-prediction the timestep type has no effect: diffusers uses c_noise only for v_prediction.
    const epsilon = new EulerDiscreteScheduler({ ...SD_SCHEDULE, timestep_type: 'continuous' });
    epsilon.setTimesteps(5);
    expect(epsilon.timesteps).toEqual([999, 749.25, 499.5, 249.75, 0]);
  });

  it('setTimesteps({ sigmas }) takes n + 1 sigmas for n steps and checks them', () => {
    const scheduler = new EulerDiscreteScheduler(SD_SCHEDULE);
    scheduler.setTimesteps({ sigmas: [10, 4, 1, 0] });
    expect(scheduler.numInferenceSteps).toBe(3);
    expect(scheduler.timesteps).toHaveLength(3);
    expect([...scheduler.sigmas]).toEqual([10, 4, 1, 0]);
    scheduler.setTimesteps({ sigmas: [5, 0] });
    expect(scheduler.numInferenceSteps).toBe(1);
    for (const sigmas of [[1], [2, -1, 0], [2, Number.NaN, 0], [Number.POSITIVE_INFINITY, 0]]) {
      expect(() => scheduler.setTimesteps({ sigmas }), String(sigmas)).toThrow(InvalidArgumentError);
    }
    expect(() => scheduler.setTimesteps({ sigmas: [2, 1, 0], numInferenceSteps: 2 })).toThrow(/exactly one/);
    expect(() => scheduler.setTimesteps({ sigmas: [2, 1, 0], timesteps: [900, 400] })).toThrow(/exactly one/);
  });
});

describe('EulerAncestralDiscreteScheduler on a point mass', () => {
  for (const prediction_type of TYPES) {
    it(`${prediction_type}: x_{i+1} = x_0 + σ_down·ε + σ_up·z with σ_up² = σ'²(σ² − σ'²)/σ², σ_down² = σ'² − σ_up²`, () => {
      const scheduler = new EulerAncestralDiscreteScheduler({ ...SD_SCHEDULE, prediction_type });
      scheduler.setTimesteps(6);
      scheduler.timesteps.forEach((t, i) => {
        const sigma = scheduler.sigmas[i];
        const next = scheduler.sigmas[i + 1];
        const sigmaUp = Math.sqrt((next * next * (sigma * sigma - next * next)) / (sigma * sigma));
        const sigmaDown = Math.sqrt(next * next - sigmaUp * sigmaUp);
        const out = scheduler.step(exactOutput(prediction_type, sigma), t, noisy(sigma), {
          noise: tensor((k) => z[k]),
        });
        expectElementwise(out.prevSample.data, (k) => x0[k] + sigmaDown * eps[k] + sigmaUp * z[k], `step ${i}`);
        expectElementwise(out.predOriginalSample!.data, (k) => x0[k], `step ${i} x̂_0`);
      });
    });
  }
});

/**
 * `callbackOnStepEnd`'s `predOriginalSample`: the scheduler's own x̂₀ when its step returns one, else computed from
 * the guided prediction. Both must agree, for ᾱ-based (DDIM) and σ-based (Euler) schedulers.
 */
import { RandomGenerator, type Tensor } from '@denoise/core';
import { DDIMScheduler, EulerDiscreteScheduler, type Scheduler } from '@denoise/schedulers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiffusionPipeline, type StableDiffusionPipeline } from '../src/index.js';
import { REFERENCE_WORLD } from './reliability/helpers.js';

let pipe: StableDiffusionPipeline;
beforeAll(async () => {
  pipe = (await DiffusionPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu' })) as StableDiffusionPipeline;
});
afterAll(() => pipe.release());

// The same schedulers, but their step keeps x̂₀ to itself, so the loop has to compute it.
class DDIMWithoutPredOriginal extends DDIMScheduler {
  override step(...args: Parameters<DDIMScheduler['step']>) {
    return { prevSample: super.step(...args).prevSample };
  }
}
class EulerWithoutPredOriginal extends EulerDiscreteScheduler {
  override step(...args: Parameters<EulerDiscreteScheduler['step']>) {
    return { prevSample: super.step(...args).prevSample };
  }
}

async function previews(scheduler: Scheduler): Promise<Tensor[]> {
  pipe.scheduler = scheduler;
  const seen: Tensor[] = [];
  await pipe.generate({
    prompt: 'a blue square on a black background',
    numInferenceSteps: 6,
    generator: new RandomGenerator(5),
    callbackOnStepEnd: ({ predOriginalSample }) => {
      seen.push(predOriginalSample);
      return undefined;
    },
  });
  return seen;
}

describe('callbackOnStepEnd predOriginalSample', () => {
  const quiet = { onWarning: () => {} };
  it.each([
    [
      'DDIM',
      () => DDIMScheduler.fromConfig(pipe.scheduler.config, quiet),
      () => DDIMWithoutPredOriginal.fromConfig(pipe.scheduler.config, quiet),
    ],
    [
      'Euler',
      () => EulerDiscreteScheduler.fromConfig(pipe.scheduler.config, quiet),
      () => EulerWithoutPredOriginal.fromConfig(pipe.scheduler.config, quiet),
    ],
  ] as const)("%s: computed from the prediction, it is the scheduler's own x̂₀", async (_name, withOwn, without) => {
    const original = pipe.scheduler;
    const own = await previews(withOwn());
    const computed = await previews(without());
    pipe.scheduler = original;
    expect(computed).toHaveLength(6);
    for (let step = 0; step < 6; step++) {
      const scale = Math.max(...own[step].data.map(Math.abs));
      const difference = Math.max(...own[step].data.map((v, i) => Math.abs(v - computed[step].data[i])));
      expect(difference / scale).toBeLessThan(1e-5);
    }
  });
});

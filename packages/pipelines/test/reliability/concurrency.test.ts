/**
 * Eight overlapping `generate` calls on one pipeline (issue #9): each must give exactly the image it gives when run
 * alone with the same seed, for a single-step scheduler and for multistep ones whose history must not leak from
 * one call into another, and an abort or an error in one call must not disturb the others.
 */
import { AbortError, RandomGenerator } from '@denoise/core';
import { getScheduler } from '@denoise/schedulers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type StableDiffusionOptions, StableDiffusionPipeline } from '../../src/index.js';
import { REFERENCE_WORLD } from './helpers.js';

let pipe: StableDiffusionPipeline;
let modelSchedulerConfig: Record<string, unknown>;
beforeAll(async () => {
  pipe = await StableDiffusionPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu' });
  modelSchedulerConfig = { ...pipe.scheduler.config };
});
afterAll(() => pipe.release());

/** Eight different requests: different prompts, seeds, step counts and guidance. */
const requests: StableDiffusionOptions[] = [
  'a red circle',
  'a green square on a black background',
  'a blue triangle',
  'a yellow cross on a gray background',
  'a red square',
  '',
  'a green circle on a white background',
  'a blue cross',
].map((prompt, i) => ({
  prompt,
  numInferenceSteps: 3 + (i % 3),
  guidanceScale: 1 + i,
  generator: new RandomGenerator(100 + i),
}));

/** A fresh copy of a request (a generator is stateful, so each run needs its own). */
function fresh(request: StableDiffusionOptions): StableDiffusionOptions {
  return { ...request, generator: new RandomGenerator((request.generator as RandomGenerator).seed) };
}

describe.each(['DDIM', 'DPM++ 2M', 'UniPC', 'DPM++ 2M SDE', 'Euler a', 'PNDM'])(
  '8 overlapping calls with %s',
  (name) => {
    it('give the images each call gives alone, with no interleaved scheduler state', async () => {
      pipe.scheduler = getScheduler(name, modelSchedulerConfig, { onWarning: () => {} });
      const alone: Uint8ClampedArray[] = [];
      for (const request of requests) alone.push((await pipe.generate(fresh(request))).images[0].data);
      // Every pair of requests gives different images, so a swap or a leak between calls cannot go unnoticed.
      expect(new Set(alone.map((d) => d.join(','))).size).toBe(requests.length);

      const together = await Promise.all(requests.map((request) => pipe.generate(fresh(request))));
      for (const [i, { images }] of together.entries()) expect(images[0].data, `request ${i}`).toEqual(alone[i]);
    });
  },
);

describe('one failing or aborted call among overlapping ones', () => {
  it('leaves the other calls untouched', async () => {
    pipe.scheduler = getScheduler('DPM++ 2M', modelSchedulerConfig, { onWarning: () => {} });
    const alone = await Promise.all(requests.slice(0, 4).map(async (r) => (await pipe.generate(fresh(r))).images[0]));
    const controller = new AbortController();
    const results = await Promise.allSettled([
      ...requests.slice(0, 4).map((r) => pipe.generate(fresh(r))),
      pipe.generate({
        ...fresh(requests[4]),
        signal: controller.signal,
        callbackOnStepEnd: () => {
          controller.abort();
          return undefined;
        },
      }),
      pipe.generate({ ...fresh(requests[5]), height: 100 }),
    ]);
    for (let i = 0; i < 4; i++) {
      const result = results[i];
      expect(result.status).toBe('fulfilled');
      if (result.status === 'fulfilled') expect(result.value.images[0].data).toEqual(alone[i].data);
    }
    expect(results[4].status === 'rejected' && results[4].reason).toBeInstanceOf(AbortError);
    expect(results[5].status === 'rejected' && (results[5].reason as { code: string }).code).toBe('INVALID_ARGUMENT');
  });
});

/**
 * Image-to-image on the reference world (issue #9): bad strengths and images are refused with a clear error, an
 * abort while the VAE encodes the image stops before any UNet step, and overlapping calls with a multistep
 * scheduler (which starts part-way through its schedule) give the images they give alone.
 */
import { AbortError, RandomGenerator, Tensor } from '@denoise/core';
import { loadRepository } from '@denoise/core/runtime';
import { getScheduler } from '@denoise/schedulers';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type StableDiffusionImg2ImgOptions, StableDiffusionImg2ImgPipeline } from '../../src/index.js';
import { REFERENCE_WORLD, rejection } from './helpers.js';

let pipe: StableDiffusionImg2ImgPipeline;
/** A 128 × 128 picture in [−1, 1]: a bright disc on a dark ground. */
const picture = new Tensor(new Float32Array(3 * 128 * 128), [1, 3, 128, 128]);

beforeAll(async () => {
  pipe = await StableDiffusionImg2ImgPipeline.fromRepository(await loadRepository(REFERENCE_WORLD, { device: 'cpu' }));
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < 128; y++) {
      for (let x = 0; x < 128; x++) {
        picture.data[(c * 128 + y) * 128 + x] = (x - 64) ** 2 + (y - 64) ** 2 < 900 ? 0.75 : -1;
      }
    }
  }
});
afterAll(() => pipe.release());

const options = (extra: Partial<StableDiffusionImg2ImgOptions> = {}): StableDiffusionImg2ImgOptions => ({
  prompt: 'a red circle',
  image: picture,
  strength: 0.6,
  numInferenceSteps: 5,
  generator: new RandomGenerator(5),
  ...extra,
});

describe('image-to-image: bad arguments', () => {
  it('a strength outside [0, 1] or not a number', async () => {
    for (const strength of [1.5, -0.1, Number.NaN]) {
      const error = await rejection(pipe.generate(options({ strength })));
      expect(error.code).toBe('INVALID_ARGUMENT');
      expect(error.message).toMatch(/strength must be in \[0, 1\]/);
    }
  });

  it('a strength that leaves no step to run says what to raise', async () => {
    const error = await rejection(pipe.generate(options({ strength: 0.1, numInferenceSteps: 5 })));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toMatch(/leaves no step to run; raise strength or numInferenceSteps/);
  });

  it('an image whose size is not a multiple of the VAE factor', async () => {
    const odd = new Tensor(new Float32Array(3 * 100 * 100), [1, 3, 100, 100]);
    const error = await rejection(pipe.generate(options({ image: odd })));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toMatch(/multiple of 8/);
  });
});

describe('image-to-image: cancellation and overlapping calls', () => {
  it('an abort while the image is encoded rejects before any UNet step, and the pipeline stays usable', async () => {
    const reference = (await pipe.generate(options())).images[0].data;
    const controller = new AbortController();
    const encoder = pipe.vaeEncoder as NonNullable<typeof pipe.vaeEncoder>;
    const encode = encoder.run.bind(encoder);
    const unetRun = vi.spyOn(pipe.unet, 'run');
    const encoderRun = vi.spyOn(encoder, 'run').mockImplementation((feeds) => {
      controller.abort();
      return encode(feeds);
    });
    try {
      const error = await rejection(pipe.generate(options({ signal: controller.signal })));
      expect(error).toBeInstanceOf(AbortError);
      expect(unetRun).not.toHaveBeenCalled();
    } finally {
      encoderRun.mockRestore();
      unetRun.mockRestore();
    }
    expect((await pipe.generate(options())).images[0].data).toEqual(reference);
  });

  it('8 overlapping calls with DPM++ 2M starting part-way give the images they give alone', async () => {
    pipe.scheduler = getScheduler('DPM++ 2M', { ...pipe.scheduler.config }, { onWarning: () => {} });
    const requests = Array.from({ length: 8 }, (_, i) =>
      options({
        prompt: ['a red circle', 'a blue square', 'a green cross', 'a yellow triangle'][i % 4],
        strength: 0.4 + 0.08 * i,
        generator: new RandomGenerator(40 + i),
      }),
    );
    const fresh = (r: StableDiffusionImg2ImgOptions) => ({
      ...r,
      generator: new RandomGenerator((r.generator as RandomGenerator).seed),
    });
    const alone: Uint8ClampedArray[] = [];
    for (const r of requests) alone.push((await pipe.generate(fresh(r))).images[0].data);
    const together = await Promise.all(requests.map((r) => pipe.generate(fresh(r))));
    for (const [i, { images }] of together.entries()) expect(images[0].data, `request ${i}`).toEqual(alone[i]);
  });
});

/**
 * The diffusers call options that change what goes in or comes out of `generate`: `outputType`, `promptEmbeds` /
 * `negativePromptEmbeds` and custom `timesteps`, each checked against the plain call it must equal.
 */
import { InvalidArgumentError, RandomGenerator, Tensor } from '@denoise/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  decodeLatents,
  encodePrompts,
  imagesFromTensor,
  type StableDiffusionOptions,
  StableDiffusionPipeline,
} from '../src/index.js';
import { REFERENCE_WORLD } from './reliability/helpers.js';

let pipe: StableDiffusionPipeline;
beforeAll(async () => {
  pipe = await StableDiffusionPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu' });
});
afterAll(() => pipe.release());

const base = {
  prompt: 'a green triangle on a black background',
  negativePrompt: 'a white background',
  numInferenceSteps: 6,
  guidanceScale: 3,
} satisfies StableDiffusionOptions;

async function bytes(options: StableDiffusionOptions, seed = 5): Promise<number[][]> {
  const { images } = await pipe.generate({ ...options, generator: new RandomGenerator(seed) });
  return images.map((image) => [...image.data]);
}

const encode = (prompts: string[]) => encodePrompts(pipe.tokenizer, pipe.textEncoder, prompts, 1, () => {});

describe('outputType', () => {
  it("'latent' returns the loop's latents, which decode to the default output's images", async () => {
    const { latents } = await pipe.generate({ ...base, outputType: 'latent', generator: new RandomGenerator(5) });
    expect(latents.dims).toEqual([1, 4, 16, 16]);
    const decoded = imagesFromTensor(await decodeLatents(pipe.vaeDecoder, latents, pipe.vae.scalingFactor));
    expect(decoded.map((image) => [...image.data])).toEqual(await bytes(base));
  });

  it("'tensor' returns the decoded pixels in [0, 1], whose bytes are the images'", async () => {
    const { images } = await pipe.generate({ ...base, outputType: 'tensor', generator: new RandomGenerator(5) });
    expect(images.dims).toEqual([1, 3, 128, 128]);
    expect(Math.min(...images.data)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...images.data)).toBeLessThanOrEqual(1);
    const [reference] = await bytes(base);
    const plane = 128 * 128;
    for (const p of [0, 777, 8191, plane - 1]) {
      for (let c = 0; c < 3; c++) {
        expect(Math.abs(images.data[c * plane + p] * 255 - reference[p * 4 + c])).toBeLessThanOrEqual(0.5 + 1e-4);
      }
    }
  });

  it('anything else is an InvalidArgumentError before any model runs', async () => {
    const error = await pipe.generate({ ...base, outputType: 'pil' as 'image' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(String(error)).toMatch(/outputType must be one of image, latent, tensor/);
  });
});

describe('promptEmbeds and negativePromptEmbeds', () => {
  it('the text encoder output given as promptEmbeds gives the same images as the prompt', async () => {
    const promptEmbeds = await encode([base.prompt]);
    const negativePromptEmbeds = await encode([base.negativePrompt]);
    const { prompt, negativePrompt, ...rest } = base;
    expect(await bytes({ ...rest, promptEmbeds, negativePromptEmbeds })).toEqual(await bytes(base));
    // Without negativePromptEmbeds the negative prompt is encoded as usual.
    expect(await bytes({ ...rest, promptEmbeds, negativePrompt })).toEqual(await bytes(base));
  });

  it('are repeated per image like prompts', async () => {
    const promptEmbeds = await encode([base.prompt, 'a blue square on a white background']);
    const { prompt, negativePrompt, ...rest } = base;
    const fromEmbeds = await bytes({ ...rest, negativePrompt, promptEmbeds, numImagesPerPrompt: 2 });
    const fromText = await bytes({
      ...base,
      prompt: [base.prompt, 'a blue square on a white background'],
      numImagesPerPrompt: 2,
    });
    expect(fromEmbeds).toHaveLength(4);
    expect(fromEmbeds).toEqual(fromText);
  });

  it('are checked: exactly one of prompt and promptEmbeds, matching dims, float32 [P, S, D]', async () => {
    const embeds = await encode([base.prompt]);
    const cases: [StableDiffusionOptions, RegExp][] = [
      [{ numInferenceSteps: 2 }, /exactly one of prompt and promptEmbeds/],
      [{ prompt: 'a', promptEmbeds: embeds }, /exactly one of prompt and promptEmbeds/],
      [{ promptEmbeds: new Tensor(new Float32Array(4), [1, 4]) }, /float32 tensor \[prompts, sequence, hidden\]/],
      [
        {
          promptEmbeds: embeds,
          negativePromptEmbeds: new Tensor(new Float32Array(embeds.data.length), [1, embeds.dims[2], embeds.dims[1]]),
        },
        /negativePromptEmbeds must come with promptEmbeds of the same dims/,
      ],
      [{ prompt: 'a', negativePromptEmbeds: embeds }, /without promptEmbeds/],
      [{ promptEmbeds: embeds, negativePrompt: 'b', negativePromptEmbeds: embeds }, /at most one of negativePrompt/],
    ];
    for (const [options, message] of cases) {
      const error = await pipe.generate({ ...options, numInferenceSteps: 2 }).catch((e: unknown) => e);
      expect(error, String(message)).toBeInstanceOf(InvalidArgumentError);
      expect(String(error)).toMatch(message);
    }
  });
});

describe('timesteps', () => {
  it("custom timesteps equal to the scheduler's own schedule give the same images", async () => {
    const reference = pipe.scheduler.constructor as unknown as { fromConfig(c: object): typeof pipe.scheduler };
    const scheduler = reference.fromConfig(pipe.scheduler.config);
    scheduler.setTimesteps(6);
    const seen: number[] = [];
    const images = await bytes({
      ...base,
      numInferenceSteps: undefined,
      timesteps: scheduler.timesteps,
      callbackOnStepEnd: ({ timestep }) => {
        seen.push(timestep);
        return undefined;
      },
    });
    expect(seen).toEqual([...scheduler.timesteps]);
    expect(images).toEqual(await bytes(base));
  });

  it('run exactly the timesteps given, and refuse a step count next to them', async () => {
    const seen: number[] = [];
    await pipe.generate({
      ...base,
      numInferenceSteps: undefined,
      timesteps: [901, 500, 99],
      generator: new RandomGenerator(1),
      callbackOnStepEnd: ({ timestep }) => {
        seen.push(timestep);
        return undefined;
      },
    });
    expect(seen).toEqual([901, 500, 99]);
    const error = await pipe.generate({ ...base, timesteps: [901, 500, 99] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(String(error)).toMatch(/at most one of numInferenceSteps and timesteps/);
  });
});

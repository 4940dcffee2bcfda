/**
 * The diffusers call options that change what goes in or comes out of `generate`: `outputType`, `promptEmbeds` /
 * `negativePromptEmbeds`, custom `timesteps` and custom `sigmas`, each checked against the plain call it must equal.
 */
import { InvalidArgumentError, RandomGenerator, Tensor } from '@denoise/core';
import { EulerDiscreteScheduler, type Scheduler } from '@denoise/schedulers';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  decodeLatents,
  encodePrompts,
  imagesFromTensor,
  StableDiffusionImg2ImgPipeline,
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

describe('sigmas', () => {
  const quiet = { onWarning: () => {} };
  /** The world's own scheduler (DDIM, which takes no custom sigmas), restored after each test. */
  let worldScheduler: Scheduler;
  beforeAll(() => {
    worldScheduler = pipe.scheduler;
  });
  afterEach(() => {
    pipe.scheduler = worldScheduler;
  });

  const euler = (karras: boolean) =>
    EulerDiscreteScheduler.fromConfig({ ...worldScheduler.config, use_karras_sigmas: karras }, quiet);

  /** The Karras sigmas the config flag gives at `steps` steps, the final 0 included, and their timesteps. */
  function karrasSchedule(steps: number): { sigmas: number[]; timesteps: number[] } {
    const karras = euler(true);
    karras.setTimesteps(steps);
    return { sigmas: [...karras.sigmas], timesteps: [...karras.timesteps] };
  }

  it("the scheduler's own Karras sigmas give the images of use_karras_sigmas: true, byte for byte", async () => {
    // At guidance 7.5 the world's images still depend on the schedule (at low guidance its exact denoiser lands
    // on the label's picture whatever the schedule).
    const options = { ...base, guidanceScale: 7.5 };
    const { sigmas, timesteps } = karrasSchedule(options.numInferenceSteps);
    expect(sigmas).toHaveLength(options.numInferenceSteps + 1);
    pipe.scheduler = euler(true);
    const fromConfig = await bytes(options);

    pipe.scheduler = euler(false);
    const seen: number[] = [];
    const fromSigmas = await bytes({
      ...options,
      numInferenceSteps: undefined,
      sigmas,
      callbackOnStepEnd: ({ timestep }) => {
        seen.push(timestep);
        return undefined;
      },
    });
    expect(fromSigmas).toEqual(fromConfig);
    // The same steps, up to one float32 ulp: as in diffusers, custom sigmas are cast to float32 before they are
    // mapped to timesteps, while the config flag maps its float64 Karras sigmas.
    expect(seen).toHaveLength(timesteps.length);
    for (const [i, t] of seen.entries()) {
      expect(Math.abs(t - timesteps[i])).toBeLessThanOrEqual(2 ** -23 * timesteps[i]);
    }
    // The plain Euler schedule gives other images, so the sigmas, not the scheduler, made them equal.
    expect(await bytes(options)).not.toEqual(fromConfig);
  });

  it('reach image-to-image too, where strength cuts the custom schedule as it cuts the configured one', async () => {
    const img2img = await StableDiffusionImg2ImgPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu' });
    try {
      const [image] = (await pipe.generate({ ...base, generator: new RandomGenerator(2) })).images;
      const { numInferenceSteps, ...rest } = base;
      const options = { ...rest, prompt: 'a blue square on a white background', guidanceScale: 7.5, image };
      const steps = 4;
      // The latents, bit for bit: from half-noised pictures the world's images do not depend on the schedule.
      const run = async (schedule: { numInferenceSteps: number } | { sigmas: number[] }) => {
        const call = { ...options, ...schedule, strength: 0.5, outputType: 'latent' as const };
        return [...(await img2img.generate({ ...call, generator: new RandomGenerator(9) })).latents.data];
      };
      img2img.scheduler = euler(true);
      const fromConfig = await run({ numInferenceSteps: steps });
      img2img.scheduler = euler(false);
      expect(await run({ sigmas: karrasSchedule(steps).sigmas })).toEqual(fromConfig);
      expect(await run({ numInferenceSteps: steps })).not.toEqual(fromConfig);
    } finally {
      img2img.release();
    }
  });

  it('on a scheduler without custom sigmas is an InvalidArgumentError naming it and the ones that take them', async () => {
    const { sigmas } = karrasSchedule(3);
    const error = await pipe.generate({ prompt: base.prompt, sigmas }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(String(error)).toMatch(/DDIMScheduler does not take custom sigmas/);
    expect(String(error)).toMatch(/EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler, EDMEulerScheduler/);
  });

  it('next to numInferenceSteps or timesteps is an InvalidArgumentError', async () => {
    pipe.scheduler = euler(false);
    const { sigmas, timesteps } = karrasSchedule(3);
    for (const conflict of [{ numInferenceSteps: 3 }, { timesteps }]) {
      const error = await pipe.generate({ prompt: base.prompt, sigmas, ...conflict }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect(String(error)).toMatch(/only one of numInferenceSteps, timesteps and sigmas/);
    }
  });
});

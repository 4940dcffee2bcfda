import { rmSync } from 'node:fs';
import { AbortError, InvalidArgumentError, ModelLoadError, NumericError, RandomGenerator, Tensor } from '@denoise/core';
import type { FeedValue } from '@denoise/core/runtime';
import { EulerAncestralDiscreteScheduler, EulerDiscreteScheduler } from '@denoise/schedulers';
import { afterAll, describe, expect, it, vi } from 'vitest';
import {
  DiffusionPipeline,
  isPipeline,
  type LatentDiffusionPipeline,
  StableDiffusionXLImg2ImgPipeline,
  StableDiffusionXLPipeline,
} from '../src/index.js';
import { SEQUENCE, tinyVocab } from './helpers/tiny-sd.js';
import {
  features1,
  features2,
  HIDDEN_1,
  HIDDEN_2,
  POOLED,
  PROJECTION,
  type TinySdxlVariant,
  writeTinySdxl,
} from './helpers/tiny-sdxl.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function repo(variant: TinySdxlVariant = {}): string {
  const dir = writeTinySdxl(variant);
  dirs.push(dir);
  return dir;
}

const loadBase = (variant: TinySdxlVariant = {}) =>
  StableDiffusionXLPipeline.fromPretrained(repo(variant), { device: 'cpu' });
const loadImg2Img = (variant: TinySdxlVariant = {}) =>
  StableDiffusionXLImg2ImgPipeline.fromPretrained(repo(variant), { device: 'cpu' });

/** Records every UNet call's feeds, read back as float32 CPU tensors. */
function recordUnetCalls(pipe: LatentDiffusionPipeline): Record<string, Tensor>[] {
  const calls: Record<string, Tensor>[] = [];
  const run = pipe.unet.run.bind(pipe.unet);
  vi.spyOn(pipe.unet, 'run').mockImplementation((feeds: Readonly<Record<string, FeedValue>>) => {
    const copy: Record<string, Tensor> = {};
    for (const [name, value] of Object.entries(feeds)) {
      copy[name] =
        typeof value === 'number'
          ? new Tensor(Float32Array.of(value), [1])
          : new Tensor(Float32Array.from((value as Tensor).data as Float32Array), [...(value as Tensor).dims]);
    }
    calls.push(copy);
    return run(feeds);
  });
  return calls;
}

/** The tiny CLIP token ids of a prompt of known words, padded with the end token to SEQUENCE. */
function ids(words: string[]): number[] {
  const tokens = [tinyVocab['<|startoftext|>'], ...words.map((w) => tinyVocab[`${w}</w>`]), tinyVocab['<|endoftext|>']];
  while (tokens.length < SEQUENCE) tokens.push(tinyVocab['<|endoftext|>']);
  return tokens;
}

/** The expected `encoder_hidden_states` row `[S, D₁ + D₂]` and `text_embeds` `[E]` from the fixture's formulas. */
function expectedEmbeddings(words1: string[], words2: string[], clipSkip = 0) {
  const first = ids(words1);
  const second = ids(words2);
  const hidden: number[] = [];
  const mean = new Array(HIDDEN_2).fill(0);
  for (let s = 0; s < SEQUENCE; s++) {
    // hidden_states.k of text_encoder is (k+1)·E: the penultimate of its 3 is k = 1, clipSkip 1 gives k = 0.
    hidden.push(...features1(first[s], s).map((v) => v * (2 - clipSkip)));
    // hidden_states.k of text_encoder_2 is F + k: the penultimate of its 4 is k = 2.
    hidden.push(...features2(second[s], s).map((v) => v + 2 - clipSkip));
    features2(second[s], s).forEach((v, d) => {
      mean[d] += v / SEQUENCE;
    });
  }
  const pooled = Array.from({ length: POOLED }, (_, j) =>
    mean.reduce((sum, v, d) => sum + v * PROJECTION[d * POOLED + j], 0),
  );
  return { hidden, pooled };
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance = 1e-5): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    expect(Math.abs(actual[i] - expected[i])).toBeLessThanOrEqual(tolerance * Math.max(1, Math.abs(expected[i])));
  }
}

const rows = (tensor: Tensor, from: number, to: number) => {
  const size = tensor.data.length / tensor.dims[0];
  return Array.from(tensor.data.subarray(from * size, to * size));
};

describe('StableDiffusionXLPipeline on tiny generated Optimum-layout repositories', () => {
  it('DiffusionPipeline.fromPretrained returns the SDXL class of every SDXL class name, and the refiner layout', async () => {
    const cases: [TinySdxlVariant, string][] = [
      [{ className: 'StableDiffusionXLPipeline' }, 'StableDiffusionXLPipeline'],
      [{ className: 'ORTStableDiffusionXLPipeline' }, 'StableDiffusionXLPipeline'],
      [{ className: 'StableDiffusionXLImg2ImgPipeline' }, 'StableDiffusionXLImg2ImgPipeline'],
      [{ className: 'ORTStableDiffusionXLImg2ImgPipeline' }, 'StableDiffusionXLImg2ImgPipeline'],
      [{ refiner: true, className: 'StableDiffusionXLImg2ImgPipeline' }, 'StableDiffusionXLImg2ImgPipeline'],
    ];
    for (const [variant, kind] of cases) {
      const pipe = await DiffusionPipeline.fromPretrained(repo(variant), { device: 'cpu' });
      expect(pipe.kind).toBe(kind);
      if (isPipeline(pipe, 'StableDiffusionXLImg2ImgPipeline')) {
        expect(pipe.textEncoders.length).toBe(variant.refiner ? 1 : 2);
        expect(pipe.requiresAestheticsScore).toBe(variant.refiner ?? false);
      }
      await pipe.release();
    }
  });

  it('an SDXL repository without the files of a component it needs names that component', async () => {
    for (const component of ['text_encoder_2', 'tokenizer_2', 'unet', 'tokenizer']) {
      const error = await DiffusionPipeline.fromPretrained(repo({ withoutFiles: [component] }), {
        device: 'cpu',
      }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ModelLoadError);
      expect(String((error as Error).message)).toContain(component);
    }
  });

  it("conditions on both encoders' penultimate hidden states side by side and text_encoder_2's text_embeds", async () => {
    const pipe = await loadBase();
    const calls = recordUnetCalls(pipe);
    const common = { numInferenceSteps: 1, guidanceScale: 1, generator: new RandomGenerator(0) };
    await pipe.generate({ ...common, prompt: 'a cat', prompt2: 'a dog' });
    await pipe.generate({ ...common, prompt: 'a cat' });
    await pipe.generate({ ...common, prompt: 'a cat', prompt2: 'a dog', clipSkip: 1 });
    const expectations = [
      expectedEmbeddings(['a', 'cat'], ['a', 'dog']),
      expectedEmbeddings(['a', 'cat'], ['a', 'cat']),
      expectedEmbeddings(['a', 'cat'], ['a', 'dog'], 1),
    ];
    expectations.forEach((expected, i) => {
      expect(calls[i].encoder_hidden_states.dims).toEqual([1, SEQUENCE, HIDDEN_1 + HIDDEN_2]);
      expectClose(calls[i].encoder_hidden_states.data, expected.hidden);
      expect(calls[i].text_embeds.dims).toEqual([1, POOLED]);
      expectClose(calls[i].text_embeds.data, expected.pooled);
    });
  });

  it('promptEmbeds with pooledPromptEmbeds give what the prompt gives, zeroed negatives included', async () => {
    const pipe = await loadBase();
    const calls = recordUnetCalls(pipe);
    const options = { numInferenceSteps: 2, outputType: 'latent' as const };
    const fromText = await pipe.generate({ ...options, prompt: 'a cat', generator: new RandomGenerator(8) });
    const hidden = new Tensor(Float32Array.from(rows(calls[0].encoder_hidden_states, 1, 2)), [1, SEQUENCE, 10]);
    const pooled = new Tensor(Float32Array.from(rows(calls[0].text_embeds, 1, 2)), [1, POOLED]);
    const fromEmbeds = await pipe.generate({
      ...options,
      promptEmbeds: hidden,
      pooledPromptEmbeds: pooled,
      generator: new RandomGenerator(8),
    });
    expect(Array.from(fromEmbeds.latents.data)).toEqual(Array.from(fromText.latents.data));
  });

  it('time_ids are (original size, crop corner, target size), the negative ones only with both negative sizes', async () => {
    const pipe = await loadBase();
    const calls = recordUnetCalls(pipe);
    const common = { prompt: 'a cat', numInferenceSteps: 1, generator: new RandomGenerator(0) };
    await pipe.generate(common);
    await pipe.generate({ ...common, originalSize: [1024, 768], cropsCoordsTopLeft: [16, 32], targetSize: [512, 256] });
    await pipe.generate({ ...common, negativeOriginalSize: [64, 32] });
    await pipe.generate({
      ...common,
      negativeOriginalSize: [64, 32],
      negativeCropsCoordsTopLeft: [2, 4],
      negativeTargetSize: [96, 48],
    });
    // The default 8×8 image (UNet sample size 4, VAE factor 2); rows are [unconditional; conditional].
    expect(Array.from(calls[0].time_ids.data)).toEqual([8, 8, 0, 0, 8, 8, 8, 8, 0, 0, 8, 8]);
    expect(calls[0].time_ids.dims).toEqual([2, 6]);
    expect(Array.from(calls[1].time_ids.data)).toEqual([1024, 768, 16, 32, 512, 256, 1024, 768, 16, 32, 512, 256]);
    expect(Array.from(calls[2].time_ids.data)).toEqual([8, 8, 0, 0, 8, 8, 8, 8, 0, 0, 8, 8]);
    expect(Array.from(calls[3].time_ids.data)).toEqual([64, 32, 2, 4, 96, 48, 8, 8, 0, 0, 8, 8]);
  });

  it('force_zeros_for_empty_prompt: zeros without negativePrompt, the encoded prompt with one or when the option is off', async () => {
    const common = { prompt: 'a cat', numInferenceSteps: 1, generator: new RandomGenerator(0) };
    const zeroing = await loadBase();
    const calls = recordUnetCalls(zeroing);
    await zeroing.generate(common);
    await zeroing.generate({ ...common, negativePrompt: '' });
    const width = SEQUENCE * (HIDDEN_1 + HIDDEN_2);
    expect(rows(calls[0].encoder_hidden_states, 0, 1)).toEqual(new Array(width).fill(0));
    expect(rows(calls[0].text_embeds, 0, 1)).toEqual(new Array(POOLED).fill(0));
    const empty = expectedEmbeddings([], []);
    expectClose(rows(calls[1].encoder_hidden_states, 0, 1), empty.hidden);
    expectClose(rows(calls[1].text_embeds, 0, 1), empty.pooled);

    const encoding = await loadBase({ forceZerosForEmptyPrompt: false });
    const encodingCalls = recordUnetCalls(encoding);
    await encoding.generate({ ...common, negativePrompt2: 'a dog' });
    const mixed = expectedEmbeddings([], ['a', 'dog']);
    expectClose(rows(encodingCalls[0].encoder_hidden_states, 0, 1), mixed.hidden);
    expectClose(rows(encodingCalls[0].text_embeds, 0, 1), mixed.pooled);
  });

  it('runs the unconditional and conditional passes in ONE UNet call per step; a fixed-batch UNet in two, alike', async () => {
    const free = await loadBase();
    const calls = recordUnetCalls(free);
    const options = { prompt: 'a cat', numInferenceSteps: 3, numImagesPerPrompt: 2, outputType: 'latent' as const };
    const a = await free.generate({ ...options, generator: new RandomGenerator(4) });
    expect(calls.map((c) => c.sample.dims[0])).toEqual([4, 4, 4]);
    expect(calls[0].time_ids.dims).toEqual([4, 6]);
    const fixed = await loadBase({ unetBatch: 2 });
    const fixedCalls = recordUnetCalls(fixed);
    const b = await fixed.generate({ ...options, generator: new RandomGenerator(4) });
    expect(fixedCalls.map((c) => c.sample.dims[0])).toEqual([2, 2, 2, 2, 2, 2]);
    expectClose(b.latents.data, a.latents.data, 1e-6);
  });

  it("draws the latents as randn([B, 4, h, w]) · initNoiseSigma on the generator, as diffusers' CPU generator", async () => {
    const pipe = await loadBase();
    const options = { prompt: 'a cat', numInferenceSteps: 2, outputType: 'latent' as const };
    const seeded = await pipe.generate({ ...options, generator: new RandomGenerator(42) });
    const scheduler = EulerDiscreteScheduler.fromConfig(pipe.scheduler.config);
    scheduler.setTimesteps(2);
    const latents = new RandomGenerator(42).randn([1, 4, 4, 4]);
    for (let i = 0; i < latents.data.length; i++) latents.data[i] *= scheduler.initNoiseSigma;
    const given = await pipe.generate({ ...options, latents });
    expect(Array.from(given.latents.data)).toEqual(Array.from(seeded.latents.data));
    const other = await pipe.generate({ ...options, generator: new RandomGenerator(43) });
    expect(Array.from(other.latents.data)).not.toEqual(Array.from(seeded.latents.data));
  });

  it('denoisingEnd and denoisingStart split the schedule as diffusers, and the two halves make the whole run', async () => {
    const dir = repo();
    const base = await StableDiffusionXLPipeline.fromPretrained(dir, { device: 'cpu' });
    const continuation = await StableDiffusionXLImg2ImgPipeline.fromPretrained(dir, { device: 'cpu' });
    const baseCalls = recordUnetCalls(base);
    const continuationCalls = recordUnetCalls(continuation);
    const common = { prompt: 'a cat', numInferenceSteps: 10, outputType: 'latent' as const };
    const whole = await base.generate({ ...common, generator: new RandomGenerator(7) });
    baseCalls.length = 0;
    const first = await base.generate({ ...common, denoisingEnd: 0.8, generator: new RandomGenerator(7) });
    const second = await continuation.generate({ ...common, image: first.latents, denoisingStart: 0.8 });
    // Leading spacing with steps_offset 1: 901, 801, …, 1; the cut at round(1000 − 0.8·1000) = 200.
    expect(baseCalls.map((c) => c.timestep.data[0])).toEqual([901, 801, 701, 601, 501, 401, 301, 201]);
    expect(continuationCalls.map((c) => c.timestep.data[0])).toEqual([101, 1]);
    expectClose(second.latents.data, whole.latents.data, 1e-5);

    const refiner = await loadImg2Img({ refiner: true });
    const refinerCalls = recordUnetCalls(refiner);
    await refiner.generate({ ...common, image: first.latents, denoisingStart: 0.8 });
    expect(refinerCalls.map((c) => c.timestep.data[0])).toEqual([101, 1]);
  });

  it('the refiner encodes the prompt with text_encoder_2 alone and passes the aesthetic scores as its 5 time ids', async () => {
    const refiner = await loadImg2Img({ refiner: true });
    const calls = recordUnetCalls(refiner);
    const image = new Tensor(new Float32Array(3 * 8 * 8).fill(0.25), [1, 3, 8, 8]);
    const common = { prompt: 'a cat', prompt2: 'a dog', image, numInferenceSteps: 4, strength: 0.5 };
    await refiner.generate({ ...common, negativePrompt: 'a dog', generator: new RandomGenerator(0) });
    expect(calls.length).toBe(2);
    const { hidden } = expectedEmbeddings(['a', 'cat'], ['a', 'cat']);
    const secondOnly = hidden.filter((_, i) => i % (HIDDEN_1 + HIDDEN_2) >= HIDDEN_1);
    expect(calls[0].encoder_hidden_states.dims).toEqual([2, SEQUENCE, HIDDEN_2]);
    expectClose(rows(calls[0].encoder_hidden_states, 1, 2), secondOnly);
    expect(Array.from(calls[0].time_ids.data)).toEqual([8, 8, 0, 0, 2.5, 8, 8, 0, 0, 6]);
    calls.length = 0;
    await refiner.generate({
      ...common,
      aestheticScore: 7,
      negativeAestheticScore: 1,
      generator: new RandomGenerator(0),
    });
    expect(Array.from(calls[0].time_ids.data)).toEqual([8, 8, 0, 0, 1, 8, 8, 0, 0, 7]);
  });

  it("image-to-image draws Optimum's latent_parameters posterior sample on the generator, then the noise", async () => {
    const pipe = await loadImg2Img();
    const calls = recordUnetCalls(pipe);
    const pixels = new Float32Array(3 * 8 * 8);
    for (let i = 0; i < pixels.length; i++) pixels[i] = Math.sin(i) * 0.5;
    const image = new Tensor(pixels, [1, 3, 8, 8]);
    await pipe.generate({
      prompt: 'a cat',
      image,
      numInferenceSteps: 4,
      strength: 0.5,
      generator: new RandomGenerator(3),
    });
    // The mean: 2×2 averages ×2 and the RGB mean; the latent: (mean + e^(−2/2)·n₁)·0.5, noised: + σ·n₂.
    const generator = new RandomGenerator(3);
    const posteriorNoise = generator.randn([1, 4, 4, 4]).data;
    const noise = generator.randn([1, 4, 4, 4]).data;
    const scheduler = EulerDiscreteScheduler.fromConfig(pipe.scheduler.config);
    scheduler.setTimesteps(4);
    const sigma = scheduler.sigmas[2];
    const expected = new Float32Array(64);
    for (let y = 0; y < 4; y++) {
      for (let x = 0; x < 4; x++) {
        let rgbMean = 0;
        for (let c = 0; c < 3; c++) {
          let sum = 0;
          for (const [dy, dx] of [
            [0, 0],
            [0, 1],
            [1, 0],
            [1, 1],
          ])
            sum += pixels[c * 64 + (2 * y + dy) * 8 + 2 * x + dx];
          expected[c * 16 + y * 4 + x] = (sum / 4) * 2;
          rgbMean += expected[c * 16 + y * 4 + x] / 3;
        }
        expected[48 + y * 4 + x] = rgbMean;
      }
    }
    const latent = expected.map((m, i) => (m + Math.exp(-1) * posteriorNoise[i]) * 0.5 + sigma * noise[i]);
    // Euler scales the model input by 1/√(σ² + 1); the batch is [unconditional; conditional].
    const modelInput = latent.map((v) => v / Math.sqrt(sigma * sigma + 1));
    expectClose(rows(calls[0].sample, 1, 2), modelInput, 1e-5);
  });

  it('aborts between model calls with an AbortError; a swapped scheduler changes the sampler and stays seeded', async () => {
    const pipe = await loadBase();
    const controller = new AbortController();
    const aborted = pipe.generate({
      prompt: 'a cat',
      numInferenceSteps: 4,
      signal: controller.signal,
      callbackOnStepEnd: () => {
        controller.abort();
        return undefined;
      },
    });
    await expect(aborted).rejects.toBeInstanceOf(AbortError);

    const options = { prompt: 'a cat', numInferenceSteps: 3, outputType: 'latent' as const };
    const euler = await pipe.generate({ ...options, generator: new RandomGenerator(2) });
    pipe.scheduler = EulerAncestralDiscreteScheduler.fromConfig(pipe.scheduler.config);
    const ancestral = await pipe.generate({ ...options, generator: new RandomGenerator(2) });
    const again = await pipe.generate({ ...options, generator: new RandomGenerator(2) });
    expect(Array.from(ancestral.latents.data)).toEqual(Array.from(again.latents.data));
    expect(Array.from(ancestral.latents.data)).not.toEqual(Array.from(euler.latents.data));
  });

  it('runs the float16-I/O export close to the float32 one; a float16 VAE that overflows says how to fix it', async () => {
    const options = { prompt: 'a cat', numInferenceSteps: 2, outputType: 'tensor' as const };
    const full = await (await loadBase()).generate({ ...options, generator: new RandomGenerator(1) });
    const half = await (await loadBase({ fp16: true })).generate({ ...options, generator: new RandomGenerator(1) });
    expectClose(half.images.data, full.images.data, 2e-2);
    const overflowing = await loadBase({ vaeOverflow: true });
    const error = await overflowing.generate({ ...options, generator: new RandomGenerator(1) }).catch((e) => e);
    expect(error).toBeInstanceOf(NumericError);
    expect(error.message).toMatch(/vae_decoder: 'fp32'/);
    expect(error.message).toMatch(/sdxl-vae-fp16-fix/);
  });

  it('LCM-SDXL: timestep_cond carries the guidance scale and there is no unconditional pass', async () => {
    const pipe = await loadBase({ timestepCond: 8 });
    const calls = recordUnetCalls(pipe);
    await pipe.generate({ prompt: 'a cat', guidanceScale: 8, numInferenceSteps: 2, generator: new RandomGenerator(0) });
    expect(calls.map((c) => c.sample.dims[0])).toEqual([1, 1]);
    // diffusers' get_guidance_scale_embedding(w − 1 = 7, dim 8): sines then cosines of 7000·10000^(−k/3).
    const angles = [0, 1, 2, 3].map((k) => 7000 * Math.exp((-Math.log(10000) * k) / 3));
    expectClose(calls[0].timestep_cond.data, [...angles.map(Math.sin), ...angles.map(Math.cos)], 1e-4);
    expect(Array.from(calls[0].time_ids.data)).toEqual([8, 8, 0, 0, 8, 8]);
    expectClose(calls[0].text_embeds.data, expectedEmbeddings(['a', 'cat'], ['a', 'cat']).pooled);
  });

  it('rejects bad SDXL input with clear InvalidArgumentErrors', async () => {
    const pipe = await loadBase();
    const reject = async (call: Promise<unknown>, message: RegExp) => {
      const error = await call.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as Error).message).toMatch(message);
    };
    await reject(pipe.generate({ prompt: ['a cat', 'a dog'], prompt2: ['a', 'b', 'c'] }), /3 prompt2 for 2 prompts/);
    for (const originalSize of [[0, 8], [8.5, 8], [8]] as unknown as [number, number][]) {
      await reject(pipe.generate({ prompt: 'a cat', originalSize }), /originalSize must be two positive integers/);
    }
    for (const denoisingEnd of [0, 1, 1.5, Number.NaN]) {
      await reject(pipe.generate({ prompt: 'a cat', denoisingEnd }), /denoisingEnd must be a fraction/);
    }
    const hidden = new Tensor(new Float32Array(SEQUENCE * (HIDDEN_1 + HIDDEN_2)), [1, SEQUENCE, HIDDEN_1 + HIDDEN_2]);
    await reject(pipe.generate({ promptEmbeds: hidden }), /pooledPromptEmbeds with promptEmbeds/);
    await reject(
      pipe.generate({ promptEmbeds: hidden, pooledPromptEmbeds: new Tensor(new Float32Array(6), [2, POOLED]) }),
      /pooledPromptEmbeds must be a float32 tensor/,
    );
    const refinerDir = repo({ refiner: true });
    const asText = await StableDiffusionXLPipeline.fromPretrained(refinerDir, { device: 'cpu' });
    await reject(asText.generate({ prompt: 'a cat' }), /refiner.*StableDiffusionXLImg2ImgPipeline/);
    const refiner = await StableDiffusionXLImg2ImgPipeline.fromPretrained(refinerDir, { device: 'cpu' });
    await reject(
      refiner.generate({ prompt: 'a cat' } as unknown as Parameters<typeof refiner.generate>[0]),
      /pass image/,
    );
    await reject(
      refiner.generate({ prompt: 'a cat', image: new Tensor(new Float32Array(64), [1, 4, 4, 4]), denoisingStart: 1 }),
      /denoisingStart must be a fraction/,
    );
  });
});

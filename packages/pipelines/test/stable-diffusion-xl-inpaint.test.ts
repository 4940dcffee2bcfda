/**
 * SDXL inpainting on the tiny SDXL fixtures (`helpers/tiny-sdxl.ts`): the 9-channel UNet's sample channels and the
 * legacy blend of a 4-channel one, checked against values worked out by hand from the fixture's VAE (the latents of
 * an image of 2×2 blocks are its block values, the fourth channel their mean) and Euler's σ.
 */
import { rmSync } from 'node:fs';
import { AbortError, InvalidArgumentError, RandomGenerator, Tensor } from '@denoise/core';
import type { FeedValue } from '@denoise/core/runtime';
import { afterAll, describe, expect, it, vi } from 'vitest';
import {
  DiffusionPipeline,
  isPipeline,
  type LatentDiffusionPipeline,
  STABLE_DIFFUSION_XL_INPAINT_CLASS_NAMES,
  type StableDiffusionXLInpaintOptions,
  StableDiffusionXLInpaintPipeline,
} from '../src/index.js';
import { type TinySdxlVariant, writeTinySdxl } from './helpers/tiny-sdxl.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function repo(variant: TinySdxlVariant = {}): string {
  const dir = writeTinySdxl({ className: 'ORTStableDiffusionXLInpaintPipeline', ...variant });
  dirs.push(dir);
  return dir;
}
const load = (variant: TinySdxlVariant = {}) =>
  StableDiffusionXLInpaintPipeline.fromPretrained(repo(variant), { device: 'cpu' });

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

/** The image: 8×8 pixels in 2×2 blocks; block (by, bx) of channel c has the value `block(c, by, bx)`. */
const SIZE = 8;
const LATENT = 4;
const block = (c: number, by: number, bx: number) => (((c + 1) * (by * LATENT + bx)) % 7) / 7 - 0.4;
const image = new Tensor(new Float32Array(3 * SIZE * SIZE), [1, 3, SIZE, SIZE]);
for (let c = 0; c < 3; c++) {
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) image.data[(c * SIZE + y) * SIZE + x] = block(c, y >> 1, x >> 1);
  }
}
/** Repaint the left half (pixel columns 0–3, latent columns 0–1). */
const maskImage = new Tensor(new Float32Array(SIZE * SIZE), [SIZE, SIZE]);
for (let y = 0; y < SIZE; y++) maskImage.data.fill(1, y * SIZE, y * SIZE + SIZE / 2);
const repainted = (bx: number) => bx < 2;

/** The VAE's latents of `image` with the masked blocks zeroed or not: 0.5 · (2 · block mean), the 4th the RGB mean. */
function latentsByHand(masked: boolean): Float32Array {
  const out = new Float32Array(4 * LATENT * LATENT);
  for (let by = 0; by < LATENT; by++) {
    for (let bx = 0; bx < LATENT; bx++) {
      const rgb = [0, 1, 2].map((c) => (masked && repainted(bx) ? 0 : block(c, by, bx)));
      rgb.forEach((v, c) => {
        out[(c * LATENT + by) * LATENT + bx] = v;
      });
      out[(3 * LATENT + by) * LATENT + bx] = (rgb[0] + rgb[1] + rgb[2]) / 3;
    }
  }
  return out;
}

/** Euler's σ at an integer timestep of the fixture's scaled-linear schedule: √((1 − ᾱ_t)/ᾱ_t). */
function sigmaAt(t: number): number {
  let alphaBar = 1;
  for (let i = 0; i <= t; i++) {
    const beta = (Math.sqrt(0.00085) + ((Math.sqrt(0.012) - Math.sqrt(0.00085)) * i) / 999) ** 2;
    alphaBar *= 1 - beta;
  }
  return Math.sqrt((1 - alphaBar) / alphaBar);
}

/** Channels [from, to) of batch row `row` of a `[B, C, h, w]` tensor. */
function channels(tensor: Tensor, row: number, from: number, to: number): Float32Array {
  const [, count, h, w] = tensor.dims;
  return tensor.data.slice((row * count + from) * h * w, (row * count + to) * h * w);
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance = 1e-5): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    expect(Math.abs(actual[i] - expected[i])).toBeLessThanOrEqual(tolerance * Math.max(1, Math.abs(expected[i])));
  }
}

const base = { prompt: 'a cat', image, maskImage, numInferenceSteps: 10 };

describe('StableDiffusionXLInpaintPipeline', () => {
  it('loads from its class names, and a refiner gets aesthetic-score time ids', async () => {
    expect(STABLE_DIFFUSION_XL_INPAINT_CLASS_NAMES).toEqual([
      'StableDiffusionXLInpaintPipeline',
      'ORTStableDiffusionXLInpaintPipeline',
    ]);
    for (const className of STABLE_DIFFUSION_XL_INPAINT_CLASS_NAMES) {
      const pipe = await DiffusionPipeline.fromPretrained(repo({ className, inpainting: true }), { device: 'cpu' });
      expect(pipe).toBeInstanceOf(StableDiffusionXLInpaintPipeline);
      expect(pipe.kind).toBe('StableDiffusionXLInpaintPipeline');
      expect(isPipeline(pipe, 'StableDiffusionXLInpaintPipeline')).toBe(true);
      if (isPipeline(pipe, 'StableDiffusionXLInpaintPipeline')) expect(pipe.unetChannels).toBe(9);
      await pipe.release();
    }
    const refiner = await load({ refiner: true });
    const calls = recordUnetCalls(refiner);
    await refiner.generate({ ...base, numInferenceSteps: 2, strength: 1, outputType: 'latent' });
    const ids = Array.from(calls[0].time_ids.data);
    const rows = [ids.slice(0, 5), ids.slice(5)];
    expect(calls[0].time_ids.dims).toEqual([2, 5]);
    expect(rows).toEqual(
      expect.arrayContaining([
        [8, 8, 0, 0, 6],
        [8, 8, 0, 0, 2.5],
      ]),
    );
    await refiner.release();
  });

  it('feeds the 9-channel UNet [latents, mask, masked-image latents], one call per guided step', async () => {
    const pipe = await load({ inpainting: true });
    const calls = recordUnetCalls(pipe);
    const seed = 3;
    const result = await pipe.generate({ ...base, generator: new RandomGenerator(seed), outputType: 'latent' });
    // The default strength 0.9999 runs ⌊10 · 0.9999⌋ = 9 of the 10 steps (leading spacing: 901, 801, …, 1).
    expect(calls.map((c) => c.timestep.data[0])).toEqual([801, 701, 601, 501, 401, 301, 201, 101, 1]);
    expect(result.latents.dims).toEqual([1, 4, LATENT, LATENT]);
    const mask = new Float32Array(LATENT * LATENT).map((_, p) => (repainted(p % LATENT) ? 1 : 0));
    const masked = latentsByHand(true);
    for (const call of calls) {
      expect(call.sample.dims).toEqual([2, 9, LATENT, LATENT]);
      expect(Array.from(call.time_ids.data)).toEqual([8, 8, 0, 0, 8, 8, 8, 8, 0, 0, 8, 8]);
      for (const row of [0, 1]) {
        expect(Array.from(channels(call.sample, row, 4, 5))).toEqual(Array.from(mask));
        expectClose(channels(call.sample, row, 5, 9), masked, 1e-6);
      }
    }
    // The first step's latents: the image's, noised to σ(801) with the first draw, scaled by 1/√(σ² + 1).
    const sigma = sigmaAt(801);
    const noise = new RandomGenerator(seed).randn([1, 4, LATENT, LATENT]).data;
    const clean = latentsByHand(false);
    const first = clean.map((v, i) => (v + sigma * noise[i]) / Math.sqrt(sigma * sigma + 1));
    for (const row of [0, 1]) expectClose(channels(calls[0].sample, row, 0, 4), first);
    await pipe.release();
  });

  it('keeps the unmasked region on the legacy path (4-channel UNet), in the latents and the pixels', async () => {
    const pipe = await load();
    expect(pipe.unetChannels).toBe(4);
    const calls = recordUnetCalls(pipe);
    const options = { ...base, strength: 1, generator: new RandomGenerator(5) };
    const { latents } = await pipe.generate({ ...options, outputType: 'latent' });
    expect(calls.map((c) => c.sample.dims)).toEqual(Array.from({ length: 10 }, () => [2, 4, LATENT, LATENT]));
    const clean = latentsByHand(false);
    let changed = 0;
    for (let i = 0; i < clean.length; i++) {
      if (repainted(i % LATENT)) changed += Math.abs(latents.data[i] - clean[i]) > 1e-3 ? 1 : 0;
      else expect(latents.data[i]).toBeCloseTo(clean[i], 6);
    }
    expect(changed).toBeGreaterThan(0);
    const { images } = await pipe.generate({ ...options, generator: new RandomGenerator(5), outputType: 'tensor' });
    for (let i = 0; i < images.data.length; i++) {
      if (i % SIZE >= SIZE / 2) expect(images.data[i]).toBeCloseTo(image.data[i] / 2 + 0.5, 5);
    }
    await pipe.release();
  });

  it('splits the schedule with denoisingEnd and continues without noise from denoisingStart', async () => {
    const pipe = await load();
    const calls = recordUnetCalls(pipe);
    await pipe.generate({ ...base, strength: 1, denoisingEnd: 0.8, outputType: 'latent' });
    expect(calls.map((c) => c.timestep.data[0])).toEqual([901, 801, 701, 601, 501, 401, 301, 201]);
    calls.length = 0;
    await pipe.generate({ ...base, denoisingStart: 0.8, outputType: 'latent' });
    expect(calls.map((c) => c.timestep.data[0])).toEqual([101, 1]);
    const sigma = sigmaAt(101);
    const scaled = latentsByHand(false).map((v) => v / Math.sqrt(sigma * sigma + 1));
    expectClose(channels(calls[0].sample, 0, 0, 4), scaled);
    await pipe.release();
  });

  it('aborts between model calls with an AbortError', async () => {
    const pipe = await load({ inpainting: true });
    const controller = new AbortController();
    const calls = recordUnetCalls(pipe);
    const run = pipe.generate({
      ...base,
      signal: controller.signal,
      callbackOnStepEnd: ({ step }) => {
        if (step === 1) controller.abort();
        return undefined;
      },
    });
    await expect(run).rejects.toBeInstanceOf(AbortError);
    expect(calls.length).toBe(2);
    await expect(pipe.generate({ ...base, signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    await pipe.release();
  });

  it('rejects bad input with errors that say what to do', async () => {
    const pipe = await load({ inpainting: true });
    const bad = (options: Partial<StableDiffusionXLInpaintOptions<'latent'>>) =>
      pipe.generate({ ...base, outputType: 'latent', ...options });
    await expect(bad({ maskImage: undefined as never })).rejects.toThrow(/maskImage must be/);
    await expect(bad({ maskImage: undefined as never })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(bad({ image: undefined as never })).rejects.toThrow(/used for inpainting: pass image and maskImage/);
    await expect(bad({ strength: 1.5 })).rejects.toThrow(/strength must be in \[0, 1\], got 1.5/);
    await expect(bad({ denoisingStart: 0.9, denoisingEnd: 0.5 })).rejects.toThrow(/must be below denoisingEnd/);
    await expect(bad({ denoisingStart: 1 })).rejects.toThrow(/strictly between 0 and 1/);
    await expect(bad({ paddingMaskCrop: 2 })).rejects.toThrow(/outputType must be 'image' or 'tensor'/);
    await expect(bad({ aestheticScore: Number.NaN })).rejects.toThrow(/aestheticScore must be a number/);
    await pipe.release();
    const noEncoder = await load({ withoutFiles: ['vae_encoder'] });
    await expect(noEncoder.generate(base)).rejects.toThrow(/has no vae_encoder, which inpainting needs/);
    await noEncoder.release();
  });
});

/**
 * Inpainting on exact models: the inpainting variant of the reference world (`tools/reference-world/inpainting.ts`,
 * 9-channel UNet, the exact denoiser restricted to the known pixels) and the reference world itself (4-channel
 * UNet, diffusers' legacy blend). A red circle on white with a black corner block is repainted inside a mask that
 * covers every shape's cells; the prompt asks for a blue square, which the known white background makes unique.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AbortError, ConfigError, InvalidArgumentError, RandomGenerator, Tensor, type TensorLike } from '@denoise/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildInpaintingWorld } from '../../../tools/reference-world/inpainting.js';
import { alphasCumprod } from '../../../tools/reference-world/noise-schedule.js';
import {
  imageSize,
  latentSize,
  paintLatent,
  scalingFactor,
  worldPoints,
} from '../../../tools/reference-world/world.js';
import {
  DiffusionPipeline,
  decodeLatents,
  encodeImages,
  INPAINT_CLASS_NAMES,
  type StableDiffusionInpaintOptions,
  StableDiffusionInpaintPipeline,
  StableDiffusionPipeline,
} from '../src/index.js';
import { binarize, cropRegion, maskPlane, resizeNearest } from '../src/mask.js';
import { REFERENCE_WORLD, referenceWorldCopy } from './reliability/helpers.js';

const block = imageSize / latentSize;
/** Latent cells [2, 14) on both axes hold every shape of the world (`world.ts`' `covers`). */
const REGION = { from: 2 * block, to: 14 * block };
const plane = imageSize * imageSize;

function latentOf(label: string): Float32Array {
  const point = worldPoints.find((p) => p.label === label);
  if (point === undefined) throw new Error(`no picture ${label}`);
  return Float32Array.from(point.latent);
}

/** The latent of `label` with its top-left cell painted black: a picture that is not in the data set. */
function withMarker(latent: Float32Array): Float32Array {
  const out = Float32Array.from(latent);
  for (let c = 0; c < 3; c++) out[c * latentSize * latentSize] = -1;
  out[3 * latentSize * latentSize] = 0;
  return out;
}

const ORIGINAL = withMarker(latentOf('a red circle on a white background'));
const originalImage = new Tensor(paintLatent(ORIGINAL), [1, 3, imageSize, imageSize]);

/** The expected repaint: `inside`'s cells in the region, the original's elsewhere. */
function expectedLatent(inside: string): Float32Array {
  const target = latentOf(inside);
  const out = Float32Array.from(ORIGINAL);
  const cells = latentSize * latentSize;
  for (let c = 0; c < 4; c++) {
    for (let row = 2; row < 14; row++) {
      for (let col = 2; col < 14; col++)
        out[c * cells + row * latentSize + col] = target[c * cells + row * latentSize + col];
    }
  }
  return out;
}

function regionMask(value = 255): Uint8Array {
  const mask = new Uint8Array(plane);
  for (let y = REGION.from; y < REGION.to; y++)
    mask.fill(value, y * imageSize + REGION.from, y * imageSize + REGION.to);
  return mask;
}
const MASK = { width: imageSize, height: imageSize, data: regionMask() };

function inRegion(p: number): boolean {
  const [y, x] = [Math.floor(p / imageSize), p % imageSize];
  return y >= REGION.from && y < REGION.to && x >= REGION.from && x < REGION.to;
}

/** Largest |a − b| over the pixels where `where` holds, `a` in [0, 1] and `expected` in [−1, 1]. */
function maxError(actual: TensorLike, expected: Float32Array, where: (p: number) => boolean): number {
  let max = 0;
  for (let i = 0; i < expected.length; i++) {
    if (!where(i % plane)) continue;
    max = Math.max(max, Math.abs(actual.data[i] - Math.min(Math.max(expected[i] / 2 + 0.5, 0), 1)));
  }
  return max;
}

let dir: string;
let nine: StableDiffusionInpaintPipeline;
let legacy: StableDiffusionInpaintPipeline;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'denoise-inpainting-'));
  buildInpaintingWorld(dir);
  nine = await StableDiffusionInpaintPipeline.fromPretrained(dir, { device: 'cpu' });
  legacy = await StableDiffusionInpaintPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu' });
});

afterAll(async () => {
  await Promise.all([nine?.release(), legacy?.release()]);
  rmSync(dir, { recursive: true, force: true });
});

const base = {
  prompt: 'a blue square',
  image: originalImage,
  maskImage: MASK,
  numInferenceSteps: 20,
  outputType: 'tensor',
} satisfies StableDiffusionInpaintOptions<'tensor'>;

/**
 * What DDIM's last step leaves in the pixels (`set_alpha_to_one` false): `√(1 − ᾱ₀)·ε̂` in the scaled latents, ε̂
 * within ±4 of a standard normal, unscaled, summed over colour and shading, halved into [0, 1]: 0.081. A wrong
 * colour or shape is off by 0.375 or more.
 */
const LAST_STEP_NOISE = (4 * Math.sqrt(1 - alphasCumprod()[0])) / scalingFactor;

/** Whether flat latent index k is a cell of the repainted region. */
function inLatentRegion(k: number): boolean {
  const cell = k % (latentSize * latentSize);
  const [row, col] = [Math.floor(cell / latentSize), cell % latentSize];
  return row >= 2 && row < 14 && col >= 2 && col < 14;
}

describe('StableDiffusionInpaintPipeline on the exact worlds', () => {
  it('reads the UNet channels from the graph: 9 with mask and masked-image latents, 4 with the legacy blend', () => {
    expect([nine.unetChannels, nine.latentChannels]).toEqual([9, 4]);
    expect([legacy.unetChannels, legacy.latentChannels]).toEqual([4, 4]);
  });

  for (const path of ['9-channel', 'legacy'] as const) {
    it(`${path}: repaints only the masked region, with the requested shape there`, async () => {
      const pipe = path === '9-channel' ? nine : legacy;
      const expected = paintLatent(expectedLatent('a blue square on a white background'));
      const target = expectedLatent('a blue square on a white background').map((v) => v * scalingFactor);
      for (const seed of [0, 1, 2]) {
        let finalPrediction: Tensor | undefined;
        const { images } = await pipe.generate({
          ...base,
          generator: new RandomGenerator(seed),
          callbackOnStepEnd: ({ predOriginalSample }) => {
            finalPrediction = predOriginalSample;
            return undefined;
          },
        });
        // The last step's x̂₀ is the requested picture in the region (and, on the 9-channel path, the known
        // latents outside it), to float32 accuracy.
        const x0 = (finalPrediction as Tensor).data;
        for (let k = 0; k < target.length; k++) {
          if (path === '9-channel' || inLatentRegion(k)) expect(Math.abs(x0[k] - target[k])).toBeLessThan(1e-4);
        }
        expect(images.dims).toEqual([1, 3, imageSize, imageSize]);
        // The masked region now holds the blue square on the known white background, not the red circle.
        expect(maxError(images, expected, inRegion)).toBeLessThan(LAST_STEP_NOISE);
        // The known pixels, the marker included, are the original's: exactly on the legacy path (its last blend
        // puts the clean latents back), to the last step's noise on the 9-channel one.
        const outside = maxError(images, paintLatent(ORIGINAL), (p) => !inRegion(p));
        expect(outside).toBeLessThan(path === 'legacy' ? 1e-6 : LAST_STEP_NOISE);
      }
    });

    it(`${path}: strength below 1 starts from the noised image and still repaints the region`, async () => {
      const pipe = path === '9-channel' ? nine : legacy;
      let steps = 0;
      const { images } = await pipe.generate({
        ...base,
        strength: 0.6,
        generator: new RandomGenerator(3),
        callbackOnStepEnd: () => {
          steps++;
          return undefined;
        },
      });
      expect(steps).toBe(12);
      expect(
        maxError(images, paintLatent(expectedLatent('a blue square on a white background')), inRegion),
      ).toBeLessThan(LAST_STEP_NOISE);
    });

    it(`${path}: an all-zero mask returns the image up to the VAE round trip`, async () => {
      const pipe = path === '9-channel' ? nine : legacy;
      // A picture the autoencoder cannot reproduce exactly (not block art), so the round trip is visible.
      const image = new Tensor(
        Float32Array.from({ length: 3 * plane }, (_, i) => Math.sin(i * 0.37) * 0.8),
        [1, 3, imageSize, imageSize],
      );
      const roundTrip = await decodeLatents(
        pipe.vaeDecoder,
        await encodeImages(pipe.vaeEncoder as never, image, scalingFactor),
        scalingFactor,
      );
      const { images } = await pipe.generate({
        ...base,
        image,
        maskImage: { width: imageSize, height: imageSize, data: new Uint8Array(plane) },
        generator: new RandomGenerator(0),
      });
      expect(maxError(images, roundTrip.data, () => true)).toBeLessThan(path === 'legacy' ? 1e-6 : LAST_STEP_NOISE);
    });
  }

  it('9-channel: an all-one mask is text-to-image for the same seed', async () => {
    const t2i = await StableDiffusionPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu' });
    try {
      for (const seed of [0, 5]) {
        const options = { prompt: 'a green triangle', numInferenceSteps: 10, outputType: 'latent' } as const;
        const text = await t2i.generate({ ...options, generator: new RandomGenerator(seed) });
        const inpainted = await nine.generate({
          ...options,
          image: originalImage,
          maskImage: { width: imageSize, height: imageSize, data: new Uint8Array(plane).fill(255) },
          generator: new RandomGenerator(seed),
        });
        let scale = 0;
        let difference = 0;
        for (let i = 0; i < text.latents.data.length; i++) {
          scale = Math.max(scale, Math.abs(text.latents.data[i]));
          difference = Math.max(difference, Math.abs(inpainted.latents.data[i] - text.latents.data[i]));
        }
        expect(difference).toBeLessThanOrEqual(1e-5 * scale);
      }
    } finally {
      await t2i.release();
    }
  });

  it('legacy: the latents callbackOnStepEnd sees are already blended, the clean original at the last step', async () => {
    const clean = await encodeImages(legacy.vaeEncoder as never, originalImage, scalingFactor);
    let last: Tensor | undefined;
    await legacy.generate({
      ...base,
      numInferenceSteps: 5,
      outputType: 'latent',
      generator: new RandomGenerator(0),
      callbackOnStepEnd: ({ latents }) => {
        last = latents;
        return undefined;
      },
    });
    const latents = last as Tensor;
    for (let k = 0; k < latents.data.length; k++) if (!inLatentRegion(k)) expect(latents.data[k]).toBe(clean.data[k]);
  });

  it('a callback can stop the run; the same seed gives the same image, another seed other latents', async () => {
    let calls = 0;
    const stopped = await nine.generate({
      ...base,
      outputType: 'latent',
      generator: new RandomGenerator(4),
      callbackOnStepEnd: () => (++calls === 3 ? { stop: true } : undefined),
    });
    expect(calls).toBe(3);
    expect(stopped.latents.dims).toEqual([1, 4, latentSize, latentSize]);
    const run = (seed: number) =>
      nine.generate({ ...base, outputType: 'latent', generator: new RandomGenerator(seed) });
    const [a, b, c] = [await run(7), await run(7), await run(8)];
    expect(a.latents.data).toEqual(b.latents.data);
    expect(a.latents.data).not.toEqual(c.latents.data);
  });

  it('several images per prompt each get the mask and the masked image', async () => {
    const { images } = await nine.generate({
      ...base,
      prompt: ['a blue square', 'a yellow cross'],
      numImagesPerPrompt: 2,
      generator: new RandomGenerator(0),
    });
    expect(images.dims).toEqual([4, 3, imageSize, imageSize]);
    const item = (b: number) => ({ data: images.data.subarray(b * 3 * plane, (b + 1) * 3 * plane), dims: [1, 3] });
    const square = paintLatent(expectedLatent('a blue square on a white background'));
    const cross = paintLatent(expectedLatent('a yellow cross on a white background'));
    for (const [b, expected] of [
      [0, square],
      [1, square],
      [2, cross],
      [3, cross],
    ] as const) {
      expect(maxError(item(b), expected, () => true)).toBeLessThan(LAST_STEP_NOISE);
    }
  });

  it('paddingMaskCrop generates the crop around the mask and pastes it back into the larger image', async () => {
    // A 256×256 gray image holding the 128×128 picture at (64, 64); the mask covers its shape cells, and 16 pixels
    // of padding make the crop exactly the picture, so no resize blurs the check.
    const size = 256;
    const offset = 64;
    const big = new Float32Array(3 * size * size);
    const small = originalImage.data;
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < imageSize; y++) {
        big.set(
          small.subarray((c * imageSize + y) * imageSize, (c * imageSize + y + 1) * imageSize),
          (c * size + offset + y) * size + offset,
        );
      }
    }
    const mask = new Uint8Array(size * size);
    for (let y = offset + REGION.from; y < offset + REGION.to; y++) {
      mask.fill(255, y * size + offset + REGION.from, y * size + offset + REGION.to);
    }
    const { images } = await legacy.generate({
      ...base,
      image: new Tensor(big, [1, 3, size, size]),
      maskImage: { width: size, height: size, data: mask },
      paddingMaskCrop: 16,
      generator: new RandomGenerator(0),
    });
    expect(images.dims).toEqual([1, 3, size, size]);
    const expectedSmall = paintLatent(expectedLatent('a blue square on a white background'));
    let maxInside = 0;
    let maxOutside = 0;
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          const at = (c * size + y) * size + x;
          const [sy, sx] = [y - offset, x - offset];
          const inPicture = sy >= 0 && sy < imageSize && sx >= 0 && sx < imageSize;
          const expected = inPicture ? expectedSmall[(c * imageSize + sy) * imageSize + sx] : 0;
          const error = Math.abs(images.data[at] - (expected / 2 + 0.5));
          if (mask[y * size + x]) maxInside = Math.max(maxInside, error);
          else maxOutside = Math.max(maxOutside, error);
        }
      }
    }
    expect(maxInside).toBeLessThan(LAST_STEP_NOISE);
    expect(maxOutside).toBeLessThan(1e-6);
  });

  it('masks: RGBA and single-channel images and tensors, grayscale as PIL, binarised at 0.5', async () => {
    const rgba = new Uint8Array(plane * 4);
    const gray = regionMask();
    for (let p = 0; p < plane; p++) rgba.fill(gray[p], p * 4, p * 4 + 3);
    const tensor = { data: Float32Array.from(gray, (v) => v / 255), dims: [imageSize, imageSize] };
    const run = (maskImage: StableDiffusionInpaintOptions['maskImage']) =>
      nine.generate({
        ...base,
        maskImage,
        numInferenceSteps: 4,
        outputType: 'latent',
        generator: new RandomGenerator(1),
      });
    const reference = (await run(MASK)).latents.data;
    expect((await run({ width: imageSize, height: imageSize, data: rgba })).latents.data).toEqual(reference);
    expect((await run(tensor)).latents.data).toEqual(reference);
    expect((await run({ data: tensor.data, dims: [1, 1, imageSize, imageSize] })).latents.data).toEqual(reference);
    // Half the size: resized to the image with nearest neighbours.
    const half = new Uint8Array(plane / 4);
    for (let y = REGION.from / 2; y < REGION.to / 2; y++)
      half.fill(200, y * 64 + REGION.from / 2, y * 64 + REGION.to / 2);
    expect((await run({ width: 64, height: 64, data: half })).latents.data).toEqual(reference);

    // PIL's L of pure green is 150; of (128, 128, 128) is 128 ≥ 127.5, so it repaints; 127 keeps.
    const pixel = (r: number, g: number, b: number) =>
      maskPlane({ width: 1, height: 1, data: Uint8Array.of(r, g, b, 0) });
    expect(pixel(0, 255, 0).values[0] * 255).toBeCloseTo(150, 4);
    expect(pixel(255, 0, 0).values[0] * 255).toBeCloseTo(76, 4);
    expect(binarize(pixel(128, 128, 128)).values[0]).toBe(1);
    expect(binarize(pixel(127, 127, 127)).values[0]).toBe(0);
    expect(binarize(maskPlane({ data: Float32Array.of(0.49999, 0.5), dims: [1, 2] })).values).toEqual(
      Float32Array.of(0, 1),
    );
    // Nearest: output i reads input ⌊i · in/out⌋.
    const line = { width: 4, height: 1, values: Float32Array.of(0, 1, 2, 3) };
    expect(resizeNearest(line, 2, 1).values).toEqual(Float32Array.of(0, 2));
    expect(resizeNearest(line, 6, 1).values).toEqual(Float32Array.of(0, 0, 1, 2, 2, 3));
  });

  it('crop regions as diffusers get_crop_region: padded bounding box grown to the processing aspect ratio', () => {
    const box = (w: number, h: number, x1: number, y1: number, x2: number, y2: number) => {
      const values = new Float32Array(w * h);
      for (let y = y1; y < y2; y++) values.fill(0.3, y * w + x1, y * w + x2);
      return { width: w, height: h, values };
    };
    expect(cropRegion(box(100, 50, 10, 5, 20, 15), 64, 64, 0)).toEqual({ x1: 10, y1: 5, x2: 20, y2: 15 });
    expect(cropRegion(box(100, 50, 10, 5, 20, 15), 64, 64, 3)).toEqual({ x1: 7, y1: 2, x2: 23, y2: 18 });
    // 30 × 10 grown to 30 × 30 around its centre.
    expect(cropRegion(box(100, 50, 40, 20, 70, 30), 64, 64, 0)).toEqual({ x1: 40, y1: 10, x2: 70, y2: 40 });
    // At the bottom edge: grown to 30 rows, then shifted up inside the image.
    expect(cropRegion(box(100, 50, 0, 45, 30, 50), 64, 64, 0)).toEqual({ x1: 0, y1: 20, x2: 30, y2: 50 });
    // A tall box widened to a 2:1 processing size, shifted right from the left edge.
    expect(cropRegion(box(100, 50, 0, 0, 10, 20), 128, 64, 0)).toEqual({ x1: 0, y1: 0, x2: 40, y2: 20 });
  });

  it('loads from each inpainting class name of model_index.json', async () => {
    for (const className of INPAINT_CLASS_NAMES) {
      const copy = referenceWorldCopy((d) => {
        const index = JSON.parse(readFileSync(join(d, 'model_index.json'), 'utf8'));
        writeFileSync(join(d, 'model_index.json'), JSON.stringify({ ...index, _class_name: className }));
      });
      try {
        const pipe = await DiffusionPipeline.fromPretrained(copy.dir, { device: 'cpu' });
        expect(pipe).toBeInstanceOf(StableDiffusionInpaintPipeline);
        expect(pipe.kind).toBe('StableDiffusionInpaintPipeline');
        await pipe.release();
      } finally {
        copy.remove();
      }
    }
    const pipe = await DiffusionPipeline.fromPretrained(dir, { device: 'cpu' });
    expect(pipe.kind).toBe('StableDiffusionInpaintPipeline');
    await pipe.release();
  });

  it('aborts between model calls with an AbortError', async () => {
    const controller = new AbortController();
    const run = nine.generate({
      ...base,
      signal: controller.signal,
      generator: new RandomGenerator(0),
      callbackOnStepEnd: ({ step }) => {
        if (step === 1) controller.abort();
        return undefined;
      },
    });
    await expect(run).rejects.toBeInstanceOf(AbortError);
    await expect(nine.generate({ ...base, signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
  });

  it('rejects bad input with errors that say what to do', async () => {
    const noEncoder = referenceWorldCopy((d) => {
      rmSync(join(d, 'vae_encoder'), { recursive: true });
      const index = JSON.parse(readFileSync(join(d, 'model_index.json'), 'utf8'));
      delete index.vae_encoder;
      writeFileSync(join(d, 'model_index.json'), JSON.stringify(index));
    });
    try {
      const pipe = await StableDiffusionInpaintPipeline.fromPretrained(noEncoder.dir, { device: 'cpu' });
      await expect(pipe.generate(base)).rejects.toThrow(/has no vae_encoder, which inpainting needs/);
      await pipe.release();
    } finally {
      noEncoder.remove();
    }
    const bad = (options: Partial<StableDiffusionInpaintOptions<'tensor'>>) => nine.generate({ ...base, ...options });
    await expect(bad({ strength: 1.5 })).rejects.toThrow(/strength must be in \[0, 1\], got 1.5/);
    await expect(bad({ maskImage: { width: imageSize, height: imageSize, data: new Uint8Array(10) } })).rejects.toThrow(
      /needs 16384 bytes \(one channel\) or 65536 \(RGBA\), got 10/,
    );
    await expect(
      bad({ maskImage: { data: new Float32Array(3 * plane), dims: [1, 3, imageSize, imageSize] } }),
    ).rejects.toThrow(/one channel, one mask/);
    await expect(bad({ maskImage: undefined as never })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(bad({ image: { data: new Float32Array(plane), dims: [1, 1, imageSize, imageSize] } })).rejects.toThrow(
      /must be \[1, 3, H, W\]/,
    );
    await expect(bad({ width: 100 })).rejects.toThrow(/width must be a positive multiple of 8/);
    await expect(bad({ paddingMaskCrop: -1 })).rejects.toThrow(/non-negative integer/);
    await expect(nine.generate({ ...base, paddingMaskCrop: 8, outputType: 'latent' })).rejects.toThrow(
      /outputType must be 'image' or 'tensor'/,
    );
    await expect(
      bad({ paddingMaskCrop: 8, maskImage: { width: imageSize, height: imageSize, data: new Uint8Array(plane) } }),
    ).rejects.toThrow(/at least one non-zero pixel/);
    // A UNet of another channel count cannot inpaint.
    Object.defineProperty(nine, 'unetChannels', { value: 5, configurable: true });
    try {
      await expect(bad({})).rejects.toBeInstanceOf(ConfigError);
    } finally {
      delete (nine as { unetChannels?: number }).unetChannels;
    }
  });
});

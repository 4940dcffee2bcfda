/**
 * The ControlNet variant of the reference world (tools/reference-world/controlnet.ts): its ControlNet tells which
 * shape a silhouette shows and its UNet is the world's exact denoiser with that shape in place of the prompt's
 * shape word. So the silhouette decides the shape whatever the prompt says, and at controlnetConditioningScale 0
 * the pipeline draws what the plain world draws for the same seed, byte for byte.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RandomGenerator } from '@denoise/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildControlNetWorld, silhouette } from '../../../tools/reference-world/controlnet.js';
import { nearestLabels } from '../../../tools/reference-world/pictures.js';
import {
  DiffusionPipeline,
  isPipeline,
  StableDiffusionControlNetPipeline,
  StableDiffusionPipeline,
} from '../src/index.js';
import { REFERENCE_WORLD } from './reliability/helpers.js';

let dir: string;
let pipe: StableDiffusionControlNetPipeline;
let plain: StableDiffusionPipeline;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'denoise-controlnet-world-'));
  buildControlNetWorld(dir);
  pipe = await StableDiffusionControlNetPipeline.fromPretrained(dir, { device: 'cpu' });
  plain = await StableDiffusionPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu' });
});
afterAll(async () => {
  await Promise.all([pipe?.release(), plain?.release()]);
  rmSync(dir, { recursive: true, force: true });
});

const plainImage = async (prompt: string, negativePrompt?: string) =>
  (
    await plain.generate({
      prompt,
      negativePrompt,
      numInferenceSteps: 25,
      guidanceScale: 1.5,
      generator: new RandomGenerator(11),
    })
  ).images[0].data;

const generate = (prompt: string, shape: 'circle' | 'square' | 'triangle' | 'cross', extra = {}) =>
  pipe.generate({
    prompt,
    image: silhouette(shape),
    numInferenceSteps: 25,
    guidanceScale: 1.5,
    generator: new RandomGenerator(11),
    ...extra,
  });

describe('ControlNet on the reference world', () => {
  it('loads through DiffusionPipeline.fromPretrained as the ControlNet pipeline, in the positional layout', async () => {
    const any = await DiffusionPipeline.fromPretrained(dir, { device: 'cpu' });
    try {
      expect(isPipeline(any, 'StableDiffusionControlNetPipeline')).toBe(true);
      expect(any.kind).toBe('StableDiffusionControlNetPipeline');
    } finally {
      await any.release();
    }
    expect(pipe.controlLayout.kind).toBe('separate');
    if (pipe.controlLayout.kind !== 'separate') return;
    // The export names only its first two outputs; the residuals pair in order, so the last one is the middle block's.
    expect(pipe.controlLayout.outputs[1]).toBe('mid_block_res_sample');
    expect(pipe.controlLayout.unetInputs[1]).toBe('down_block_1');
    expect(pipe.controlLayout.unetInputs[12]).toBe('mid_block_additional_residual');
  });

  // Outside guess mode the ControlNet conditions the unconditional rows too, so their prior is the silhouette's
  // shape: the plain world computes the same with that shape word as the negative prompt.
  it.each([
    ['a red circle on a white background', 'square', 'a red square on a white background'],
    ['a blue square on a black background', 'triangle', 'a blue triangle on a black background'],
    ['a green triangle on a gray background', 'cross', 'a green cross on a gray background'],
    ['a yellow cross on a white background', 'circle', 'a yellow circle on a white background'],
    ['a red picture on a black background', 'cross', 'a red cross on a black background'],
  ] as const)('"%s" with a %s silhouette draws %s', async (prompt, shape, expected) => {
    const { images } = await generate(prompt, shape);
    expect(nearestLabels(images[0].data)[0].label).toBe(expected);
    expect(Buffer.from(images[0].data).equals(Buffer.from(await plainImage(expected, shape)))).toBe(true);
  });

  it('at controlnetConditioningScale 0 the silhouette is ignored: the plain world’s image, byte for byte', async () => {
    const prompt = 'a red circle on a white background';
    const { images } = await generate(prompt, 'square', { controlnetConditioningScale: 0 });
    expect(nearestLabels(images[0].data)[0].label).toBe(prompt);
    expect(Buffer.from(images[0].data).equals(Buffer.from(await plainImage(prompt)))).toBe(true);
  });

  it('in guess mode only the conditional rows see the silhouette: an empty prompt draws its shape', async () => {
    const { images } = await generate('', 'triangle', { guessMode: true });
    expect(nearestLabels(images[0].data)[0].label).toMatch(/ triangle /);
    // The middle block keeps weight 1, and the unconditional rows are the plain empty prompt's.
    expect(Buffer.from(images[0].data).equals(Buffer.from(await plainImage('triangle', '')))).toBe(true);
  });
});

/**
 * The exact check of SDXL text-to-image: the SDXL-layout reference world (`tools/reference-world/sdxl.ts`) draws
 * the prompted picture only when the pipeline reads the penultimate hidden state of `text_encoder`, puts it first
 * in `encoder_hidden_states`, passes `text_encoder_2`'s `text_embeds` (which carry the background) and the
 * uncropped 128×128 `time_ids`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RandomGenerator } from '@denoise/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closestLabelsDistance, nearestLabels } from '../../../tools/reference-world/pictures.js';
import { buildSdxlReferenceWorld } from '../../../tools/reference-world/sdxl.js';
import {
  DiffusionPipeline,
  isPipeline,
  type StableDiffusionXLOptions,
  type StableDiffusionXLPipeline,
} from '../src/index.js';

const LABEL = 'a red circle on a white background';
const tolerance = closestLabelsDistance() / 2;
let dir: string;
let pipe: StableDiffusionXLPipeline;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'denoise-sdxl-world-'));
  buildSdxlReferenceWorld(dir);
  const loaded = await DiffusionPipeline.fromPretrained(dir, { device: 'cpu' });
  if (!isPipeline(loaded, 'StableDiffusionXLPipeline')) throw new Error(`loaded a ${loaded.kind}`);
  pipe = loaded;
});
afterAll(async () => {
  await pipe?.release();
  rmSync(dir, { recursive: true, force: true });
});

const run = (options: StableDiffusionXLOptions) =>
  pipe.generate({ numInferenceSteps: 25, generator: new RandomGenerator(5), ...options });

describe('SDXL text-to-image on the SDXL-layout reference world', () => {
  it('draws the prompted picture, with and without classifier-free guidance', async () => {
    for (const guidanceScale of [1, 5]) {
      const { images } = await run({ prompt: LABEL, guidanceScale });
      expect(images[0].width).toBe(128);
      const [nearest] = nearestLabels(images[0].data);
      expect(nearest.label).toBe(LABEL);
      expect(nearest.error).toBeLessThan(tolerance);
    }
  });

  it("takes the background from prompt2 through text_encoder_2's text_embeds alone", async () => {
    const { images } = await run({ prompt: 'a blue square', prompt2: 'a black background', guidanceScale: 1 });
    const [nearest] = nearestLabels(images[0].data);
    expect(nearest.label).toBe('a blue square on a black background');
    expect(nearest.error).toBeLessThan(tolerance);
  });

  it('follows the prompt only under the time_ids it was "trained" with: a crop gives an unconditional sample', async () => {
    const prompted = nearestLabels((await run({ prompt: LABEL, guidanceScale: 1 })).images[0].data)[0];
    const cropped = nearestLabels(
      (await run({ prompt: LABEL, guidanceScale: 1, cropsCoordsTopLeft: [8, 0] })).images[0].data,
    )[0];
    const unconditional = nearestLabels((await run({ prompt: '', guidanceScale: 1 })).images[0].data)[0];
    expect(prompted.label).toBe(LABEL);
    // Same seed, same unconditional denoiser: the cropped run is the empty prompt's picture.
    expect(cropped).toEqual(unconditional);
    expect(cropped.label).not.toBe(LABEL);
  });
});

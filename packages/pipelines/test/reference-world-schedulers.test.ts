/**
 * Every scheduler the registry names, through the Stable Diffusion pipeline on the reference world: a prompt that
 * names a complete label must come out as that label's picture, since the world's UNet is the exact denoiser of
 * its data set (docs/reference-world.md). With guidance 1 the model is exactly the conditional one, so a correct
 * sampler ends on the label's single data point.
 */
import { RandomGenerator } from '@denoise/core';
import { getScheduler, listSchedulers, SCHEDULER_CLASSES } from '@denoise/schedulers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closestLabelsDistance, nearestLabels } from '../../../tools/reference-world/pictures.js';
import { StableDiffusionPipeline } from '../src/index.js';
import { REFERENCE_WORLD } from './reliability/helpers.js';

const LABEL = 'a yellow cross on a gray background';
let pipe: StableDiffusionPipeline;
let worldConfig: Record<string, unknown>;
/** Half the distance between the two closest labels: an image within it cannot be another label. */
const tolerance = closestLabelsDistance() / 2;

beforeAll(async () => {
  pipe = await StableDiffusionPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu' });
  worldConfig = { ...pipe.scheduler.config };
});
afterAll(() => pipe.release());

// DDIM inversion runs the other way (image to noise); it is not a sampler. The schedulers without a β schedule
// (flow matching, EDM, iPNDM) sample models of other parametrisations (a velocity, EDM's F, iPNDM's own
// schedule), not this ε-model of a β schedule.
const samplers = listSchedulers()
  .filter((s) => 'beta_schedule' in new SCHEDULER_CLASSES[s.className]().config)
  .map((s) => s.name)
  .filter((name) => name !== 'DDIMInverseScheduler');

describe(`"${LABEL}" at 25 steps, guidance 1`, () => {
  it.each(samplers)('%s draws the label', async (name) => {
    pipe.scheduler = getScheduler(name, worldConfig, { onWarning: () => {} });
    const { images } = await pipe.generate({
      prompt: LABEL,
      numInferenceSteps: 25,
      guidanceScale: 1,
      generator: new RandomGenerator(5),
    });
    const [nearest] = nearestLabels(images[0].data);
    expect(nearest.label).toBe(LABEL);
    expect(nearest.error).toBeLessThan(tolerance);
  });
});

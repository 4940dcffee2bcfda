/**
 * The guidance list as the composition point: `guidances` replaces the default classifier-free guidance, which the
 * default options build, and a mean shift under a scheduler that cannot take it is an error, not a dropped term.
 */
import { InvalidArgumentError, RandomGenerator } from '@denoise/core';
import { DDPMScheduler } from '@denoise/schedulers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ClassifierFreeGuidance,
  classifierFreeGuidances,
  classifierGuidanceForm,
  type Guidance,
  type StableDiffusionOptions,
  StableDiffusionPipeline,
} from '../src/index.js';
import { REFERENCE_WORLD } from './reliability/helpers.js';

let pipe: StableDiffusionPipeline;
beforeAll(async () => {
  pipe = await StableDiffusionPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu' });
});
afterAll(() => pipe.release());

const base = { prompt: 'a red square on a gray background', negativePrompt: 'a red circle', numInferenceSteps: 5 };

async function bytes(options: StableDiffusionOptions): Promise<number[]> {
  const { images } = await pipe.generate({ ...base, ...options, generator: new RandomGenerator(9) });
  return [...images[0].data];
}

describe('guidances replaces the default list', () => {
  it('the default list is classifierFreeGuidances of the options: the same images when given explicitly', async () => {
    const options = { guidanceScale: 4, guidanceRescale: 0.6, guidanceInterval: { start: 0, end: 0.6 } };
    const explicit = await bytes({ guidances: classifierFreeGuidances(options) });
    expect(explicit).toEqual(await bytes(options));
    expect(classifierFreeGuidances(options).map((g) => g.constructor.name)).toEqual([
      'ClassifierFreeGuidance',
      'GuidanceRescale',
    ]);
    // Rescale is a guidance of its own: the list without it is plain CFG over the same interval.
    const withoutRescale = [new ClassifierFreeGuidance({ guidanceScale: 4, interval: options.guidanceInterval })];
    expect(await bytes({ guidances: withoutRescale })).toEqual(
      await bytes({ guidanceScale: 4, guidanceInterval: options.guidanceInterval }),
    );
    expect(withoutRescale).not.toEqual(explicit);
  });

  it('an empty list is the conditional model alone, as guidanceScale 1', async () => {
    expect(await bytes({ guidances: [] })).toEqual(await bytes({ guidanceScale: 1 }));
  });

  it('options of the replaced default next to guidances are an InvalidArgumentError naming them', async () => {
    for (const [options, names] of [
      [{ guidanceScale: 3 }, 'guidanceScale configures'],
      [{ guidanceRescale: 0.5, guidanceInterval: { start: 0, end: 1 } }, 'guidanceRescale, guidanceInterval configure'],
    ] as const) {
      const error = await pipe.generate({ ...base, ...options, guidances: [] }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect(String(error)).toContain(names);
    }
  });
});

describe('mean shifts', () => {
  const pushUp: Guidance = {
    branches: () => [],
    apply(step) {
      for (let i = 0; i < step.meanShift.data.length; i++) step.meanShift.data[i] += 0.01;
    },
  };

  it("under DDIM (the 'epsilon' form) writing one throws instead of being dropped", async () => {
    expect(classifierGuidanceForm(pipe.scheduler)).toBe('epsilon');
    const error = await pipe.generate({ ...base, guidances: [pushUp] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(String(error)).toMatch(/mean shift, which DDIMScheduler cannot take/);
  });

  it('under DDPM it is added to every step', async () => {
    const ddim = pipe.scheduler;
    pipe.scheduler = DDPMScheduler.fromConfig(ddim.config, { onWarning: () => {} });
    try {
      const seen: number[] = [];
      const meanOf = (data: Float32Array) => data.reduce((s, v) => s + v, 0) / data.length;
      const run = (guidances: Guidance[]) =>
        pipe.generate({
          ...base,
          guidances,
          outputType: 'latent',
          generator: new RandomGenerator(9),
          callbackOnStepEnd: ({ latents }) => {
            seen.push(meanOf(latents.data));
            return undefined;
          },
        });
      await run([]);
      const plain = seen.splice(0);
      await run([pushUp]);
      // The same input and noise at the first step, so its latents differ by exactly the shift.
      expect(seen[0] - plain[0]).toBeCloseTo(0.01, 6);
      expect(seen.at(-1)).toBeGreaterThan(plain.at(-1) as number);
    } finally {
      pipe.scheduler = ddim;
    }
  });
});

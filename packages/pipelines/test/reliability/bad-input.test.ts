/**
 * Bad arguments to `StableDiffusionPipeline.generate` on the reference world (issue #9): each gets a documented
 * `DenoiseError` whose message says what was wrong and how to fix it; an over-long prompt is truncated with a
 * warning, as diffusers does; a model or callback that produces NaN is stopped at the step where it happened.
 */
import { InvalidArgumentError, NumericError, RandomGenerator, Tensor } from '@denoise/core';
import { DPMSolverMultistepScheduler } from '@denoise/schedulers';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type StableDiffusionOptions, StableDiffusionPipeline } from '../../src/index.js';
import { REFERENCE_WORLD, rejection } from './helpers.js';

let pipe: StableDiffusionPipeline;
beforeAll(async () => {
  pipe = await StableDiffusionPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu' });
});
afterAll(() => pipe.release());

const base: StableDiffusionOptions = { prompt: 'a red circle', numInferenceSteps: 3, onWarning: () => {} };

async function expectRejection(options: Partial<StableDiffusionOptions>, code: string, ...patterns: RegExp[]) {
  const error = await rejection(pipe.generate({ ...base, ...options } as StableDiffusionOptions));
  expect(error.code, error.message).toBe(code);
  for (const pattern of patterns) expect(error.message).toMatch(pattern);
}

describe('generate: bad arguments', () => {
  it('numInferenceSteps of 0, fractional or above the training steps', async () => {
    await expectRejection({ numInferenceSteps: 0 }, 'INVALID_ARGUMENT', /positive integer, got 0/);
    await expectRejection({ numInferenceSteps: 2.5 }, 'INVALID_ARGUMENT', /positive integer, got 2\.5/);
    await expectRejection({ numInferenceSteps: 1001 }, 'INVALID_ARGUMENT', /cannot exceed num_train_timesteps/);
  });

  it('heights and widths that are not positive multiples of the VAE factor, with the nearest valid size', async () => {
    await expectRejection({ height: 100 }, 'INVALID_ARGUMENT', /height must be a positive multiple of 8/, /Try 104/);
    await expectRejection({ width: 0 }, 'INVALID_ARGUMENT', /width must be a positive multiple of 8/, /got 0/);
    await expectRejection({ height: -8 }, 'INVALID_ARGUMENT', /height/, /got -8/);
  });

  it('a size the UNet graph was not exported for names the size it takes, in pixels', async () => {
    for (const [width, height] of [
      [64, 64],
      [256, 128],
    ]) {
      const error = await rejection(pipe.generate({ ...base, width, height }));
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect(error.message).toBe(
        `The UNet of ${pipe.repository.name} was exported for width 128 and height 128 only; ` +
          `got width ${width} and height ${height}. Leave width and height out to get that size.`,
      );
    }
  });

  it('guidance scales that are not finite numbers', async () => {
    for (const guidanceScale of [Number.NaN, Number.POSITIVE_INFINITY, '7' as unknown as number]) {
      await expectRejection({ guidanceScale }, 'INVALID_ARGUMENT', /guidanceScale must be a finite number/);
    }
    await expectRejection({ guidanceRescale: Number.NaN }, 'INVALID_ARGUMENT', /guidanceRescale must be in \[0, 1\]/);
  });

  it('prompts that are not strings, and negative prompts that do not pair with them', async () => {
    await expectRejection({ prompt: 42 as unknown as string }, 'INVALID_ARGUMENT', /prompt must be a string/);
    await expectRejection({ prompt: [] }, 'INVALID_ARGUMENT', /non-empty list of strings/);
    await expectRejection(
      { prompt: ['a', 'b'], negativePrompt: ['x', 'y', 'z'] },
      'INVALID_ARGUMENT',
      /3 negative prompts for 2 prompts/,
    );
  });

  it('numImagesPerPrompt and eta out of range; latents of the wrong size', async () => {
    await expectRejection({ numImagesPerPrompt: 0 }, 'INVALID_ARGUMENT', /numImagesPerPrompt must be a positive/);
    await expectRejection({ eta: -1 }, 'INVALID_ARGUMENT', /eta must be a finite number >= 0/);
    const short = { data: new Float32Array(10), dims: [1, 4, 16, 16] };
    await expectRejection({ latents: short }, 'INVALID_ARGUMENT', /describe 1024 elements but the data holds 10/);
  });

  it('a generator that is not a NoiseGenerator, and caller latents of the wrong dims', async () => {
    for (const generator of [42, {}, Math.random, null]) {
      await expectRejection({ generator: generator as unknown as RandomGenerator }, 'INVALID_ARGUMENT', /generator/);
    }
    const small = new Tensor(new Float32Array(4 * 8 * 8), [1, 4, 8, 8]);
    await expectRejection({ latents: small }, 'INVALID_ARGUMENT', /latents must have dims \[1, 4, 16, 16\]/);
  });

  it('a prompt longer than the tokenizer maximum is truncated with one warning and still generates', async () => {
    const warnings: string[] = [];
    const long = `a red circle ${'on a white background '.repeat(20)}`;
    const truncated = await pipe.generate({
      ...base,
      prompt: long,
      generator: new RandomGenerator(3),
      onWarning: (m) => warnings.push(m),
    });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/truncated because CLIP can only handle sequences up to 77 tokens: .*background/);
    // Words past the 77th token are dropped: adding more of them (here, other attribute words) changes nothing.
    const longer = await pipe.generate({
      ...base,
      prompt: `${long} yellow square`,
      generator: new RandomGenerator(3),
      onWarning: (m) => warnings.push(m),
    });
    expect(warnings[1]).toMatch(/yellow square/);
    expect(longer.images[0].data).toEqual(truncated.images[0].data);
  });
});

describe('generate: prompts the model does not know', () => {
  async function warningsFor(prompt: string | string[], options: Partial<StableDiffusionOptions> = {}) {
    const warnings: string[] = [];
    await pipe.generate({ ...base, prompt, ...options, onWarning: (m) => warnings.push(m) });
    return warnings;
  }

  it('a prompt of words the model was not trained on: the UNet predicts the same noise as for the empty one', async () => {
    expect(await warningsFor(['a purple dragon riding a bicycle', 'a red circle'], { numImagesPerPrompt: 2 })).toEqual([
      'The model cannot tell the prompt "a purple dragon riding a bicycle" from the empty prompt (it predicts the ' +
        'same noise for both), so the image is an unconditional sample: the model knows none of its words. ' +
        'Use words it was trained on.',
    ]);
  });

  it('a prompt without a token besides the special ones: one warning, from the tokenizer', async () => {
    expect(await warningsFor('   ')).toEqual([
      'The prompt "   " has no token the tokenizer knows besides the start and end tokens, so the image will not ' +
        "follow it. Write it in words of the model's vocabulary.",
    ]);
  });

  it('known prompts stay silent, with a negative prompt, without guidance and with one multistep step', async () => {
    expect(await warningsFor('a red circle on a white background')).toEqual([]);
    // The empty prompt asks for an unconditional sample on purpose.
    expect(await warningsFor('')).toEqual([]);
    expect(await warningsFor('a blue square', { negativePrompt: 'a purple dragon' })).toEqual([]);
    expect(await warningsFor('a purple dragon', { guidanceScale: 1 })).toEqual([]);
    const original = pipe.scheduler;
    pipe.scheduler = DPMSolverMultistepScheduler.fromConfig(original.config);
    try {
      expect(await warningsFor('a yellow cross', { numInferenceSteps: 1 })).toEqual([]);
    } finally {
      pipe.scheduler = original;
    }
  });
});

describe('generate: NaN and Infinity are detected at the step where they appear', () => {
  it('NaN in the initial latents: a NumericError at the first timestep', async () => {
    const latents = new Tensor(new Float32Array(4 * 16 * 16), [1, 4, 16, 16]);
    latents.data[17] = Number.NaN;
    await expectRejection(
      { latents },
      'NUMERIC',
      /DDIMScheduler\.step at timestep 667/,
      /sample holds NaN at index 17/,
    );
  });

  it('a UNet output that turns to Infinity at the second step: a NumericError naming that timestep', async () => {
    const run = pipe.unet.run.bind(pipe.unet);
    let calls = 0;
    const spy = vi.spyOn(pipe.unet, 'run').mockImplementation(async (feeds) => {
      const out = await run(feeds);
      if (++calls === 2) for (const tensor of Object.values(out)) (tensor.data as Float32Array).fill(Infinity);
      return out;
    });
    try {
      const error = await rejection(pipe.generate({ ...base }));
      expect(error).toBeInstanceOf(NumericError);
      expect(error.message).toMatch(/timestep 334: modelOutput holds (NaN|Infinity)/);
      expect(error.message).toMatch(/fp32 variant or a smaller guidance scale/);
    } finally {
      spy.mockRestore();
    }
  });

  it('a callback that returns NaN latents: a NumericError at the next step', async () => {
    const error = await rejection(
      pipe.generate({
        ...base,
        callbackOnStepEnd: ({ step, latents }) =>
          step === 0
            ? { latents: new Tensor(new Float32Array(latents.data.length).fill(Number.NaN), latents.dims) }
            : undefined,
      }),
    );
    expect(error).toBeInstanceOf(NumericError);
    expect(error.message).toMatch(/timestep 334: sample holds NaN/);
    expect(error.message).toMatch(/values returned by callbacks/);
  });

  it('the pipeline is still usable after each of these errors', async () => {
    const { images } = await pipe.generate({ ...base, generator: new RandomGenerator(1) });
    expect(images).toHaveLength(1);
    expect(images[0].data.some((v) => v !== images[0].data[0])).toBe(true);
  });

  it('a released pipeline says so', async () => {
    const released = await StableDiffusionPipeline.fromPretrained(REFERENCE_WORLD, {
      device: 'cpu',
    });
    await released.release();
    const error = await rejection(released.generate(base));
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(error.message).toMatch(/was released; create a new one/);
  });
});

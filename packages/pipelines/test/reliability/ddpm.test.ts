/**
 * `DDPMPipeline.generate` under bad arguments, cancellation, overlapping calls and release (issue #9, the pixel
 * pipeline): every bad argument gets a documented `DenoiseError` before any model call, an abort stops the run
 * between steps and leaves the pipeline usable, and overlapping calls give the images they give alone.
 */

import { rmSync } from 'node:fs';
import { RandomGenerator, Tensor } from '@denoise/core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type DDPMOptions, DDPMPipeline } from '../../src/index.js';
import { TINY_DDPM_CLASSES, writeTinyDdpm } from '../helpers/tiny-ddpm.js';
import { rejection } from './helpers.js';

const dirs: string[] = [];
let unconditional: DDPMPipeline;
let conditional: DDPMPipeline;

async function load(classConditional: boolean): Promise<DDPMPipeline> {
  const dir = writeTinyDdpm({ classConditional });
  dirs.push(dir);
  return await DDPMPipeline.fromPretrained(dir, { device: 'cpu' });
}

beforeAll(async () => {
  unconditional = await load(false);
  conditional = await load(true);
});
afterAll(async () => {
  await Promise.all([unconditional.release(), conditional.release()]);
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** Rejects with `code` and a message matching every pattern, without a single UNet call. */
async function expectRejection(pipe: DDPMPipeline, options: DDPMOptions, code: string, ...patterns: RegExp[]) {
  const run = vi.spyOn(pipe.unet, 'run');
  const error = await rejection(pipe.generate({ numInferenceSteps: 2, ...options }));
  expect(error.code, error.message).toBe(code);
  for (const pattern of patterns) expect(error.message).toMatch(pattern);
  expect(run).not.toHaveBeenCalled();
  run.mockRestore();
}

const pixels = (output: { images: { data: Uint8ClampedArray }[] }) => output.images.map((image) => [...image.data]);

describe('DDPMPipeline.generate: bad arguments', () => {
  it('batchSize that is not a positive integer', async () => {
    for (const batchSize of [0, -1, 1.5, Number.NaN]) {
      await expectRejection(unconditional, { batchSize }, 'INVALID_ARGUMENT', /batchSize must be a positive integer/);
      await expectRejection(
        conditional,
        { classLabels: 1, batchSize },
        'INVALID_ARGUMENT',
        /batchSize must be a positive integer/,
      );
    }
  });

  it('numInferenceSteps of 0, fractional or above the training steps', async () => {
    await expectRejection(unconditional, { numInferenceSteps: 0 }, 'INVALID_ARGUMENT', /positive integer, got 0/);
    await expectRejection(unconditional, { numInferenceSteps: 2.5 }, 'INVALID_ARGUMENT', /got 2\.5/);
    await expectRejection(unconditional, { numInferenceSteps: 1001 }, 'INVALID_ARGUMENT', /cannot exceed/);
  });

  it('class labels that are not integers in [0, num_class_embeds), naming the bad one', async () => {
    for (const label of [-1, 1.5, Number.NaN, TINY_DDPM_CLASSES]) {
      await expectRejection(
        conditional,
        { classLabels: [0, label] },
        'INVALID_ARGUMENT',
        new RegExp(`classLabels\\[1\\] must be an integer in \\[0, ${TINY_DDPM_CLASSES}\\)`),
      );
    }
    await expectRejection(conditional, { classLabels: [] }, 'INVALID_ARGUMENT', /at least one class label/);
    await expectRejection(
      conditional,
      { classLabels: 1, unconditionalClassLabel: -2, guidanceScale: 2 },
      'INVALID_ARGUMENT',
      /unconditionalClassLabel must be an integer in \[0, 10\)/,
    );
  });

  it('a batch too large for one run is refused before anything is allocated', async () => {
    await expectRejection(unconditional, { batchSize: 2 ** 26 }, 'INVALID_ARGUMENT', /Generate fewer images per call/);
    await expectRejection(
      conditional,
      { classLabels: 1, batchSize: 2 ** 26 },
      'INVALID_ARGUMENT',
      /Generate fewer images per call/,
    );
  });

  it('latents of the wrong shape and a generator that is not one', async () => {
    const latents = new Tensor(new Float32Array(3 * 4 * 4), [1, 3, 4, 4]);
    await expectRejection(unconditional, { latents }, 'INVALID_ARGUMENT', /latents must have dims \[1, 3, 8, 8\]/);
    await expectRejection(
      unconditional,
      { generator: 42 as unknown as RandomGenerator },
      'INVALID_ARGUMENT',
      /new RandomGenerator\(seed\)/,
    );
  });
});

describe('DDPMPipeline.generate: cancellation, overlap, release', () => {
  it('an abort between steps rejects with an AbortError and the next call gives the uncancelled image', async () => {
    const options: DDPMOptions = { classLabels: 3, numInferenceSteps: 6 };
    const controller = new AbortController();
    const run = vi.spyOn(conditional.unet, 'run');
    const error = await rejection(
      conditional.generate({
        ...options,
        generator: new RandomGenerator(4),
        signal: controller.signal,
        callbackOnStepEnd: ({ step }) => {
          if (step === 2) controller.abort();
          return undefined;
        },
      }),
    );
    expect(error.code).toBe('ABORTED');
    expect(run).toHaveBeenCalledTimes(3);
    run.mockRestore();
    const after = await conditional.generate({ ...options, generator: new RandomGenerator(4) });
    const fresh = await load(true);
    const alone = await fresh.generate({ ...options, generator: new RandomGenerator(4) });
    await fresh.release();
    expect(pixels(after)).toEqual(pixels(alone));
  });

  it('an already aborted signal rejects before the first UNet call', async () => {
    const controller = new AbortController();
    controller.abort();
    await expectRejection(unconditional, { signal: controller.signal }, 'ABORTED');
  });

  it('overlapping calls with different schedules and seeds give the images they give alone', async () => {
    const requests: DDPMOptions[] = [2, 3, 5, 7].map((steps, i) => ({
      classLabels: [i, 9 - i],
      unconditionalClassLabel: 0,
      guidanceScale: i + 1,
      numInferenceSteps: steps,
    }));
    const alone = [];
    for (const [i, request] of requests.entries()) {
      alone.push(pixels(await conditional.generate({ ...request, generator: new RandomGenerator(i) })));
    }
    const overlapped = await Promise.all(
      requests.map((request, i) => conditional.generate({ ...request, generator: new RandomGenerator(i) })),
    );
    expect(overlapped.map(pixels)).toEqual(alone);
  });

  it('generate after release() says the session was released', async () => {
    const pipe = await load(false);
    await pipe.release();
    await pipe.release();
    const error = await rejection(pipe.generate({ numInferenceSteps: 2 }));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toMatch(/was released; create a new one/);
  });
});

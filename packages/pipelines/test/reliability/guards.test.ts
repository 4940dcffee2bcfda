/**
 * Details of the guards added for gaps the reliability suite found (docs/reliability.md) that its broader tests do
 * not pin down: the exact advice for oversized and NaN sizes, and that an abort during session creation frees every
 * session already created.
 */
import { AbortError, InvalidArgumentError } from '@denoise/core';
import { ModelRepository, ModelSession } from '@denoise/core/runtime';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DiffusionPipeline, StableDiffusionPipeline } from '../../src/index.js';
import { REFERENCE_WORLD, rejection } from './helpers.js';

let pipe: StableDiffusionPipeline;

beforeAll(async () => {
  pipe = await StableDiffusionPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu' });
});
afterAll(() => pipe.release());

const base = { prompt: 'a red circle', numInferenceSteps: 2 };

describe('generate refuses what it cannot use', () => {
  it('more images than one run can hold, before allocating anything', async () => {
    for (const options of [{ numImagesPerPrompt: 1e9 }, { width: 1e9 }]) {
      const error = await rejection(pipe.generate({ ...base, ...options }));
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect(error.message).toMatch(/latent values, more than the 1073741824 one run can hold/);
    }
  });

  it('a NaN width, with a usable suggestion', async () => {
    const error = await rejection(pipe.generate({ ...base, width: Number.NaN }));
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(error.message).toBe(
      "width must be a positive multiple of 8 (this VAE's factor), got NaN. Pass a number such as 512.",
    );
  });
});

describe('an abort that arrives while the sessions are created', () => {
  it('an abort while the sessions are created rejects and frees what was created', async () => {
    const controller = new AbortController();
    const create = ModelRepository.prototype.createSession;
    let created = 0;
    const createSpy = vi.spyOn(ModelRepository.prototype, 'createSession').mockImplementation(async function (
      this: ModelRepository,
      ...args
    ) {
      controller.abort();
      created++;
      return create.apply(this, args);
    });
    const releaseSpy = vi.spyOn(ModelSession.prototype, 'release');
    const error = await rejection(DiffusionPipeline.fromPretrained(REFERENCE_WORLD, { signal: controller.signal }));
    const released = releaseSpy.mock.calls.length;
    createSpy.mockRestore();
    releaseSpy.mockRestore();
    expect(error).toBeInstanceOf(AbortError);
    expect(error.message).toMatch(/^Aborted while creating the ONNX sessions of /);
    expect(created).toBe(4);
    expect(released).toBe(created);
  });
});

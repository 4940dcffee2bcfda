/**
 * The guards added for the gaps the reliability suite first found (docs/reliability.md): a wrong generator, an
 * abort while the VAE decodes or while sessions are created, requests too large to allocate, a NaN size, latents
 * of the wrong shape, and repositories whose model_index.json or graph files do not hold what the pipeline needs.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AbortError, InvalidArgumentError, ModelLoadError, RandomGenerator, Tensor } from '@denoise/core';
import { ModelRepository, ModelSession } from '@denoise/core/runtime';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DiffusionPipeline, type StableDiffusionPipeline } from '../../src/index.js';
import { REFERENCE_WORLD, referenceWorldCopy, rejection } from './helpers.js';

let pipe: StableDiffusionPipeline;

beforeAll(async () => {
  pipe = (await DiffusionPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu' })) as StableDiffusionPipeline;
});
afterAll(() => pipe.release());

const base = { prompt: 'a red circle', numInferenceSteps: 2 };

describe('generate refuses what it cannot use', () => {
  it.each([42, {}, Math.random, null])('a generator that is not a RandomGenerator (%s)', async (generator) => {
    const error = await rejection(pipe.generate({ ...base, generator: generator as unknown as RandomGenerator }));
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(error.message).toMatch(/generator must be a RandomGenerator .*new RandomGenerator\(seed\)/);
  });

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

  it('caller latents of the wrong dims', async () => {
    const error = await rejection(pipe.generate({ ...base, latents: Tensor.zeros([1, 4, 8, 8]) }));
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(error.message).toBe('latents must have dims [1, 4, 16, 16], got [1, 4, 8, 8].');
  });
});

describe('aborts that arrive while an ONNX run or session creation is in flight', () => {
  it('an abort during the VAE decoder run rejects, and the next call works', async () => {
    const controller = new AbortController();
    const decode = pipe.vaeDecoder.run.bind(pipe.vaeDecoder);
    const spy = vi.spyOn(pipe.vaeDecoder, 'run').mockImplementation((feeds) => {
      controller.abort();
      return decode(feeds);
    });
    const error = await rejection(
      pipe.generate({ ...base, generator: new RandomGenerator(3), signal: controller.signal }),
    );
    spy.mockRestore();
    expect(error).toBeInstanceOf(AbortError);
    expect(error.message).toBe('Aborted during decoding the latents.');
    const { images } = await pipe.generate({ ...base, generator: new RandomGenerator(3) });
    expect(images).toHaveLength(1);
  });

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

describe('repositories that lack what the pipeline needs', () => {
  it('a model_index.json whose unet is not a ["library", "ClassName"] pair', async () => {
    const copy = referenceWorldCopy((dir) => {
      const indexPath = join(dir, 'model_index.json');
      writeFileSync(indexPath, JSON.stringify({ ...JSON.parse(readFileSync(indexPath, 'utf8')), unet: 5 }));
    });
    const error = await rejection(DiffusionPipeline.fromPretrained(copy.dir));
    copy.remove();
    expect(error).toBeInstanceOf(ModelLoadError);
    expect(error.code).toBe('INVALID_MODEL');
    expect(error.file).toBe('model_index.json');
    expect(error.message).toMatch(/declares no component "unet"/);
  });

  it('a unet folder without its ONNX graph', async () => {
    const copy = referenceWorldCopy((dir) => rmSync(join(dir, 'unet', 'model.onnx')));
    const error = await rejection(DiffusionPipeline.fromPretrained(copy.dir));
    copy.remove();
    expect(error).toBeInstanceOf(ModelLoadError);
    expect(error.code).toBe('FILE_NOT_FOUND');
    expect(error.file).toBe('unet/model.onnx');
    expect(error.message).toMatch(/declares "unet" as an ONNX model, but unet\/ holds no \.onnx graph/);
  });
});

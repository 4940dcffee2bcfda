/**
 * Bad files in a model directory (issue #9): each broken copy of the reference world must fail to load with a
 * `DenoiseError` naming the file and what to do, never a crash; a scheduler config with unknown keys loads with a
 * warning.
 */
import { readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, ModelLoadError } from '@denoise/core';
import { describe, expect, it, vi } from 'vitest';
import { encodeModel, node } from '../../../../tools/onnx-graph.js';
import { DiffusionPipeline, StableDiffusionPipeline } from '../../src/index.js';
import { REFERENCE_WORLD, referenceWorldCopy, rejection } from './helpers.js';

const modelIndex = readFileSync(join(REFERENCE_WORLD, 'model_index.json'), 'utf8');
const schedulerConfig = JSON.parse(readFileSync(join(REFERENCE_WORLD, 'scheduler/scheduler_config.json'), 'utf8'));
const unetBytes = readFileSync(join(REFERENCE_WORLD, 'unet/model.onnx'));

/** Loads a broken copy and returns the error; the copy is removed afterwards. */
async function loadError(mutate: (dir: string) => void): Promise<Error & { code?: string; file?: string }> {
  const copy = referenceWorldCopy(mutate);
  try {
    return await rejection(DiffusionPipeline.fromPretrained(copy.dir, { device: 'cpu' }));
  } finally {
    copy.remove();
  }
}

const write = (path: string, content: string | Uint8Array) => (dir: string) => writeFileSync(join(dir, path), content);

describe('model_index.json', () => {
  it.each([
    ['truncated', modelIndex.slice(0, 40), /not valid JSON/],
    ['empty', '', /not valid JSON/],
    ['not an object', '[1, 2]', /not a JSON object/],
    ['without _class_name', '{"unet": ["diffusers", "UNet2DConditionModel"]}', /"_class_name" is missing/],
  ])('%s: INVALID_MODEL naming the file and the expected layout', async (_, content, why) => {
    const error = await loadError(write('model_index.json', content));
    expect(error).toBeInstanceOf(ModelLoadError);
    expect(error.code).toBe('INVALID_MODEL');
    expect(error.file).toBe('model_index.json');
    expect(error.message).toMatch(why);
    expect(error.message).toMatch(/"_class_name" and one \["library", "ClassName"\] entry per component/);
  });

  it('a pipeline class denoise does not implement: INVALID_CONFIG listing the supported ones', async () => {
    const error = await loadError(write('model_index.json', modelIndex.replace('OnnxStableDiffusionPipeline', 'Flux')));
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(/is a Flux, which denoise does not implement/);
    expect(error.message).toMatch(/OnnxStableDiffusionPipeline/);
  });
});

describe('components', () => {
  it('a model_index.json entry that is not a ["library", "ClassName"] pair: INVALID_MODEL naming model_index.json', async () => {
    const error = await loadError(write('model_index.json', modelIndex.replace(/"unet": \[[^\]]*\]/, '"unet": 5')));
    expect(error).toBeInstanceOf(ModelLoadError);
    expect(error.code).toBe('INVALID_MODEL');
    expect(error.file).toBe('model_index.json');
    expect(error.message).toMatch(/no component "unet"/);
  });

  it('a missing unet/model.onnx: FILE_NOT_FOUND naming the file', async () => {
    const error = await loadError((dir) => rmSync(join(dir, 'unet/model.onnx')));
    expect(error).toBeInstanceOf(ModelLoadError);
    expect(error.code).toBe('FILE_NOT_FOUND');
    expect(error.file).toBe('unet/model.onnx');
    expect(error.message).toMatch(/Re-export or re-upload unet\/model\.onnx/);
  });
});

describe('scheduler/scheduler_config.json', () => {
  const config = (extra: Record<string, unknown>) =>
    write('scheduler/scheduler_config.json', JSON.stringify({ ...schedulerConfig, ...extra }));

  it('unknown keys: one warning each, ignored, and the pipeline generates', async () => {
    const copy = referenceWorldCopy(config({ karras_magic: 3 }));
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const pipe = await StableDiffusionPipeline.fromPretrained(copy.dir, { device: 'cpu' });
      expect(warn.mock.calls.map((c) => String(c[0]))).toEqual([
        '[denoise] DDIMScheduler ignores the config key "karras_magic", which it does not use.',
      ]);
      const { images } = await pipe.generate({ prompt: 'a red circle', numInferenceSteps: 2 });
      expect(images).toHaveLength(1);
      await pipe.release();
    } finally {
      warn.mockRestore();
      copy.remove();
    }
  });

  it.each([
    ['a wrong type', { beta_start: '0.1' }, /"beta_start" must be a finite number/],
    ['an impossible value', { num_train_timesteps: -5 }, /"num_train_timesteps" must be an integer >= 1/],
    ['an impossible schedule', { beta_end: 1, beta_schedule: 'linear' }, /ᾱ must fall strictly/],
    ['an unknown class', { _class_name: 'ScoreSdeVeScheduler' }, /Unknown scheduler class/],
  ])('%s: INVALID_CONFIG naming the key', async (_, extra, why) => {
    const error = await loadError(config(extra));
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(why);
  });

  it('truncated: INVALID_MODEL naming the file', async () => {
    const error = await loadError(write('scheduler/scheduler_config.json', '{"_class_name": "DDIMSch'));
    expect(error).toBeInstanceOf(ModelLoadError);
    expect(error.file).toBe('scheduler/scheduler_config.json');
    expect(error.message).toMatch(/not valid JSON/);
  });
});

describe('ONNX files', () => {
  it.each([
    ['truncated', unetBytes.subarray(0, unetBytes.length >> 1)],
    ['empty', new Uint8Array(0)],
    ['not ONNX (an HTML error page)', '<html>404 Not Found</html>'],
  ])('%s: INVALID_MODEL naming the graph and the fix', async (_, content) => {
    const error = await loadError(write('unet/model.onnx', content));
    expect(error).toBeInstanceOf(ModelLoadError);
    expect(error.code).toBe('INVALID_MODEL');
    expect(error.file).toBe('unet/model.onnx');
    expect(error.message).toMatch(/could not load unet\/model\.onnx/);
    expect(error.message).toMatch(/delete it from the cache \(or the model directory\)/);
  });

  it('a UNet whose inputs are not the ones the pipeline feeds: names the expected and the actual inputs', async () => {
    const wrongInputs = encodeModel({
      name: 'unet',
      inputs: [{ name: 'x', type: 'float32', shape: ['batch', 4, 16, 16] }],
      outputs: [{ name: 'out_sample', type: 'float32', shape: ['batch', 4, 16, 16] }],
      nodes: [node('Identity', ['x'], ['out_sample'])],
      initializers: [],
    });
    const copy = referenceWorldCopy(write('unet/model.onnx', wrongInputs));
    try {
      const pipe = await StableDiffusionPipeline.fromPretrained(copy.dir, { device: 'cpu' });
      const error = await rejection(pipe.generate({ prompt: 'a red circle', numInferenceSteps: 2 }));
      expect(error.code).toBe('INVALID_ARGUMENT');
      expect(error.message).toMatch(/The graph expects \{x: float32\[batch, 4, 16, 16\]\}/);
      expect(error.message).toMatch(/got \{sample: .*timestep: .*encoder_hidden_states: /);
      await pipe.release();
    } finally {
      copy.remove();
    }
  });
});

describe('symlinks in a local model directory', () => {
  it('a file linking outside the directory is refused, naming it', async () => {
    const error = await loadError((dir) => {
      rmSync(join(dir, 'unet/config.json'));
      symlinkSync('/etc/passwd', join(dir, 'unet/config.json'));
    });
    expect(error).toBeInstanceOf(ModelLoadError);
    expect(error.file).toBe('unet/config.json');
    expect(error.message).toMatch(/symlink that leads outside it/);
    expect(error.message).toMatch(/copy the file into the directory/);
  });

  it('a component folder linking outside the directory is refused', async () => {
    const error = await loadError((dir) => {
      rmSync(join(dir, 'vae_decoder'), { recursive: true });
      symlinkSync(join(REFERENCE_WORLD, 'vae_decoder'), join(dir, 'vae_decoder'));
    });
    expect(error).toBeInstanceOf(ModelLoadError);
    expect(error.file).toBe('vae_decoder');
  });

  it('a link that stays inside the directory loads', async () => {
    const copy = referenceWorldCopy((dir) => {
      writeFileSync(join(dir, 'unet/real-config.json'), readFileSync(join(dir, 'unet/config.json')));
      rmSync(join(dir, 'unet/config.json'));
      symlinkSync('real-config.json', join(dir, 'unet/config.json'));
    });
    try {
      const pipe = await DiffusionPipeline.fromPretrained(copy.dir, { device: 'cpu' });
      await pipe.release();
    } finally {
      copy.remove();
    }
  });
});

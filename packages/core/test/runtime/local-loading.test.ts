import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ModelLoadError, Tensor } from '../../src/index.js';
import { loadRepository } from '../../src/runtime/index.node.js';
import { HubServer } from '../helpers/hub-server.js';
import { modelIndexJson, textEncoderGraph, unetExpected, unetGraph, withExternalData } from './fixtures.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'denoise-local-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

async function writeRepo(root: string, files: Record<string, Uint8Array | string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
}

const sample = new Tensor(Float32Array.from([1, -1]), [1, 2, 1, 1]);
const hidden = new Tensor(Float32Array.from([2, 2, 2]), [1, 1, 3]);

/** The UNet fixture's weights in external data named `location`, as each exporter names it. */
function unetWithExternalData(location: string): Record<string, Uint8Array | string> {
  const { model, data } = withExternalData(unetGraph({ type: 'float32', shape: [1] }), location);
  return { 'model_index.json': modelIndexJson(['unet']), 'unet/model.onnx': model, [`unet/${location}`]: data };
}

describe('external data, found from the file list', () => {
  it.each([
    ['model.onnx_data', 'Optimum'],
    ['model.onnx.data', 'onnx.save'],
    ['weights.pb', 'the diffusers ONNX converter'],
  ])('loads and runs a UNet whose weights are in %s (%s)', async (location) => {
    await writeRepo(dir, unetWithExternalData(location));
    const repo = await loadRepository(dir, { device: 'cpu' });
    expect(repo.components.unet.model?.externalData).toEqual([`unet/${location}`]);
    const unet = await repo.createSession('unet');
    const { out_sample } = await unet.run({ sample, timestep: 4, encoder_hidden_states: hidden });
    expect(Array.from(out_sample.data)).toEqual([unetExpected(1, 4, 2), unetExpected(-1, 4, 2)]);
  });

  it.each(['model.onnx_data', 'weights.pb'])('serves %s from the Hub cache next to its graph', async (location) => {
    const hub = await HubServer.start();
    try {
      hub.addRepo('org/ext', unetWithExternalData(location));
      const repo = await loadRepository('org/ext', { hubUrl: hub.url, cacheDir: dir, device: 'cpu' });
      const { out_sample } = await (await repo.createSession('unet')).run({
        sample,
        timestep: 1,
        encoder_hidden_states: hidden,
      });
      expect(Array.from(out_sample.data)).toEqual([unetExpected(1, 1, 2), unetExpected(-1, 1, 2)]);
    } finally {
      await hub.close();
    }
  });

  it('reports missing external data as INVALID_MODEL naming the graph', async () => {
    const files = unetWithExternalData('model.onnx_data');
    delete files['unet/model.onnx_data'];
    await writeRepo(dir, files);
    const repo = await loadRepository(dir);
    const error = await repo.createSession('unet', { device: 'cpu' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelLoadError);
    expect((error as ModelLoadError).code).toBe('INVALID_MODEL');
    expect((error as ModelLoadError).file).toBe('unet/model.onnx');
  });
});

describe('dtype variants', () => {
  const fp32 = unetGraph({ type: 'int64', shape: [1] });
  const fp16 = unetGraph({ type: 'float16', shape: [1] }, 'float16');

  it.each([['unet/model_fp16.onnx'], ['unet/model.fp16.onnx'], ['unet/onnx/model_fp16.onnx']])(
    'dtype fp16 picks %s when the repository has both',
    async (fp16Path) => {
      await writeRepo(dir, { 'model_index.json': modelIndexJson(['unet']), 'unet/model.onnx': fp32, [fp16Path]: fp16 });
      const half = await loadRepository(dir, { dtype: 'fp16', device: 'cpu' });
      expect(half.components.unet.model).toEqual({ file: fp16Path, externalData: [], dtype: 'fp16' });
      const session = await half.createSession('unet');
      expect(session.inputs.map((i) => i.type)).toEqual(['float16', 'float16', 'float16']);
      const full = await loadRepository(dir, { dtype: { unet: 'fp32' } });
      expect(full.components.unet.model?.file).toBe('unet/model.onnx');
    },
  );

  it('uses the only variant present whatever the dtype, and per-component choices', async () => {
    await writeRepo(dir, {
      'model_index.json': modelIndexJson(['unet', 'text_encoder']),
      'unet/model_fp16.onnx': fp16,
      'text_encoder/model.onnx': textEncoderGraph('int64'),
      'text_encoder/model_fp16.onnx': textEncoderGraph('int32'),
    });
    const repo = await loadRepository(dir, { dtype: { default: 'fp32', text_encoder: 'fp16' } });
    expect(repo.components.unet.model?.dtype).toBe('fp16');
    expect(repo.components.text_encoder.model?.file).toBe('text_encoder/model_fp16.onnx');
  });

  it('fetches only the chosen variant from the Hub', async () => {
    const hub = await HubServer.start();
    try {
      hub.addRepo('org/variants', {
        'model_index.json': modelIndexJson(['unet']),
        'unet/model.onnx': fp32,
        'unet/model_fp16.onnx': fp16,
      });
      await loadRepository('org/variants', { hubUrl: hub.url, cacheDir: dir, dtype: 'fp16' });
      expect(hub.requests.filter((r) => r.kind === 'resolve').map((r) => r.path)).toEqual([
        'model_index.json',
        'unet/model_fp16.onnx',
      ]);
    } finally {
      await hub.close();
    }
  });
});

describe('local directories', () => {
  let outside: string;
  beforeAll(async () => {
    outside = await mkdtemp(join(tmpdir(), 'denoise-outside-'));
    await writeFile(join(outside, 'secret.json'), '{}');
  });
  afterAll(() => rm(outside, { recursive: true, force: true }));

  it('refuses a symlink that leads outside the model directory', async () => {
    await writeRepo(dir, {
      'model_index.json': modelIndexJson(['unet']),
      'unet/model.onnx': unetGraph({ type: 'int64', shape: [] }),
    });
    await symlink(join(outside, 'secret.json'), join(dir, 'unet', 'config.json'));
    const error = await loadRepository(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelLoadError);
    expect((error as ModelLoadError).code).toBe('INVALID_MODEL');
    expect((error as Error).message).toMatch(
      /unet\/config\.json in the model directory .* is a symlink that leads outside it/,
    );
  });

  it('follows symlinks that stay inside it (as a copied Hub snapshot has)', async () => {
    await writeRepo(dir, {
      'model_index.json': modelIndexJson(['unet']),
      'blobs/abc': unetGraph({ type: 'int64', shape: [] }),
    });
    await mkdir(join(dir, 'unet'));
    await symlink('../blobs/abc', join(dir, 'unet', 'model.onnx'));
    const repo = await loadRepository(dir, { device: 'cpu' });
    const { out_sample } = await (await repo.createSession('unet')).run({
      sample,
      timestep: 2,
      encoder_hidden_states: hidden,
    });
    expect(Array.from(out_sample.data)).toEqual([unetExpected(1, 2, 2), unetExpected(-1, 2, 2)]);
  });

  it('names a component that is not in model_index.json, and a path that is neither a folder nor an id', async () => {
    await writeRepo(dir, {
      'model_index.json': modelIndexJson(['unet']),
      'unet/model.onnx': unetGraph({ type: 'int64', shape: [] }),
    });
    await expect(loadRepository(dir, { components: ['vae_decoder'] })).rejects.toThrow(
      /has no component "vae_decoder"; model_index.json lists: unet/,
    );
    const repo = await loadRepository(dir);
    await expect(repo.createSession('text_encoder')).rejects.toMatchObject({
      code: 'INVALID_MODEL',
      file: 'model_index.json',
      message: expect.stringMatching(/declares no component "text_encoder" .*; it lists: unet\./),
    });
    await expect(loadRepository(join(dir, 'nope', 'deeper'))).rejects.toThrow(
      /neither a directory nor a Hub repository id/,
    );
  });
});

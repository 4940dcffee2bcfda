/**
 * Loads the shared tiny-random-sd export (diffusers' ONNX converter output of
 * hf-internal-testing/tiny-random-OnnxStableDiffusionPipeline) through the same code paths as any model: laid
 * out in the diffusers layout in a temporary folder, then loaded from that folder and from a local Hub.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tensor } from '../../src/index.js';
import { loadRepository, type ModelRepository } from '../../src/runtime/index.node.js';
import { HubServer } from '../helpers/hub-server.js';

const fixtures = join(process.env.DENOISE_SHARED ?? '', 'fixtures', 'tiny-random-sd');
const GRAPHS = ['text_encoder', 'vae_encoder', 'vae_decoder'] as const;

let work: string;
let hub: HubServer;
const layout: Record<string, string> = {
  'text_encoder/model.onnx': 'text_encoder.onnx',
  'vae_encoder/model.onnx': 'vae_encoder.onnx',
  'vae_decoder/model.onnx': 'vae_decoder.onnx',
  'tokenizer/tokenizer.json': 'tokenizer.json',
};
const modelIndex = JSON.stringify({
  _class_name: 'OnnxStableDiffusionPipeline',
  _diffusers_version: '0.8.0',
  text_encoder: ['diffusers', 'OnnxRuntimeModel'],
  tokenizer: ['transformers', 'CLIPTokenizer'],
  vae_encoder: ['diffusers', 'OnnxRuntimeModel'],
  vae_decoder: ['diffusers', 'OnnxRuntimeModel'],
  scheduler: ['diffusers', 'PNDMScheduler'],
  safety_checker: [null, null],
  feature_extractor: [null, null],
  requires_safety_checker: false,
});
const schedulerConfig = JSON.stringify({
  _class_name: 'PNDMScheduler',
  num_train_timesteps: 1000,
  skip_prk_steps: true,
});

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'denoise-compat-'));
  const model = join(work, 'model');
  for (const [target, source] of Object.entries(layout)) {
    await mkdir(join(model, target, '..'), { recursive: true });
    await copyFile(join(fixtures, source), join(model, target));
  }
  await mkdir(join(model, 'scheduler'));
  await writeFile(join(model, 'scheduler', 'scheduler_config.json'), schedulerConfig);
  await writeFile(join(model, 'model_index.json'), modelIndex);

  hub = await HubServer.start();
  const files: Record<string, Uint8Array | string> = {
    'model_index.json': modelIndex,
    'scheduler/scheduler_config.json': schedulerConfig,
  };
  for (const [target, source] of Object.entries(layout))
    files[target] = new Uint8Array(await readFile(join(fixtures, source)));
  hub.addRepo('hf-internal-testing/tiny-random-OnnxStableDiffusionPipeline', files);
});
afterAll(async () => {
  await hub.close();
  await rm(work, { recursive: true, force: true });
});

async function checkRepository(repo: ModelRepository): Promise<void> {
  expect(repo.modelIndex.components.map((c) => c.name)).toEqual([
    'text_encoder',
    'tokenizer',
    'vae_encoder',
    'vae_decoder',
    'scheduler',
  ]);
  expect(repo.components.tokenizer.files).toEqual(['tokenizer/tokenizer.json']);
  expect(await repo.readJson('scheduler/scheduler_config.json')).toMatchObject({ _class_name: 'PNDMScheduler' });

  const textEncoder = await repo.createSession('text_encoder', { device: 'cpu' });
  expect(textEncoder.inputs).toEqual([{ name: 'input_ids', type: 'int32', shape: ['batch', 'sequence'] }]);
  expect(textEncoder.outputs.map((o) => [o.name, o.type, o.shape.at(-1)])).toEqual([
    ['last_hidden_state', 'float32', 32],
    ['pooler_output', 'float32', 32],
  ]);
  // Token ids arrive as int64 (what a tokenizer may produce); the session narrows them to the declared int32.
  const ids = Array.from({ length: 77 }, (_, i) => (i === 0 ? 0 : i < 5 ? 10 + i : 1));
  const encoded = await textEncoder.run({ input_ids: new Tensor<'int64'>(BigInt64Array.from(ids, BigInt), [1, 77]) });
  expect(encoded.last_hidden_state.dims).toEqual([1, 77, 32]);
  expect(encoded.pooler_output.dims).toEqual([1, 32]);
  // Same numbers as onnxruntime-node fed directly with int32 ids.
  const direct = await ort.InferenceSession.create(repo.localPath('text_encoder/model.onnx')!);
  const reference = await direct.run({ input_ids: new ort.Tensor('int32', Int32Array.from(ids), [1, 77]) });
  expect(Array.from(encoded.last_hidden_state.data)).toEqual(
    Array.from(reference.last_hidden_state.data as Float32Array),
  );
  await direct.release();

  const decoder = await repo.createSession('vae_decoder', { device: 'cpu' });
  expect(decoder.inputs).toEqual([
    { name: 'latent_sample', type: 'float32', shape: ['batch', 'channels', 'height', 'width'] },
  ]);
  const latents = Tensor.zeros([2, 4, 8, 8]).data.map((_, i) => Math.sin(i));
  const decoded = await decoder.run({ latent_sample: new Tensor(latents, [2, 4, 8, 8]) });
  expect(decoded.sample.dims).toEqual([2, 3, 16, 16]); // VAE scale factor 2 for this tiny pipeline

  const encoder = await repo.createSession('vae_encoder', { device: 'cpu' });
  const encodedImage = await encoder.run({ sample: decoded.sample });
  expect(encodedImage.latent_sample.dims).toEqual([2, 4, 8, 8]);
  expect(encodedImage.latent_sample.data.every(Number.isFinite)).toBe(true);
  for (const session of [textEncoder, decoder, encoder]) await session.release();
}

describe('tiny-random-sd', () => {
  it('loads from a local directory in the diffusers layout', async () => {
    const repo = await loadRepository(join(work, 'model'));
    expect(GRAPHS.map((g) => repo.components[g].model?.file)).toEqual(GRAPHS.map((g) => `${g}/model.onnx`));
    await checkRepository(repo);
  });

  it('loads from a Hub (local server) through the Hugging Face cache, then offline', async () => {
    const cacheDir = join(work, 'cache');
    const id = 'hf-internal-testing/tiny-random-OnnxStableDiffusionPipeline';
    await checkRepository(await loadRepository(id, { hubUrl: hub.url, cacheDir }));
    hub.requests.length = 0;
    await checkRepository(await loadRepository(id, { cacheDir, localFilesOnly: true }));
    expect(hub.requests).toEqual([]);
  });
});

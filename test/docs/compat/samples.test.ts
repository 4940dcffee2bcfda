/**
 * Runs the samples of the guides marked `sample: compat` (docs/loading.md), which load
 * hf-internal-testing/tiny-random-OnnxStableDiffusionPipeline from the Hub: here a local Hub serves the shared
 * tiny-random-sd fixture under that id, reached through `HF_ENDPOINT`, with a fresh `HF_HUB_CACHE`.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HubServer } from '../../../packages/core/test/helpers/hub-server.js';
import { listDocs, makeScratch, parseDoc, problemsOf, removeScratch, runDocs, type SampleRun } from '../samples.js';

const TINY_SD = 'hf-internal-testing/tiny-random-OnnxStableDiffusionPipeline';

/** The Hub repository as diffusers' ONNX converter wrote it (its UNet is not in the fixture). */
async function tinySdFiles(): Promise<Record<string, Uint8Array | string>> {
  const fixtures = join(process.env.DENOISE_SHARED ?? '', 'fixtures', 'tiny-random-sd');
  const graph = async (file: string) => new Uint8Array(await readFile(join(fixtures, file)));
  return {
    'model_index.json': JSON.stringify({
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
    }),
    'scheduler/scheduler_config.json': JSON.stringify({
      _class_name: 'PNDMScheduler',
      num_train_timesteps: 1000,
      skip_prk_steps: true,
    }),
    'text_encoder/model.onnx': await graph('text_encoder.onnx'),
    'vae_encoder/model.onnx': await graph('vae_encoder.onnx'),
    'vae_decoder/model.onnx': await graph('vae_decoder.onnx'),
    'tokenizer/tokenizer.json': await graph('tokenizer.json'),
  };
}

const compatDocs = listDocs()
  .map(parseDoc)
  .filter((doc) => doc.compat);
let hub: HubServer;
let scratch: string;
let runs: Map<string, Promise<SampleRun>>;

beforeAll(async () => {
  hub = await HubServer.start();
  hub.addRepo(TINY_SD, await tinySdFiles());
  scratch = await makeScratch();
  const env = {
    HF_ENDPOINT: hub.url,
    HF_HUB_CACHE: join(scratch, 'hf-cache'),
    HF_HOME: join(scratch, 'hf-home'),
    HF_TOKEN: undefined,
    HF_HUB_OFFLINE: undefined,
  };
  runs = runDocs(compatDocs, scratch, { concurrency: 2, env });
});
afterAll(async () => {
  await hub?.close();
  if (scratch) await removeScratch(scratch);
});

describe.each(compatDocs.filter((doc) => doc.programs.length > 0))('$doc', ({ programs }) => {
  it.each(programs.map((program) => [program.name, program] as const))('%s', async (_name, program) => {
    const run = await runs.get(program.name)!;
    expect(problemsOf(program, run), program.code).toEqual([]);
  });
});

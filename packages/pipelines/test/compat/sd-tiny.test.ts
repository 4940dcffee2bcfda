/**
 * The Stable Diffusion pipeline end to end on third-party weights: the text encoder, VAE and tokenizer of
 * hf-internal-testing/tiny-random-OnnxStableDiffusionPipeline (from $DENOISE_SHARED, never committed) with a
 * generated UNet of the matching I/O, assembled into a diffusers-layout directory.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { RandomGenerator } from '@denoise/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipTokenizer, StableDiffusionPipeline } from '../../src/index.js';
import { tinyUnetModel } from '../helpers/tiny-sd.js';

const shared = join(process.env.DENOISE_SHARED as string, 'fixtures');
const fixture = join(shared, 'tiny-random-sd');
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'denoise-sd-tiny-'));
  const put = (path: string, content: string | Uint8Array) => {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), content);
  };
  const json = (value: unknown) => JSON.stringify(value, null, 2);
  put(
    'model_index.json',
    json({
      _class_name: 'OnnxStableDiffusionPipeline',
      scheduler: ['diffusers', 'PNDMScheduler'],
      text_encoder: ['diffusers', 'OnnxRuntimeModel'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      unet: ['diffusers', 'OnnxRuntimeModel'],
      vae_decoder: ['diffusers', 'OnnxRuntimeModel'],
      vae_encoder: ['diffusers', 'OnnxRuntimeModel'],
      safety_checker: [null, null],
      feature_extractor: [null, null],
    }),
  );
  put(
    'scheduler/scheduler_config.json',
    json({
      _class_name: 'PNDMScheduler',
      beta_start: 0.00085,
      beta_end: 0.012,
      beta_schedule: 'scaled_linear',
      num_train_timesteps: 1000,
      set_alpha_to_one: false,
      skip_prk_steps: true,
      steps_offset: 1,
    }),
  );
  for (const name of ['text_encoder', 'vae_decoder', 'vae_encoder']) {
    mkdirSync(join(dir, name), { recursive: true });
    copyFileSync(join(fixture, `${name}.onnx`), join(dir, name, 'model.onnx'));
  }
  // The tiny VAE has two blocks: factor 2^(2−1) = 2 (its decoder turns h×w latents into 2h×2w images).
  put('vae_decoder/config.json', json({ block_out_channels: [32, 64], scaling_factor: 0.18215 }));
  mkdirSync(join(dir, 'tokenizer'), { recursive: true });
  copyFileSync(join(fixture, 'tokenizer.json'), join(dir, 'tokenizer', 'tokenizer.json'));
  put('unet/model.onnx', tinyUnetModel({ hidden: 32, contextFromFirstFeature: true }));
  put('unet/config.json', json({ sample_size: 64, in_channels: 4 }));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('Stable Diffusion on tiny-random-sd', () => {
  it('generates 128×128 images from 64×64 latents with the fixture text encoder (int32 ids) and VAE', async () => {
    const pipe = await StableDiffusionPipeline.fromPretrained(dir, { device: 'cpu' });
    expect(pipe.vae.scaleFactor).toBe(2);
    expect(pipe.scheduler.className).toBe('PNDMScheduler');
    expect(pipe.tokenizer.modelMaxLength).toBe(77);
    expect([pipe.tokenizer.bosTokenId, pipe.tokenizer.eosTokenId]).toEqual([0, 1]);
    const options = { prompt: 'a photo of a cat', numInferenceSteps: 3, guidanceScale: 7.5 };
    const a = await pipe.generate({ ...options, generator: new RandomGenerator(0) });
    const b = await pipe.generate({ ...options, generator: new RandomGenerator(0) });
    const other = await pipe.generate({ ...options, prompt: 'a dog', generator: new RandomGenerator(0) });
    expect([a.images[0].width, a.images[0].height]).toEqual([128, 128]);
    expect([...a.images[0].data]).toEqual([...b.images[0].data]);
    expect([...a.images[0].data]).not.toEqual([...other.images[0].data]);
    const png = await a.images[0].toPNG();
    expect([...png.subarray(1, 4)]).toEqual([0x50, 0x4e, 0x47]);
    await pipe.release();
  });

  it('without vae_decoder/config.json (as diffusers converts it) measures factor 2 and returns 128×128', async () => {
    rmSync(join(dir, 'vae_decoder', 'config.json'));
    const pipe = await StableDiffusionPipeline.fromPretrained(dir, { device: 'cpu' });
    expect(pipe.vae.scaleFactor).toBe(2);
    const { images } = await pipe.generate({
      prompt: 'a photo of a cat',
      numInferenceSteps: 2,
      height: 128,
      width: 128,
      generator: new RandomGenerator(0),
    });
    expect([images[0].width, images[0].height]).toEqual([128, 128]);
    await pipe.release();
  });

  it('rebuilds the fixture tokenizer from its vocab and merges with identical ids', () => {
    const json = JSON.parse(readFileSync(join(fixture, 'tokenizer.json'), 'utf8'));
    const fromJson = ClipTokenizer.fromFiles({ tokenizerJson: json });
    const fromVocab = ClipTokenizer.fromFiles({
      vocab: json.model.vocab,
      merges: (json.model.merges as (string | string[])[])
        .map((m) => (typeof m === 'string' ? m : m.join(' ')))
        .join('\n'),
    });
    const prompts = ['a photo of a cat', "It's 42 °C, isn't it?!", 'Zebra  crossing\tat NIGHT'];
    expect([...fromVocab.encode(prompts).inputIds.data]).toEqual([...fromJson.encode(prompts).inputIds.data]);
  });

  it("builds OpenAI CLIP's 49,408-token tokenizer from the BPE merges file with the known ids", () => {
    const lines = gunzipSync(readFileSync(join(shared, 'clip-bpe', 'bpe_simple_vocab_16e6.txt.gz')))
      .toString('utf8')
      .split('\n');
    const merges = lines.slice(1, 1 + 49152 - 256 - 2);
    // CLIP's byte-to-unicode table: printable bytes map to themselves, the others to 256 + n.
    const bytes: number[] = [];
    for (let b = 33; b <= 126; b++) bytes.push(b);
    for (let b = 161; b <= 172; b++) bytes.push(b);
    for (let b = 174; b <= 255; b++) bytes.push(b);
    const chars = [...bytes];
    let extra = 0;
    for (let b = 0; b < 256; b++) {
      if (!bytes.includes(b)) {
        bytes.push(b);
        chars.push(256 + extra++);
      }
    }
    const symbols = chars.map((c) => String.fromCodePoint(c));
    const tokens = [
      ...symbols,
      ...symbols.map((s) => `${s}</w>`),
      ...merges.map((m) => m.replace(' ', '')),
      '<|startoftext|>',
      '<|endoftext|>',
    ];
    const vocab = Object.fromEntries(tokens.map((t, i) => [t, i]));
    expect(tokens).toHaveLength(49408);
    const tokenizer = ClipTokenizer.fromFiles({ vocab, merges: merges.join('\n') });
    const ids = [...tokenizer.encode(['a photo of a cat']).inputIds.data.subarray(0, 8)];
    expect(ids).toEqual([49406, 320, 1125, 539, 320, 2368, 49407, 49407]);
  });
});

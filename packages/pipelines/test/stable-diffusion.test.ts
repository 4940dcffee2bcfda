import { rmSync } from 'node:fs';
import { AbortError, ConfigError, RandomGenerator, Tensor } from '@denoise/core';
import { loadRepository } from '@denoise/core/runtime';
import { DDIMScheduler, EulerAncestralDiscreteScheduler, PNDMScheduler } from '@denoise/schedulers';
import { afterAll, describe, expect, it, vi } from 'vitest';
import {
  DiffusionPipeline,
  isPipeline,
  type LatentDiffusionPipeline,
  StableDiffusionImg2ImgPipeline,
  type StableDiffusionOptions,
  StableDiffusionPipeline,
} from '../src/index.js';
import { SEQUENCE, type TinySdVariant, writeTinySd } from './helpers/tiny-sd.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function load(variant: TinySdVariant = {}): Promise<StableDiffusionPipeline> {
  const dir = writeTinySd(variant);
  dirs.push(dir);
  const pipe = await DiffusionPipeline.fromPretrained(dir, { device: 'cpu' });
  if (!isPipeline(pipe, 'StableDiffusionPipeline')) throw new Error(`loaded a ${pipe.kind}`);
  expect(pipe).toBeInstanceOf(StableDiffusionPipeline);
  return pipe;
}

/** Counts UNet runs and the batch of each. */
function countUnetCalls(pipe: LatentDiffusionPipeline): number[] {
  const batches: number[] = [];
  const run = pipe.unet.run.bind(pipe.unet);
  vi.spyOn(pipe.unet, 'run').mockImplementation((feeds) => {
    batches.push((feeds.sample as Tensor).dims[0]);
    return run(feeds);
  });
  return batches;
}

const base: StableDiffusionOptions = { prompt: 'a cat', numInferenceSteps: 4, guidanceScale: 5 };

describe('StableDiffusionPipeline on a tiny generated repository', () => {
  it('returns RGBA images of the requested size, deterministic under a seed', async () => {
    const pipe = await load();
    const run = (seed: number) =>
      pipe.generate({
        ...base,
        prompt: ['a cat', 'a dog'],
        numImagesPerPrompt: 2,
        generator: new RandomGenerator(seed),
      });
    const [first, again, other] = [await run(7), await run(7), await run(8)];
    expect(first.images).toHaveLength(4);
    for (const image of first.images) {
      expect([image.width, image.height, image.data.length]).toEqual([8, 8, 8 * 8 * 4]);
    }
    expect(first.images.map((i) => [...i.data])).toEqual(again.images.map((i) => [...i.data]));
    expect([...first.images[0].data]).not.toEqual([...other.images[0].data]);
    // Images of one prompt share the embedding but not the noise.
    expect([...first.images[0].data]).not.toEqual([...first.images[1].data]);
  });

  it('draws the latents as randn([B, 4, h, w]) · initNoiseSigma on the generator, as diffusers', async () => {
    const pipe = await load();
    // DDIM's initNoiseSigma is 1, so the seeded run must equal a run from randn latents of the same seed.
    expect(pipe.scheduler.initNoiseSigma).toBe(1);
    const expected = new RandomGenerator(42).randn([1, 4, 4, 4]);
    const fromLatents = await pipe.generate({ ...base, numInferenceSteps: 2, latents: expected });
    const fromSeed = await pipe.generate({ ...base, numInferenceSteps: 2, generator: new RandomGenerator(42) });
    const fromOtherSeed = await pipe.generate({ ...base, numInferenceSteps: 2, generator: new RandomGenerator(43) });
    expect([...fromLatents.images[0].data]).toEqual([...fromSeed.images[0].data]);
    expect([...fromOtherSeed.images[0].data]).not.toEqual([...fromSeed.images[0].data]);
  });

  it('runs the unconditional and conditional passes in ONE UNet call per step', async () => {
    const pipe = await load();
    const batches = countUnetCalls(pipe);
    await pipe.generate({ ...base, numImagesPerPrompt: 3, generator: new RandomGenerator(0) });
    expect(batches).toEqual([6, 6, 6, 6]);
  });

  it('uses two calls per step only when the UNet graph has a fixed batch, with the same result', async () => {
    const fixed = await load({ unetBatch: 1 });
    const free = await load();
    const batches = countUnetCalls(fixed);
    const a = await fixed.generate({ ...base, generator: new RandomGenerator(3) });
    const b = await free.generate({ ...base, generator: new RandomGenerator(3) });
    expect(batches).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
    expect([...a.images[0].data]).toEqual([...b.images[0].data]);
  });

  it('guidanceScale 1 is the conditional model alone: one call of batch B per step, the plain DDIM loop', async () => {
    const pipe = await load();
    const batches = countUnetCalls(pipe);
    let final: Tensor | undefined;
    await pipe.generate({
      ...base,
      guidanceScale: 1,
      generator: new RandomGenerator(5),
      callbackOnStepEnd: ({ latents }) => {
        final = latents;
        return undefined;
      },
    });
    expect(batches).toEqual([1, 1, 1, 1]);

    // The same loop by hand: conditional embeddings only, DDIM steps.
    const scheduler = DDIMScheduler.fromConfig(pipe.scheduler.config);
    scheduler.setTimesteps(4);
    const ids = pipe.tokenizer.encode(['a cat']).inputIds;
    const hidden = (await pipe.textEncoder.run({ input_ids: ids })).last_hidden_state;
    let x: Tensor = new RandomGenerator(5).randn([1, 4, 4, 4]);
    for (const t of scheduler.timesteps) {
      const eps = (await pipe.unet.run({ sample: x, timestep: t, encoder_hidden_states: hidden })).out_sample;
      x = scheduler.step(eps, t, x).prevSample;
    }
    expect([...(final as Tensor).data]).toEqual([...x.data]);
  });

  it('guidanceRescale 0 changes nothing; a negative prompt changes the image', async () => {
    const pipe = await load();
    const plain = await pipe.generate({ ...base, generator: new RandomGenerator(1) });
    const rescale0 = await pipe.generate({ ...base, guidanceRescale: 0, generator: new RandomGenerator(1) });
    const negative = await pipe.generate({ ...base, negativePrompt: 'a dog', generator: new RandomGenerator(1) });
    expect([...rescale0.images[0].data]).toEqual([...plain.images[0].data]);
    expect([...negative.images[0].data]).not.toEqual([...plain.images[0].data]);
  });

  it('applies CFG only inside guidanceInterval (no unconditional pass outside it)', async () => {
    const pipe = await load();
    const batches = countUnetCalls(pipe);
    await pipe.generate({ ...base, guidanceInterval: { start: 0.5, end: 1 }, generator: new RandomGenerator(0) });
    expect(batches).toEqual([1, 1, 2, 2]);
  });

  it('callbackOnStepEnd sees every step, can replace the latents and can stop', async () => {
    const pipe = await load();
    const steps: [number, number][] = [];
    await pipe.generate({
      ...base,
      generator: new RandomGenerator(0),
      callbackOnStepEnd: ({ step, timestep }) => {
        steps.push([step, timestep]);
        return undefined;
      },
    });
    expect(steps).toEqual([
      [0, 751],
      [1, 501],
      [2, 251],
      [3, 1],
    ]);
    const batches = countUnetCalls(pipe);
    const zeros = await pipe.generate({
      ...base,
      generator: new RandomGenerator(0),
      callbackOnStepEnd: ({ step }) => (step === 1 ? { latents: Tensor.zeros([1, 4, 4, 4]), stop: true } : undefined),
    });
    expect(batches).toHaveLength(2);
    // Zero latents decode to mid-grey: clamp(0/2 + 0.5) · 255 = 127.5 → 128.
    expect(zeros.images[0].data[0]).toBe(128);
  });

  it('aborts between model calls with an AbortError', async () => {
    const pipe = await load();
    const controller = new AbortController();
    const batches = countUnetCalls(pipe);
    const run = pipe.generate({
      ...base,
      signal: controller.signal,
      callbackOnStepEnd: ({ step }) => {
        if (step === 1) controller.abort();
        return undefined;
      },
    });
    await expect(run).rejects.toBeInstanceOf(AbortError);
    expect(batches).toHaveLength(2);
  });

  it('overlapping generate calls give the same images as sequential ones', async () => {
    const pipe = await load();
    const options = (seed: number) => ({ ...base, numInferenceSteps: 3, generator: new RandomGenerator(seed) });
    const alone = [await pipe.generate(options(1)), await pipe.generate(options(2))];
    const together = await Promise.all([pipe.generate(options(1)), pipe.generate(options(2))]);
    expect(together.map((o) => [...o.images[0].data])).toEqual(alone.map((o) => [...o.images[0].data]));
  });

  it('accepts int64 input_ids and a float scalar timestep graph', async () => {
    const pipe = await load({ inputIds: 'int64', timestep: { type: 'float32', shape: [] } });
    const ref = await load();
    const a = await pipe.generate({ ...base, generator: new RandomGenerator(9) });
    const b = await ref.generate({ ...base, generator: new RandomGenerator(9) });
    expect([...a.images[0].data]).toEqual([...b.images[0].data]);
  });

  it('runs a UNet with float16 inputs and output, close to the float32 one', async () => {
    const half = await load({ fp16: true, timestep: { type: 'float16', shape: [1] } });
    const full = await load();
    const a = await half.generate({ ...base, generator: new RandomGenerator(9) });
    const b = await full.generate({ ...base, generator: new RandomGenerator(9) });
    let maxDiff = 0;
    for (let i = 0; i < a.images[0].data.length; i++)
      maxDiff = Math.max(maxDiff, Math.abs(a.images[0].data[i] - b.images[0].data[i]));
    expect(maxDiff).toBeLessThanOrEqual(2);
  });

  it('swapping the scheduler (Euler a, PNDM) changes the sampler and stays seeded', async () => {
    const pipe = await load();
    const ddim = await pipe.generate({ ...base, generator: new RandomGenerator(2) });
    expect(pipe.scheduler).toBeInstanceOf(DDIMScheduler);
    pipe.scheduler = EulerAncestralDiscreteScheduler.fromConfig(pipe.scheduler.config);
    const ancestral = await pipe.generate({ ...base, generator: new RandomGenerator(2) });
    const again = await pipe.generate({ ...base, generator: new RandomGenerator(2) });
    expect([...ancestral.images[0].data]).not.toEqual([...ddim.images[0].data]);
    expect([...again.images[0].data]).toEqual([...ancestral.images[0].data]);
    pipe.scheduler = PNDMScheduler.fromConfig(pipe.scheduler.config);
    const pndm = await pipe.generate({ ...base, generator: new RandomGenerator(2) });
    expect(pndm.images).toHaveLength(1);
  });

  it('LCM-style UNets get the guidance-scale embedding as timestep_cond and no unconditional pass', async () => {
    const pipe = await load({ className: 'LatentConsistencyModelPipeline', timestepCond: 8 });
    const feeds: Record<string, unknown>[] = [];
    const run = pipe.unet.run.bind(pipe.unet);
    vi.spyOn(pipe.unet, 'run').mockImplementation((input) => {
      feeds.push(input);
      return run(input);
    });
    await pipe.generate({ ...base, guidanceScale: 8, numInferenceSteps: 2, generator: new RandomGenerator(0) });
    expect(feeds.map((f) => (f.sample as Tensor).dims[0])).toEqual([1, 1]);
    // diffusers' get_guidance_scale_embedding(w − 1 = 7, 8): sin then cos of 7000·10000^(−k/3), k = 0…3.
    const expected = [0.506885, -0.970471, 0.586654, 0.644218, 0.862013, -0.241219, -0.809838, 0.764842];
    const embedding = [...(feeds[0].timestep_cond as Tensor).data];
    for (const [i, v] of embedding.entries()) expect(v).toBeCloseTo(expected[i], 4);
  });

  it('LCM-style UNets warn once per call about the CFG-only options they ignore, and only then', async () => {
    const pipe = await load({ className: 'LatentConsistencyModelPipeline', timestepCond: 8 });
    const warnings: string[] = [];
    const onWarning = (message: string) => warnings.push(message);
    await pipe.generate({ ...base, numInferenceSteps: 2, onWarning });
    expect(warnings).toEqual([]);
    await pipe.generate({ ...base, numInferenceSteps: 2, negativePrompt: 'a dog', guidanceRescale: 0.5, onWarning });
    expect(warnings).toEqual([
      'This UNet is LCM-distilled: it takes guidanceScale as an embedding and runs no unconditional pass, so ' +
        'guidanceRescale, negativePrompt are ignored.',
    ]);
  });

  it('checks sizes, counts and prompts with clear errors', async () => {
    const pipe = await load();
    await expect(pipe.generate({ ...base, height: 9 })).rejects.toThrow(/height must be a positive multiple of 2/);
    await expect(pipe.generate({ ...base, numImagesPerPrompt: 0 })).rejects.toThrow(/numImagesPerPrompt/);
    await expect(pipe.generate({ ...base, prompt: [] })).rejects.toThrow(/prompt must be/);
    await expect(pipe.generate({ ...base, prompt: ['a', 'b'], negativePrompt: ['x', 'y', 'z'] })).rejects.toThrow(
      /3 negative prompts for 2 prompts/,
    );
  });

  it('truncates long prompts with a warning naming the cut text', async () => {
    const pipe = await load();
    const warnings: string[] = [];
    const long = 'cat dog cat dog cat dog cat dog';
    await pipe.generate({ ...base, prompt: long, numInferenceSteps: 1, onWarning: (m) => warnings.push(m) });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(new RegExp(`up to ${SEQUENCE} tokens: *cat dog$`));
  });

  it('generates at other sizes (multiples of the VAE factor 2)', async () => {
    const pipe = await load();
    const { images } = await pipe.generate({ ...base, height: 6, width: 10, generator: new RandomGenerator(0) });
    expect([images[0].width, images[0].height]).toEqual([10, 6]);
  });

  it('measures the VAE factor from the decoder when the repository has no VAE config', async () => {
    const pipe = await load({ vaeConfig: false, vaeFactor: 4 });
    expect(pipe.vae).toEqual({ scaleFactor: 4, scalingFactor: 0.18215 });
    const defaults = await pipe.generate({ ...base, generator: new RandomGenerator(0) });
    // unet/config.json's sample_size 4 times the measured factor
    expect([defaults.images[0].width, defaults.images[0].height]).toEqual([16, 16]);
    const { images } = await pipe.generate({ ...base, height: 8, width: 24, generator: new RandomGenerator(0) });
    expect([images[0].width, images[0].height]).toEqual([24, 8]);
    await expect(pipe.generate({ ...base, height: 10, width: 24 })).rejects.toThrow(
      /height must be a positive multiple of 4 \(this VAE's factor\), got 10\. Try 12\./,
    );
  });

  it('rejects a decoded size that contradicts the VAE config instead of returning another size', async () => {
    const pipe = await load({ vaeFactor: 4 });
    expect(pipe.vae.scaleFactor).toBe(2);
    await expect(pipe.generate({ ...base, height: 8, width: 8 })).rejects.toThrow(
      new ConfigError(
        'The VAE decoder returned 16×16 pixels for a 8×8 request: its factor is 4, not the 2 of ' +
          'vae_decoder/config.json (block_out_channels). Fix that config, or delete it to let denoise measure the ' +
          'factor from the decoder.',
      ),
    );
  });

  it('fromPretrained maps every SD class name and rejects unknown ones', async () => {
    for (const className of [
      'ORTStableDiffusionPipeline',
      'StableDiffusionPipeline',
      'LatentConsistencyModelPipeline',
    ]) {
      expect(await load({ className })).toBeInstanceOf(StableDiffusionPipeline);
    }
    const dir = writeTinySd({ className: 'KandinskyPipeline' });
    dirs.push(dir);
    await expect(DiffusionPipeline.fromPretrained(dir)).rejects.toThrow(
      /KandinskyPipeline, which denoise does not implement/,
    );
  });
});

describe('StableDiffusionImg2ImgPipeline', () => {
  it('runs the last ⌊n·strength⌋ steps from the noised image; strength 0 leaves nothing to run', async () => {
    const dir = writeTinySd({ className: 'OnnxStableDiffusionImg2ImgPipeline' });
    dirs.push(dir);
    const pipe = await StableDiffusionImg2ImgPipeline.fromPretrained(dir);
    expect(pipe).toBeInstanceOf(StableDiffusionImg2ImgPipeline);
    const image = { width: 8, height: 6, data: new Uint8ClampedArray(8 * 6 * 4).fill(200) };
    const timesteps: number[] = [];
    const { images } = await pipe.generate({
      prompt: 'a cat',
      image,
      strength: 0.5,
      numInferenceSteps: 10,
      generator: new RandomGenerator(0),
      callbackOnStepEnd: ({ timestep }) => {
        timesteps.push(timestep);
        return undefined;
      },
    });
    expect(timesteps).toEqual([401, 301, 201, 101, 1]);
    expect([images[0].width, images[0].height]).toEqual([8, 6]);
    await expect(pipe.generate({ prompt: 'a cat', image, strength: 0, numInferenceSteps: 10 })).rejects.toThrow(
      /leaves no step to run/,
    );
    // A guidance interval counts the steps that run: 9 of 10 here, so step 5 (5/9 ≈ 0.556) is inside.
    const batches = countUnetCalls(pipe);
    await pipe.generate({
      prompt: 'a cat',
      image,
      strength: 0.9,
      numInferenceSteps: 10,
      guidanceInterval: { start: 0.55, end: 0.6 },
      generator: new RandomGenerator(0),
    });
    expect(batches).toEqual([1, 1, 1, 1, 1, 2, 1, 1, 1]);
  });
});

describe('loading through the local Hub server', () => {
  it('fromPretrained("org/tiny") downloads and runs the same pipeline', async () => {
    const { HubServer } = await import('../../core/test/helpers/hub-server.js');
    const { tinySdFiles } = await import('./helpers/tiny-sd.js');
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const hub = await HubServer.start();
    const cacheDir = mkdtempSync(join(tmpdir(), 'denoise-cache-'));
    dirs.push(cacheDir);
    try {
      hub.addRepo('org/tiny', tinySdFiles());
      const remote = await StableDiffusionPipeline.fromPretrained('org/tiny', {
        hubUrl: hub.url,
        cacheDir,
        device: 'cpu',
      });
      const local = await load();
      const a = await remote.generate({ ...base, generator: new RandomGenerator(4) });
      const b = await local.generate({ ...base, generator: new RandomGenerator(4) });
      expect([...a.images[0].data]).toEqual([...b.images[0].data]);
      expect((await loadRepository('org/tiny', { hubUrl: hub.url, cacheDir, localFilesOnly: true })).name).toBe(
        'org/tiny',
      );
    } finally {
      await hub.close();
    }
  });
});

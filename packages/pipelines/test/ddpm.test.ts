import { rmSync } from 'node:fs';
import { RandomGenerator, type Tensor } from '@denoise/core';
import { DDIMScheduler } from '@denoise/schedulers';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { ClassifierGuidance, DDPMPipeline, DiffusionPipeline, isPipeline } from '../src/index.js';
import { writeTinyDdpm } from './helpers/tiny-ddpm.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tinyDdpmDir(classConditional: boolean, learned: boolean): string {
  const dir = writeTinyDdpm({ classConditional, learned });
  dirs.push(dir);
  return dir;
}

async function load(classConditional: boolean, learned: boolean): Promise<DDPMPipeline> {
  const pipe = await DiffusionPipeline.fromPretrained(tinyDdpmDir(classConditional, learned), { device: 'cpu' });
  if (!isPipeline(pipe, 'DDPMPipeline')) throw new Error(`loaded a ${pipe.kind}`);
  expect(pipe).toBeInstanceOf(DDPMPipeline);
  return pipe;
}

function spyOnUnet(pipe: DDPMPipeline): Record<string, unknown>[] {
  const feeds: Record<string, unknown>[] = [];
  const run = pipe.unet.run.bind(pipe.unet);
  vi.spyOn(pipe.unet, 'run').mockImplementation((input) => {
    feeds.push({ ...input });
    return run(input);
  });
  return feeds;
}

describe('DDPMPipeline', () => {
  it('generates unconditional 8×8 images, deterministic under a seed, with a learned IDDPM variance', async () => {
    const pipe = await load(false, true);
    const a = await pipe.generate({ batchSize: 2, numInferenceSteps: 10, generator: new RandomGenerator(0) });
    const b = await pipe.generate({ batchSize: 2, numInferenceSteps: 10, generator: new RandomGenerator(0) });
    expect(a.images.map((i) => [i.width, i.height])).toEqual([
      [8, 8],
      [8, 8],
    ]);
    expect(a.images.map((i) => [...i.data])).toEqual(b.images.map((i) => [...i.data]));
    expect([...a.images[0].data]).not.toEqual([...a.images[1].data]);
  });

  it('runs with any scheduler, e.g. DDIM from the same config', async () => {
    const pipe = await load(false, false);
    pipe.scheduler = DDIMScheduler.fromConfig(pipe.scheduler.config);
    const feeds = spyOnUnet(pipe);
    await pipe.generate({ numInferenceSteps: 5, generator: new RandomGenerator(1) });
    // DDIM's leading spacing without steps_offset: (arange(5) · 200)[::-1].
    expect(feeds.map((f) => f.timestep)).toEqual([800, 600, 400, 200, 0]);
  });

  it('CFG on class labels: one call per step on [null labels; labels]; scale 1 feeds the labels alone', async () => {
    const pipe = await load(true, false);
    const feeds = spyOnUnet(pipe);
    await pipe.generate({
      classLabels: [2, 5],
      unconditionalClassLabel: 9,
      guidanceScale: 3,
      numInferenceSteps: 3,
      generator: new RandomGenerator(0),
    });
    expect(feeds).toHaveLength(3);
    expect([...(feeds[0].class_labels as Tensor<'int32'>).data]).toEqual([9, 9, 2, 5]);
    expect((feeds[0].sample as Tensor).dims).toEqual([4, 3, 8, 8]);
    feeds.length = 0;
    await pipe.generate({ classLabels: 4, batchSize: 2, numInferenceSteps: 2, generator: new RandomGenerator(0) });
    expect(feeds.map((f) => [...(f.class_labels as Tensor<'int32'>).data])).toEqual([
      [4, 4],
      [4, 4],
    ]);
  });

  it("CFG on labels equals u + w(c − u) of the model's two predictions", async () => {
    // With ε̂ = 0.5x + 0.1y, guidance at w gives 0.5x + 0.1(u + w(y − u)): the same as label u + w(y − u) unguided.
    const pipe = await load(true, false);
    pipe.scheduler = DDIMScheduler.fromConfig(pipe.scheduler.config);
    const guided = await pipe.generate({
      classLabels: 3,
      unconditionalClassLabel: 1,
      guidanceScale: 2,
      numInferenceSteps: 4,
      generator: new RandomGenerator(6),
    });
    const plain = await pipe.generate({ classLabels: 5, numInferenceSteps: 4, generator: new RandomGenerator(6) });
    expect([...guided.images[0].data]).toEqual([...plain.images[0].data]);
  });

  it("classifier guidance in the 'mean' form uses the learned per-element variance", async () => {
    const pipe = await load(false, true);
    const shifted = await pipe.generate({
      numInferenceSteps: 5,
      generator: new RandomGenerator(2),
      guidances: [
        new ClassifierGuidance({
          gradient: ({ sample }) => ({ data: new Float32Array(sample.data.length).fill(1), dims: sample.dims }),
          classLabels: 0,
          classifierScale: 0.5,
        }),
      ],
    });
    const plain = await pipe.generate({ numInferenceSteps: 5, generator: new RandomGenerator(2) });
    const mean = (data: Uint8ClampedArray) => data.reduce((s, v) => s + v, 0) / data.length;
    expect(mean(shifted.images[0].data)).toBeGreaterThan(mean(plain.images[0].data));
  });

  it('rejects labels for an unconditional UNet and guidance without a null label', async () => {
    const unconditional = await load(false, false);
    await expect(unconditional.generate({ classLabels: 1 })).rejects.toThrow(/takes no class labels/);
    const conditional = await load(true, false);
    await expect(conditional.generate({ numInferenceSteps: 2 })).rejects.toThrow(/pass classLabels/);
    await expect(conditional.generate({ classLabels: 1, guidanceScale: 3 })).rejects.toThrow(/unconditionalClassLabel/);
  });
});

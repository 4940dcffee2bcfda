import { RandomGenerator } from '@denoise/core';
import type { Device } from '@denoise/core/runtime';
import { DiffusionPipeline, type StableDiffusionPipeline } from '@denoise/pipelines';
import { collectGarbage } from './stats.js';

/** One reading of process memory after a full collection, MiB. */
export interface MemoryReading {
  rss: number;
  heapUsed: number;
  external: number;
}

/** Target 6: memory over many generations with the embedded model, and after `release()`. */
export interface MemoryResult {
  generations: number;
  warmupGenerations: number;
  beforeLoad: MemoryReading;
  afterWarmup: MemoryReading;
  afterGenerations: MemoryReading;
  afterRelease: MemoryReading;
  /** Growth from after warm-up to after the timed generations, MiB. */
  rssGrowth: number;
  heapGrowth: number;
  /** How much of the RSS the loaded pipeline added that `release()` gave back, MiB. */
  rssReturnedByRelease: number;
  rssAddedByLoad: number;
}

const MiB = 1024 * 1024;

function reading(): MemoryReading {
  collectGarbage();
  const m = process.memoryUsage();
  return { rss: m.rss / MiB, heapUsed: m.heapUsed / MiB, external: m.external / MiB };
}

/**
 * Target 6: load the embedded reference-world model, warm up, then run `generations` consecutive text-to-image
 * generations (20 steps, classifier-free guidance, a new seed each) and read RSS and heap after full collections;
 * then release the pipeline and read again.
 *
 * @param generations - generations after warm-up
 * @param device - the execution provider
 */
export async function benchMemory(generations: number, device: Device): Promise<MemoryResult> {
  const warmupGenerations = 10;
  const beforeLoad = reading();
  let pipe: StableDiffusionPipeline | undefined = (await DiffusionPipeline.fromPretrained(
    new URL('../models/reference-world/', import.meta.url).pathname,
    { device },
  )) as StableDiffusionPipeline;
  const generate = (seed: number) =>
    pipe!.generate({ prompt: 'a red circle', numInferenceSteps: 20, generator: new RandomGenerator(seed) });
  for (let i = 0; i < warmupGenerations; i++) await generate(i);
  const afterLoadAndWarmup = reading();
  for (let i = 0; i < generations; i++) await generate(warmupGenerations + i);
  const afterGenerations = reading();
  await pipe.release();
  pipe = undefined;
  const afterRelease = reading();
  return {
    generations,
    warmupGenerations,
    beforeLoad,
    afterWarmup: afterLoadAndWarmup,
    afterGenerations,
    afterRelease,
    rssGrowth: afterGenerations.rss - afterLoadAndWarmup.rss,
    heapGrowth: afterGenerations.heapUsed - afterLoadAndWarmup.heapUsed,
    rssReturnedByRelease: afterGenerations.rss - afterRelease.rss,
    rssAddedByLoad: afterLoadAndWarmup.rss - beforeLoad.rss,
  };
}

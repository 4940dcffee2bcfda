import { RandomGenerator } from '@denoise/core';
import type { Device } from '@denoise/core/runtime';
import { StableDiffusionPipeline } from '@denoise/pipelines';
import { writeHeavyModel } from './heavy-unet.js';
import { HEAVY_UNET } from './pipeline.js';
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
  /** RSS after every 10th warm-up generation (after a full collection), MiB: where the allocator levels off. */
  warmupRssEvery10: number[];
  /** RSS after every 10th measured generation (after a full collection), MiB: whether growth levels off. */
  rssEvery10: number[];
  /**
   * The heavy-UNet model loaded, used once and released `releaseCycles.length` times: RSS after each cycle's
   * load + generation and after its release, MiB. Flat readings after release mean the sessions' memory is
   * given back (or reused by the next load) rather than accumulating.
   */
  releaseCycles: { loaded: number; released: number }[];
}

const MiB = 1024 * 1024;

function reading(): MemoryReading {
  collectGarbage();
  const m = process.memoryUsage();
  return { rss: m.rss / MiB, heapUsed: m.heapUsed / MiB, external: m.external / MiB };
}

async function loadReleaseCycles(cycles: number, device: Device): Promise<MemoryResult['releaseCycles']> {
  const dir = writeHeavyModel(HEAVY_UNET);
  const readings: MemoryResult['releaseCycles'] = [];
  for (let i = 0; i < cycles; i++) {
    const pipe = await StableDiffusionPipeline.fromPretrained(dir, { device });
    await pipe.generate({ prompt: 'a red circle', numInferenceSteps: 2, generator: new RandomGenerator(i) });
    const loaded = reading().rss;
    await pipe.release();
    readings.push({ loaded, released: reading().rss });
  }
  return readings;
}

/**
 * Target 6: after one untimed load/use/release (ONNX Runtime's process start-up), load the embedded
 * reference-world model, warm up, then run `generations` consecutive text-to-image
 * generations (20 steps, classifier-free guidance, a new seed each) and read RSS and heap after full collections;
 * then release the pipeline and read again. Then load, use and release the heavy-UNet model five times, since
 * the embedded model's sessions are too small to show in RSS.
 *
 * The warm-up is long because RSS keeps rising in steps for the first 20 to 150 generations of a process (glibc's
 * malloc arenas reaching their high-water mark; the V8 heap is flat from the first generation) and is flat after
 * that: +1.2 MiB from generation 150 to 600 in one run of 600 generations. Growth before that point is warm-up,
 * not a leak; the warm-up readings are kept in the result, so that it shows.
 *
 * @param generations - generations after warm-up
 * @param warmupGenerations - generations before the first reading
 * @param device - the execution provider
 */
export async function benchMemory(
  generations: number,
  warmupGenerations: number,
  device: Device,
): Promise<MemoryResult> {
  const dir = new URL('../models/reference-world/', import.meta.url).pathname;
  const load = async () => await StableDiffusionPipeline.fromPretrained(dir, { device });
  // ONNX Runtime's one-time process initialisation (native library, thread pools) is not the pipeline's: one
  // load, generation and release before the first reading keep it out of the figures.
  const first = await load();
  await first.generate({ prompt: 'a red circle', numInferenceSteps: 2, generator: new RandomGenerator(0) });
  await first.release();
  const beforeLoad = reading();
  let pipe: StableDiffusionPipeline | undefined = await load();
  const generate = (seed: number) =>
    pipe!.generate({ prompt: 'a red circle', numInferenceSteps: 20, generator: new RandomGenerator(seed) });
  const warmupRssEvery10: number[] = [];
  for (let i = 0; i < warmupGenerations; i++) {
    await generate(i);
    if ((i + 1) % 10 === 0) warmupRssEvery10.push(reading().rss);
  }
  const afterLoadAndWarmup = reading();
  const rssEvery10: number[] = [];
  for (let i = 0; i < generations; i++) {
    await generate(warmupGenerations + i);
    if ((i + 1) % 10 === 0) rssEvery10.push(reading().rss);
  }
  const afterGenerations = reading();
  await pipe.release();
  pipe = undefined;
  const afterRelease = reading();
  const releaseCycles = await loadReleaseCycles(5, device);
  return {
    releaseCycles,
    warmupRssEvery10,
    rssEvery10,
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

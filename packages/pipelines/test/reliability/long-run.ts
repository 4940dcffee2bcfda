/**
 * Long run (issue #9): 500 generations on the embedded reference world, in one process, looking for a memory
 * trend. Too slow for `npm test` on 2 cores; run it by hand:
 *
 * ```sh
 * node --conditions=source --expose-gc --import tsx packages/pipelines/test/reliability/long-run.ts [generations]
 * ```
 *
 * Generations rotate through schedulers (DDIM, DPM++ 2M, Euler a, UniPC), prompts, batch sizes and guidance, and
 * one in ten is aborted part-way, so that the paths that could leak (multistep history, noise buffers, aborted
 * runs, ONNX tensors) are all exercised. After a warm-up (ONNX Runtime grows its arenas once), the heap, the
 * memory held by array buffers and the RSS are sampled after a forced GC every 25 generations; the script prints
 * the samples and the least-squares slope of each over the run, and exits with status 1 when the heap or the
 * buffers grow by more than 1 KiB per generation, or when a repeated seed stops giving the same image.
 */
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { RandomGenerator } from '@denoise/core';
import { getScheduler } from '@denoise/schedulers';
import { StableDiffusionPipeline } from '../../src/index.js';

const GENERATIONS = Number(process.argv[2] ?? 500);
const WARM_UP = 20;
const SAMPLE_EVERY = 25;
const MAX_SLOPE_BYTES = 1024;

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('Run with node --expose-gc (see the header of this file).');

const SCHEDULERS = ['DDIM', 'DPM++ 2M', 'Euler a', 'UniPC'];
const PROMPTS = ['a red circle', 'a blue square on a black background', 'yellow cross', '', 'a green triangle'];

const modelDir = fileURLToPath(new URL('../../../../models/reference-world/', import.meta.url));
const pipe = await StableDiffusionPipeline.fromPretrained(modelDir, { device: 'cpu' });
const baseConfig = { ...pipe.scheduler.config };
const schedulers = SCHEDULERS.map((name) => getScheduler(name, baseConfig, { onWarning: () => {} }));

/** One generation of the rotation; returns a hash of its first image, or `'aborted'`. */
async function generate(i: number): Promise<string> {
  pipe.scheduler = schedulers[i % schedulers.length];
  const controller = new AbortController();
  const abort = i % 10 === 9;
  try {
    const { images } = await pipe.generate({
      prompt: PROMPTS[i % PROMPTS.length],
      numImagesPerPrompt: 1 + (i % 2),
      numInferenceSteps: 4,
      guidanceScale: 1 + (i % 4),
      generator: new RandomGenerator(i % 50),
      signal: controller.signal,
      callbackOnStepEnd: ({ step }) => {
        if (abort && step === 1) controller.abort();
        return undefined;
      },
    });
    return createHash('sha256').update(images[0].data).digest('hex').slice(0, 16);
  } catch (error) {
    if (abort && (error as Error).name === 'AbortError') return 'aborted';
    throw error;
  }
}

/** Memory after full collections; the macrotask between them lets finalizers free the backing stores they hold. */
async function memory() {
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers, rss: m.rss };
}

/** Least-squares slope of `y` over `x`. */
function slope(x: number[], y: number[]): number {
  const n = x.length;
  const mx = x.reduce((a, b) => a + b, 0) / n;
  const my = y.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) ** 2;
  }
  return sxy / sxx;
}

const MiB = 1024 * 1024;
const firstHash = new Map<number, string>();
let mismatches = 0;
const started = Date.now();
for (let i = 0; i < WARM_UP; i++) await generate(i);

const samples: { generation: number; heapUsed: number; arrayBuffers: number; rss: number }[] = [];
samples.push({ generation: 0, ...(await memory()) });
for (let i = 0; i < GENERATIONS; i++) {
  const hash = await generate(i);
  // The same rotation slot and seed must give the same image whenever it comes round again.
  const key = i % 100;
  if (hash !== 'aborted') {
    const seen = firstHash.get(key);
    if (seen === undefined) firstHash.set(key, hash);
    else if (seen !== hash) mismatches++;
  }
  if ((i + 1) % SAMPLE_EVERY === 0) samples.push({ generation: i + 1, ...(await memory()) });
}
const seconds = (Date.now() - started) / 1000;

console.log(`long run: ${GENERATIONS} generations (+${WARM_UP} warm-up) in ${seconds.toFixed(1)} s`);
console.log('generation | heapUsed MiB | arrayBuffers MiB | rss MiB');
for (const s of samples) {
  console.log(
    `${String(s.generation).padStart(10)} | ${(s.heapUsed / MiB).toFixed(2).padStart(12)} | ` +
      `${(s.arrayBuffers / MiB).toFixed(2).padStart(16)} | ${(s.rss / MiB).toFixed(1).padStart(7)}`,
  );
}
const x = samples.map((s) => s.generation);
const trend = {
  heapUsed: slope(
    x,
    samples.map((s) => s.heapUsed),
  ),
  arrayBuffers: slope(
    x,
    samples.map((s) => s.arrayBuffers),
  ),
  rss: slope(
    x,
    samples.map((s) => s.rss),
  ),
};
for (const [name, bytesPerGeneration] of Object.entries(trend)) {
  console.log(
    `slope ${name}: ${(bytesPerGeneration / 1024).toFixed(3)} KiB/generation ` +
      `(${((bytesPerGeneration * GENERATIONS) / MiB).toFixed(2)} MiB over the run)`,
  );
}
console.log(`repeated seeds giving a different image: ${mismatches} (of ${GENERATIONS - firstHash.size} repeats)`);
await pipe.release();

const ok = trend.heapUsed < MAX_SLOPE_BYTES && trend.arrayBuffers < MAX_SLOPE_BYTES && mismatches === 0;
console.log(ok ? 'verdict: no memory trend' : 'verdict: FAILED');
process.exitCode = ok ? 0 : 1;

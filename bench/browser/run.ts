/**
 * `npm run bench:browser`: targets 4 (denoising loop overhead) and 5 (CFG batching) of the benchmark in Chromium,
 * on WebGPU (SwiftShader, a CPU emulation of a GPU) and on WASM. Generates the heavy-UNet models (free batch and
 * batch 1, one size per backend), serves them to `bench/browser/page.ts` as a local Hub, drives the page with
 * playwright-core, prints one table per backend and writes `bench/results.browser.json`.
 *
 * Flag: `--quick` (one timed round and a few upload pairs: a smoke run, not for figures). Environment:
 * `BENCH_BROWSER_RUNS` (timed rounds per backend, default 10), `BENCH_BROWSER_BACKENDS` (default `webgpu,wasm`),
 * `CHROMIUM` (default `/usr/bin/chromium`).
 */
import { rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import type { Browser, Page } from 'playwright-core';
import { assertChromiumInstalled, launchChromium } from '../../tools/chromium.js';
import { type HeavyUnetShape, writeHeavyModel } from '../heavy-unet.js';
import { formatSummary, type Summary, summarize } from '../stats.js';
import { consumerGraph, producerGraph } from './embedding-graphs.js';
import type { MeasureResult, RunRecord } from './page.js';
import { startBenchServer } from './server.js';

const QUICK = process.argv.includes('--quick');
const RUNS = QUICK ? 1 : Number(process.env.BENCH_BROWSER_RUNS ?? 10);
const BACKENDS = (process.env.BENCH_BROWSER_BACKENDS ?? 'webgpu,wasm').split(',') as ('webgpu' | 'wasm')[];
const STEPS = 20;
/** Pairs of runs of the embedding-upload graphs (after the warm-up pairs). */
const UPLOAD_ROUNDS = QUICK ? { rounds: 3, warmup: 1 } : { rounds: 60, warmup: 5 };
const RESULTS = new URL('../results.browser.json', import.meta.url);

/**
 * The heavy UNet per backend, sized so that one call takes tens of ms on this machine: SwiftShader runs a
 * shader per invocation on the CPU, far slower than ONNX Runtime's WASM kernels, so WebGPU gets a smaller graph.
 */
const SHAPES: Record<'webgpu' | 'wasm', HeavyUnetShape> = {
  webgpu: { channels: 32, hiddenLayers: 2 },
  wasm: { channels: 256, hiddenLayers: 5 },
};

/** The figures of one backend. */
interface BackendReport {
  backend: string;
  executionProviders: readonly string[];
  wasmThreads: number | undefined;
  unetShape: HeavyUnetShape;
  keepTextEmbeddingsOnDevice: boolean;
  steps: number;
  unetCallsPerRun: number;
  /** Target 4 on the batched pipeline (embeddings on the device where the backend allows). */
  unetCallMs: Summary;
  loopMs: Summary;
  stepWallMs: Summary;
  stepUnetMs: Summary;
  overheadFraction: Summary;
  schedulerFraction: Summary;
  /** Target 5: split / batched loop wall, per round. */
  cfg: { batchedLoopMs: Summary; splitLoopMs: Summary; ratio: Summary; splitUnetCallsPerRun: number };
  /** WebGPU only: the same pipeline with the embeddings uploaded on every UNet call. */
  uploaded?: {
    unetCallMs: Summary;
    loopMs: Summary;
    stepWallMs: Summary;
    overheadFraction: Summary;
    /** uploaded / on-device loop wall, per round. */
    loopRatio: Summary;
  };
}

function of(runs: readonly RunRecord[], variant: string): RunRecord[] {
  return runs.filter((r) => r.variant === variant);
}

function loopFigures(runs: readonly RunRecord[]) {
  return {
    unetCallMs: summarize(runs.map((r) => r.unetMs / r.unetCalls)),
    loopMs: summarize(runs.map((r) => r.loopMs)),
    stepWallMs: summarize(runs.flatMap((r) => r.steps.map((s) => s.wallMs))),
    stepUnetMs: summarize(runs.flatMap((r) => r.steps.map((s) => s.unetMs))),
    overheadFraction: summarize(runs.map((r) => (r.loopMs - r.unetMs) / r.loopMs)),
    schedulerFraction: summarize(runs.map((r) => r.schedulerMs / r.loopMs)),
  };
}

function report(result: MeasureResult, shape: HeavyUnetShape): BackendReport {
  const batched = of(result.runs, 'batched');
  const split = of(result.runs, 'split');
  const uploaded = of(result.runs, 'uploaded');
  const main = loopFigures(batched);
  const out: BackendReport = {
    backend: result.backend,
    executionProviders: result.executionProviders,
    wasmThreads: result.wasmThreads,
    unetShape: shape,
    keepTextEmbeddingsOnDevice: result.keepTextEmbeddingsOnDevice,
    steps: STEPS,
    unetCallsPerRun: batched[0].unetCalls,
    ...main,
    cfg: {
      batchedLoopMs: main.loopMs,
      splitLoopMs: summarize(split.map((r) => r.loopMs)),
      ratio: summarize(split.map((r, i) => r.loopMs / batched[i].loopMs)),
      splitUnetCallsPerRun: split[0].unetCalls,
    },
  };
  if (uploaded.length > 0) {
    const figures = loopFigures(uploaded);
    out.uploaded = {
      unetCallMs: figures.unetCallMs,
      loopMs: figures.loopMs,
      stepWallMs: figures.stepWallMs,
      overheadFraction: figures.overheadFraction,
      loopRatio: summarize(uploaded.map((r, i) => r.loopMs / batched[i].loopMs)),
    };
  }
  return out;
}

const ms = (s: Summary) => `${formatSummary(s)} ms`;
const pct = (s: Summary) =>
  `${(100 * s.median).toFixed(2)} % [${(100 * s.p10).toFixed(2)}–${(100 * s.p90).toFixed(2)}] (n=${s.n})`;
const ratio = (s: Summary) => `${formatSummary(s)}×`;

function printTable(r: BackendReport): void {
  const { channels, hiddenLayers } = r.unetShape;
  const rows: [string, string][] = [
    [
      'execution providers',
      `${r.executionProviders.join(', ')}${r.wasmThreads ? ` (${r.wasmThreads} WASM thread(s))` : ''}`,
    ],
    ['heavy UNet', `${channels} channels × ${hiddenLayers} hidden 3×3 convs, latents 16×16, ${r.steps} steps, CFG 7.5`],
    [
      'text embeddings',
      r.keepTextEmbeddingsOnDevice ? 'kept on the GPU (DeviceTensor)' : 'in CPU memory, fed per call',
    ],
    ['UNet ms per batch-2 call', ms(r.unetCallMs)],
    ['loop wall per run', ms(r.loopMs)],
    ['per-step wall', ms(r.stepWallMs)],
    ['per-step UNet run', ms(r.stepUnetMs)],
    ['overhead (wall − UNet) / wall', pct(r.overheadFraction)],
    ['scheduler share of wall', pct(r.schedulerFraction)],
    [`split loop (${r.cfg.splitUnetCallsPerRun} calls)`, ms(r.cfg.splitLoopMs)],
    ['CFG ratio split / batched', ratio(r.cfg.ratio)],
  ];
  if (r.uploaded) {
    rows.push(
      ['uploaded: UNet ms per call', ms(r.uploaded.unetCallMs)],
      ['uploaded: loop wall per run', ms(r.uploaded.loopMs)],
      ['uploaded: per-step wall', ms(r.uploaded.stepWallMs)],
      ['uploaded: overhead', pct(r.uploaded.overheadFraction)],
      ['uploaded / on-device loop wall', ratio(r.uploaded.loopRatio)],
    );
  }
  const width = Math.max(...rows.map(([label]) => label.length));
  console.log(`\n${r.backend} (Chromium)`);
  for (const [label, value] of rows) console.log(`  ${label.padEnd(width)}  ${value}`);
}

/** What feeding SD-sized embeddings from the CPU costs against a GPU buffer, per run of a small graph. */
interface EmbeddingUploadReport {
  dims: readonly number[];
  fromCpuMs: Summary;
  onGpuMs: Summary;
  /** CPU-fed minus GPU-fed, per pair of runs. */
  savedMs: Summary;
  /** Largest |difference| between the graph's outputs on the two feeds (must be 0). */
  maxDifference: number;
}

function printUpload(r: EmbeddingUploadReport): void {
  console.log(`\nwebgpu: one graph run fed [${r.dims.join(', ')}] float32 embeddings (SD 1.x CFG batch)`);
  console.log(`  from CPU memory (uploaded)  ${ms(r.fromCpuMs)}`);
  console.log(`  as a GPU buffer             ${ms(r.onGpuMs)}`);
  console.log(`  saved per call              ${ms(r.savedMs)}`);
  console.log(`  max |output difference|     ${r.maxDifference}`);
}

async function openBenchPage(browser: Browser, origin: string): Promise<Page> {
  const page = await browser.newPage();
  page.on('pageerror', (error) => console.error(`  page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && !message.text().includes('[W:onnxruntime:')) {
      console.error(`  page console: ${message.text()}`);
    }
  });
  await page.goto(`${origin}/`);
  await page.waitForFunction(() => 'denoiseBench' in window);
  return page;
}

try {
  assertChromiumInstalled();
} catch (error) {
  console.error((error as Error).message);
  process.exit(1);
}

const models: Record<string, string> = {};
for (const backend of BACKENDS) {
  models[`bench/heavy-${backend}`] = writeHeavyModel(SHAPES[backend]);
  models[`bench/heavy-${backend}-batch1`] = writeHeavyModel({ ...SHAPES[backend], fixedBatch: 1 });
}
const server = await startBenchServer(models, 'bench', {
  'producer.onnx': producerGraph(),
  'consumer.onnx': consumerGraph(),
});
let browser: Browser | undefined;
try {
  // WASM alone does not need a WebGPU adapter.
  ({ browser } = await launchChromium(`${server.origin}/`, BACKENDS.includes('webgpu')));
  console.log(
    `chromium ${browser.version()} on ${cpus().length}× ${cpus()[0]?.model ?? 'unknown CPU'}, ${new Date().toISOString()}`,
  );
  const reports: BackendReport[] = [];
  for (const backend of BACKENDS) {
    // A fresh page per backend, so one backend's GPU buffers and WASM heap do not weigh on the other.
    const page = await openBenchPage(browser, server.origin);
    const result = await page.evaluate((options) => window.denoiseBench.measure(options), {
      backend,
      batchedRepo: `bench/heavy-${backend}`,
      splitRepo: `bench/heavy-${backend}-batch1`,
      runs: RUNS,
      steps: STEPS,
    });
    await page.close();
    const figures = report(result, SHAPES[backend]);
    printTable(figures);
    reports.push(figures);
  }
  let embeddingUpload: EmbeddingUploadReport | undefined;
  if (BACKENDS.includes('webgpu')) {
    const page = await openBenchPage(browser, server.origin);
    const result = await page.evaluate((options) => window.denoiseBench.embeddingUpload(options), UPLOAD_ROUNDS);
    await page.close();
    embeddingUpload = {
      dims: result.dims,
      fromCpuMs: summarize(result.cpuMs),
      onGpuMs: summarize(result.gpuMs),
      savedMs: summarize(result.cpuMs.map((cpu, i) => cpu - result.gpuMs[i])),
      maxDifference: result.maxDifference,
    };
    printUpload(embeddingUpload);
  }
  const summary = {
    date: new Date().toISOString(),
    chromium: browser.version(),
    cpus: cpus().length,
    cpu: cpus()[0]?.model,
    runs: RUNS,
    backends: reports,
    embeddingUpload,
  };
  writeFileSync(RESULTS, `${JSON.stringify(summary, null, 2)}\n`);
  console.log(`\nwrote ${RESULTS.pathname}`);
} finally {
  await browser?.close();
  await server.close();
  for (const dir of Object.values(models)) rmSync(dir, { recursive: true, force: true });
}

/**
 * The benchmark page. `window.denoiseBench.measure` times text-to-image runs on one backend (targets 4 and 5 of
 * the Node benchmark, `bench/pipeline.ts`); `window.denoiseBench.residency` reports where the UNet's
 * `encoder_hidden_states` feed lived on each call of one run and returns the picture (the browser test's check of
 * the text embeddings kept on the GPU); `window.denoiseBench.embeddingUpload` times one graph fed SD-sized
 * embeddings from the CPU and from the GPU; `window.denoiseBench.sdxl` runs one SDXL text-to-image generation (the
 * browser test's SDXL check). The page returns raw timings; the Node driver summarises them.
 */
import { RandomGenerator, Tensor } from '@denoise/core';
import { DeviceTensor, type FeedValue, type ModelSession, openSession } from '@denoise/core/runtime';
import { DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline } from '@denoise/pipelines';
import * as ort from 'onnxruntime-web';
import { observeRuns, timelineRecorder } from '../instrument.js';

// onnxruntime-web fetches its WASM binaries from this origin, never from a CDN.
ort.env.wasm.wasmPaths = new URL('/ort/', location.href).href;

const HUB_URL = new URL('/hub', location.href).href;
const PROMPT = 'a red circle on a blue square';

type Backend = 'webgpu' | 'wasm';

/** One timed generation. */
export interface RunRecord {
  /** Which pipeline ran: `batched` (one batch-2 UNet call per step), `split` (two batch-1 calls), `uploaded`. */
  variant: string;
  /** First UNet call start → last step end, ms. */
  loopMs: number;
  /** Time inside the UNet's `run`, ms. */
  unetMs: number;
  /** UNet calls made. */
  unetCalls: number;
  /** Time inside the scheduler's `step`, ms. */
  schedulerMs: number;
  /** Per step: its wall time and the time inside the UNet's `run` during it, ms. */
  steps: { wallMs: number; unetMs: number }[];
}

/** What {@link measure} returns. */
export interface MeasureResult {
  backend: Backend;
  executionProviders: readonly string[];
  /** Whether the batched pipeline keeps the text embeddings on the device. */
  keepTextEmbeddingsOnDevice: boolean;
  /** onnxruntime-web's WASM threads. */
  wasmThreads: number | undefined;
  runs: RunRecord[];
}

async function load(repo: string, device: Backend): Promise<StableDiffusionPipeline> {
  const pipe = await DiffusionPipeline.fromPretrained(repo, { hubUrl: HUB_URL, device });
  if (!(pipe instanceof StableDiffusionPipeline)) throw new Error(`${repo} is not a text-to-image model.`);
  return pipe;
}

/** Times `generate` of one pipeline: totals from `bench/instrument.ts`, plus the UNet calls of each step. */
function stepRecorder(pipe: StableDiffusionPipeline, variant: string, steps: number) {
  const calls: { start: number; ms: number }[] = [];
  let stepEnds: number[] = [];
  observeRuns(pipe.unet, (start, ms) => calls.push({ start, ms }));
  const timeline = timelineRecorder(pipe, (callbackOnStepEnd) =>
    pipe.generate({
      prompt: PROMPT,
      numInferenceSteps: steps,
      guidanceScale: 7.5,
      generator: new RandomGenerator(0),
      callbackOnStepEnd: () => {
        stepEnds.push(performance.now());
        return callbackOnStepEnd();
      },
    }),
  );
  const record = async (): Promise<RunRecord> => {
    calls.length = 0;
    stepEnds = [];
    const t = await timeline.record();
    const perStep = stepEnds.map((end, i) => {
      const begin = i === 0 ? t.firstUnetStart : stepEnds[i - 1];
      const inside = calls.filter((c) => c.start >= begin && c.start < end).reduce((sum, c) => sum + c.ms, 0);
      return { wallMs: end - begin, unetMs: inside };
    });
    const loopMs = t.lastStepEnd - t.firstUnetStart;
    return { variant, loopMs, unetMs: t.unetMs, unetCalls: t.unetCalls, schedulerMs: t.schedulerMs, steps: perStep };
  };
  return { record, dispose: timeline.dispose };
}

/**
 * Loads the free-batch and the batch-1 heavy UNet models on `backend`, runs each once untimed, then `runs`
 * rounds alternating them. On WebGPU a third pipeline shares the free-batch sessions with
 * `keepTextEmbeddingsOnDevice` off (the embeddings uploaded with every UNet call, as before), in the same rounds.
 */
async function measure(options: {
  backend: Backend;
  batchedRepo: string;
  splitRepo: string;
  runs: number;
  steps: number;
}): Promise<MeasureResult> {
  const { backend, runs, steps } = options;
  const batched = await load(options.batchedRepo, backend);
  const split = await load(options.splitRepo, backend);
  const variants = [
    { variant: 'batched', pipe: batched },
    { variant: 'split', pipe: split },
  ];
  if (batched.keepTextEmbeddingsOnDevice) {
    const uploaded = new StableDiffusionPipeline(batched.repository, batched.scheduler, {
      ...batched,
      keepTextEmbeddingsOnDevice: false,
    });
    variants.push({ variant: 'uploaded', pipe: uploaded });
  }
  const recorders = variants.map(({ variant, pipe }) => stepRecorder(pipe, variant, steps));
  const records: RunRecord[] = [];
  try {
    for (const recorder of recorders) await recorder.record();
    for (let round = 0; round < runs; round++) {
      for (const recorder of recorders) records.push(await recorder.record());
      log(`${backend}: round ${round + 1}/${runs}`);
    }
  } finally {
    for (const recorder of recorders) recorder.dispose();
    await batched.release();
    await split.release();
  }
  return {
    backend,
    executionProviders: batched.unet.executionProviders,
    keepTextEmbeddingsOnDevice: batched.keepTextEmbeddingsOnDevice,
    wasmThreads: ort.env.wasm.numThreads,
    runs: records,
  };
}

/** Where a feed lives: `cpu`, or the ONNX Runtime location of a device tensor (`gpu-buffer`; `none` once freed). */
function locationOf(value: FeedValue | undefined): string {
  return value instanceof DeviceTensor ? value.value.location : 'cpu';
}

/**
 * One generation of `prompt` on `backend`, recording the `encoder_hidden_states` feed of every UNet call: where it
 * was during the call and where it is after `generate` returned (`none` when freed). Then the same generation
 * through the same sessions with `keepTextEmbeddingsOnDevice` off (embeddings fed from CPU memory), and the
 * largest byte difference between the two pictures.
 */
async function residency(options: { repo: string; backend: Backend; prompt: string; steps: number; seed: number }) {
  const pipe = await load(options.repo, options.backend);
  const unet: ModelSession = pipe.unet;
  const run = unet.run.bind(unet);
  const fed: DeviceTensor[] = [];
  const during: string[] = [];
  unet.run = (feeds) => {
    const hidden = feeds.encoder_hidden_states;
    during.push(locationOf(hidden));
    if (hidden instanceof DeviceTensor) fed.push(hidden);
    return run(feeds);
  };
  const generate = async (pipeline: StableDiffusionPipeline) => {
    const { images } = await pipeline.generate({
      prompt: options.prompt,
      numInferenceSteps: options.steps,
      guidanceScale: 7.5,
      generator: new RandomGenerator(options.seed),
    });
    return images[0];
  };
  try {
    const image = await generate(pipe);
    const duringRun = [...during];
    const after = [...new Set(fed)].map((tensor) => tensor.value.location);
    const uploaded = new StableDiffusionPipeline(pipe.repository, pipe.scheduler, {
      ...pipe,
      keepTextEmbeddingsOnDevice: false,
    });
    const reference = await generate(uploaded);
    return {
      executionProviders: unet.executionProviders,
      keepTextEmbeddingsOnDevice: pipe.keepTextEmbeddingsOnDevice,
      during: duringRun,
      after,
      maxDifferenceFromUploaded: image.data.reduce((max, v, i) => Math.max(max, Math.abs(v - reference.data[i])), 0),
      width: image.width,
      height: image.height,
      rgba: Array.from(image.data),
    };
  } finally {
    await pipe.release();
  }
}

/** The UNet inputs of SDXL's conditioning, whose place `sdxl` records on each UNet call. */
const SDXL_CONDITIONING = ['encoder_hidden_states', 'text_embeds', 'time_ids'] as const;

/**
 * One SDXL text-to-image run of `repo` on `backend`: what loaded, where it ran, where each of
 * {@link SDXL_CONDITIONING} was on every UNet call (`name:location`) and after the run (`none` when freed), and
 * the picture.
 */
async function sdxl(options: {
  repo: string;
  backend: Backend;
  prompt: string;
  prompt2: string;
  steps: number;
  seed: number;
}) {
  const pipe = await StableDiffusionXLPipeline.fromPretrained(options.repo, {
    hubUrl: HUB_URL,
    device: options.backend,
  });
  const unet: ModelSession = pipe.unet;
  const run = unet.run.bind(unet);
  const fed = new Set<DeviceTensor>();
  const during: string[][] = [];
  unet.run = (feeds) => {
    during.push(SDXL_CONDITIONING.map((name) => `${name}:${locationOf(feeds[name])}`));
    for (const name of SDXL_CONDITIONING) {
      const value = feeds[name];
      if (value instanceof DeviceTensor) fed.add(value);
    }
    return run(feeds);
  };
  try {
    const { images } = await pipe.generate({
      prompt: options.prompt,
      prompt2: options.prompt2,
      numInferenceSteps: options.steps,
      generator: new RandomGenerator(options.seed),
    });
    return {
      kind: pipe.kind,
      executionProviders: pipe.unet.executionProviders,
      during,
      after: [...fed].map((tensor) => tensor.value.location),
      width: images[0].width,
      height: images[0].height,
      rgba: Array.from(images[0].data),
    };
  } finally {
    await pipe.release();
  }
}

/**
 * Alternates runs of `/fixtures/consumer.onnx` on WebGPU fed the same `[2, 77, 768]` embeddings from CPU memory
 * and as a GPU buffer that `/fixtures/producer.onnx` left there, after `warmup` untimed pairs; returns the ms of
 * each timed run per feed. Their difference is what each UNet call of SD 1.x saves when the embeddings stay.
 */
async function embeddingUpload(options: { rounds: number; warmup: number }) {
  const fixture = (name: string) => new URL(`/fixtures/${name}`, location.href).href;
  const producer = await openSession(fixture('producer.onnx'), {
    device: 'webgpu',
    preferredOutputLocation: 'gpu-buffer',
  });
  const consumer = await openSession(fixture('consumer.onnx'), { device: 'webgpu' });
  const { encoder_hidden_states: onDevice } = await producer.runOnDevice({
    offset: new Tensor(Float32Array.of(0.5), [1]),
  });
  if (!(onDevice instanceof DeviceTensor)) throw new Error('the producer left its output on the CPU');
  const onCpu = await onDevice.toTensor();
  const time = async (feed: FeedValue) => {
    const start = performance.now();
    await consumer.run({ encoder_hidden_states: feed });
    return performance.now() - start;
  };
  const cpuMs: number[] = [];
  const gpuMs: number[] = [];
  try {
    const [fromCpu, fromGpu] = [
      await consumer.run({ encoder_hidden_states: onCpu }),
      await consumer.run({ encoder_hidden_states: onDevice }),
    ];
    const maxDifference = Math.max(...fromCpu.row_mean.data.map((v, i) => Math.abs(v - fromGpu.row_mean.data[i])));
    for (let round = 0; round < options.warmup + options.rounds; round++) {
      const cpu = await time(onCpu);
      const gpu = await time(onDevice);
      if (round < options.warmup) continue;
      cpuMs.push(cpu);
      gpuMs.push(gpu);
    }
    return { dims: onDevice.dims, cpuMs, gpuMs, maxDifference };
  } finally {
    onDevice.dispose();
    await producer.release();
    await consumer.release();
  }
}

function log(line: string): void {
  document.querySelector('#log')!.textContent += `${line}\n`;
}

declare global {
  interface Window {
    denoiseBench: {
      measure: typeof measure;
      residency: typeof residency;
      embeddingUpload: typeof embeddingUpload;
      sdxl: typeof sdxl;
    };
  }
}
window.denoiseBench = { measure, residency, embeddingUpload, sdxl };
log('ready');

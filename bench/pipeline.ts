import { RandomGenerator } from '@denoise/core';
import type { Device } from '@denoise/core/runtime';
import { StableDiffusionPipeline } from '@denoise/pipelines';
import { type HeavyUnetShape, writeHeavyModel } from './heavy-unet.js';
import { timelineRecorder } from './instrument.js';
import { msSince, type Summary, summarize } from './stats.js';

/** 256 channels, 5 hidden layers: about 25 ms per batch-2 call on an idle 2-core EPYC, more under load. */
export const HEAVY_UNET: HeavyUnetShape = { channels: 256, hiddenLayers: 5 };
const STEPS = 20;
const PROMPT = 'a red circle on a blue square';

async function loadPipeline(dir: string, device: Device): Promise<StableDiffusionPipeline> {
  return await StableDiffusionPipeline.fromPretrained(dir, { device });
}

function recorder(pipe: StableDiffusionPipeline, seed: number) {
  return timelineRecorder(pipe, (callbackOnStepEnd) =>
    pipe.generate({
      prompt: PROMPT,
      numInferenceSteps: STEPS,
      guidanceScale: 7.5,
      generator: new RandomGenerator(seed),
      callbackOnStepEnd,
    }),
  );
}

/** Target 4: the denoising loop's own share of its wall time. */
export interface LoopOverheadResult {
  steps: number;
  unetCallsPerRun: number;
  /** ms per UNet call (batch 2: classifier-free guidance batched). */
  unetCallMs: Summary;
  /** Loop wall time per run, ms. */
  loopMs: Summary;
  /** (loop wall − time inside UNet runs) / loop wall, per run. */
  overheadFraction: Summary;
  /** Of that, the share of the loop wall spent in the scheduler's `step`, per run. */
  schedulerFraction: Summary;
}

/** Target 5: two batch-1 UNet calls per step against one batch-2 call, same weights, alternating runs. */
export interface CfgBatchingResult {
  batchedLoopMs: Summary;
  splitLoopMs: Summary;
  /** split loop wall / batched loop wall, per pair of runs. */
  ratio: Summary;
  batchedUnetCallsPerRun: number;
  splitUnetCallsPerRun: number;
}

/**
 * Targets 4 and 5 on the heavy-UNet model: `runs` timed text-to-image runs of 20 steps with classifier-free
 * guidance (after one warm-up run), alternating a free-batch UNet (one batch-2 call per step) with the same
 * weights declared for batch 1 (two calls per step).
 *
 * @param runs - timed runs per variant
 * @param device - the execution provider
 */
export async function benchLoop(
  runs: number,
  device: Device,
): Promise<{ loop: LoopOverheadResult; cfg: CfgBatchingResult }> {
  const batched = await loadPipeline(writeHeavyModel(HEAVY_UNET), device);
  const split = await loadPipeline(writeHeavyModel({ ...HEAVY_UNET, fixedBatch: 1 }), device);
  const batchedRecorder = recorder(batched, 0);
  const splitRecorder = recorder(split, 0);
  const runBatched = batchedRecorder.record;
  const runSplit = splitRecorder.record;
  await runBatched();
  await runSplit();
  const overhead: number[] = [];
  const schedulerShare: number[] = [];
  const callMs: number[] = [];
  const batchedLoop: number[] = [];
  const splitLoop: number[] = [];
  const ratio: number[] = [];
  let batchedCalls = 0;
  let splitCalls = 0;
  for (let r = 0; r < runs; r++) {
    const a = await runBatched();
    const b = await runSplit();
    const loopA = a.lastStepEnd - a.firstUnetStart;
    const loopB = b.lastStepEnd - b.firstUnetStart;
    overhead.push((loopA - a.unetMs) / loopA);
    schedulerShare.push(a.schedulerMs / loopA);
    callMs.push(a.unetMs / a.unetCalls);
    batchedLoop.push(loopA);
    splitLoop.push(loopB);
    ratio.push(loopB / loopA);
    batchedCalls = a.unetCalls;
    splitCalls = b.unetCalls;
  }
  splitRecorder.dispose();
  batchedRecorder.dispose();
  await batched.release();
  await split.release();
  return {
    loop: {
      steps: STEPS,
      unetCallsPerRun: batchedCalls,
      unetCallMs: summarize(callMs),
      loopMs: summarize(batchedLoop),
      overheadFraction: summarize(overhead),
      schedulerFraction: summarize(schedulerShare),
    },
    cfg: {
      batchedLoopMs: summarize(batchedLoop),
      splitLoopMs: summarize(splitLoop),
      ratio: summarize(ratio),
      batchedUnetCallsPerRun: batchedCalls,
      splitUnetCallsPerRun: splitCalls,
    },
  };
}

/** Target 7 for one model: fromPretrained on files already on disk to the first finished image, by phase. */
export interface ColdStartResult {
  model: string;
  /** ms per phase, median over the runs. */
  loadMs: Summary;
  textEncodingMs: Summary;
  denoisingMs: Summary;
  decodingMs: Summary;
  totalMs: Summary;
}

/**
 * Target 7: `runs` times, load the pipeline from a local directory (read once before, so the OS file cache is
 * warm), generate one image at 20 steps, release. Phases: load = `fromPretrained`; text encoding = `generate`
 * until the first UNet call; denoising = to the last step's end; decoding = the rest (VAE, image conversion).
 *
 * @param runs - repetitions
 * @param device - the execution provider
 */
export async function benchColdStart(runs: number, device: Device): Promise<ColdStartResult[]> {
  const models = [
    { model: 'reference-world (embedded)', dir: new URL('../models/reference-world/', import.meta.url).pathname },
    { model: `heavy UNet ${HEAVY_UNET.channels}ch x${HEAVY_UNET.hiddenLayers}`, dir: writeHeavyModel(HEAVY_UNET) },
  ];
  const results: ColdStartResult[] = [];
  for (const { model, dir } of models) {
    await (await loadPipeline(dir, device)).release();
    const phases = { load: [] as number[], text: [] as number[], denoise: [] as number[], decode: [] as number[] };
    const totals: number[] = [];
    for (let r = 0; r < runs; r++) {
      const loadStart = process.hrtime.bigint();
      const pipe = await loadPipeline(dir, device);
      const loadMs = msSince(loadStart);
      const { record, dispose } = recorder(pipe, r);
      const t = await record();
      dispose();
      await pipe.release();
      phases.load.push(loadMs);
      phases.text.push(t.firstUnetStart - t.start);
      phases.denoise.push(t.lastStepEnd - t.firstUnetStart);
      phases.decode.push(t.end - t.lastStepEnd);
      totals.push(loadMs + t.end - t.start);
    }
    results.push({
      model,
      loadMs: summarize(phases.load),
      textEncodingMs: summarize(phases.text),
      denoisingMs: summarize(phases.denoise),
      decodingMs: summarize(phases.decode),
      totalMs: summarize(totals),
    });
  }
  return results;
}

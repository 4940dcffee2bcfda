/**
 * Peak memory while loading a large external-data UNet: does loading hold a second copy of the weights?
 *
 *     node --import tsx --conditions=source bench/load-memory.ts [MiB of weights, default 400]
 *
 * Writes the SDXL reference world (`tools/reference-world/sdxl.ts`) with its UNet replaced by one whose weights
 * (four MatMul matrices over the flattened sample, so ONNX Runtime can neither fold nor drop them) live in
 * `unet/model.onnx_data`, as Optimum exports SDXL's UNet. Then, each in a fresh process: `StableDiffusionXLPipeline.fromPretrained`
 * of that repository, and ONNX Runtime's own `InferenceSession.create` of the UNet file alone. Each child reads
 * its RSS when the load starts (after ONNX Runtime's start-up) and its peak RSS (`maxRSS`) once it is done; the
 * difference is what the load added at its peak, to compare with the size of the weights.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import onnxProto, { type onnx } from 'onnx-proto';
import { buildSdxlReferenceWorld } from '../tools/reference-world/sdxl.js';

const MiB = 1024 * 1024;
const LATENT_VALUES = 4 * 16 * 16;
const MATRICES = 4;

/** Writes `unet/model.onnx` and its `model.onnx_data` of about `mebibytes` MiB into `dir`. */
function writeExternalDataUnet(dir: string, mebibytes: number): number {
  const columns = Math.max(1, Math.round((mebibytes * MiB) / (MATRICES * LATENT_VALUES * 4)));
  const matrixBytes = LATENT_VALUES * columns * 4;
  const dataFile = join(dir, 'unet', 'model.onnx_data');
  const fd = openSync(dataFile, 'w');
  // One column block at a time, so the generator never holds the weights itself.
  const row = new Float32Array(columns);
  for (let i = 0; i < columns; i++) row[i] = ((i % 997) - 498) * 1e-6;
  const rowBytes = new Uint8Array(row.buffer);
  for (let m = 0; m < MATRICES; m++) for (let r = 0; r < LATENT_VALUES; r++) writeSync(fd, rowBytes);
  closeSync(fd);
  const float = (name: string, shape: (number | string)[]): onnx.IValueInfoProto => ({
    name,
    type: {
      tensorType: {
        elemType: 1,
        shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
  const weights: onnx.ITensorProto[] = Array.from({ length: MATRICES }, (_, m) => ({
    name: `weight_${m}`,
    dims: [LATENT_VALUES, columns],
    dataType: 1,
    dataLocation: onnxProto.onnx.TensorProto.DataLocation.EXTERNAL,
    externalData: [
      { key: 'location', value: 'model.onnx_data' },
      { key: 'offset', value: String(m * matrixBytes) },
      { key: 'length', value: String(matrixBytes) },
    ],
  }));
  const nodes: onnx.INodeProto[] = [
    { opType: 'Reshape', input: ['sample', 'flat_shape'], output: ['flat'] },
    ...weights.flatMap((w, m) => [
      { opType: 'MatMul', input: ['flat', w.name as string], output: [`projected_${m}`] },
      {
        opType: 'ReduceMean',
        input: [`projected_${m}`],
        output: [`mean_${m}`],
        attribute: [{ name: 'axes', type: onnxProto.onnx.AttributeProto.AttributeType.INTS, ints: [1] }],
      },
    ]),
    { opType: 'Sum', input: weights.map((_, m) => `mean_${m}`), output: ['total'] },
    { opType: 'Unsqueeze', input: ['total', 'axes_23'], output: ['total4'] },
    { opType: 'Add', input: ['sample', 'total4'], output: ['out_sample'] },
  ];
  const model: onnx.IModelProto = {
    irVersion: 8,
    producerName: 'denoise-bench',
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'external_data_unet',
      input: [
        float('sample', ['batch', 4, 16, 16]),
        float('timestep', [1]),
        float('encoder_hidden_states', ['batch', 'sequence', 30]),
        float('text_embeds', ['batch', 15]),
        float('time_ids', ['batch', 6]),
      ],
      output: [float('out_sample', ['batch', 4, 16, 16])],
      node: nodes,
      initializer: [
        ...weights,
        { name: 'flat_shape', dims: [2], dataType: 7, int64Data: [0, LATENT_VALUES] },
        { name: 'axes_23', dims: [2], dataType: 7, int64Data: [2, 3] },
      ],
    },
  };
  const proto = onnxProto.onnx.ModelProto;
  writeFileSync(join(dir, 'unet', 'model.onnx'), proto.encode(proto.create(model)).finish());
  return statSync(dataFile).size;
}

/** What a child process measured, MiB. */
interface LoadReading {
  rssAtStart: number;
  peakRss: number;
  rssAfterLoad: number;
}

async function child(mode: string, dir: string): Promise<void> {
  const ort = await import('onnxruntime-node');
  const { StableDiffusionPipeline, StableDiffusionXLPipeline } = await import('@denoise/pipelines');
  // ONNX Runtime's process start-up (native library, thread pools) is not the load's: one small model first.
  const warm = await StableDiffusionPipeline.fromPretrained(
    fileURLToPath(new URL('../models/reference-world/', import.meta.url)),
    { device: 'cpu' },
  );
  await warm.release();
  const rssAtStart = process.memoryUsage().rss / MiB;
  let release: () => Promise<void>;
  if (mode === 'pipeline') {
    const pipe = await StableDiffusionXLPipeline.fromPretrained(dir, { device: 'cpu' });
    release = () => pipe.release();
  } else {
    const session = await ort.InferenceSession.create(join(dir, 'unet', 'model.onnx'));
    release = () => session.release();
  }
  const reading: LoadReading = {
    rssAtStart,
    peakRss: process.resourceUsage().maxRSS / 1024,
    rssAfterLoad: process.memoryUsage().rss / MiB,
  };
  await release();
  console.log(JSON.stringify(reading));
}

const [, , first, second] = process.argv;
if (first === '--child') {
  await child(second, process.argv[4]);
} else {
  const mebibytes = Number(first ?? 400);
  const dir = mkdtempSync(join(tmpdir(), 'denoise-load-memory-'));
  try {
    buildSdxlReferenceWorld(dir);
    const bytes = writeExternalDataUnet(dir, mebibytes);
    const weights = bytes / MiB;
    console.log(`unet/model.onnx_data: ${weights.toFixed(1)} MiB`);
    for (const mode of ['pipeline', 'onnxruntime']) {
      const run = spawnSync(
        process.execPath,
        [...process.execArgv, fileURLToPath(import.meta.url), '--child', mode, dir],
        { encoding: 'utf8', maxBuffer: 16 * MiB },
      );
      if (run.status !== 0) throw new Error(`the ${mode} child failed:\n${run.stderr}`);
      const reading = JSON.parse(run.stdout.trim().split('\n').at(-1) as string) as LoadReading;
      const peak = reading.peakRss - reading.rssAtStart;
      const held = reading.rssAfterLoad - reading.rssAtStart;
      console.log(
        `${mode === 'pipeline' ? 'StableDiffusionXLPipeline.fromPretrained' : 'ort.InferenceSession.create (UNet alone)'}: ` +
          `peak +${peak.toFixed(1)} MiB (${(peak / weights).toFixed(2)}× the weights), ` +
          `+${held.toFixed(1)} MiB after loading (${(held / weights).toFixed(2)}×)`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Files the demo serves from its own origin, written into a git-ignored public folder before Vite starts:
 * onnxruntime-web's WASM binaries (never a CDN) and the runtime check's graph.
 */
import { cp, mkdir, rm, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { encodeModel, node } from '../../tools/onnx-graph.js';
import { CHECK_GRAPH_BIAS, CHECK_GRAPH_SHAPE, CHECK_GRAPH_WEIGHT } from './src/check-graph.js';

const repoRoot = resolve(import.meta.dirname, '..', '..');

/** The folder Vite serves as `/`: `.cache/` is git-ignored. */
export const PUBLIC_DIR = resolve(import.meta.dirname, '.cache', 'public');

/**
 * Copies onnxruntime-web's WASM binary and its loader into `<publicDir>/ort/`: the build the pages import
 * (WebGPU + WASM) loads these two, from the page's origin.
 *
 * @param publicDir - the folder a Vite server serves as `/`
 */
export async function copyOrtBinaries(publicDir: string): Promise<void> {
  const ortDist = resolve(repoRoot, 'node_modules', 'onnxruntime-web', 'dist');
  await mkdir(resolve(publicDir, 'ort'), { recursive: true });
  for (const file of ['ort-wasm-simd-threaded.jsep.mjs', 'ort-wasm-simd-threaded.jsep.wasm']) {
    await cp(resolve(ortDist, file), resolve(publicDir, 'ort', file));
  }
}

/** Copies or generates everything under {@link PUBLIC_DIR}. */
export async function writePublicAssets(): Promise<void> {
  await rm(PUBLIC_DIR, { recursive: true, force: true });
  await mkdir(resolve(PUBLIC_DIR, 'fixtures'), { recursive: true });
  await copyOrtBinaries(PUBLIC_DIR);
  await writeFile(resolve(PUBLIC_DIR, 'fixtures', 'check-graph.onnx'), checkGraph());
}

function checkGraph(): Uint8Array {
  const { inFeatures, outFeatures } = CHECK_GRAPH_SHAPE;
  return encodeModel({
    name: 'runtime-check',
    inputs: [{ name: 'x', type: 'float32', shape: ['batch', inFeatures] }],
    outputs: [
      { name: 'hidden', type: 'float32', shape: ['batch', outFeatures] },
      { name: 'probabilities', type: 'float32', shape: ['batch', outFeatures] },
    ],
    initializers: [
      { name: 'W', type: 'float32', dims: [inFeatures, outFeatures], values: CHECK_GRAPH_WEIGHT },
      { name: 'b', type: 'float32', dims: [outFeatures], values: CHECK_GRAPH_BIAS },
    ],
    nodes: [
      node('MatMul', ['x', 'W'], ['xW']),
      node('Add', ['xW', 'b'], ['logits']),
      node('Sigmoid', ['logits'], ['hidden']),
      node('Softmax', ['hidden'], ['probabilities'], { axis: -1 }),
    ],
  });
}

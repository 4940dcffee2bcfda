/**
 * A ControlNet variant of the reference world, generated at test time (the committed world stays as it is):
 *
 *     npx tsx --conditions=source tools/reference-world/controlnet.ts <output directory>
 *
 * The ControlNet reads a silhouette (a light shape on a dark ground, at the world's 128 × 128 pixels) and answers
 * which of the four shapes it shows, as a one-hot vector in its middle-block residual; its twelve down-block
 * residuals are zero. The UNet is the world's exact denoiser whose prompt features have the shape group replaced
 * by that vector whenever the residual exceeds 0.5: at `controlnetConditioningScale` 1 the silhouette picks the
 * shape whatever the prompt's shape word, at 0 the UNet is the plain world's. The graphs follow the layout of
 * Amblyopius' Stable-Diffusion-ONNX-FP16 export (ControlNet outputs in torch's order, only the first two named; UNet
 * inputs `down_block_0` … `down_block_11`, `mid_block_additional_residual`), see `docs/controlnet.md`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { encodeModel, node, type ValueSpec } from '../onnx-graph.js';
import { referenceWorldFiles } from './build.js';
import { unetModel } from './denoiser.js';
import { hiddenSize } from './text-encoder.js';
import { attributeGroups, blockSize, covers, imageSize, latentChannels, latentSize } from './world.js';

const shapes = attributeGroups.shape;
/** The residuals: twelve down blocks and the middle block, each `[batch, 4, 1, 1]` (one value per shape). */
const downBlocks = 12;
const residualShape = ['batch', shapes.length, 1, 1];
const cells = latentSize * latentSize;

/** `[256, 4]`: per shape, +1/|inside| on its cells and −1/|outside| elsewhere (mean inside − mean outside). */
function silhouetteContrast(): Float32Array {
  const m = new Float32Array(cells * shapes.length);
  shapes.forEach((shape, k) => {
    let inside = 0;
    for (let cell = 0; cell < cells; cell++)
      if (covers(shape, Math.floor(cell / latentSize), cell % latentSize)) inside++;
    for (let cell = 0; cell < cells; cell++) {
      const isInside = covers(shape, Math.floor(cell / latentSize), cell % latentSize);
      m[cell * shapes.length + k] = isInside ? 1 / inside : -1 / (cells - inside);
    }
  });
  return m;
}

/** The names torch.onnx gives the outputs of an export that names only the first two. */
const outputNames = [
  'down_block_res_samples',
  'mid_block_res_sample',
  ...Array.from({ length: 11 }, (_, i) => `${1900 + i}`),
];

/** `controlnet/model.onnx`: the silhouette's shape, one-hot, in the last (middle-block) output. */
export function controlNetModel(): Uint8Array {
  const outputs: ValueSpec[] = outputNames.map((name) => ({ name, type: 'float32', shape: residualShape }));
  return encodeModel({
    name: 'reference_world_controlnet',
    inputs: [
      { name: 'sample', type: 'float32', shape: ['batch', latentChannels, latentSize, latentSize] },
      { name: 'timestep', type: 'float32', shape: ['timestep_batch'] },
      { name: 'encoder_hidden_states', type: 'float32', shape: ['batch', 'sequence', hiddenSize] },
      { name: 'controlnet_cond', type: 'float32', shape: ['batch', 3, imageSize, imageSize] },
    ],
    outputs,
    initializers: [
      { name: 'contrast', type: 'float32', dims: [cells, shapes.length], values: silhouetteContrast() },
      { name: 'cells_shape', type: 'int64', dims: [2], values: [0, cells] },
      { name: 'residual_dims', type: 'int64', dims: [4], values: [0, shapes.length, 1, 1] },
      { name: 'threshold', type: 'float32', dims: [], values: [0.25] },
      { name: 'nothing', type: 'float32', dims: [], values: [0] },
    ],
    nodes: [
      node('AveragePool', ['controlnet_cond'], ['blocks'], {
        kernel_shape: [blockSize, blockSize],
        strides: [blockSize, blockSize],
      }),
      node('ReduceMean', ['blocks'], ['grey'], { axes: [1], keepdims: 0 }),
      node('Reshape', ['grey', 'cells_shape'], ['grey_cells']),
      node('MatMul', ['grey_cells', 'contrast'], ['scores']),
      node('ReduceMax', ['scores'], ['best'], { axes: [1], keepdims: 1 }),
      node('Equal', ['scores', 'best'], ['is_best']),
      // A blank image matches no shape: its scores are all zero.
      node('Greater', ['scores', 'threshold'], ['clear']),
      node('And', ['is_best', 'clear'], ['chosen']),
      node('Cast', ['chosen'], ['chosen_float'], { to: 1 }),
      node('Reshape', ['chosen_float', 'residual_dims'], ['shape_one_hot']),
      node('Mul', ['shape_one_hot', 'nothing'], ['zero_residual']),
      ...outputNames.slice(0, downBlocks).map((name) => node('Identity', ['zero_residual'], [name])),
      node('Identity', ['shape_one_hot'], [outputNames[downBlocks]]),
    ],
  });
}

/** The UNet's residual inputs and the nodes that let the middle-block residual replace the prompt's shape words. */
function controlledUnetModel(): Uint8Array {
  const keep = Array.from({ length: hiddenSize }, (_, f) => (f < shapes.length ? 0 : 1));
  const embed = new Float32Array(shapes.length * hiddenSize);
  for (let k = 0; k < shapes.length; k++) embed[k * hiddenSize + k] = 1;
  return unetModel({
    inputs: [
      ...Array.from(
        { length: downBlocks },
        (_, i): ValueSpec => ({ name: `down_block_${i}`, type: 'float32', shape: residualShape }),
      ),
      { name: 'mid_block_additional_residual', type: 'float32', shape: residualShape },
    ],
    initializers: [
      { name: 'control_flat_shape', type: 'int64', dims: [2], values: [0, shapes.length] },
      { name: 'shape_embedding', type: 'float32', dims: [shapes.length, hiddenSize], values: embed },
      { name: 'non_shape_features', type: 'float32', dims: [hiddenSize], values: keep },
    ],
    nodes: [
      node('Reshape', ['mid_block_additional_residual', 'control_flat_shape'], ['control_shapes']),
      node('ReduceMax', ['control_shapes'], ['control_strength'], { axes: [1], keepdims: 1 }),
      node('Greater', ['control_strength', 'half'], ['controlled']),
      node('MatMul', ['control_shapes', 'shape_embedding'], ['control_features']),
      node('Mul', ['prompt_features', 'non_shape_features'], ['prompt_without_shapes']),
      node('Add', ['prompt_without_shapes', 'control_features'], ['controlled_features']),
      node('Where', ['controlled', 'controlled_features', 'prompt_features'], ['features']),
    ],
    features: 'features',
  });
}

/** Every file of the ControlNet variant: the world's, with the controlled UNet and the ControlNet. */
export function controlNetWorldFiles(): Map<string, Uint8Array> {
  const files = referenceWorldFiles();
  const modelIndex = JSON.parse(new TextDecoder().decode(files.get('model_index.json')));
  modelIndex._class_name = 'OnnxStableDiffusionControlNetPipeline';
  modelIndex.controlnet = ['diffusers', 'OnnxRuntimeModel'];
  files.set('model_index.json', new TextEncoder().encode(`${JSON.stringify(modelIndex, null, 2)}\n`));
  files.set('unet/model.onnx', controlledUnetModel());
  files.set('controlnet/model.onnx', controlNetModel());
  files.set(
    'controlnet/config.json',
    new TextEncoder().encode(
      `${JSON.stringify({ _class_name: 'ControlNetModel', global_pool_conditions: false }, null, 2)}\n`,
    ),
  );
  return files;
}

/** Writes the ControlNet variant under `outDir`. */
export function buildControlNetWorld(outDir: string): void {
  for (const [path, bytes] of controlNetWorldFiles()) {
    const target = join(outDir, path);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, bytes);
  }
}

/** The silhouette of `shape` as 128 × 128 RGBA pixels: white blocks of the shape on black. */
export function silhouette(shape: (typeof shapes)[number]): { width: number; height: number; data: Uint8ClampedArray } {
  const data = new Uint8ClampedArray(imageSize * imageSize * 4);
  for (let y = 0; y < imageSize; y++) {
    for (let x = 0; x < imageSize; x++) {
      const value = covers(shape, Math.floor(y / blockSize), Math.floor(x / blockSize)) ? 255 : 0;
      data.set([value, value, value, 255], (y * imageSize + x) * 4);
    }
  }
  return { width: imageSize, height: imageSize, data };
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const outDir = process.argv[2];
  if (!outDir) throw new Error('Give the output directory.');
  buildControlNetWorld(resolve(outDir));
  console.log(`reference world (ControlNet variant) written to ${resolve(outDir)}`);
}

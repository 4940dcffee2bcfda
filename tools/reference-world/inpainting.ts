/**
 * The inpainting variant of the reference world, generated at test time (it is not committed): the reference
 * world with an inpainting UNet of 9 input channels, `[latents, mask, masked-image latents]`, as diffusers'
 * `StableDiffusionInpaintPipeline` feeds them.
 *
 * The UNet is the exact denoiser of the data set restricted to the known pixels. With the mask `m` (1 = repaint)
 * and the masked image's latents `k`, it completes the input from the known pixels, `ỹ = m ⊙ y + (1 − m) ⊙ k`
 * with `y = x_t·√(1+σ²)` as in `denoiser.ts`, takes the prompt's posterior weights of the data points at `ỹ`,
 * `w_i ∝ π_i·exp(−‖ỹ − x⁽ⁱ⁾‖²/(2σ²))`, and predicts `x̂₀ = m ⊙ Σ w_i x⁽ⁱ⁾ + (1 − m) ⊙ k`, `ε̂ = (y − x̂₀)/σ`. So the
 * masked region is drawn from the pictures that agree with the known pixels and the prompt, and the known pixels
 * are kept. With an all-one mask it is the reference world's UNet, operation for operation.
 *
 *     npx tsx --conditions=source tools/reference-world/inpainting.ts <output directory>
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { encodeModel, type InitializerSpec, node } from '../onnx-graph.js';
import { referenceWorldFiles } from './build.js';
import {
  featureGroups,
  pointAttributes,
  posteriorMeanNodes,
  promptPriorNodes,
  sharedInitializers,
  sigmaNodes,
  timestepSpec,
} from './denoiser.js';
import { hiddenSize } from './text-encoder.js';
import { groupNames, latentChannels, latentSize, worldPoints } from './world.js';

/** Input channels of an SD inpainting UNet: latents, the mask, the masked image's latents. */
export const inpaintingChannels = 2 * latentChannels + 1;

const int64s = (name: string, values: readonly number[]): InitializerSpec => ({
  name,
  type: 'int64',
  dims: [values.length],
  values,
});

/**
 * `unet/model.onnx` of the variant: `sample` float32 `[B, 9, 16, 16]`, `timestep`, `encoder_hidden_states` as
 * for the reference world's UNet → `out_sample` float32 `[B, 4, 16, 16]`.
 */
export function inpaintingUnetModel(): Uint8Array {
  const c = latentChannels;
  return encodeModel({
    name: 'reference_world_inpainting_unet',
    inputs: [
      { name: 'sample', type: 'float32', shape: ['batch', inpaintingChannels, latentSize, latentSize] },
      timestepSpec,
      { name: 'encoder_hidden_states', type: 'float32', shape: ['batch', 'sequence', hiddenSize] },
    ],
    outputs: [{ name: 'out_sample', type: 'float32', shape: ['batch', c, latentSize, latentSize] }],
    initializers: [
      ...sharedInitializers(),
      { name: 'point_attributes', type: 'float32', dims: [hiddenSize, worldPoints.length], values: pointAttributes() },
      { name: 'feature_groups', type: 'float32', dims: [hiddenSize, groupNames.length], values: featureGroups() },
      int64s('latents_start', [0]),
      int64s('mask_start', [c]),
      int64s('known_start', [c + 1]),
      int64s('known_end', [inpaintingChannels]),
    ],
    nodes: [
      node('Slice', ['sample', 'latents_start', 'mask_start', 'axis_1'], ['noisy']),
      node('Slice', ['sample', 'mask_start', 'known_start', 'axis_1'], ['mask']),
      node('Slice', ['sample', 'known_start', 'known_end', 'axis_1'], ['known']),
      node(
        'Concat',
        Array.from({ length: c }, () => 'mask'),
        ['mask_per_channel'],
        { axis: 1 },
      ),
      node('Reshape', ['noisy', 'flat_shape'], ['noisy_flat']),
      node('Reshape', ['mask_per_channel', 'flat_shape'], ['repaint']),
      node('Reshape', ['known', 'flat_shape'], ['known_flat']),
      ...sigmaNodes(),
      node('Mul', ['noisy_flat', 'rescale'], ['y']),
      // ỹ = m ⊙ y + (1 − m) ⊙ k
      node('Sub', ['one', 'repaint'], ['keep']),
      node('Mul', ['repaint', 'y'], ['y_repainted']),
      node('Mul', ['keep', 'known_flat'], ['known_kept']),
      node('Add', ['y_repainted', 'known_kept'], ['completed']),
      node('Unsqueeze', ['completed', 'axis_1'], ['completed_column']),
      node('Sub', ['completed_column', 'data_latents'], ['offsets']),
      node('Mul', ['offsets', 'offsets'], ['offsets_sq']),
      node('ReduceSum', ['offsets_sq', 'axis_2'], ['sq_distances'], { keepdims: 0 }),
      node('Mul', ['sq_distances', 'logit_per_sq_distance'], ['logits']),
      ...promptPriorNodes(),
      ...posteriorMeanNodes('prompt', 'prompt_allows'),
      // x̂₀ = m ⊙ x̂₀_prompt + (1 − m) ⊙ k, ε̂ = (y − x̂₀)/σ
      node('Mul', ['repaint', 'prompt_x0'], ['x0_repainted']),
      node('Add', ['x0_repainted', 'known_kept'], ['x0']),
      node('Sub', ['y', 'x0'], ['residual']),
      node('Div', ['residual', 'sigma'], ['epsilon_flat']),
      node('Shape', ['noisy'], ['noisy_shape']),
      node('Reshape', ['epsilon_flat', 'noisy_shape'], ['out_sample']),
    ],
  });
}

const json = (value: unknown): Uint8Array => new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`);
const decodeJson = (bytes: Uint8Array | undefined): Record<string, unknown> =>
  JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;

/** Every file of the inpainting variant: the reference world's, with the inpainting UNet and pipeline class. */
export function inpaintingWorldFiles(): Map<string, Uint8Array> {
  const files = referenceWorldFiles();
  const modelIndex = decodeJson(files.get('model_index.json'));
  files.set('model_index.json', json({ ...modelIndex, _class_name: 'OnnxStableDiffusionInpaintPipeline' }));
  files.set('unet/model.onnx', inpaintingUnetModel());
  const unetConfig = decodeJson(files.get('unet/config.json'));
  files.set('unet/config.json', json({ ...unetConfig, in_channels: inpaintingChannels }));
  return files;
}

/** Writes every file of {@link inpaintingWorldFiles} under `outDir`. */
export function buildInpaintingWorld(outDir: string): void {
  for (const [path, bytes] of inpaintingWorldFiles()) {
    const target = join(outDir, path);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, bytes);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  if (process.argv[2] === undefined) throw new Error('Give the output directory.');
  buildInpaintingWorld(resolve(process.argv[2]));
  console.log(`inpainting reference world written to ${resolve(process.argv[2])}`);
}

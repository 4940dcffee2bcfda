/**
 * The reference world in the layout of Optimum's SDXL export, generated at test time (it is not embedded):
 *
 *     npx tsx --conditions=source tools/reference-world/sdxl.ts <output directory>
 *
 * Same pictures, tokenizer (twice), scheduler and VAE as `build.ts`; two text encoders and an SDXL UNet whose
 * conditioning is split so that a picture comes out right only when a pipeline assembles SDXL's inputs as
 * diffusers does:
 *
 * - `text_encoder` has the hidden states `hidden_states.0…2`; only the penultimate, `hidden_states.1`, holds the
 *   token features of `text-encoder.ts` (the others and `last_hidden_state` hold half of them, below the UNet's
 *   threshold). `text_encoder_2`'s hidden states are the negated features; its `text_embeds` is their maximum over
 *   the sequence.
 * - The UNet is the exact denoiser of `denoiser.ts`, with the prompt's shape and color read from the first
 *   encoder's half of `encoder_hidden_states` and its background from `text_embeds`, and the prompt applied only
 *   when `time_ids` are those of an uncropped 128×128 image, `(128, 128, 0, 0, 128, 128)`; otherwise it is the
 *   unconditional denoiser.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { encodeModel, node } from '../onnx-graph.js';
import { referenceWorldFiles } from './build.js';
import {
  distanceNodes,
  featureGroups,
  pointAttributes,
  posteriorMeanNodes,
  promptPriorNodes,
  sampleSpec,
  sharedInitializers,
  sigmaNodes,
  timestepSpec,
} from './denoiser.js';
import { hiddenSize, tokenFeature } from './text-encoder.js';
import { tokenizerFiles } from './tokenizer.js';
import { attributeGroupIndex, groupNames, imageSize, latentChannels, latentSize, worldPoints } from './world.js';

/** The time ids under which the UNet follows the prompt: original size, crop corner, target size. */
export const sdxlWorldTimeIds = [imageSize, imageSize, 0, 0, imageSize, imageSize];

const json = (value: unknown): Uint8Array => new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`);
const scalar = (name: string, value: number) => ({ name, type: 'float32' as const, dims: [], values: [value] });

/** The token-feature table of `text-encoder.ts`. */
function tokenTable(): { table: Float32Array; vocabSize: number } {
  const entries = Object.entries(tokenizerFiles().vocab);
  const table = new Float32Array(entries.length * hiddenSize);
  for (const [token, id] of entries) table[id * hiddenSize + tokenFeature(token)] = 1;
  return { table, vocabSize: entries.length };
}

/** A text encoder with Optimum's outputs: the features in `hidden_states.1` (first) or negated everywhere (second). */
function textEncoderModel(second: boolean): Uint8Array {
  const { table, vocabSize } = tokenTable();
  const sequence = (name: string) => ({
    name,
    type: 'float32' as const,
    shape: ['batch', 'sequence', hiddenSize] as (string | number)[],
  });
  const hiddenStates = ['hidden_states.0', 'hidden_states.1', 'hidden_states.2'];
  const pooled = {
    name: second ? 'text_embeds' : 'pooler_output',
    type: 'float32' as const,
    shape: ['batch', hiddenSize],
  };
  const other = second ? 'negated' : 'halved';
  return encodeModel({
    name: second ? 'reference_world_sdxl_text_encoder_2' : 'reference_world_sdxl_text_encoder',
    inputs: [{ name: 'input_ids', type: 'int64', shape: ['batch', 'sequence'] }],
    outputs: second
      ? [pooled, sequence('last_hidden_state'), ...hiddenStates.map(sequence)]
      : [sequence('last_hidden_state'), pooled, ...hiddenStates.map(sequence)],
    initializers: [
      { name: 'token_features', type: 'float32', dims: [vocabSize, hiddenSize], values: table },
      scalar('factor', second ? -1 : 0.5),
    ],
    nodes: [
      node('Gather', ['token_features', 'input_ids'], ['features'], { axis: 0 }),
      node('Mul', ['features', 'factor'], [other]),
      node('ReduceMax', ['features'], [pooled.name], { axes: [1], keepdims: 0 }),
      node('Identity', [other], ['last_hidden_state']),
      node('Identity', [other], ['hidden_states.0']),
      node('Identity', [second ? other : 'features'], ['hidden_states.1']),
      node('Identity', [other], ['hidden_states.2']),
    ],
  });
}

/** `[D]`: 1 on the features of the given attribute groups. */
function groupMask(groups: readonly string[]): Float32Array {
  const mask = new Float32Array(hiddenSize);
  attributeGroupIndex.forEach((g, a) => {
    if (groups.includes(groupNames[g])) mask[a] = 1;
  });
  return mask;
}

/**
 * `unet/model.onnx`: `sample`, `timestep` as the reference world's UNet, `encoder_hidden_states` `[B, 77, 30]`,
 * `text_embeds` `[B, 15]`, `time_ids` `[B, 6]` → `out_sample`, the exact ε̂ under the prompt's prior.
 */
export function sdxlUnetModel(): Uint8Array {
  const pointCount = worldPoints.length;
  return encodeModel({
    name: 'reference_world_sdxl_unet',
    inputs: [
      sampleSpec,
      timestepSpec,
      { name: 'encoder_hidden_states', type: 'float32', shape: ['batch', 'sequence', 2 * hiddenSize] },
      { name: 'text_embeds', type: 'float32', shape: ['batch', hiddenSize] },
      { name: 'time_ids', type: 'float32', shape: ['batch', sdxlWorldTimeIds.length] },
    ],
    outputs: [{ name: 'out_sample', type: 'float32', shape: ['batch', latentChannels, latentSize, latentSize] }],
    initializers: [
      ...sharedInitializers(),
      { name: 'point_attributes', type: 'float32', dims: [hiddenSize, pointCount], values: pointAttributes() },
      { name: 'feature_groups', type: 'float32', dims: [hiddenSize, groupNames.length], values: featureGroups() },
      { name: 'first_encoder_start', type: 'int64', dims: [1], values: [0] },
      { name: 'first_encoder_end', type: 'int64', dims: [1], values: [hiddenSize] },
      { name: 'shape_color_mask', type: 'float32', dims: [hiddenSize], values: groupMask(['shape', 'color']) },
      { name: 'background_mask', type: 'float32', dims: [hiddenSize], values: groupMask(['background']) },
      { name: 'expected_time_ids', type: 'float32', dims: [sdxlWorldTimeIds.length], values: sdxlWorldTimeIds },
    ],
    nodes: [
      ...sigmaNodes(),
      ...distanceNodes(),
      node('Slice', ['encoder_hidden_states', 'first_encoder_start', 'first_encoder_end', 'axis_2'], ['first_hidden']),
      node('ReduceMax', ['first_hidden'], ['hidden_features'], { axes: [1], keepdims: 0 }),
      node('Mul', ['hidden_features', 'shape_color_mask'], ['shape_color_features']),
      node('Mul', ['text_embeds', 'background_mask'], ['background_features']),
      node('Add', ['shape_color_features', 'background_features'], ['text_features']),
      node('Equal', ['time_ids', 'expected_time_ids'], ['time_id_equal']),
      node('Cast', ['time_id_equal'], ['time_id_match'], { to: 1 }),
      node('ReduceMin', ['time_id_match'], ['size_gate'], { axes: [1], keepdims: 1 }),
      node('Mul', ['text_features', 'size_gate'], ['gated_features']),
      ...promptPriorNodes('gated_features'),
      ...posteriorMeanNodes('prompt', 'prompt_allows'),
      node('Sub', ['y', 'prompt_x0'], ['residual']),
      node('Div', ['residual', 'sigma'], ['epsilon_flat']),
      node('Shape', ['sample'], ['sample_shape']),
      node('Reshape', ['epsilon_flat', 'sample_shape'], ['out_sample']),
    ],
  });
}

/** Every file of the SDXL reference world, by path relative to the model folder. */
export function sdxlReferenceWorldFiles(): Map<string, Uint8Array> {
  const files = new Map(
    [...referenceWorldFiles()].filter(
      ([path]) => !/^(text_encoder|classifier)\//.test(path) && path !== 'unet/model.onnx' && path !== 'README.md',
    ),
  );
  for (const [path, bytes] of [...files]) {
    if (path.startsWith('tokenizer/')) files.set(path.replace('tokenizer/', 'tokenizer_2/'), bytes);
  }
  const ort = ['diffusers', 'OnnxRuntimeModel'];
  files.set(
    'model_index.json',
    json({
      _class_name: 'ORTStableDiffusionXLPipeline',
      _diffusers_version: '0.30.0',
      force_zeros_for_empty_prompt: true,
      requires_aesthetics_score: false,
      scheduler: ['diffusers', 'DDIMScheduler'],
      text_encoder: ort,
      text_encoder_2: ort,
      tokenizer: ['transformers', 'CLIPTokenizer'],
      tokenizer_2: ['transformers', 'CLIPTokenizer'],
      unet: ort,
      vae_decoder: ort,
      vae_encoder: ort,
    }),
  );
  files.set('text_encoder/model.onnx', textEncoderModel(false));
  files.set('text_encoder_2/model.onnx', textEncoderModel(true));
  files.set('unet/model.onnx', sdxlUnetModel());
  return files;
}

/** Writes every file of {@link sdxlReferenceWorldFiles} under `outDir`. */
export function buildSdxlReferenceWorld(outDir: string): void {
  for (const [path, bytes] of sdxlReferenceWorldFiles()) {
    const target = join(outDir, path);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, bytes);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const outDir = process.argv[2];
  if (!outDir) throw new Error('Usage: tsx tools/reference-world/sdxl.ts <output directory>');
  buildSdxlReferenceWorld(resolve(outDir));
  console.log(`SDXL reference world written to ${outDir}`);
}

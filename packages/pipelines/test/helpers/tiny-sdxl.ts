/**
 * Writes tiny SDXL-layout repositories in Optimum's export layout for the SDXL pipeline tests: two lookup-table
 * text encoders with the real output names (`last_hidden_state`, `pooler_output` / `text_embeds`,
 * `hidden_states.0…L`) whose every output differs, so a test can tell which one the pipeline read; a UNet taking
 * `encoder_hidden_states`, `text_embeds` and `time_ids`; and tiny-sd's factor-2 VAE, whose encoder returns
 * Optimum's `latent_parameters` (mean and log-variance).
 *
 * The values, for a token id `i` at position `p` (`SEQUENCE` tokens per prompt):
 * - `text_encoder`: `E = [sin i, cos i, i/10, 1] + 0.01·p`; `hidden_states.k = (k + 1)·E` (k = 0…2),
 *   `last_hidden_state = 10·E`, `pooler_output` the mean of E over the sequence. Penultimate: `2·E`.
 * - `text_encoder_2`: `F = [cos i, i/10, 1, sin 2i, 0.5, −i/20] + 0.01·p`; `hidden_states.k = F + k` (k = 0…3,
 *   written out of order), `last_hidden_state = −F`, `text_embeds = mean(F over the sequence)·PROJECTION`.
 *   Penultimate: `F + 2`.
 * - UNet: `ε̂ = 0.5·x + 0.001·t + mean(encoder_hidden_states) + mean(text_embeds) + 0.001·mean(time_ids)` per row.
 *   The inpainting UNet takes 9 sample channels `[x, mask, masked-image latents]` and adds
 *   `0.1·mask + 0.1·masked-image latents` to ε̂ of the first four.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ElementTypeName, encodeModel, node } from '../../../../tools/onnx-graph.js';
import { SEQUENCE, tinyMerges, tinyVocab } from './tiny-sd.js';

/** Width of text_encoder's hidden states. */
export const HIDDEN_1 = 4;
/** Width of text_encoder_2's hidden states. */
export const HIDDEN_2 = 6;
/** Width of text_encoder_2's `text_embeds`. */
export const POOLED = 3;
/** text_encoder_2's projection `[HIDDEN_2, POOLED]`, row-major. */
export const PROJECTION = [1, 0, 0.5, 0, 1, 0, 0, 0, 1, 0.25, 0, 0, 0, -1, 0, 0, 0, 2];

/** text_encoder's token features of token `id` at position `p`. */
export function features1(id: number, p: number): number[] {
  return [Math.sin(id), Math.cos(id), id / 10, 1].map((v) => v + 0.01 * p);
}

/** text_encoder_2's token features of token `id` at position `p`. */
export function features2(id: number, p: number): number[] {
  return [Math.cos(id), id / 10, 1, Math.sin(2 * id), 0.5, -id / 20].map((v) => v + 0.01 * p);
}

/** How a tiny SDXL repository is laid out. */
export interface TinySdxlVariant {
  /** The refiner: only `text_encoder_2`, 5 aesthetic-score time ids, `requires_aesthetics_score`. */
  refiner?: boolean;
  /** float16 inputs and outputs of the text encoders, the UNet and the VAE decoder (Optimum's `--dtype fp16`). */
  fp16?: boolean;
  /** A VAE decoder that overflows float16 (its output is ±Inf). Implies float16 VAE I/O. */
  vaeOverflow?: boolean;
  /** `force_zeros_for_empty_prompt` in model_index.json (default: left out, which means true). */
  forceZerosForEmptyPrompt?: boolean;
  /** The pipeline class in model_index.json. */
  className?: string;
  /** A fixed UNet batch (forces two calls per guided step), or free. */
  unetBatch?: number;
  /** Components to leave out of the files while model_index.json still declares them. */
  withoutFiles?: readonly string[];
  /** An LCM-SDXL `timestep_cond` input of this width (the guidance-scale embedding), added to ε̂ through its mean. */
  timestepCond?: number;
  /** An inpainting UNet: 9 sample channels (latents, mask, masked-image latents). */
  inpainting?: boolean;
  /** The scheduler config (default: an SDXL EulerDiscrete config). */
  schedulerConfig?: Record<string, unknown>;
}

function textEncoderModel(second: boolean, fp16: boolean): Uint8Array {
  const vocabSize = Object.keys(tinyVocab).length;
  const width = second ? HIDDEN_2 : HIDDEN_1;
  const table = Array.from({ length: vocabSize }, (_, i) => (second ? features2(i, 0) : features1(i, 0))).flat();
  const positions = Array.from({ length: SEQUENCE }, (_, p) => new Array(width).fill(0.01 * p)).flat();
  const io: ElementTypeName = fp16 ? 'float16' : 'float32';
  const out = (name: string) => (fp16 ? `${name}_f32` : name);
  const layers = second ? 4 : 3;
  const hiddenNames = Array.from({ length: layers }, (_, k) => `hidden_states.${k}`);
  // Written out of layer order for the second encoder: the pipeline must sort them by their names.
  const declared = second ? [hiddenNames[3], hiddenNames[0], hiddenNames[2], hiddenNames[1]] : hiddenNames;
  const sequenceSpec = (name: string) => ({
    name,
    type: io,
    shape: ['batch', 'sequence', width] as (string | number)[],
  });
  const outputs = second
    ? [
        { name: 'text_embeds', type: io, shape: ['batch', POOLED] as (string | number)[] },
        sequenceSpec('last_hidden_state'),
        ...declared.map(sequenceSpec),
      ]
    : [
        sequenceSpec('last_hidden_state'),
        { name: 'pooler_output', type: io, shape: ['batch', width] as (string | number)[] },
        ...declared.map(sequenceSpec),
      ];
  const scalar = (name: string, value: number) => ({ name, type: 'float32' as const, dims: [], values: [value] });
  const layerNodes = hiddenNames.map((name, k) =>
    second ? node('Add', ['features', `k${k}`], [out(name)]) : node('Mul', ['features', `k${k}`], [out(name)]),
  );
  return encodeModel({
    inputs: [{ name: 'input_ids', type: 'int64', shape: ['batch', 'sequence'] }],
    outputs,
    initializers: [
      { name: 'table', type: 'float32', dims: [vocabSize, width], values: table },
      { name: 'positions', type: 'float32', dims: [SEQUENCE, width], values: positions },
      { name: 'projection', type: 'float32', dims: [HIDDEN_2, POOLED], values: PROJECTION },
      ...hiddenNames.map((_, k) => scalar(`k${k}`, second ? k : k + 1)),
      scalar('last_factor', second ? -1 : 10),
    ],
    nodes: [
      node('Gather', ['table', 'input_ids'], ['tokens'], { axis: 0 }),
      node('Add', ['tokens', 'positions'], ['features']),
      ...layerNodes,
      node('Mul', ['features', 'last_factor'], [out('last_hidden_state')]),
      node('ReduceMean', ['features'], ['mean_features'], { axes: [1], keepdims: 0 }),
      ...(second
        ? [node('MatMul', ['mean_features', 'projection'], [out('text_embeds')])]
        : [node('Identity', ['mean_features'], [out('pooler_output')])]),
      ...(fp16 ? outputs.map((o) => node('Cast', [`${o.name}_f32`], [o.name], { to: 10 })) : []),
    ],
    opset: 17,
  });
}

function unetModel(variant: TinySdxlVariant): Uint8Array {
  const batch = variant.unetBatch ?? 'batch';
  const io: ElementTypeName = variant.fp16 ? 'float16' : 'float32';
  const width = variant.refiner ? HIDDEN_2 : HIDDEN_1 + HIDDEN_2;
  const timeIds = variant.refiner ? 5 : 6;
  const f32 = (name: string) => (variant.fp16 ? `${name}_f32` : name);
  const floatInputs = ['sample', 'encoder_hidden_states', 'text_embeds', 'time_ids'];
  const slice = (from: number, to: number, output: string) => [
    node('Slice', [f32('sample'), `channel${from}`, `channel${to}`, 'axis1'], [output]),
  ];
  // The inpainting UNet reads its latents from channels [0, 4), the mask from 4 and the masked image from [5, 9).
  const inpaintingNodes = variant.inpainting
    ? [
        ...slice(0, 4, 'latents'),
        ...slice(4, 5, 'mask'),
        ...slice(5, 9, 'masked'),
        node('Add', ['mask', 'masked'], ['known']),
        node('Mul', ['known', 'tenth'], ['known_term']),
      ]
    : [];
  return encodeModel({
    inputs: [
      { name: 'sample', type: io, shape: [batch, variant.inpainting ? 9 : 4, 'height', 'width'] },
      // Optimum's refiner and base exports differ here in our fixtures to cover both timestep forms.
      variant.refiner
        ? { name: 'timestep', type: 'int64', shape: [1] }
        : { name: 'timestep', type: 'float32', shape: [] },
      { name: 'encoder_hidden_states', type: io, shape: [batch, 'sequence', width] },
      { name: 'text_embeds', type: io, shape: [batch, POOLED] },
      { name: 'time_ids', type: io, shape: [batch, timeIds] },
      ...(variant.timestepCond
        ? [{ name: 'timestep_cond', type: 'float32' as const, shape: [batch, variant.timestepCond] }]
        : []),
    ],
    outputs: [{ name: 'out_sample', type: io, shape: [batch, 4, 'height', 'width'] }],
    initializers: [
      { name: 'half', type: 'float32', dims: [], values: [0.5] },
      { name: 'milli', type: 'float32', dims: [], values: [0.001] },
      { name: 'axes23', type: 'int64', dims: [2], values: [2, 3] },
      { name: 'axis3', type: 'int64', dims: [1], values: [3] },
      ...(variant.inpainting
        ? [
            { name: 'tenth', type: 'float32' as const, dims: [], values: [0.1] },
            { name: 'axis1', type: 'int64' as const, dims: [1], values: [1] },
            ...[0, 4, 5, 9].map((c) => ({ name: `channel${c}`, type: 'int64' as const, dims: [1], values: [c] })),
          ]
        : []),
    ],
    nodes: [
      ...(variant.fp16 ? floatInputs.map((name) => node('Cast', [name], [`${name}_f32`], { to: 1 })) : []),
      ...inpaintingNodes,
      node('Mul', [variant.inpainting ? 'latents' : f32('sample'), 'half'], ['scaled']),
      node('Cast', ['timestep'], ['t'], { to: 1 }),
      node('Mul', ['t', 'milli'], ['t_term']),
      node('ReduceMean', [f32('encoder_hidden_states')], ['context'], { axes: [1, 2], keepdims: 1 }),
      node('Unsqueeze', ['context', 'axis3'], ['context4']),
      node('ReduceMean', [f32('text_embeds')], ['pooled'], { axes: [1], keepdims: 1 }),
      node('Unsqueeze', ['pooled', 'axes23'], ['pooled4']),
      node('ReduceMean', [f32('time_ids')], ['ids'], { axes: [1], keepdims: 1 }),
      node('Mul', ['ids', 'milli'], ['ids_scaled']),
      node('Unsqueeze', ['ids_scaled', 'axes23'], ['ids4']),
      node('Add', ['scaled', 't_term'], ['with_t']),
      ...(variant.inpainting ? [node('Add', ['with_t', 'known_term'], ['with_known'])] : []),
      node('Add', [variant.inpainting ? 'with_known' : 'with_t', 'context4'], ['with_context']),
      node('Add', ['with_context', 'pooled4'], ['with_pooled']),
      ...(variant.timestepCond
        ? [
            node('Add', ['with_pooled', 'ids4'], ['with_ids']),
            node('ReduceMean', ['timestep_cond'], ['cond_mean'], { axes: [1], keepdims: 1 }),
            node('Unsqueeze', ['cond_mean', 'axes23'], ['cond4']),
            node('Add', ['with_ids', 'cond4'], [f32('out_sample')]),
          ]
        : [node('Add', ['with_pooled', 'ids4'], [f32('out_sample')])]),
      ...(variant.fp16 ? [node('Cast', ['out_sample_f32'], ['out_sample'], { to: 10 })] : []),
    ],
    opset: 17,
  });
}

/** tiny-sd's decoder: the first 3 latent channels, each pixel repeated 2×2, times 0.5 (× 1e6 to overflow). */
function vaeDecoderModel(fp16: boolean, overflow: boolean): Uint8Array {
  const io: ElementTypeName = fp16 ? 'float16' : 'float32';
  return encodeModel({
    inputs: [{ name: 'latent_sample', type: io, shape: ['batch', 4, 'h', 'w'] }],
    outputs: [{ name: 'sample', type: io, shape: ['batch', 3, 'H', 'W'] }],
    initializers: [
      { name: 'starts', type: 'int64', dims: [1], values: [0] },
      { name: 'ends', type: 'int64', dims: [1], values: [3] },
      { name: 'axes', type: 'int64', dims: [1], values: [1] },
      { name: 'scales', type: 'float32', dims: [4], values: [1, 1, 2, 2] },
      { name: 'gain', type: 'float32', dims: [], values: [overflow ? 1e6 : 0.5] },
    ],
    nodes: [
      ...(fp16 ? [node('Cast', ['latent_sample'], ['latent_f32'], { to: 1 })] : []),
      node('Slice', [fp16 ? 'latent_f32' : 'latent_sample', 'starts', 'ends', 'axes'], ['rgb']),
      node('Resize', ['rgb', '', 'scales'], ['big'], { mode: 'nearest' }),
      node('Mul', ['big', 'gain'], [fp16 ? 'sample_f32' : 'sample']),
      ...(fp16 ? [node('Cast', ['sample_f32'], ['sample'], { to: 10 })] : []),
    ],
  });
}

/** The mean of the posterior: 2×2 average, ×2, and a fourth channel of the RGB mean; the log-variance is −2. */
function vaeEncoderModel(): Uint8Array {
  return encodeModel({
    inputs: [{ name: 'sample', type: 'float32', shape: ['batch', 3, 'H', 'W'] }],
    outputs: [{ name: 'latent_parameters', type: 'float32', shape: ['batch', 8, 'h', 'w'] }],
    initializers: [
      { name: 'two', type: 'float32', dims: [], values: [2] },
      { name: 'zero', type: 'float32', dims: [], values: [0] },
      { name: 'log_variance', type: 'float32', dims: [], values: [-2] },
    ],
    nodes: [
      node('AveragePool', ['sample'], ['small'], { kernel_shape: [2, 2], strides: [2, 2] }),
      node('Mul', ['small', 'two'], ['rgb']),
      node('ReduceMean', ['rgb'], ['fourth'], { axes: [1], keepdims: 1 }),
      node('Concat', ['rgb', 'fourth'], ['mean'], { axis: 1 }),
      node('Mul', ['mean', 'zero'], ['zeros']),
      node('Add', ['zeros', 'log_variance'], ['logvar']),
      node('Concat', ['mean', 'logvar'], ['latent_parameters'], { axis: 1 }),
    ],
  });
}

/** The log-variance of {@link vaeEncoderModel}'s posterior. */
export const ENCODER_LOG_VARIANCE = -2;
/** The latent scaling factor of the tiny VAE config (SDXL's real one is 0.13025). */
export const SCALING_FACTOR = 0.5;

/** The files of a tiny SDXL repository, by relative path. */
export function tinySdxlFiles(variant: TinySdxlVariant = {}): Record<string, Uint8Array | string> {
  const json = (value: unknown) => JSON.stringify(value, null, 2);
  const fp16 = variant.fp16 ?? false;
  const ort = ['diffusers', 'OnnxRuntimeModel'];
  const index: Record<string, unknown> = {
    _class_name:
      variant.className ?? (variant.refiner ? 'ORTStableDiffusionXLImg2ImgPipeline' : 'ORTStableDiffusionXLPipeline'),
    _diffusers_version: '0.30.0',
    scheduler: ['diffusers', 'EulerDiscreteScheduler'],
    text_encoder: variant.refiner ? [null, null] : ort,
    text_encoder_2: ort,
    tokenizer: variant.refiner ? [null, null] : ['transformers', 'CLIPTokenizer'],
    tokenizer_2: ['transformers', 'CLIPTokenizer'],
    unet: ort,
    vae_decoder: ort,
    vae_encoder: ort,
    requires_aesthetics_score: variant.refiner ?? false,
  };
  if (variant.forceZerosForEmptyPrompt !== undefined) {
    index.force_zeros_for_empty_prompt = variant.forceZerosForEmptyPrompt;
  }
  const tokenizerFiles = (folder: string) => ({
    [`${folder}/vocab.json`]: json(tinyVocab),
    [`${folder}/merges.txt`]: tinyMerges,
    [`${folder}/tokenizer_config.json`]: json({ model_max_length: SEQUENCE, pad_token: '<|endoftext|>' }),
  });
  const vaeConfig = json({ block_out_channels: [8, 8], scaling_factor: SCALING_FACTOR, force_upcast: true });
  const files: Record<string, Uint8Array | string> = {
    'model_index.json': json(index),
    'scheduler/scheduler_config.json': json(
      variant.schedulerConfig ?? {
        _class_name: 'EulerDiscreteScheduler',
        beta_schedule: 'scaled_linear',
        beta_start: 0.00085,
        beta_end: 0.012,
        num_train_timesteps: 1000,
        steps_offset: 1,
        timestep_spacing: 'leading',
        prediction_type: 'epsilon',
        interpolation_type: 'linear',
      },
    ),
    ...(variant.refiner
      ? {}
      : { ...tokenizerFiles('tokenizer'), 'text_encoder/model.onnx': textEncoderModel(false, fp16) }),
    ...tokenizerFiles('tokenizer_2'),
    'text_encoder_2/model.onnx': textEncoderModel(true, fp16),
    'unet/model.onnx': unetModel(variant),
    'unet/config.json': json({
      sample_size: 4,
      in_channels: variant.inpainting ? 9 : 4,
      addition_embed_type: 'text_time',
    }),
    'vae_decoder/model.onnx': vaeDecoderModel(fp16 || (variant.vaeOverflow ?? false), variant.vaeOverflow ?? false),
    'vae_decoder/config.json': vaeConfig,
    'vae_encoder/model.onnx': vaeEncoderModel(),
    'vae_encoder/config.json': vaeConfig,
  };
  for (const component of variant.withoutFiles ?? []) {
    for (const path of Object.keys(files)) if (path.startsWith(`${component}/`)) delete files[path];
  }
  return files;
}

/** Writes a tiny SDXL repository into a new temporary directory and returns its path. */
export function writeTinySdxl(variant: TinySdxlVariant = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'denoise-tiny-sdxl-'));
  for (const [path, content] of Object.entries(tinySdxlFiles(variant))) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  return dir;
}

/**
 * Writes tiny Stable Diffusion–layout repositories for the pipeline tests: a hand-made CLIP vocabulary, a
 * lookup-table text encoder, a UNet of a few elementwise ops (its output depends on the sample, the timestep
 * and the text embeddings, so guidance and conditioning are visible), and a factor-2 VAE.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ElementTypeName, encodeModel, node } from '../../../../tools/onnx-graph.js';

/** A CLIP vocabulary small enough to read: letters, a few words, the two special tokens. */
export const tinyVocab: Record<string, number> = {
  a: 0,
  c: 1,
  t: 2,
  d: 3,
  o: 4,
  g: 5,
  'a</w>': 6,
  'c</w>': 7,
  't</w>': 8,
  'd</w>': 9,
  'o</w>': 10,
  'g</w>': 11,
  'at</w>': 12,
  'cat</w>': 13,
  'og</w>': 14,
  'dog</w>': 15,
  '<|startoftext|>': 16,
  '<|endoftext|>': 17,
};
/** The BPE merges of {@link tinyVocab}. */
export const tinyMerges = '#version: 0.2\na t</w>\nc at</w>\no g</w>\nd og</w>\n';

/** Sequence length and embedding width of the tiny text encoder. */
export const SEQUENCE = 8;
/** Embedding width. */
export const HIDDEN = 4;

/** How a tiny repository's graphs declare their inputs (the tokenizer is always vocab.json + merges.txt). */
export interface TinySdVariant {
  /** `input_ids` element type (diffusers' export: int32; Optimum: int64). */
  inputIds?: 'int32' | 'int64';
  /** `timestep` element type and shape. */
  timestep?: { type: ElementTypeName; shape: (number | string)[] };
  /** A fixed UNet batch (forces two calls for classifier-free guidance), or free. */
  unetBatch?: number;
  /** A UNet with float16 sample, embeddings and output (timestep per {@link timestep}). */
  fp16?: boolean;
  /** An LCM-style `timestep_cond` input of this width (the guidance-scale embedding), added to ε̂ through its mean. */
  timestepCond?: number;
  /** The text-embedding width the UNet declares (default {@link HIDDEN}). */
  hidden?: number;
  /**
   * Read the prompt from the first embedding feature alone instead of the mean over all features: a real CLIP
   * encoder ends in a LayerNorm, whose outputs average to the same value over the features for every prompt.
   */
  contextFromFirstFeature?: boolean;
  /** The pipeline class in model_index.json. */
  className?: string;
  /** The VAE decoder's upsampling factor (default 2). */
  vaeFactor?: number;
  /** Write `vae_decoder/config.json` and `vae_encoder/config.json` (default true; diffusers' converter writes none). */
  vaeConfig?: boolean;
}

function textEncoder(variant: TinySdVariant): Uint8Array {
  const vocabSize = Object.keys(tinyVocab).length;
  // Embedding of token i: [sin(i), cos(i), i/10, 1]; the position adds 0.01·p to every channel.
  const table = Array.from({ length: vocabSize }, (_, i) => [Math.sin(i), Math.cos(i), i / 10, 1]).flat();
  const positions = Array.from({ length: SEQUENCE }, (_, p) => new Array(HIDDEN).fill(0.01 * p)).flat();
  const idsType = variant.inputIds ?? 'int32';
  return encodeModel({
    inputs: [{ name: 'input_ids', type: idsType, shape: ['batch', 'sequence'] }],
    outputs: [
      { name: 'last_hidden_state', type: 'float32', shape: ['batch', 'sequence', HIDDEN] },
      { name: 'pooler_output', type: 'float32', shape: ['batch', HIDDEN] },
    ],
    initializers: [
      { name: 'table', type: 'float32', dims: [vocabSize, HIDDEN], values: table },
      { name: 'positions', type: 'float32', dims: [SEQUENCE, HIDDEN], values: positions },
    ],
    nodes: [
      node('Cast', ['input_ids'], ['ids64'], { to: 7 }),
      node('Gather', ['table', 'ids64'], ['tokens'], { axis: 0 }),
      node('Add', ['tokens', 'positions'], ['last_hidden_state']),
      node('ReduceMean', ['last_hidden_state'], ['pooler_output'], { axes: [1], keepdims: 0 }),
    ],
    opset: 17,
  });
}

/**
 * ε̂(x, t, c) = 0.5·x + 0.001·t + mean(c) — mean over the sequence and width of the embeddings, one scalar per
 * batch item — so the prediction moves with the prompt.
 */
export function tinyUnetModel(variant: TinySdVariant = {}): Uint8Array {
  const batch = variant.unetBatch ?? 'batch';
  const timestep = variant.timestep ?? { type: 'int64', shape: [1] };
  const io = variant.fp16 ? 'float16' : 'float32';
  // An fp16 export computes in float32 between a Cast on each float input and one on the output.
  const f32 = (name: string) => (variant.fp16 ? `${name}_f32` : name);
  const result = variant.fp16 ? 'out_f32' : 'out_sample';
  return encodeModel({
    inputs: [
      { name: 'sample', type: io, shape: [batch, 4, 'height', 'width'] },
      { name: 'timestep', type: timestep.type, shape: timestep.shape },
      { name: 'encoder_hidden_states', type: io, shape: [batch, 'sequence', variant.hidden ?? HIDDEN] },
      ...(variant.timestepCond
        ? [{ name: 'timestep_cond', type: 'float32' as const, shape: [batch, variant.timestepCond] }]
        : []),
    ],
    outputs: [{ name: 'out_sample', type: io, shape: [batch, 4, 'height', 'width'] }],
    initializers: [
      { name: 'half', type: 'float32', dims: [], values: [0.5] },
      { name: 'milli', type: 'float32', dims: [], values: [0.001] },
      { name: 'axis3', type: 'int64', dims: [1], values: [3] },
      { name: 'axes23', type: 'int64', dims: [2], values: [2, 3] },
      { name: 'zero', type: 'int64', dims: [1], values: [0] },
      { name: 'one', type: 'int64', dims: [1], values: [1] },
      { name: 'axis2', type: 'int64', dims: [1], values: [2] },
    ],
    nodes: [
      ...(variant.fp16
        ? [
            node('Cast', ['sample'], [f32('sample')], { to: 1 }),
            node('Cast', ['encoder_hidden_states'], [f32('encoder_hidden_states')], { to: 1 }),
          ]
        : []),
      node('Mul', [f32('sample'), 'half'], ['scaled']),
      node('Cast', ['timestep'], ['t'], { to: 1 }),
      node('Mul', ['t', 'milli'], ['t_term']),
      ...(variant.contextFromFirstFeature
        ? [
            node('Slice', [f32('encoder_hidden_states'), 'zero', 'one', 'axis2'], ['first_feature']),
            node('ReduceMean', ['first_feature'], ['context'], { axes: [1, 2], keepdims: 1 }),
          ]
        : [node('ReduceMean', [f32('encoder_hidden_states')], ['context'], { axes: [1, 2], keepdims: 1 })]),
      node('Unsqueeze', ['context', 'axis3'], ['context4']),
      node('Add', ['scaled', 't_term'], ['with_t']),
      ...(variant.timestepCond
        ? [
            node('Add', ['with_t', 'context4'], ['with_context']),
            node('ReduceMean', ['timestep_cond'], ['cond_mean'], { axes: [1], keepdims: 1 }),
            node('Unsqueeze', ['cond_mean', 'axes23'], ['cond4']),
            node('Add', ['with_context', 'cond4'], [result]),
          ]
        : [node('Add', ['with_t', 'context4'], [result])]),
      ...(variant.fp16 ? [node('Cast', [result], ['out_sample'], { to: 10 })] : []),
    ],
    opset: 17,
  });
}

/**
 * Decoder: the first 3 latent channels, each pixel repeated factor×factor (2×2 by default), times 0.5; its
 * shapes are free, as in diffusers' export. Encoder: the inverse layout (factor 2).
 */
function vaeDecoder(factor = 2): Uint8Array {
  return encodeModel({
    inputs: [{ name: 'latent_sample', type: 'float32', shape: ['batch', 4, 'h', 'w'] }],
    outputs: [{ name: 'sample', type: 'float32', shape: ['batch', 3, 'H', 'W'] }],
    initializers: [
      { name: 'starts', type: 'int64', dims: [1], values: [0] },
      { name: 'ends', type: 'int64', dims: [1], values: [3] },
      { name: 'axes', type: 'int64', dims: [1], values: [1] },
      { name: 'scales', type: 'float32', dims: [4], values: [1, 1, factor, factor] },
      { name: 'half', type: 'float32', dims: [], values: [0.5] },
    ],
    nodes: [
      node('Slice', ['latent_sample', 'starts', 'ends', 'axes'], ['rgb']),
      node('Resize', ['rgb', '', 'scales'], ['big'], { mode: 'nearest' }),
      node('Mul', ['big', 'half'], ['sample']),
    ],
  });
}

function vaeEncoder(): Uint8Array {
  return encodeModel({
    inputs: [{ name: 'sample', type: 'float32', shape: ['batch', 3, 'H', 'W'] }],
    outputs: [{ name: 'latent_sample', type: 'float32', shape: ['batch', 4, 'h', 'w'] }],
    initializers: [{ name: 'two', type: 'float32', dims: [], values: [2] }],
    nodes: [
      node('AveragePool', ['sample'], ['small'], { kernel_shape: [2, 2], strides: [2, 2] }),
      node('Mul', ['small', 'two'], ['rgb']),
      node('ReduceMean', ['rgb'], ['fourth'], { axes: [1], keepdims: 1 }),
      node('Concat', ['rgb', 'fourth'], ['latent_sample'], { axis: 1 }),
    ],
  });
}

/** The files of a tiny repository, by relative path. */
export function tinySdFiles(variant: TinySdVariant = {}): Record<string, Uint8Array | string> {
  const json = (value: unknown) => JSON.stringify(value, null, 2);
  const files: Record<string, Uint8Array | string> = {
    'model_index.json': json({
      _class_name: variant.className ?? 'OnnxStableDiffusionPipeline',
      _diffusers_version: '0.30.0',
      scheduler: ['diffusers', 'DDIMScheduler'],
      text_encoder: ['diffusers', 'OnnxRuntimeModel'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      unet: ['diffusers', 'OnnxRuntimeModel'],
      vae_decoder: ['diffusers', 'OnnxRuntimeModel'],
      vae_encoder: ['diffusers', 'OnnxRuntimeModel'],
      safety_checker: [null, null],
    }),
    'scheduler/scheduler_config.json': json({
      _class_name: 'DDIMScheduler',
      beta_schedule: 'scaled_linear',
      beta_start: 0.00085,
      beta_end: 0.012,
      num_train_timesteps: 1000,
      set_alpha_to_one: false,
      steps_offset: 1,
      clip_sample: false,
    }),
    'tokenizer/vocab.json': json(tinyVocab),
    'tokenizer/merges.txt': tinyMerges,
    'tokenizer/tokenizer_config.json': json({ model_max_length: SEQUENCE, pad_token: '<|endoftext|>' }),
    'text_encoder/model.onnx': textEncoder(variant),
    'unet/model.onnx': tinyUnetModel(variant),
    'unet/config.json': json({ sample_size: 4, in_channels: 4 }),
    'vae_decoder/model.onnx': vaeDecoder(variant.vaeFactor),
    'vae_encoder/model.onnx': vaeEncoder(),
  };
  if (variant.vaeConfig ?? true) {
    const vaeConfig = json({ block_out_channels: [8, 8], scaling_factor: 0.5 });
    files['vae_decoder/config.json'] = vaeConfig;
    files['vae_encoder/config.json'] = vaeConfig;
  }
  return files;
}

/** Writes a tiny repository into a new temporary directory and returns its path. */
export function writeTinySd(variant: TinySdVariant = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'denoise-tiny-sd-'));
  for (const [path, content] of Object.entries(tinySdFiles(variant))) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  return dir;
}

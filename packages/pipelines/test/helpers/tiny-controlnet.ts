/**
 * Tiny ControlNet repositories in each exporter layout of `docs/controlnet.md`, on top of the tiny Stable Diffusion
 * repository: graph names, element types and static/free dims as the exporters write them, with a few elementwise
 * ops. The ControlNet's residual k is `(k + 1)·(mean(controlnet_cond) + mean(encoder_hidden_states))` on every
 * element (times `conditioning_scale` when the graph takes it); the UNet adds the sum of its residuals' means to
 * the tiny ε̂, or, with the ControlNet built in, `scale · mean(control image)`.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeModel, type GraphSpec, node, type ValueSpec } from '../../../../tools/onnx-graph.js';
import { HIDDEN, tinySdFiles } from './tiny-sd.js';

/** The exporter layouts of docs/controlnet.md. */
export type ControlNetFixtureLayout =
  /** Amblyopius/Stable-Diffusion-ONNX-FP16: outputs in torch's order, only the first two named; `down_block_N`. */
  | 'amblyopius'
  /** OnnxStack's converter: UNet inputs `down_block_N_additional_residual`. */
  | 'onnxstack'
  /** Export scripts that name the UNet inputs `down_block_additional_residuals_N`. */
  | 'additional-residuals'
  /** A ControlNet with named outputs and a `conditioning_scale` input. */
  | 'named-with-scale'
  /** diffusers' convert_stable_diffusion_controlnet_to_onnx.py: the ControlNet inside the UNet. */
  | 'fused-diffusers'
  /** ONNX Runtime's Stable Diffusion demo: the ControlNet inside the UNet. */
  | 'fused-onnxruntime';

/** The number of SD 1.5 down-block residuals. */
export const DOWN_BLOCKS = 12;
/** SD 1.5's residual channels, divided by 40 to keep the fixture small: 12 down blocks, then the middle block. */
export const RESIDUAL_CHANNELS = [8, 8, 8, 8, 16, 16, 16, 32, 32, 32, 32, 32, 32];

/** The UNet residual input names of a separate layout, in residual order. */
export function unetResidualInputs(layout: ControlNetFixtureLayout): string[] {
  const down = (i: number) =>
    layout === 'onnxstack'
      ? `down_block_${i}_additional_residual`
      : layout === 'additional-residuals'
        ? `down_block_additional_residuals_${i}`
        : `down_block_${i}`;
  return [...Array.from({ length: DOWN_BLOCKS }, (_, i) => down(i)), 'mid_block_additional_residual'];
}

/** The ControlNet output names of a separate layout, in residual order. */
export function controlNetOutputs(layout: ControlNetFixtureLayout): string[] {
  if (layout === 'named-with-scale') {
    return [...Array.from({ length: DOWN_BLOCKS }, (_, i) => `down_block_res_samples_${i}`), 'mid_block_res_sample'];
  }
  // torch.onnx names the outputs it was given names for and numbers the rest.
  return ['down_block_res_samples', 'mid_block_res_sample', ...Array.from({ length: 11 }, (_, i) => `${2041 + i}`)];
}

const residualSpec = (name: string, k: number): ValueSpec => ({
  name,
  type: 'float32',
  shape: [`batch_${k}`, RESIDUAL_CHANNELS[k], `height_${k}`, `width_${k}`],
});

/**
 * The graph as an fp16 export writes it (Amblyopius' `--fp16`): every float32 input and output declared float16,
 * with a Cast to float32 after each input and one back before each output around the float32 computation.
 */
function asFloat16(spec: GraphSpec): GraphSpec {
  const inner = (name: string) => `${name}__f32`;
  const floatInputs = new Set(spec.inputs.filter((i) => i.type === 'float32').map((i) => i.name));
  const floatOutputs = new Set(spec.outputs.filter((o) => o.type === 'float32').map((o) => o.name));
  const rename = (names: readonly string[] | null | undefined, set: Set<string>) =>
    (names ?? []).map((name) => (set.has(name) ? inner(name) : name));
  return {
    ...spec,
    inputs: spec.inputs.map((i) => (floatInputs.has(i.name) ? { ...i, type: 'float16' } : i)),
    outputs: spec.outputs.map((o) => (floatOutputs.has(o.name) ? { ...o, type: 'float16' } : o)),
    nodes: [
      ...[...floatInputs].map((name) => node('Cast', [name], [inner(name)], { to: 1 })),
      ...spec.nodes.map((n) => ({ ...n, input: rename(n.input, floatInputs), output: rename(n.output, floatOutputs) })),
      ...[...floatOutputs].map((name) => node('Cast', [inner(name)], [name], { to: 10 })),
    ],
  };
}

function controlNetModel(layout: ControlNetFixtureLayout, fp16: boolean): Uint8Array {
  const outputs = controlNetOutputs(layout);
  const withScale = layout === 'named-with-scale';
  return encodeGraph(fp16, {
    inputs: [
      { name: 'sample', type: 'float32', shape: ['batch', 4, 'height', 'width'] },
      { name: 'timestep', type: 'float32', shape: ['timestep_batch'] },
      { name: 'encoder_hidden_states', type: 'float32', shape: ['batch', 'sequence', HIDDEN] },
      { name: 'controlnet_cond', type: 'float32', shape: ['batch', 3, 'image_height', 'image_width'] },
      ...(withScale ? [{ name: 'conditioning_scale', type: 'float32' as const, shape: [] }] : []),
    ],
    outputs: outputs.map(residualSpec),
    initializers: [
      { name: 'zero', type: 'float32', dims: [], values: [0] },
      { name: 'first', type: 'int64', dims: [1], values: [0] },
      { name: 'second', type: 'int64', dims: [1], values: [1] },
      { name: 'channel_axis', type: 'int64', dims: [1], values: [1] },
      { name: 'axis3', type: 'int64', dims: [1], values: [3] },
      ...RESIDUAL_CHANNELS.map((channels, k) => ({
        name: `ones_${k}`,
        type: 'float32' as const,
        dims: [1, channels, 1, 1],
        values: new Array(channels).fill(k + 1),
      })),
    ],
    nodes: [
      node('ReduceMean', ['controlnet_cond'], ['cond_mean'], { axes: [1, 2, 3], keepdims: 1 }),
      node('ReduceMean', ['encoder_hidden_states'], ['text_mean3'], { axes: [1, 2], keepdims: 1 }),
      node('Unsqueeze', ['text_mean3', 'axis3'], ['text_mean']),
      node('Add', ['cond_mean', 'text_mean'], ['row_value']),
      node('Slice', ['sample', 'first', 'second', 'channel_axis'], ['sample_plane']),
      node('Mul', ['sample_plane', 'zero'], ['zero_plane']),
      ...(withScale ? [node('Mul', ['row_value', 'conditioning_scale'], ['scaled_value'])] : []),
      node('Add', ['zero_plane', withScale ? 'scaled_value' : 'row_value'], ['plane']),
      ...outputs.map((name, k) => node('Mul', ['plane', `ones_${k}`], [name])),
    ],
    opset: 17,
  });
}

/**
 * ε̂ = 0.5·x + 0.001·t + mean(c) + control, where control is Σ_k mean(residual_k) (separate layouts) or
 * `scale · mean(control image)` per row (fused layouts). `unetBatch` fixes the batch (two calls per CFG step).
 */
function unetModel(layout: ControlNetFixtureLayout, fp16: boolean, unetBatch?: number): Uint8Array {
  const batch = unetBatch ?? 'batch';
  const fused = layout === 'fused-diffusers' || layout === 'fused-onnxruntime';
  const residuals = fused ? [] : unetResidualInputs(layout);
  const imageInput = layout === 'fused-diffusers' ? 'controlnet_conds' : 'controlnet_images';
  const scaleInput = layout === 'fused-diffusers' ? 'conditioning_scales' : 'controlnet_scales';
  const controlInputs: ValueSpec[] = fused
    ? [
        { name: imageInput, type: 'float32', shape: [1, batch, 3, 'image_height', 'image_width'] },
        { name: scaleInput, type: 'float32', shape: layout === 'fused-diffusers' ? [1, 1] : [1] },
      ]
    : residuals.map((name, k) => ({
        ...residualSpec(name, k),
        shape: [batch, ...residualSpec(name, k).shape.slice(1)],
      }));
  const controlNodes = fused
    ? [
        node('Squeeze', [imageInput, 'first'], ['images']),
        node('ReduceMean', ['images'], ['image_mean'], { axes: [1, 2, 3], keepdims: 1 }),
        node('ReduceMean', [scaleInput], ['scale'], { keepdims: 0 }),
        node('Mul', ['image_mean', 'scale'], ['control']),
      ]
    : [
        ...residuals.map((name, k) => node('ReduceMean', [name], [`mean_${k}`], { axes: [1, 2, 3], keepdims: 1 })),
        node(
          'Sum',
          residuals.map((_, k) => `mean_${k}`),
          ['control'],
        ),
      ];
  return encodeGraph(fp16, {
    inputs: [
      { name: 'sample', type: 'float32', shape: [batch, 4, 'height', 'width'] },
      { name: 'timestep', type: 'float32', shape: ['timestep_batch'] },
      { name: 'encoder_hidden_states', type: 'float32', shape: [batch, 'sequence', HIDDEN] },
      ...controlInputs,
    ],
    outputs: [{ name: fused ? 'noise_pred' : 'out_sample', type: 'float32', shape: [batch, 4, 'height', 'width'] }],
    initializers: [
      { name: 'half', type: 'float32', dims: [], values: [0.5] },
      { name: 'milli', type: 'float32', dims: [], values: [0.001] },
      { name: 'first', type: 'int64', dims: [1], values: [0] },
      { name: 'axis3', type: 'int64', dims: [1], values: [3] },
      { name: 'timestep_shape', type: 'int64', dims: [4], values: [-1, 1, 1, 1] },
    ],
    nodes: [
      node('Mul', ['sample', 'half'], ['scaled']),
      node('Reshape', ['timestep', 'timestep_shape'], ['t4']),
      node('Mul', ['t4', 'milli'], ['t_term']),
      node('ReduceMean', ['encoder_hidden_states'], ['context'], { axes: [1, 2], keepdims: 1 }),
      node('Unsqueeze', ['context', 'axis3'], ['context4']),
      node('Add', ['scaled', 't_term'], ['with_t']),
      node('Add', ['with_t', 'context4'], ['uncontrolled']),
      ...controlNodes,
      node('Add', ['uncontrolled', 'control'], [fused ? 'noise_pred' : 'out_sample']),
    ],
    opset: 17,
  });
}

function encodeGraph(fp16: boolean, spec: GraphSpec): Uint8Array {
  return encodeModel(fp16 ? asFloat16(spec) : spec);
}

/** Options of {@link writeTinyControlNet}. */
export interface TinyControlNetVariant {
  /** The exporter layout. */
  layout: ControlNetFixtureLayout;
  /** A fixed UNet (and ControlNet input) batch. */
  unetBatch?: number;
  /** `global_pool_conditions` in controlnet/config.json. */
  globalPoolConditions?: boolean;
  /** Both graphs with float16 inputs and outputs, as fp16 exports write them. */
  fp16?: boolean;
  /** The pipeline class in model_index.json (default: the text-to-image class with a controlnet component). */
  className?: string;
}

/** Writes a tiny ControlNet repository into a new temporary directory and returns its path. */
export function writeTinyControlNet(variant: TinyControlNetVariant): string {
  const fused = variant.layout.startsWith('fused');
  const files = tinySdFiles({ className: variant.className ?? 'OnnxStableDiffusionPipeline' });
  const index = JSON.parse(files['model_index.json'] as string);
  if (!fused) index.controlnet = ['diffusers', 'OnnxRuntimeModel'];
  files['model_index.json'] = JSON.stringify(index, null, 2);
  files['unet/model.onnx'] = unetModel(variant.layout, variant.fp16 ?? false, variant.unetBatch);
  if (!fused) {
    files['controlnet/model.onnx'] = controlNetModel(variant.layout, variant.fp16 ?? false);
    files['controlnet/config.json'] = JSON.stringify({
      _class_name: 'ControlNetModel',
      global_pool_conditions: variant.globalPoolConditions ?? false,
    });
  }
  const dir = mkdtempSync(join(tmpdir(), 'denoise-tiny-controlnet-'));
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  return dir;
}

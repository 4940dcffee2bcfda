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
import { encodeModel, node, type ValueSpec } from '../../../../tools/onnx-graph.js';
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

function controlNetModel(layout: ControlNetFixtureLayout): Uint8Array {
  const outputs = controlNetOutputs(layout);
  const withScale = layout === 'named-with-scale';
  return encodeModel({
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
function unetModel(layout: ControlNetFixtureLayout, unetBatch?: number): Uint8Array {
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
  return encodeModel({
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

/** Options of {@link writeTinyControlNet}. */
export interface TinyControlNetVariant {
  /** The exporter layout. */
  layout: ControlNetFixtureLayout;
  /** A fixed UNet (and ControlNet input) batch. */
  unetBatch?: number;
  /** `global_pool_conditions` in controlnet/config.json. */
  globalPoolConditions?: boolean;
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
  files['unet/model.onnx'] = unetModel(variant.layout, variant.unetBatch);
  if (!fused) {
    files['controlnet/model.onnx'] = controlNetModel(variant.layout);
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

/**
 * The reference world's UNet and classifier-gradient graphs: the exact optimal denoiser of the finite data set
 * (`docs/math.md` §9), written with plain opset-17 ops.
 *
 * With `σ = √((1−ᾱ)/ᾱ)` and `y = x_t/√ᾱ = x_t·√(1+σ²)` (the input brought back to the data's scale), the
 * posterior weight of data point `x⁽ⁱ⁾` is `w_i ∝ π_i·exp(−‖y − x⁽ⁱ⁾‖²/(2σ²))`, which equals `docs/math.md`'s
 * `exp(−‖x_t − √ᾱ x⁽ⁱ⁾‖²/(2(1−ᾱ)))`. Then `x̂₀ = Σ w_i x⁽ⁱ⁾` and `ε̂ = (x_t − √ᾱ x̂₀)/√(1−ᾱ) = (y − x̂₀)/σ`.
 * Working in σ keeps every quantity finite and well conditioned down to t = 0, where `1 − ᾱ` is only 8.5e−4.
 *
 * The timestep may be fractional (sigma-based schedulers interpolate it): `log σ(t)` is interpolated linearly
 * between the integer timesteps of the training table, the inverse of diffusers' `_sigma_to_t`.
 */
import type { onnx } from 'onnx-proto';
import { encodeModel, type InitializerSpec, node, type ValueSpec } from '../onnx-graph.js';
import { trainingSigmas, trainTimesteps } from './noise-schedule.js';
import { hiddenSize } from './text-encoder.js';
import {
  attributeGroupIndex,
  attributeNames,
  groupNames,
  latentChannels,
  latentLength,
  latentSize,
  scaledLatents,
  worldPoints,
} from './world.js';

const pointCount = worldPoints.length;
const int64s = (name: string, values: readonly number[]): InitializerSpec => ({
  name,
  type: 'int64',
  dims: [values.length],
  values,
});
const scalar = (name: string, value: number): InitializerSpec => ({ name, type: 'float32', dims: [], values: [value] });

/** Constants both graphs use: the data, the σ table and small scalars and shapes. */
export function sharedInitializers(): InitializerSpec[] {
  return [
    { name: 'data_latents', type: 'float32', dims: [pointCount, latentLength], values: scaledLatents },
    { name: 'training_sigmas', type: 'float32', dims: [trainTimesteps], values: trainingSigmas() },
    scalar('zero', 0),
    scalar('one', 1),
    scalar('half', 0.5),
    scalar('minus_half', -0.5),
    scalar('last_timestep', trainTimesteps - 1),
    // Logit of an excluded data point: far below any real logit, yet finite so the softmax never sees −∞ − −∞.
    scalar('excluded_logit', -3e38),
    int64s('flat_shape', [0, latentLength]),
    int64s('column_shape', [-1, 1]),
    int64s('axis_1', [1]),
    int64s('axis_2', [2]),
  ];
}

/**
 * `timestep` `[T]` (T = 1 or B) → `sigma`, `sigma_sq` and `rescale = √(1+σ²) = 1/√ᾱ`, each `[T, 1]`.
 * Timesteps are clamped to the training range [0, 999].
 */
export function sigmaNodes(): onnx.INodeProto[] {
  return [
    node('Clip', ['timestep', 'zero', 'last_timestep'], ['t']),
    node('Floor', ['t'], ['t_low_f']),
    node('Sub', ['t', 't_low_f'], ['t_frac']),
    node('Add', ['t_low_f', 'one'], ['t_next_f']),
    node('Min', ['t_next_f', 'last_timestep'], ['t_high_f']),
    node('Cast', ['t_low_f'], ['t_low'], { to: 6 }),
    node('Cast', ['t_high_f'], ['t_high'], { to: 6 }),
    node('Log', ['training_sigmas'], ['training_log_sigmas']),
    node('Gather', ['training_log_sigmas', 't_low'], ['log_sigma_low']),
    node('Gather', ['training_log_sigmas', 't_high'], ['log_sigma_high']),
    node('Sub', ['log_sigma_high', 'log_sigma_low'], ['log_sigma_gap']),
    node('Mul', ['t_frac', 'log_sigma_gap'], ['log_sigma_offset']),
    node('Add', ['log_sigma_low', 'log_sigma_offset'], ['log_sigma']),
    node('Exp', ['log_sigma'], ['sigma_flat']),
    node('Reshape', ['sigma_flat', 'column_shape'], ['sigma']),
    node('Mul', ['sigma', 'sigma'], ['sigma_sq']),
    node('Add', ['sigma_sq', 'one'], ['one_plus_sigma_sq']),
    node('Sqrt', ['one_plus_sigma_sq'], ['rescale']),
    node('Div', ['minus_half', 'sigma_sq'], ['logit_per_sq_distance']),
  ];
}

/** `sample` `[B, 4, h, w]` → `y = sample·√(1+σ²)` flattened to `[B, 1024]` and its distances² to every point `[B, N]`. */
export function distanceNodes(): onnx.INodeProto[] {
  return [
    node('Reshape', ['sample', 'flat_shape'], ['sample_flat']),
    node('Mul', ['sample_flat', 'rescale'], ['y']),
    node('Unsqueeze', ['y', 'axis_1'], ['y_column']),
    node('Sub', ['y_column', 'data_latents'], ['offsets']),
    node('Mul', ['offsets', 'offsets'], ['offsets_sq']),
    node('ReduceSum', ['offsets_sq', 'axis_2'], ['sq_distances'], { keepdims: 0 }),
    node('Mul', ['sq_distances', 'logit_per_sq_distance'], ['logits']),
  ];
}

/**
 * Posterior mean `x̂₀` `[B, 1024]` named `${prefix}_x0`, over the points where `allowed` (bool `[B, N]`) holds,
 * or over all points when `allowed` is undefined. Softmax with max-subtraction.
 */
export function posteriorMeanNodes(prefix: string, allowed?: string): onnx.INodeProto[] {
  const logits = allowed ? `${prefix}_logits` : 'logits';
  return [
    ...(allowed ? [node('Where', [allowed, 'logits', 'excluded_logit'], [logits])] : []),
    node('ReduceMax', [logits], [`${prefix}_max`], { axes: [1], keepdims: 1 }),
    node('Sub', [logits, `${prefix}_max`], [`${prefix}_shifted`]),
    node('Exp', [`${prefix}_shifted`], [`${prefix}_unnormalised`]),
    node('ReduceSum', [`${prefix}_unnormalised`, 'axis_1'], [`${prefix}_total`], { keepdims: 1 }),
    node('Div', [`${prefix}_unnormalised`, `${prefix}_total`], [`${prefix}_weights`]),
    node('MatMul', [`${prefix}_weights`, 'data_latents'], [`${prefix}_x0`]),
  ];
}

/** `[D, N]`: row a marks the points that have attribute a (rows of non-attribute features are zero). */
export function pointAttributes(): Float32Array {
  const m = new Float32Array(hiddenSize * pointCount);
  worldPoints.forEach((p, i) => {
    for (const a of p.attributes) m[a * pointCount + i] = 1;
  });
  return m;
}

/** `[D, G]`: row a marks the group of attribute a. */
export function featureGroups(): Float32Array {
  const m = new Float32Array(hiddenSize * groupNames.length);
  attributeNames.forEach((_, a) => {
    m[a * groupNames.length + attributeGroupIndex[a]] = 1;
  });
  return m;
}

/**
 * The prompt's prior: point i is allowed when, in every group the prompt names at least one value of, point i's
 * value is among the named ones. Point i has one value per group, so that holds exactly when the number of its
 * attributes the prompt names equals the number of groups the prompt names. An empty prompt allows every point.
 *
 * @param features - the name of the prompt's features `[B, D]`; default: their maximum over the sequence of
 * `encoder_hidden_states`
 */
export function promptPriorNodes(features?: string): onnx.INodeProto[] {
  return [
    ...(features === undefined
      ? [node('ReduceMax', ['encoder_hidden_states'], ['prompt_features'], { axes: [1], keepdims: 0 })]
      : []),
    node('Greater', [features ?? 'prompt_features', 'half'], ['named_bool']),
    node('Cast', ['named_bool'], ['named'], { to: 1 }),
    node('MatMul', ['named', 'point_attributes'], ['named_attributes_of_point']),
    node('MatMul', ['named', 'feature_groups'], ['named_per_group']),
    node('Clip', ['named_per_group', 'zero', 'one'], ['group_named']),
    node('ReduceSum', ['group_named', 'axis_1'], ['named_groups'], { keepdims: 1 }),
    node('Sub', ['named_attributes_of_point', 'named_groups'], ['prompt_surplus']),
    node('Greater', ['prompt_surplus', 'minus_half'], ['prompt_allows']),
  ];
}

export const sampleSpec = {
  name: 'sample',
  type: 'float32',
  shape: ['batch', latentChannels, latentSize, latentSize],
} as const;
export const timestepSpec = { name: 'timestep', type: 'float32', shape: ['timestep_batch'] } as const;

/**
 * Extra inputs of a UNet variant that change the prompt's features before the prior reads them (the ControlNet
 * variant of `tools/reference-world/controlnet.ts`): `nodes` read `prompt_features` `[B, 15]` and the extra inputs
 * and write `features`.
 */
export interface UnetControl {
  /** The extra graph inputs. */
  readonly inputs: readonly ValueSpec[];
  /** Their constants. */
  readonly initializers: readonly InitializerSpec[];
  /** The nodes, run after `prompt_features` is computed. */
  readonly nodes: readonly onnx.INodeProto[];
  /** The name of the features the prior reads instead of `prompt_features`. */
  readonly features: string;
}

/**
 * `unet/model.onnx`: `sample` float32 `[B, 4, 16, 16]`, `timestep` float32 `[1]` or `[B]` (diffusers' ONNX
 * export uses float timesteps), `encoder_hidden_states` float32 `[B, 77, 15]` → `out_sample` float32
 * `[B, 4, 16, 16]`, the exact ε̂ of the data set under the prompt's prior.
 */
export function unetModel(control?: UnetControl): Uint8Array {
  return encodeModel({
    name: 'reference_world_unet',
    inputs: [
      sampleSpec,
      timestepSpec,
      { name: 'encoder_hidden_states', type: 'float32', shape: ['batch', 'sequence', hiddenSize] },
      ...(control?.inputs ?? []),
    ],
    outputs: [{ name: 'out_sample', type: 'float32', shape: ['batch', latentChannels, latentSize, latentSize] }],
    initializers: [
      ...sharedInitializers(),
      { name: 'point_attributes', type: 'float32', dims: [hiddenSize, pointCount], values: pointAttributes() },
      { name: 'feature_groups', type: 'float32', dims: [hiddenSize, groupNames.length], values: featureGroups() },
      ...(control?.initializers ?? []),
    ],
    nodes: [
      ...sigmaNodes(),
      ...distanceNodes(),
      ...(control === undefined
        ? promptPriorNodes()
        : [
            node('ReduceMax', ['encoder_hidden_states'], ['prompt_features'], { axes: [1], keepdims: 0 }),
            ...control.nodes,
            ...promptPriorNodes(control.features),
          ]),
      ...posteriorMeanNodes('prompt', 'prompt_allows'),
      // ε̂ = (y − x̂₀)/σ
      node('Sub', ['y', 'prompt_x0'], ['residual']),
      node('Div', ['residual', 'sigma'], ['epsilon_flat']),
      node('Shape', ['sample'], ['sample_shape']),
      node('Reshape', ['epsilon_flat', 'sample_shape'], ['out_sample']),
    ],
  });
}

/** `[L, N]`: row y marks the data points of label y (one each in this world). */
function labelPoints(): Float32Array {
  const m = new Float32Array(pointCount * pointCount);
  for (let i = 0; i < pointCount; i++) m[i * pointCount + i] = 1;
  return m;
}

/**
 * `classifier/model.onnx`: `sample`, `timestep` as for the UNet and `class_labels` int64 `[B]` (indices into the
 * labels of `classifier/config.json`) → `gradient` float32 `[B, 4, 16, 16]` = ∇ log p(y | x_t)
 * = (ε̂_uncond − ε̂_y)/√(1−ᾱ) = (x̂₀_y − x̂₀_uncond)·√(1+σ²)/σ² (`docs/math.md` §9; the y terms cancel).
 */
export function classifierModel(): Uint8Array {
  return encodeModel({
    name: 'reference_world_classifier_gradient',
    inputs: [sampleSpec, timestepSpec, { name: 'class_labels', type: 'int64', shape: ['batch'] }],
    outputs: [{ name: 'gradient', type: 'float32', shape: ['batch', latentChannels, latentSize, latentSize] }],
    initializers: [
      ...sharedInitializers(),
      { name: 'label_points', type: 'float32', dims: [pointCount, pointCount], values: labelPoints() },
    ],
    nodes: [
      ...sigmaNodes(),
      ...distanceNodes(),
      node('Gather', ['label_points', 'class_labels'], ['label_membership'], { axis: 0 }),
      node('Greater', ['label_membership', 'half'], ['label_allows']),
      ...posteriorMeanNodes('uncond'),
      ...posteriorMeanNodes('label', 'label_allows'),
      node('Sub', ['label_x0', 'uncond_x0'], ['x0_shift']),
      node('Div', ['rescale', 'sigma_sq'], ['gradient_scale']),
      node('Mul', ['x0_shift', 'gradient_scale'], ['gradient_flat']),
      node('Shape', ['sample'], ['sample_shape']),
      node('Reshape', ['gradient_flat', 'sample_shape'], ['gradient']),
    ],
  });
}

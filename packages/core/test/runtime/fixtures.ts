/**
 * Fixture ONNX graphs and diffusers-layout repositories for the runtime tests, written with tools/onnx-graph.ts.
 * Every graph computes something with a closed form so that tests can assert exact outputs.
 */
import onnxProto from 'onnx-proto';
import { ElementType, encodeModel, node, type ValueSpec } from '../../../../tools/onnx-graph.js';

const proto = onnxProto.onnx;

/** The weight every UNet-like fixture multiplies `sample` by; it lives in an initializer (external data when asked). */
export const UNET_SCALE = 0.5;

/** How a fixture graph declares its timestep. */
export interface TimestepVariant {
  type: 'int64' | 'float32' | 'float16';
  shape: ReadonlyArray<number | string>;
}

/**
 * A UNet-shaped graph: `out_sample = sample * 0.5 + timestep` (timestep broadcast per batch item), plus
 * `encoder_hidden_states` whose mean is added, so that every input matters. With `io: 'float16'` the sample,
 * hidden states and output are float16.
 */
export function unetGraph(timestep: TimestepVariant, io: 'float32' | 'float16' = 'float32'): Uint8Array {
  const FLOAT = ElementType.float32;
  const inputs: ValueSpec[] = [
    { name: 'sample', type: io, shape: ['batch', 2, 'height', 'width'] },
    { name: 'timestep', type: timestep.type, shape: timestep.shape },
    { name: 'encoder_hidden_states', type: io, shape: ['batch', 'sequence', 3] },
  ];
  return encodeModel({
    name: 'unet',
    inputs,
    outputs: [{ name: 'out_sample', type: io, shape: ['batch', 2, 'height', 'width'] }],
    nodes: [
      node('Cast', ['sample'], ['sample_f'], { to: FLOAT }),
      node('Cast', ['timestep'], ['timestep_f'], { to: FLOAT }),
      node('Reshape', ['timestep_f', 'per_batch'], ['timestep_b']),
      node('Cast', ['encoder_hidden_states'], ['ehs_f'], { to: FLOAT }),
      node('ReduceMean', ['ehs_f', 'ehs_axes'], ['ehs_mean'], { keepdims: 1 }),
      node('Reshape', ['ehs_mean', 'per_batch'], ['ehs_b']),
      node('Mul', ['sample_f', 'scale'], ['scaled']),
      node('Add', ['scaled', 'timestep_b'], ['with_t']),
      node('Add', ['with_t', 'ehs_b'], ['out_f']),
      node('Cast', ['out_f'], ['out_sample'], { to: ElementType[io] }),
    ],
    initializers: [
      { name: 'scale', type: 'float32', dims: [1], values: [UNET_SCALE] },
      { name: 'per_batch', type: 'int64', dims: [4], values: [-1, 1, 1, 1] },
      { name: 'ehs_axes', type: 'int64', dims: [2], values: [1, 2] },
    ],
    opset: 18,
  });
}

/** The expected UNet fixture output for one batch item. */
export function unetExpected(sample: number, timestep: number, hiddenMean: number): number {
  return sample * UNET_SCALE + timestep + hiddenMean;
}

/** A text-encoder-shaped graph: `last_hidden_state[b, s, :] = input_ids[b, s] * [1, 2, 3]`. */
export function textEncoderGraph(idsType: 'int32' | 'int64'): Uint8Array {
  return encodeModel({
    name: 'text_encoder',
    inputs: [{ name: 'input_ids', type: idsType, shape: ['batch', 'sequence'] }],
    outputs: [{ name: 'last_hidden_state', type: 'float32', shape: ['batch', 'sequence', 3] }],
    nodes: [
      node('Cast', ['input_ids'], ['ids_f'], { to: ElementType.float32 }),
      node('Unsqueeze', ['ids_f', 'last_axis'], ['ids_3d']),
      node('Mul', ['ids_3d', 'weights'], ['last_hidden_state']),
    ],
    initializers: [
      { name: 'weights', type: 'float32', dims: [3], values: [1, 2, 3] },
      { name: 'last_axis', type: 'int64', dims: [1], values: [-1] },
    ],
  });
}

/** A VAE-decoder-shaped graph: `sample = latent_sample * 2` repeated 2x2 (a scale factor of 2). */
export function vaeDecoderGraph(): Uint8Array {
  return encodeModel({
    name: 'vae_decoder',
    inputs: [{ name: 'latent_sample', type: 'float32', shape: ['batch', 2, 'h', 'w'] }],
    outputs: [{ name: 'sample', type: 'float32', shape: ['batch', 2, 'H', 'W'] }],
    nodes: [
      node('Mul', ['latent_sample', 'two'], ['doubled']),
      node('Resize', ['doubled', '', 'scales'], ['sample'], { mode: 'nearest' }),
    ],
    initializers: [
      { name: 'two', type: 'float32', dims: [1], values: [2] },
      { name: 'scales', type: 'float32', dims: [4], values: [1, 1, 2, 2] },
    ],
  });
}

/**
 * Moves every float32 initializer of `model` into an external-data file named `location`, as
 * `onnx.save(..., save_as_external_data=True)` does, and returns both files.
 */
export function withExternalData(model: Uint8Array, location: string): { model: Uint8Array; data: Uint8Array } {
  const decoded = proto.ModelProto.decode(model);
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const tensor of decoded.graph?.initializer ?? []) {
    if (tensor.dataType !== ElementType.float32 || !tensor.floatData?.length) continue;
    const bytes = new Uint8Array(Float32Array.from(tensor.floatData).buffer);
    tensor.floatData = [];
    tensor.dataLocation = proto.TensorProto.DataLocation.EXTERNAL;
    tensor.externalData = [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(bytes.length) },
    ];
    chunks.push(bytes);
    offset += bytes.length;
  }
  const data = new Uint8Array(offset);
  let at = 0;
  for (const chunk of chunks) {
    data.set(chunk, at);
    at += chunk.length;
  }
  return { model: proto.ModelProto.encode(decoded).finish(), data };
}

/** A `model_index.json` for the fixture pipeline, naming its components. */
export function modelIndexJson(components: readonly string[]): string {
  const entries = Object.fromEntries(
    components.map((c) => [c, c === 'scheduler' ? ['diffusers', 'PNDMScheduler'] : ['diffusers', 'OnnxRuntimeModel']]),
  );
  return JSON.stringify({
    _class_name: 'OnnxStableDiffusionPipeline',
    _diffusers_version: '0.30.0',
    ...entries,
    safety_checker: [null, null],
    requires_safety_checker: false,
  });
}

/** A small diffusers-layout repository: UNet with `model.onnx_data`, text encoder, VAE decoder, scheduler. */
export function tinyPipelineFiles(): Record<string, Uint8Array | string> {
  const unet = withExternalData(unetGraph({ type: 'int64', shape: ['batch'] }), 'model.onnx_data');
  return {
    'model_index.json': modelIndexJson(['unet', 'text_encoder', 'vae_decoder', 'scheduler']),
    'README.md': '# tiny',
    'unet/model.onnx': unet.model,
    'unet/model.onnx_data': unet.data,
    'unet/config.json': JSON.stringify({ in_channels: 2 }),
    'unet/diffusion_pytorch_model.safetensors': new Uint8Array(64),
    'text_encoder/model.onnx': textEncoderGraph('int32'),
    'vae_decoder/model.onnx': vaeDecoderGraph(),
    'scheduler/scheduler_config.json': JSON.stringify({ _class_name: 'PNDMScheduler', num_train_timesteps: 1000 }),
  };
}

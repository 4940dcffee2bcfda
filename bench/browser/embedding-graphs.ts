/**
 * Two graphs for measuring what keeping Stable Diffusion's text embeddings on the GPU saves per UNet call,
 * independently of the heavy UNet (whose embeddings are only 77×15): `producer` makes a `[2, 77, 768]` tensor
 * (SD 1.x's classifier-free-guidance batch of CLIP embeddings) that a session can leave on the GPU, and
 * `consumer` takes one such tensor as `encoder_hidden_states` and reduces it to its mean per row, so that its run
 * time is the upload (when fed from the CPU) plus a small, fixed amount of work.
 */
import { encodeModel, node } from '../../tools/onnx-graph.js';

/** SD 1.x's CFG batch of text embeddings: 2 rows of 77 tokens × 768 channels. */
export const SD_EMBEDDING_DIMS = [2, 77, 768] as const;

/** `offset` [1] → `encoder_hidden_states` = offset + ramp, `[2, 77, 768]`. */
export function producerGraph(): Uint8Array {
  const size = SD_EMBEDDING_DIMS.reduce((a, b) => a * b, 1);
  return encodeModel({
    name: 'sd_embedding_producer',
    opset: 17,
    inputs: [{ name: 'offset', type: 'float32', shape: [1] }],
    outputs: [{ name: 'encoder_hidden_states', type: 'float32', shape: [...SD_EMBEDDING_DIMS] }],
    initializers: [
      {
        name: 'ramp',
        type: 'float32',
        dims: [...SD_EMBEDDING_DIMS],
        values: Float32Array.from({ length: size }, (_, i) => (i % 97) / 97),
      },
    ],
    nodes: [node('Add', ['ramp', 'offset'], ['encoder_hidden_states'])],
  });
}

/** `encoder_hidden_states` `[2, 77, 768]` → `row_mean` `[2]`. */
export function consumerGraph(): Uint8Array {
  return encodeModel({
    name: 'sd_embedding_consumer',
    opset: 17,
    inputs: [{ name: 'encoder_hidden_states', type: 'float32', shape: [...SD_EMBEDDING_DIMS] }],
    outputs: [{ name: 'row_mean', type: 'float32', shape: [2] }],
    initializers: [],
    nodes: [node('ReduceMean', ['encoder_hidden_states'], ['row_mean'], { axes: [1, 2], keepdims: 0 })],
  });
}

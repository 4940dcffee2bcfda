/**
 * The reference world's fixed, linear autoencoder (factor 8, 4 latent channels, like Stable Diffusion's VAE).
 *
 * Decoder: a stride-8 ConvTranspose that turns each latent pixel into an 8 × 8 block, its color (channels 0–2)
 * plus channel 3 times the zero-mean {@link shadingPattern}. Encoder: a stride-8 Conv that is its exact left
 * inverse: the block mean recovers the color (the pattern has mean 0) and the projection on the pattern recovers
 * the shading (the colors are constant on the block, so they do not project on it). Hence `encode(decode(z)) = z`
 * for every latent, not only for the data set. Stable Diffusion's encoder samples from a Gaussian; this one
 * returns the mean (there is no variance to sample).
 */
import { encodeModel, node } from '../onnx-graph.js';
import { blockSize, latentChannels, shadingPattern } from './world.js';

const kernel = blockSize * blockSize;

/** ConvTranspose weights `[in = 4, out = 3, 8, 8]`. */
function decoderWeights(): Float32Array {
  const w = new Float32Array(latentChannels * 3 * kernel);
  for (let rgb = 0; rgb < 3; rgb++) {
    w.fill(1, (rgb * 3 + rgb) * kernel, (rgb * 3 + rgb + 1) * kernel);
    w.set(shadingPattern, (3 * 3 + rgb) * kernel);
  }
  return w;
}

/** Conv weights `[out = 4, in = 3, 8, 8]`. */
function encoderWeights(): Float32Array {
  const w = new Float32Array(latentChannels * 3 * kernel);
  let patternEnergy = 0;
  for (const v of shadingPattern) patternEnergy += v * v;
  for (let rgb = 0; rgb < 3; rgb++) {
    w.fill(1 / kernel, (rgb * 3 + rgb) * kernel, (rgb * 3 + rgb + 1) * kernel);
    // The decoder adds the pattern to all three color channels, so the projection sums over them.
    for (let k = 0; k < kernel; k++) w[(3 * 3 + rgb) * kernel + k] = shadingPattern[k] / (3 * patternEnergy);
  }
  return w;
}

const strided = { kernel_shape: [blockSize, blockSize], strides: [blockSize, blockSize] };

/** `vae_decoder/model.onnx`: `latent_sample` float32 `[B, 4, h, w]` → `sample` float32 `[B, 3, 8h, 8w]`. */
export function vaeDecoderModel(): Uint8Array {
  return encodeModel({
    name: 'reference_world_vae_decoder',
    inputs: [{ name: 'latent_sample', type: 'float32', shape: ['batch', latentChannels, 'height', 'width'] }],
    outputs: [{ name: 'sample', type: 'float32', shape: ['batch', 3, 'image_height', 'image_width'] }],
    initializers: [
      { name: 'weight', type: 'float32', dims: [latentChannels, 3, blockSize, blockSize], values: decoderWeights() },
    ],
    nodes: [node('ConvTranspose', ['latent_sample', 'weight'], ['sample'], strided)],
  });
}

/** `vae_encoder/model.onnx`: `sample` float32 `[B, 3, H, W]` → `latent_sample` float32 `[B, 4, H/8, W/8]`. */
export function vaeEncoderModel(): Uint8Array {
  return encodeModel({
    name: 'reference_world_vae_encoder',
    inputs: [{ name: 'sample', type: 'float32', shape: ['batch', 3, 'height', 'width'] }],
    outputs: [
      { name: 'latent_sample', type: 'float32', shape: ['batch', latentChannels, 'latent_height', 'latent_width'] },
    ],
    initializers: [
      { name: 'weight', type: 'float32', dims: [latentChannels, 3, blockSize, blockSize], values: encoderWeights() },
    ],
    nodes: [node('Conv', ['sample', 'weight'], ['latent_sample'], strided)],
  });
}

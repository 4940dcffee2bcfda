/**
 * The variational autoencoder of latent diffusion (Rombach et al. 2022; `docs/math.md` §8): its spatial factor and
 * latent scaling factor, and decoding/encoding through its ONNX graphs.
 */
import { ConfigError, InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import type { ModelSession } from '@denoise/core/runtime';

/** What a pipeline needs to know about its VAE. */
export interface VaeGeometry {
  /** Image pixels per latent pixel along each axis (8 for Stable Diffusion). */
  readonly scaleFactor: number;
  /** Latents are multiplied by this after encoding and divided by it before decoding (0.18215 for SD 1.x/2.x). */
  readonly scalingFactor: number;
}

/** SD 1.x/2.x's latent scaling factor, used when the VAE config does not give one. */
export const DEFAULT_SCALING_FACTOR = 0.18215;

function positiveNumber(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : undefined;
}

/**
 * The VAE geometry from its `config.json` (diffusers' `AutoencoderKL` config: `block_out_channels`,
 * `scaling_factor`), else from the decoder graph: its declared static shapes, or, when they are free (as in
 * diffusers' ONNX converter, which writes no VAE config), one run on a tiny latent whose output size gives the
 * factor. Only without a decoder does it fall back to SD's factor 8.
 *
 * @param config - the parsed VAE config, when the repository has one
 * @param decoder - the decoder session, whose shapes or one small run give the factor
 */
export async function vaeGeometry(
  config: Record<string, unknown> | undefined,
  decoder: ModelSession | undefined,
): Promise<VaeGeometry> {
  const scalingFactor = positiveNumber(config?.scaling_factor) ?? DEFAULT_SCALING_FACTOR;
  const blocks = config?.block_out_channels;
  if (blocks !== undefined) {
    if (!Array.isArray(blocks) || blocks.length === 0) {
      throw new ConfigError(
        `The VAE config's block_out_channels must be a non-empty list, got ${JSON.stringify(blocks)}.`,
      );
    }
    // Each block but the last halves the resolution (diffusers: 2 ** (len(block_out_channels) − 1)).
    return { scaleFactor: 2 ** (blocks.length - 1), scalingFactor };
  }
  if (!decoder) return { scaleFactor: 8, scalingFactor };
  const latent = decoder.inputs[0]?.shape;
  const image = decoder.outputs[0]?.shape;
  if (latent && image && typeof latent[2] === 'number' && typeof image[2] === 'number' && latent[2] > 0) {
    return { scaleFactor: image[2] / latent[2], scalingFactor };
  }
  return { scaleFactor: await measureScaleFactor(decoder), scalingFactor };
}

/** Side of the latent {@link measureScaleFactor} decodes: big enough for 3×3 convolutions, cheap for any VAE. */
const PROBE_LATENT_SIZE = 4;

/**
 * Decodes one zero latent of 4×4 and returns output width ÷ input width: the factor of a
 * decoder whose graph leaves the spatial sizes free.
 *
 * @param decoder - the `vae_decoder` session
 * @throws `ConfigError` when the output is not an integer multiple of the input
 */
export async function measureScaleFactor(decoder: ModelSession): Promise<number> {
  const input = decoder.inputs[0];
  const channels = typeof input.shape[1] === 'number' ? input.shape[1] : 4;
  const size = PROBE_LATENT_SIZE;
  const probe = new Tensor(new Float32Array(channels * size * size), [1, channels, size, size]);
  const out = await decoder.run({ [input.name]: probe });
  const [, , height, width] = out[decoder.outputs[0].name].dims;
  const factor = width / size;
  if (!Number.isInteger(factor) || factor < 1 || height !== width) {
    throw new ConfigError(
      `The VAE decoder turned a ${size}×${size} latent into ${width}×${height} pixels, not a whole multiple of ` +
        'its size; add a vae_decoder/config.json with its block_out_channels.',
    );
  }
  return factor;
}

/**
 * Checks that an image size is a positive multiple of the VAE factor and returns the latent size.
 *
 * @param height - image height in pixels
 * @param width - image width in pixels
 * @param scaleFactor - the VAE factor
 */
export function latentSize(height: number, width: number, scaleFactor: number): { height: number; width: number } {
  for (const [name, value] of [
    ['height', height],
    ['width', width],
  ] as const) {
    if (!Number.isInteger(value) || value <= 0 || value % scaleFactor !== 0) {
      const nearest = Number.isFinite(value)
        ? ` Try ${Math.max(scaleFactor, Math.round(value / scaleFactor) * scaleFactor)}.`
        : ` Pass a number such as ${64 * scaleFactor}.`;
      throw new InvalidArgumentError(
        `${name} must be a positive multiple of ${scaleFactor} (this VAE's factor), got ${value}.${nearest}`,
      );
    }
  }
  return { height: height / scaleFactor, width: width / scaleFactor };
}

/**
 * Decodes latents to images in `[-1, 1]`: `decoder(z / scaling_factor)`, one item at a time as diffusers'
 * ONNX pipeline does (decoders are the largest activations of a run).
 *
 * @param decoder - the `vae_decoder` session
 * @param latents - `[B, C, h, w]`
 * @param scalingFactor - the VAE's latent scaling factor
 */
export async function decodeLatents(
  decoder: ModelSession,
  latents: TensorLike,
  scalingFactor: number,
): Promise<Tensor> {
  const [batch, ...itemDims] = latents.dims;
  const itemSize = latents.data.length / batch;
  const unscaled = new Float32Array(itemSize);
  const outputName = decoder.outputs[0].name;
  const parts: Tensor[] = [];
  for (let b = 0; b < batch; b++) {
    const item = latents.data.subarray(b * itemSize, (b + 1) * itemSize);
    for (let i = 0; i < itemSize; i++) unscaled[i] = item[i] / scalingFactor;
    const out = await decoder.run({ [decoder.inputs[0].name]: new Tensor(unscaled, [1, ...itemDims]) });
    parts.push(out[outputName]);
  }
  return concatenate(parts);
}

/** The output of Optimum's VAE encoder export: the posterior's mean and log-variance, stacked along the channels. */
export const VAE_LATENT_PARAMETERS = 'latent_parameters';

/**
 * Encodes images in `[-1, 1]` to scaled latents: `encoder(x) · scaling_factor`. diffusers' ONNX export samples
 * the latent inside the graph; Optimum's returns the posterior `latent_parameters` (mean and log-variance), from
 * which a latent is drawn as diffusers' `latent_dist.sample(generator)` does, `mean + exp(logvar / 2)·noise` with
 * the log-variance clamped to [−30, 20] (or the mean, without a generator).
 *
 * @param encoder - the `vae_encoder` session
 * @param images - `[B, 3, H, W]`
 * @param scalingFactor - the VAE's latent scaling factor
 * @param generator - draws the posterior sample of a `latent_parameters` export
 */
export async function encodeImages(
  encoder: ModelSession,
  images: TensorLike,
  scalingFactor: number,
  generator?: { randnInto(out: Float32Array): Float32Array },
): Promise<Tensor> {
  const out = await encoder.run({ [encoder.inputs[0].name]: images });
  const name = encoder.outputs[0].name;
  const encoded = out[name];
  if (name !== VAE_LATENT_PARAMETERS) {
    for (let i = 0; i < encoded.data.length; i++) encoded.data[i] *= scalingFactor;
    return encoded;
  }
  const [batch, doubled, ...spatial] = encoded.dims;
  const channels = doubled / 2;
  const itemSize = channels * spatial.reduce((a, b) => a * b, 1);
  const latents = new Float32Array(batch * itemSize);
  const noise = generator?.randnInto(new Float32Array(latents.length));
  for (let b = 0; b < batch; b++) {
    const mean = encoded.data.subarray(2 * b * itemSize, (2 * b + 1) * itemSize);
    const logVariance = encoded.data.subarray((2 * b + 1) * itemSize, (2 * b + 2) * itemSize);
    for (let i = 0; i < itemSize; i++) {
      const std = Math.exp(0.5 * Math.min(Math.max(logVariance[i], -30), 20));
      latents[b * itemSize + i] = (mean[i] + (noise ? std * noise[b * itemSize + i] : 0)) * scalingFactor;
    }
  }
  return new Tensor(latents, [batch, channels, ...spatial]);
}

/** Stacks tensors of equal item shape along the batch axis. */
export function concatenate(parts: readonly TensorLike[]): Tensor {
  if (parts.length === 1) return parts[0] instanceof Tensor ? parts[0] : new Tensor(parts[0].data, parts[0].dims);
  const total = parts.reduce((n, p) => n + p.data.length, 0);
  const data = new Float32Array(total);
  let offset = 0;
  let batch = 0;
  for (const part of parts) {
    data.set(part.data, offset);
    offset += part.data.length;
    batch += part.dims[0];
  }
  return new Tensor(data, [batch, ...parts[0].dims.slice(1)]);
}

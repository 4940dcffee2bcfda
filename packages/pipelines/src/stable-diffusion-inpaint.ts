/**
 * Inpainting latent diffusion: repaint the white part of a mask and keep the rest of the image. Inpainting UNets
 * (9 input channels) see the mask and the masked image's latents beside the latents; any other SD UNet (4
 * channels) gets diffusers' legacy blend: after every step, the latents outside the mask are replaced by the
 * original's latents noised to the next step's level (`docs/math.md` §8).
 */
import { ConfigError, InvalidArgumentError, Tensor, type TensorLike, throwIfAborted } from '@denoise/core';
import type { ModelRepository, ModelSession } from '@denoise/core/runtime';
import type { Scheduler } from '@denoise/schedulers';
import type { LatentsAfterStep } from './denoising-loop.js';
import { imagesFromTensor, type RgbaImage, tensorFromImage } from './image.js';
import {
  binarize,
  type CropRegion,
  cropImage,
  cropPlane,
  cropRegion,
  type MaskInput,
  maskPlane,
  overlayCrop,
  type Plane,
  resizeBilinear,
  resizeNearest,
} from './mask.js';
import { DiffusionPipeline, type OutputOf, type OutputType } from './pipeline.js';
import { type GenerationPlan, LatentDiffusionPipeline, type StableDiffusionOptions } from './stable-diffusion.js';
import { checkStrength, isTensor, repeatOverBatch, strengthStartIndex } from './stable-diffusion-img2img.js';
import { encodeImages, latentSize } from './vae.js';

/** The image, mask and crop options every inpainting pipeline takes. */
export interface InpaintingImageOptions {
  /** The image to repaint: RGBA pixels, or a `[1, 3, H, W]` tensor in `[-1, 1]`. */
  image: RgbaImage | TensorLike;
  /**
   * What to repaint: white (≥ 0.5 after grayscale conversion) is repainted, black kept. RGBA pixels, a
   * single-channel image, or a `[H, W]` float tensor in `[0, 1]`; resized (nearest) to the image's size.
   */
  maskImage: MaskInput;
  /**
   * Work on the mask's bounding box grown by this many pixels (and to the aspect ratio of `width × height`)
   * instead of the whole image: the box is cut out, generated at `width × height` (default: the UNet's size),
   * and pasted back. For small masks in large images. With it, `outputType` is `'image'` or `'tensor'`.
   */
  paddingMaskCrop?: number;
  /** The processing height (default: the image's, or the UNet's with `paddingMaskCrop`); the image is resized. */
  height?: number;
  /** The processing width (default: the image's, or the UNet's with `paddingMaskCrop`). */
  width?: number;
  /** `'latent'` (not with `paddingMaskCrop`), `'tensor'` or `'image'`. */
  outputType?: OutputType;
}

/**
 * Options of {@link StableDiffusionInpaintPipeline.generate}.
 *
 * @typeParam O - what `generate` returns, from `outputType`
 */
export interface StableDiffusionInpaintOptions<O extends OutputType = 'image'>
  extends Omit<StableDiffusionOptions<O>, 'latents'>,
    InpaintingImageOptions {
  /**
   * How much to change the masked region, in `[0, 1]` (default 1): the fraction of the schedule that is run,
   * starting from the image noised to that level; 1 starts from pure noise.
   */
  strength?: number;
  /** What `generate` returns: `'image'` (default), `'tensor'` or `'latent'`. */
  outputType?: O;
}

/** The image, mask and crop of one call, at the processing size. */
export interface PreparedInpainting {
  /** The image `[1, 3, H, W]` in `[-1, 1]`. */
  readonly pixels: TensorLike;
  /** The binarised mask at the same size. */
  readonly mask: Plane;
  /** With `paddingMaskCrop`: the full image, its full mask (not binarised) and where the crop came from. */
  readonly crop?: { readonly original: TensorLike; readonly mask: Plane; readonly region: CropRegion };
}

/**
 * The channels of a UNet's `sample` input: 9 for an inpainting UNet, 4 for a text-to-image one (and when the graph
 * leaves it free).
 *
 * @param unet - the UNet session
 */
export function unetSampleChannels(unet: ModelSession): number {
  const channels = unet.inputs.find((i) => i.name === 'sample')?.shape[1];
  return typeof channels === 'number' ? channels : 4;
}

/**
 * Checks that a repository can inpaint: a VAE encoder, and a UNet of 9 sample channels or 4 (legacy blend).
 *
 * @param repositoryName - for the messages
 * @param encoder - the repository's VAE encoder, if any
 * @param unetChannels - from {@link unetSampleChannels}
 * @returns the encoder
 */
export function inpaintingEncoder(
  repositoryName: string,
  encoder: ModelSession | undefined,
  unetChannels: number,
): ModelSession {
  if (encoder === undefined) {
    throw new InvalidArgumentError(
      `${repositoryName} has no vae_encoder, which inpainting needs to encode the image and the masked ` +
        'image. Use an export that includes vae_encoder/model.onnx.',
    );
  }
  if (unetChannels !== 4 && unetChannels !== 9) {
    throw new ConfigError(
      `The UNet of ${repositoryName} takes ${unetChannels} sample channels; inpainting needs 9 ` +
        '(latents, mask, masked-image latents) or 4 (a text-to-image UNet, blended outside the mask).',
    );
  }
  return encoder;
}

/**
 * The image and its mask at the processing size: diffusers' `image_processor` and `mask_processor` (grayscale,
 * nearest resize, binarised), after the crop of `paddingMaskCrop`.
 *
 * @param options - the call's image, mask, sizes and crop padding
 * @param scaleFactor - the VAE's pixel-to-latent factor
 * @param sampleSize - the UNet's latent size, whose pixel size is the default with `paddingMaskCrop`
 */
export function prepareImageAndMask(
  options: InpaintingImageOptions,
  scaleFactor: number,
  sampleSize: number | undefined,
): PreparedInpainting {
  const { image, maskImage, paddingMaskCrop } = options;
  if (image === null || typeof image !== 'object') {
    throw new InvalidArgumentError('image must be RGBA pixels { width, height, data } or a [1, 3, H, W] tensor.');
  }
  const pixels = isTensor(image) ? image : tensorFromImage(image);
  if (pixels.dims.length !== 4 || pixels.dims[0] !== 1 || pixels.dims[1] !== 3) {
    throw new InvalidArgumentError(`An image tensor must be [1, 3, H, W] in [-1, 1], got [${pixels.dims.join(', ')}].`);
  }
  const [, , imageHeight, imageWidth] = pixels.dims;
  const fullMask = resizeNearest(maskPlane(maskImage), imageWidth, imageHeight);
  if (paddingMaskCrop === undefined) {
    const width = options.width ?? imageWidth;
    const height = options.height ?? imageHeight;
    latentSize(height, width, scaleFactor);
    return { pixels: resizeBilinear(pixels, width, height), mask: binarize(resizeNearest(fullMask, width, height)) };
  }
  if (!(Number.isInteger(paddingMaskCrop) && paddingMaskCrop >= 0)) {
    throw new InvalidArgumentError(`paddingMaskCrop must be a non-negative integer of pixels, got ${paddingMaskCrop}.`);
  }
  if (options.outputType === 'latent') {
    throw new InvalidArgumentError(
      "paddingMaskCrop pastes the generated crop back into the image, so outputType must be 'image' or 'tensor'.",
    );
  }
  const defaultSize = (sampleSize ?? 64) * scaleFactor;
  const width = options.width ?? defaultSize;
  const height = options.height ?? defaultSize;
  latentSize(height, width, scaleFactor);
  const region = cropRegion(fullMask, width, height, paddingMaskCrop);
  return {
    pixels: resizeBilinear(cropImage(pixels, region), width, height),
    mask: binarize(resizeNearest(cropPlane(fullMask, region), width, height)),
    crop: { original: pixels, mask: fullMask, region },
  };
}

/** Where an inpainting run starts and stops, and how. */
export interface InpaintingRun {
  /** The run's scheduler, after `setTimesteps` and {@link strengthStartIndex}. */
  readonly scheduler: Scheduler;
  /** The run's first index in `scheduler.timesteps`. */
  readonly startIndex: number;
  /** Where it stops (exclusive; default: the end of the schedule), SDXL's `denoisingEnd`. */
  readonly endIndex?: number;
  /** 1 starts from pure noise (diffusers' `is_strength_max`). */
  readonly strength: number;
  /** Whether to noise the image's latents (false for SDXL's `denoisingStart`: the latents are the image's). */
  readonly addNoise: boolean;
  /** The UNet's sample channels: 9 takes the mask channels, 4 gets the legacy blend. */
  readonly unetChannels: number;
  /** The VAE's latent scaling factor. */
  readonly scalingFactor: number;
}

/**
 * diffusers' inpainting `prepare_latents` and `prepare_mask_latents`: the initial latents (noise, the image's latents
 * noised to the first timestep, or those latents as they are), and what the loop adds: the mask and masked-image
 * channels of a 9-channel UNet, or the legacy blend of a 4-channel one.
 *
 * @param encoder - the VAE encoder
 * @param inputs - from {@link prepareImageAndMask}
 * @param plan - the batch's dims and the generator
 * @param run - the schedule, strength and UNet of the run
 */
export async function inpaintingLatents(
  encoder: ModelSession,
  inputs: PreparedInpainting,
  plan: GenerationPlan,
  run: InpaintingRun,
): Promise<{ latents: TensorLike; loop: { extraSampleChannels?: Tensor; afterStep?: LatentsAfterStep } }> {
  const { scheduler, startIndex } = run;
  const noise = plan.generator.randnInto(new Float32Array(plan.latentDims.reduce((a, b) => a * b, 1)));
  const fromNoise = run.addNoise && run.strength === 1;
  // The original's latents: the start of a partial run, and what the legacy blend keeps outside the mask.
  const imageLatents =
    !fromNoise || run.unetChannels === 4
      ? repeatOverBatch(await encodeImages(encoder, inputs.pixels, run.scalingFactor), plan.latentDims[0], 'images')
      : undefined;
  let latents: TensorLike;
  if (fromNoise) latents = scaledNoise(noise, plan.latentDims, scheduler.initNoiseSigma);
  else if (!run.addNoise) latents = imageLatents as Tensor;
  else {
    latents = scheduler.addNoise(
      imageLatents as Tensor,
      { data: noise, dims: plan.latentDims },
      scheduler.timesteps[startIndex],
    );
  }
  const latentMask = latentMaskOf(inputs.mask, plan);
  if (run.unetChannels === 9) {
    const masked = await maskAndMaskedImage(encoder, inputs, latentMask, plan, run.scalingFactor);
    return { latents, loop: { extraSampleChannels: masked } };
  }
  const timesteps = scheduler.timesteps.slice(startIndex, run.endIndex);
  return { latents, loop: { afterStep: legacyBlend(scheduler, timesteps, imageLatents as Tensor, noise, latentMask) } };
}

/**
 * With `paddingMaskCrop`, the generated crop pasted back into the full image through the full mask.
 *
 * @param images - the decoded crop, `[B, 3, h, w]` in `[0, 1]`
 * @param crop - from {@link prepareImageAndMask}
 * @param outputType - `'tensor'` (in `[0, 1]`) or images
 */
export function pasteCropBack<O extends OutputType>(
  images: TensorLike,
  crop: NonNullable<PreparedInpainting['crop']>,
  outputType: O | undefined,
): OutputOf<O> {
  const { original, mask, region } = crop;
  const unit = { data: original.data.map((v) => Math.min(Math.max(v / 2 + 0.5, 0), 1)), dims: original.dims };
  const pasted = overlayCrop(unit, mask, images, region);
  if (outputType === 'tensor') return { images: pasted } as OutputOf<O>;
  return { images: imagesFromTensor({ data: pasted.data.map((v) => v * 2 - 1), dims: pasted.dims }) } as OutputOf<O>;
}

/**
 * Stable Diffusion inpainting (SD 1.x/2.x): needs the repository's `vae_encoder`. Works with inpainting UNets
 * (`sample` of 9 channels) and, with diffusers' legacy blend, with any text-to-image UNet.
 *
 * @example
 * ```ts
 * const pipe = await StableDiffusionInpaintPipeline.fromPretrained('org/sd-inpainting-onnx');
 * const { images } = await pipe.generate({ prompt: 'a red sofa', image, maskImage, generator: new RandomGenerator(0) });
 * ```
 */
export class StableDiffusionInpaintPipeline extends LatentDiffusionPipeline {
  /** {@inheritDoc DiffusionPipeline.kind} */
  readonly kind = 'StableDiffusionInpaintPipeline';

  /**
   * Builds the pipeline from a repository loaded with `loadRepository`.
   *
   * @param repository - a diffusers-layout Stable Diffusion repository with a `vae_encoder`
   */
  static async fromRepository(repository: ModelRepository): Promise<StableDiffusionInpaintPipeline> {
    const scheduler = await DiffusionPipeline.loadScheduler(repository);
    const components = await LatentDiffusionPipeline.loadComponents(repository);
    return new StableDiffusionInpaintPipeline(repository, scheduler, components);
  }

  /** The channels of the UNet's `sample` input: 9 for an inpainting UNet, 4 for a text-to-image one. */
  get unetChannels(): number {
    return unetSampleChannels(this.unet);
  }

  /** The latents' channels: the UNet's, less the mask and masked-image channels of an inpainting UNet. */
  override get latentChannels(): number {
    return this.unetChannels === 9 ? 4 : this.unetChannels;
  }

  /**
   * Repaints the masked region of an image, in diffusers' `__call__` order.
   *
   * @param options - image, mask, strength, and the text-to-image options; see {@link StableDiffusionInpaintOptions}
   * @returns the images, or the latents or pixel tensor that `outputType` asks for
   */
  async generate<O extends OutputType = 'image'>(options: StableDiffusionInpaintOptions<O>): Promise<OutputOf<O>> {
    const encoder = inpaintingEncoder(this.repository.name, this.vaeEncoder, this.unetChannels);
    const strength = checkStrength(options.strength ?? 1);
    const inputs = prepareImageAndMask(options, this.vae.scaleFactor, this.sampleSize);
    const [, , height, width] = inputs.pixels.dims;
    const plan = this.checkInputs(options, { height, width });
    const scheduler = this.prepareTimesteps(options);
    const startIndex = strengthStartIndex(scheduler, strength);
    const guidances = this.prepareGuidances(options, plan.onWarning);
    const embeddings = await this.encodePrompt(options, plan, guidances, scheduler.timesteps.slice(startIndex));
    try {
      throwIfAborted(options.signal, 'encoding the image');
      const { latents, loop } = await inpaintingLatents(encoder, inputs, plan, {
        scheduler,
        startIndex,
        strength,
        addNoise: true,
        unetChannels: this.unetChannels,
        scalingFactor: this.vae.scalingFactor,
      });
      throwIfAborted(options.signal, 'encoding the masked image');
      const final = await this.denoise(
        options,
        scheduler,
        { embeddings, guidances, ...plan },
        latents,
        startIndex,
        loop,
      );
      if (inputs.crop === undefined) return await this.decode(final, options);
      const { images } = await this.decode(final, { outputType: 'tensor', signal: options.signal });
      return pasteCropBack(images, inputs.crop, options.outputType);
    } finally {
      embeddings.conditioning.dispose();
    }
  }
}

/**
 * diffusers' `prepare_mask_latents`: per row, the latent-size mask and the latents of the image with its masked
 * pixels set to 0, as the `[B, 5, h, w]` channels an inpainting UNet takes after the latents.
 */
async function maskAndMaskedImage(
  encoder: ModelSession,
  inputs: PreparedInpainting,
  latentMask: Tensor,
  plan: GenerationPlan,
  scalingFactor: number,
): Promise<Tensor> {
  const { values } = inputs.mask;
  const plane = values.length;
  const masked = new Float32Array(inputs.pixels.data.length);
  for (let i = 0; i < masked.length; i++) masked[i] = values[i % plane] < 0.5 ? inputs.pixels.data[i] : 0;
  const encoded = await encodeImages(encoder, { data: masked, dims: inputs.pixels.dims }, scalingFactor);
  const maskedLatents = repeatOverBatch(encoded, plan.latentDims[0], 'images');
  const [batch, channels, h, w] = plan.latentDims;
  const out = new Float32Array(batch * (channels + 1) * h * w);
  for (let b = 0; b < batch; b++) {
    const at = b * (channels + 1) * h * w;
    out.set(latentMask.data.subarray(b * h * w, (b + 1) * h * w), at);
    out.set(maskedLatents.data.subarray(b * channels * h * w, (b + 1) * channels * h * w), at + h * w);
  }
  return new Tensor(out, [batch, channels + 1, h, w]);
}

/** `noise · initNoiseSigma`, the start of a run of strength 1. */
function scaledNoise(noise: Float32Array, dims: readonly number[], sigma: number): TensorLike {
  if (sigma === 1) return { data: noise, dims };
  return { data: noise.map((v) => v * sigma), dims };
}

/** The binarised mask nearest-resized to the latents (PyTorch's default `interpolate`), one row per batch item. */
function latentMaskOf(mask: Plane, plan: GenerationPlan): Tensor {
  const [batch, , h, w] = plan.latentDims;
  const small = resizeNearest(mask, w, h);
  return repeatOverBatch({ data: small.values, dims: [1, 1, h, w] }, batch, 'masks');
}

/**
 * diffusers' legacy inpainting for 4-channel UNets: after step i of the run's `timesteps`, the latents outside the
 * mask become the original's latents noised to the next timestep (with the run's initial noise), or the clean
 * latents after the last step (also a `denoisingEnd` run's, as in diffusers); inside the mask they stay the model's.
 */
function legacyBlend(
  scheduler: Scheduler,
  timesteps: readonly number[],
  imageLatents: Tensor,
  noise: Float32Array,
  latentMask: Tensor,
): LatentsAfterStep {
  const noiseTensor = { data: noise, dims: imageLatents.dims };
  const [batch, channels, h, w] = imageLatents.dims;
  const plane = h * w;
  const noised = new Float32Array(imageLatents.data.length);
  return (latents, stepIndex) => {
    const known =
      stepIndex < timesteps.length - 1
        ? scheduler.addNoise(imageLatents, noiseTensor, timesteps[stepIndex + 1], noised)
        : imageLatents;
    const data = latents.data;
    for (let b = 0; b < batch; b++) {
      for (let c = 0; c < channels; c++) {
        for (let p = 0; p < plane; p++) {
          const m = latentMask.data[b * plane + p];
          const i = (b * channels + c) * plane + p;
          data[i] = (1 - m) * known.data[i] + m * data[i];
        }
      }
    }
    return latents;
  };
}

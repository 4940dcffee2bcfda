/**
 * Stable Diffusion XL inpainting: the inpainting steps of `stable-diffusion-inpaint.ts` (mask and masked-image
 * channels for a 9-channel UNet, the legacy blend otherwise, the `paddingMaskCrop` paste-back) on SDXL's
 * conditioning, with image-to-image's `denoisingStart`/`denoisingEnd` split (`stable-diffusion-xl-img2img.ts`).
 */

import { InvalidArgumentError, throwIfAborted } from '@denoise/core';
import type { ModelRepository } from '@denoise/core/runtime';
import { DiffusionPipeline, type OutputOf, type OutputType } from './pipeline.js';
import type { GenerationPlan } from './stable-diffusion.js';
import { checkStrength, strengthStartIndex } from './stable-diffusion-img2img.js';
import {
  type InpaintingImageOptions,
  inpaintingEncoder,
  inpaintingLatents,
  pasteCropBack,
  prepareImageAndMask,
  unetSampleChannels,
} from './stable-diffusion-inpaint.js';
import { LatentDiffusionXL, loadStableDiffusionXLComponents, type TimeIds } from './stable-diffusion-xl.js';
import {
  checkContinuationOptions,
  continuationEndIndex,
  imageToImageTimeIds,
  type StableDiffusionXLImg2ImgOptions,
} from './stable-diffusion-xl-img2img.js';

/**
 * Options of {@link StableDiffusionXLInpaintPipeline.generate}.
 *
 * @typeParam O - what `generate` returns, from `outputType`
 */
export interface StableDiffusionXLInpaintOptions<O extends OutputType = 'image'>
  extends Omit<StableDiffusionXLImg2ImgOptions<O>, 'image' | 'strength'>,
    InpaintingImageOptions {
  /**
   * How much to change the masked region, in `[0, 1]` (default 0.9999, diffusers' SDXL inpainting default: the
   * image noised almost to the end, so its colours still show through); 1 starts from pure noise. Ignored with
   * `denoisingStart`.
   */
  strength?: number;
  /** What `generate` returns: `'image'` (default), `'tensor'` or `'latent'`. */
  outputType?: O;
}

/**
 * Stable Diffusion XL inpainting (and the SDXL refiner's): needs the repository's `vae_encoder`. Works with
 * SDXL inpainting UNets (`sample` of 9 channels) and, with diffusers' legacy blend, with any SDXL UNet.
 *
 * @example
 * ```ts
 * const pipe = await StableDiffusionXLInpaintPipeline.fromPretrained('org/sdxl-inpainting-onnx');
 * const { images } = await pipe.generate({ prompt: 'a red sofa', image, maskImage, generator: new RandomGenerator(0) });
 * ```
 */
export class StableDiffusionXLInpaintPipeline extends LatentDiffusionXL {
  /** {@inheritDoc DiffusionPipeline.kind} */
  readonly kind = 'StableDiffusionXLInpaintPipeline';

  /**
   * Builds the pipeline from a repository loaded with `loadRepository`.
   *
   * @param repository - an SDXL repository with a `vae_encoder` (Optimum's export layout)
   */
  static async fromRepository(repository: ModelRepository): Promise<StableDiffusionXLInpaintPipeline> {
    const scheduler = await DiffusionPipeline.loadScheduler(repository);
    return new StableDiffusionXLInpaintPipeline(
      repository,
      scheduler,
      await loadStableDiffusionXLComponents(repository),
    );
  }

  /** The channels of the UNet's `sample` input: 9 for an inpainting UNet, 4 for a text-to-image one. */
  get unetChannels(): number {
    return unetSampleChannels(this.unet);
  }

  /** The latents' channels: the UNet's, less the mask and masked-image channels of an inpainting UNet. */
  override get latentChannels(): number {
    return this.unetChannels === 9 ? 4 : this.unetChannels;
  }

  protected timeIds(options: StableDiffusionXLInpaintOptions<OutputType>, plan: GenerationPlan): TimeIds {
    return imageToImageTimeIds(options, this.imageSize(plan), this.requiresAestheticsScore);
  }

  /**
   * Repaints the masked region of an image, in diffusers' `__call__` order.
   *
   * @param options - image, mask, strength or denoisingStart, and the SDXL options; see
   *   {@link StableDiffusionXLInpaintOptions}
   * @returns the images, or the latents or pixel tensor that `outputType` asks for
   */
  async generate<O extends OutputType = 'image'>(options: StableDiffusionXLInpaintOptions<O>): Promise<OutputOf<O>> {
    if (options?.image === undefined) {
      throw new InvalidArgumentError(
        `${this.repository.name} is used for inpainting: pass image and maskImage. For text-to-image, load it ` +
          'with StableDiffusionXLPipeline.',
      );
    }
    const encoder = inpaintingEncoder(this.repository.name, this.vaeEncoder, this.unetChannels);
    const strength = checkStrength(options.strength ?? 0.9999);
    checkContinuationOptions(options);
    const { denoisingStart, denoisingEnd } = options;
    const inputs = prepareImageAndMask(options, this.vae.scaleFactor, this.sampleSize);
    const [, , height, width] = inputs.pixels.dims;
    const plan = this.checkInputs(options, { height, width });
    const scheduler = this.prepareTimesteps(options);
    const startIndex = strengthStartIndex(scheduler, strength, denoisingStart);
    const endIndex = continuationEndIndex(scheduler, startIndex, denoisingEnd);
    const guidances = this.prepareGuidances(options, plan.onWarning);
    const timesteps = scheduler.timesteps.slice(startIndex, endIndex);
    const encoded = await this.encodePrompt(options, plan, guidances, timesteps);
    // As in image-to-image: a continuation's prompts all predict the same noise, which is no sign of an ignored one.
    const embeddings = denoisingStart === undefined ? encoded : { ...encoded, promptOfRow: undefined };
    try {
      throwIfAborted(options.signal, 'encoding the image');
      const { latents, loop } = await inpaintingLatents(encoder, inputs, plan, {
        scheduler,
        startIndex,
        endIndex,
        strength,
        addNoise: denoisingStart === undefined,
        unetChannels: this.unetChannels,
        scalingFactor: this.vae.scalingFactor,
      });
      throwIfAborted(options.signal, 'encoding the masked image');
      const run = { embeddings, guidances, ...plan };
      const final = await this.denoise(options, scheduler, run, latents, startIndex, { ...loop, endIndex });
      if (inputs.crop === undefined) return await this.decode(final, options);
      const { images } = await this.decode(final, { outputType: 'tensor', signal: options.signal });
      return pasteCropBack(images, inputs.crop, options.outputType);
    } finally {
      embeddings.conditioning.dispose();
    }
  }
}

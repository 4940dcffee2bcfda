/**
 * Image-to-image latent diffusion (SDEdit, Meng et al. 2022): encode an image, noise it to the timestep that
 * `strength` selects, and denoise from there with the text-to-image machinery.
 */
import { InvalidArgumentError, type TensorLike, throwIfAborted } from '@denoise/core';
import type { ModelRepository, ModelSession } from '@denoise/core/runtime';
import type { Scheduler } from '@denoise/schedulers';
import { type RgbaImage, tensorFromImage } from './image.js';
import { DiffusionPipeline, type OutputOf, type OutputType } from './pipeline.js';
import { type GenerationPlan, LatentDiffusionPipeline, type StableDiffusionOptions } from './stable-diffusion.js';
import { concatenate, encodeImages } from './vae.js';

/**
 * Options of {@link StableDiffusionImg2ImgPipeline.generate}.
 *
 * @typeParam O - what `generate` returns, from `outputType`
 */
export interface StableDiffusionImg2ImgOptions<O extends OutputType = 'image'>
  extends Omit<StableDiffusionOptions<O>, 'height' | 'width' | 'latents'> {
  /** The starting image: RGBA pixels, or a `[1, 3, H, W]` tensor in `[-1, 1]`; H and W multiples of the VAE factor. */
  image: RgbaImage | TensorLike;
  /**
   * How much to change the image, in `[0, 1]` (default 0.8): the fraction of the schedule that is run, starting
   * from the image noised to that level. 1 ignores the image's content.
   */
  strength?: number;
}

function isTensor(image: RgbaImage | TensorLike): image is TensorLike {
  return image.data instanceof Float32Array && 'dims' in image;
}

/** Stable Diffusion image-to-image: needs the repository's `vae_encoder`. */
export class StableDiffusionImg2ImgPipeline extends LatentDiffusionPipeline {
  /** {@inheritDoc DiffusionPipeline.kind} */
  readonly kind = 'StableDiffusionImg2ImgPipeline';

  /**
   * Builds the pipeline from a repository loaded with `loadRepository`.
   *
   * @param repository - a diffusers-layout Stable Diffusion repository with a `vae_encoder`
   */
  static async fromRepository(repository: ModelRepository): Promise<StableDiffusionImg2ImgPipeline> {
    const scheduler = await DiffusionPipeline.loadScheduler(repository);
    const components = await LatentDiffusionPipeline.loadComponents(repository);
    return new StableDiffusionImg2ImgPipeline(repository, scheduler, components);
  }

  /**
   * Generates images from a starting image and prompts, in diffusers' `__call__` order.
   *
   * @param options - image, strength, and the text-to-image options; see {@link StableDiffusionImg2ImgOptions}
   * @returns the images, or the latents or pixel tensor that `outputType` asks for
   */
  async generate<O extends OutputType = 'image'>(options: StableDiffusionImg2ImgOptions<O>): Promise<OutputOf<O>> {
    const encoder = this.vaeEncoder;
    if (encoder === undefined) {
      throw new InvalidArgumentError(`${this.repository.name} has no vae_encoder, which image-to-image needs.`);
    }
    const strength = options.strength ?? 0.8;
    if (!(strength >= 0 && strength <= 1)) {
      throw new InvalidArgumentError(`strength must be in [0, 1], got ${strength}.`);
    }
    const pixels = isTensor(options.image) ? options.image : tensorFromImage(options.image);
    const [, , height, width] = pixels.dims;
    const plan = this.checkInputs(options, { height, width });
    const scheduler = this.prepareTimesteps(options);
    const startIndex = strengthStartIndex(scheduler, strength);
    const guidances = this.prepareGuidances(options, plan.onWarning);
    const embeddings = await this.encodePrompt(options, plan, guidances, scheduler.timesteps.slice(startIndex));
    try {
      throwIfAborted(options.signal, 'encoding the image');
      const latents = await this.noisedImageLatents(encoder, pixels, plan, scheduler, startIndex);
      const final = await this.denoise(options, scheduler, { embeddings, guidances, ...plan }, latents, startIndex);
      return await this.decode(final, options);
    } finally {
      embeddings.dispose();
    }
  }

  /** diffusers' `prepare_latents` for image-to-image: the image's latents, one per row, noised to the first timestep. */
  private async noisedImageLatents(
    encoder: ModelSession,
    pixels: TensorLike,
    plan: GenerationPlan,
    scheduler: Scheduler,
    startIndex: number,
  ): Promise<TensorLike> {
    const encoded = await encodeImages(encoder, pixels, this.vae.scalingFactor);
    const batch = plan.latentDims[0];
    if (batch % encoded.dims[0] !== 0) {
      throw new InvalidArgumentError(`Cannot spread ${encoded.dims[0]} images over a batch of ${batch}.`);
    }
    const imageLatents = concatenate(
      Array.from({ length: batch }, (_, b) => {
        const item = b % encoded.dims[0];
        const size = encoded.data.length / encoded.dims[0];
        return { data: encoded.data.subarray(item * size, (item + 1) * size), dims: [1, ...encoded.dims.slice(1)] };
      }),
    );
    const noise = plan.generator.randnInto(new Float32Array(imageLatents.data.length));
    return scheduler.addNoise(imageLatents, { data: noise, dims: imageLatents.dims }, scheduler.timesteps[startIndex]);
  }
}

/**
 * Where a run of `strength` starts in the schedule: diffusers runs the last ⌊n·strength⌋ of its n steps, and tells
 * sigma schedulers where that is.
 */
function strengthStartIndex(scheduler: Scheduler, strength: number): number {
  const steps = scheduler.numInferenceSteps ?? scheduler.timesteps.length;
  const initSteps = Math.min(Math.floor(steps * strength), steps);
  const startIndex = Math.max(steps - initSteps, 0) * scheduler.order;
  if (startIndex >= scheduler.timesteps.length) {
    throw new InvalidArgumentError(
      `strength ${strength} with ${steps} steps leaves no step to run; raise strength or numInferenceSteps.`,
    );
  }
  scheduler.setBeginIndex(startIndex);
  return startIndex;
}

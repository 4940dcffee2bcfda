/**
 * Image-to-image latent diffusion (SDEdit, Meng et al. 2022): encode an image, noise it to the timestep that
 * `strength` selects, and denoise from there with the text-to-image machinery.
 */
import { InvalidArgumentError, type Tensor, type TensorLike, throwIfAborted } from '@denoise/core';
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

/** Whether an image input is a tensor rather than RGBA pixels. */
export function isTensor(image: RgbaImage | TensorLike): image is TensorLike {
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
    const strength = checkStrength(options.strength);
    const { tensor: pixels, height, width } = imageInput(options.image, this.latentChannels, this.vae.scaleFactor);
    const plan = this.checkInputs(options, { height, width });
    const scheduler = this.prepareTimesteps(options);
    const startIndex = strengthStartIndex(scheduler, strength);
    const guidances = this.prepareGuidances(options, plan.onWarning);
    const embeddings = await this.encodePrompt(options, plan, guidances, scheduler.timesteps.slice(startIndex));
    try {
      throwIfAborted(options.signal, 'encoding the image');
      const latents = await imageToImageLatents(pixels, encoder, this.vae.scalingFactor, plan, {
        scheduler,
        startIndex,
      });
      const final = await this.denoise(options, scheduler, { embeddings, guidances, ...plan }, latents, startIndex);
      return await this.decode(final, options);
    } finally {
      embeddings.conditioning.dispose();
    }
  }
}

/**
 * An image-to-image input as a tensor, and the size of the image it stands for: RGBA pixels are converted; a
 * tensor with the UNet's latent channels (not 3) is latents, whose image is `scaleFactor` times larger.
 *
 * @param image - RGBA pixels, a `[N, 3, H, W]` tensor in `[-1, 1]`, or latents `[N, C, h, w]`
 * @param latentChannels - the UNet's latent channels
 * @param scaleFactor - the VAE factor
 */
export function imageInput(
  image: RgbaImage | TensorLike,
  latentChannels: number,
  scaleFactor: number,
): { tensor: TensorLike; height: number; width: number } {
  const tensor = isTensor(image) ? image : tensorFromImage(image);
  const [, channels, height, width] = tensor.dims;
  const factor = channels === latentChannels && channels !== 3 ? scaleFactor : 1;
  return { tensor, height: height * factor, width: width * factor };
}

/**
 * The `strength` of an image-to-image call, checked: in `[0, 1]`, 0.8 when omitted (diffusers' default).
 *
 * @param strength - the caller's value
 */
export function checkStrength(strength: number | undefined): number {
  const value = strength ?? 0.8;
  if (!(value >= 0 && value <= 1)) throw new InvalidArgumentError(`strength must be in [0, 1], got ${value}.`);
  return value;
}

/**
 * diffusers' `prepare_latents` for image-to-image: the image's latents (encoded by the VAE, or given as latents
 * `[N, C, h, w]` with the UNet's channels, as a base model hands them to a refiner), one per batch row, noised to
 * the run's first timestep unless `noise` says otherwise (a refiner continuing a base model's `denoisingEnd`).
 *
 * @param image - pixels `[N, 3, H, W]` in `[-1, 1]`, or latents
 * @param encoder - the VAE encoder, for pixels
 * @param scalingFactor - the VAE's latent scaling factor
 * @param plan - the batch's dims and the generator
 * @param run - the scheduler, the start index, and whether to add the noise (default true)
 */
export async function imageToImageLatents(
  image: TensorLike,
  encoder: ModelSession | undefined,
  scalingFactor: number,
  plan: GenerationPlan,
  run: { scheduler: Scheduler; startIndex: number; noise?: boolean },
): Promise<TensorLike> {
  const { scheduler, startIndex } = run;
  const areLatents = image.dims[1] === plan.latentDims[1] && image.dims[1] !== 3;
  if (!areLatents && encoder === undefined) {
    throw new InvalidArgumentError('This repository has no vae_encoder to encode the image; pass latents instead.');
  }
  const encoded = areLatents
    ? image
    : await encodeImages(encoder as ModelSession, image, scalingFactor, plan.generator);
  const imageLatents = repeatOverBatch(encoded, plan.latentDims[0], 'images');
  if (run.noise === false) return imageLatents;
  const noise = plan.generator.randnInto(new Float32Array(imageLatents.data.length));
  return scheduler.addNoise(imageLatents, { data: noise, dims: imageLatents.dims }, scheduler.timesteps[startIndex]);
}

/**
 * Rows `[B, ...]` from `items` `[N, ...]`, row `b` a copy of item `b mod N` (diffusers' `repeat` of the images or
 * masks over the batch).
 *
 * @param items - one or more items
 * @param batch - the batch size, a multiple of N
 * @param what - what the items are, for the message
 */
export function repeatOverBatch(items: TensorLike, batch: number, what: string): Tensor {
  const count = items.dims[0];
  if (batch % count !== 0) {
    throw new InvalidArgumentError(`Cannot spread ${count} ${what} over a batch of ${batch}.`);
  }
  const size = items.data.length / count;
  return concatenate(
    Array.from({ length: batch }, (_, b) => {
      const item = b % count;
      return { data: items.data.subarray(item * size, (item + 1) * size), dims: [1, ...items.dims.slice(1)] };
    }),
  );
}

/**
 * Where an image-to-image run starts in the schedule, diffusers' `get_timesteps`, and tells sigma schedulers where
 * that is. With `strength`, the last ⌊n·strength⌋ of its n steps run. With `denoisingStart` (SDXL's refiner taking
 * over from a base model's `denoisingEnd`), `strength` is ignored and the run starts at the first timestep below
 * `(1 − denoisingStart)·T` of the T training timesteps; for a second-order scheduler an even count of the remaining
 * evaluations gets one more, so the run never starts between the two evaluations of a step.
 *
 * @param scheduler - the run's scheduler, after `setTimesteps`
 * @param strength - from {@link checkStrength}
 * @param denoisingStart - the fraction of the schedule already run elsewhere, in (0, 1)
 */
export function strengthStartIndex(scheduler: Scheduler, strength: number, denoisingStart?: number): number {
  const steps = scheduler.numInferenceSteps ?? scheduler.timesteps.length;
  let startIndex: number;
  if (denoisingStart === undefined) {
    const initSteps = Math.min(Math.floor(steps * strength), steps);
    startIndex = Math.max(steps - initSteps, 0) * scheduler.order;
  } else {
    const cutoff = trainingTimestepCutoff(scheduler, denoisingStart);
    let remaining = scheduler.timesteps.filter((t) => t < cutoff).length;
    if (scheduler.order === 2 && remaining % 2 === 0) remaining += 1;
    startIndex = Math.max(scheduler.timesteps.length - remaining, 0);
  }
  if (startIndex >= scheduler.timesteps.length) {
    throw new InvalidArgumentError(
      denoisingStart === undefined
        ? `strength ${strength} with ${steps} steps leaves no step to run; raise strength or numInferenceSteps.`
        : `denoisingStart ${denoisingStart} with ${steps} steps leaves no step to run; lower it or raise numInferenceSteps.`,
    );
  }
  scheduler.setBeginIndex(startIndex);
  return startIndex;
}

/**
 * The training timestep at which a fraction `fraction` of the schedule has run: `round(T − fraction·T)` (diffusers'
 * `discrete_timestep_cutoff` of `denoising_end` and `denoising_start`).
 *
 * @param scheduler - gives T, `num_train_timesteps`
 * @param fraction - in (0, 1)
 */
export function trainingTimestepCutoff(scheduler: Scheduler, fraction: number): number {
  const trainTimesteps =
    (scheduler.config as { num_train_timesteps?: number }).num_train_timesteps ?? scheduler.alphasCumprod.length;
  return Math.round(trainTimesteps - fraction * trainTimesteps);
}

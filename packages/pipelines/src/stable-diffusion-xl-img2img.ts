/**
 * Stable Diffusion XL image-to-image and the SDXL refiner: image-to-image's strength and noising
 * (`stable-diffusion-img2img.ts`) on SDXL's conditioning, and `denoisingStart` to take over a base model's
 * latents where its `denoisingEnd` stopped.
 */
import { InvalidArgumentError, type TensorLike, throwIfAborted } from '@denoise/core';
import type { ModelRepository } from '@denoise/core/runtime';
import type { Scheduler } from '@denoise/schedulers';
import type { RgbaImage } from './image.js';
import { DiffusionPipeline, type OutputOf, type OutputType } from './pipeline.js';
import type { GenerationPlan } from './stable-diffusion.js';
import { checkStrength, imageInput, imageToImageLatents, strengthStartIndex } from './stable-diffusion-img2img.js';
import {
  checkDenoisingFraction,
  denoisingEndIndex,
  LatentDiffusionXL,
  loadStableDiffusionXLComponents,
  type PixelPair,
  type StableDiffusionXLOptions,
  type TimeIds,
} from './stable-diffusion-xl.js';

/**
 * Options of {@link StableDiffusionXLImg2ImgPipeline.generate}.
 *
 * @typeParam O - what `generate` returns, from `outputType`
 */
export interface StableDiffusionXLImg2ImgOptions<O extends OutputType = 'image'>
  extends Omit<StableDiffusionXLOptions<O>, 'height' | 'width' | 'latents'> {
  /**
   * The starting image: RGBA pixels, a `[N, 3, H, W]` tensor in `[-1, 1]`, or latents `[N, 4, h, w]` (a base
   * model's `outputType: 'latent'` result, which the refiner continues without encoding).
   */
  image: RgbaImage | TensorLike;
  /** How much to change the image, in `[0, 1]` (default 0.3, diffusers' SDXL default); ignored with `denoisingStart`. */
  strength?: number;
  /**
   * Start at this fraction of the schedule, in (0, 1), without adding noise: the refiner's half of a base model
   * run with the same `numInferenceSteps` and `denoisingEnd` (the ensemble of experts).
   */
  denoisingStart?: number;
  /** The refiner's aesthetic score of the conditional pass (default 6). */
  aestheticScore?: number;
  /** The refiner's aesthetic score of the unconditional pass (default 2.5). */
  negativeAestheticScore?: number;
}

/**
 * The time ids of SDXL image-to-image and inpainting, diffusers' `_get_add_time_ids` of those pipelines: sizes
 * default to the image's, and the unconditional pass has the conditional crop; a refiner's ids end with the
 * aesthetic score instead of the target size.
 *
 * @param options - the sizes, crops and aesthetic scores of the call
 * @param size - the image size `(height, width)` of the run's latents
 * @param requiresAestheticsScore - the refiner's 5 ids
 */
export function imageToImageTimeIds(
  options: Omit<StableDiffusionXLImg2ImgOptions<OutputType>, 'image'>,
  size: PixelPair,
  requiresAestheticsScore: boolean,
): TimeIds {
  const originalSize = options.originalSize ?? size;
  const targetSize = options.targetSize ?? size;
  const crops = options.cropsCoordsTopLeft ?? [0, 0];
  const negativeOriginalSize = options.negativeOriginalSize ?? originalSize;
  if (requiresAestheticsScore) {
    return {
      conditional: [...originalSize, ...crops, options.aestheticScore ?? 6],
      unconditional: [
        ...negativeOriginalSize,
        ...(options.negativeCropsCoordsTopLeft ?? [0, 0]),
        options.negativeAestheticScore ?? 2.5,
      ],
    };
  }
  return {
    conditional: [...originalSize, ...crops, ...targetSize],
    unconditional: [...negativeOriginalSize, ...crops, ...(options.negativeTargetSize ?? targetSize)],
  };
}

/**
 * Checks SDXL's continuation options of image-to-image and inpainting: `denoisingStart` a fraction below
 * `denoisingEnd`, finite aesthetic scores.
 *
 * @param options - the call options
 */
export function checkContinuationOptions(
  options: Pick<
    StableDiffusionXLImg2ImgOptions<OutputType>,
    'denoisingStart' | 'denoisingEnd' | 'aestheticScore' | 'negativeAestheticScore'
  >,
): void {
  checkDenoisingFraction(options.denoisingStart, 'denoisingStart');
  const { denoisingStart, denoisingEnd } = options;
  if (denoisingStart !== undefined && denoisingEnd !== undefined && denoisingStart >= denoisingEnd) {
    throw new InvalidArgumentError(`denoisingStart (${denoisingStart}) must be below denoisingEnd (${denoisingEnd}).`);
  }
  for (const name of ['aestheticScore', 'negativeAestheticScore'] as const) {
    const score = options[name];
    if (score !== undefined && !Number.isFinite(score)) {
      throw new InvalidArgumentError(`${name} must be a number, got ${score}.`);
    }
  }
}

/**
 * Where a run of SDXL image-to-image or inpainting stops in the schedule (`denoisingEnd`), checked to leave at
 * least one step after `startIndex`.
 *
 * @param scheduler - the run's scheduler
 * @param startIndex - from `strengthStartIndex`
 * @param denoisingEnd - the caller's fraction
 */
export function continuationEndIndex(scheduler: Scheduler, startIndex: number, denoisingEnd?: number): number {
  const endIndex = denoisingEndIndex(scheduler, denoisingEnd);
  if (endIndex <= startIndex) {
    throw new InvalidArgumentError(
      `denoisingEnd ${denoisingEnd} stops before this run's first step; raise it or strength.`,
    );
  }
  return endIndex;
}

/** SDXL image-to-image: the refiner (only `text_encoder_2`, aesthetic-score time ids) and the base model alike. */
export class StableDiffusionXLImg2ImgPipeline extends LatentDiffusionXL {
  /** {@inheritDoc DiffusionPipeline.kind} */
  readonly kind = 'StableDiffusionXLImg2ImgPipeline';

  /**
   * Builds the pipeline from a repository loaded with `loadRepository`.
   *
   * @param repository - an SDXL or SDXL refiner repository (Optimum's export layout)
   */
  static async fromRepository(repository: ModelRepository): Promise<StableDiffusionXLImg2ImgPipeline> {
    const scheduler = await DiffusionPipeline.loadScheduler(repository);
    return new StableDiffusionXLImg2ImgPipeline(
      repository,
      scheduler,
      await loadStableDiffusionXLComponents(repository),
    );
  }

  protected timeIds(options: StableDiffusionXLImg2ImgOptions<OutputType>, plan: GenerationPlan): TimeIds {
    return imageToImageTimeIds(options, this.imageSize(plan), this.requiresAestheticsScore);
  }

  /**
   * Generates images from a starting image (or latents) and prompts, in diffusers' `__call__` order.
   *
   * @param options - image, strength or denoisingStart, and the SDXL options; see {@link StableDiffusionXLImg2ImgOptions}
   * @returns the images, or the latents or pixel tensor that `outputType` asks for
   */
  async generate<O extends OutputType = 'image'>(options: StableDiffusionXLImg2ImgOptions<O>): Promise<OutputOf<O>> {
    if (options?.image === undefined) {
      throw new InvalidArgumentError(
        `${this.repository.name} is used for image-to-image: pass image (pixels, or a base model's latents). ` +
          (this.requiresAestheticsScore
            ? 'An SDXL refiner cannot draw from text alone; generate with the base model first.'
            : 'For text-to-image, load it with StableDiffusionXLPipeline.'),
      );
    }
    const strength = checkStrength(options.strength ?? 0.3);
    checkContinuationOptions(options);
    const { denoisingStart, denoisingEnd } = options;
    const { tensor, height, width } = imageInput(options.image, this.latentChannels, this.vae.scaleFactor);
    const plan = this.checkInputs(options, { height, width });
    const scheduler = this.prepareTimesteps(options);
    const startIndex = strengthStartIndex(scheduler, strength, denoisingStart);
    const endIndex = continuationEndIndex(scheduler, startIndex, denoisingEnd);
    const guidances = this.prepareGuidances(options, plan.onWarning);
    const timesteps = scheduler.timesteps.slice(startIndex, endIndex);
    const encoded = await this.encodePrompt(options, plan, guidances, timesteps);
    // A continuation starts so close to its image that every prompt predicts the same noise there: the check for
    // ignored prompts (the same prediction as the unconditional pass) would misfire.
    const embeddings = denoisingStart === undefined ? encoded : { ...encoded, promptOfRow: undefined };
    try {
      throwIfAborted(options.signal, 'encoding the image');
      const latents = await imageToImageLatents(tensor, this.vaeEncoder, this.vae.scalingFactor, plan, {
        scheduler,
        startIndex,
        noise: denoisingStart === undefined,
      });
      const run = { embeddings, guidances, ...plan };
      const final = await this.denoise(options, scheduler, run, latents, startIndex, { endIndex });
      return await this.decode(final, options);
    } finally {
      embeddings.conditioning.dispose();
    }
  }
}

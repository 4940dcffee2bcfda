/**
 * Pixel-space diffusion (Ho et al. 2020; Nichol & Dhariwal 2021): a UNet on images, optionally conditioned on
 * class labels, with any scheduler (learned IDDPM variances included) and composable guidance.
 */
import { InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import type { ModelRepository, ModelSession } from '@denoise/core/runtime';
import type { NoiseGenerator, Scheduler } from '@denoise/schedulers';
import { type Denoiser, type LearnedVariance, runDenoisingLoop, type StepEndCallback } from './denoising-loop.js';
import { ClassifierFreeGuidance } from './guidance/classifier-free.js';
import type { Guidance, PredictionType } from './guidance/guidance.js';
import { imagesFromTensor } from './image.js';
import {
  cloneScheduler,
  DiffusionPipeline,
  generatorOrRandom,
  initialLatents,
  MAX_SAMPLE_VALUES,
  type PipelineOutput,
} from './pipeline.js';
import { UnetConditioning, unetDenoiser } from './unet-denoiser.js';

/** Options of {@link DDPMPipeline.generate}. */
export interface DDPMOptions {
  /** Images to generate (default 1; the number of class labels when they are given). */
  batchSize?: number;
  /** Denoising steps (default 1000, as diffusers' DDPMPipeline). */
  numInferenceSteps?: number;
  /** For a class-conditional UNet (a `class_labels` input): the class of each image, or one for all. */
  classLabels?: number | readonly number[];
  /**
   * The label the UNet was trained to read as "no class", for classifier-free guidance on class labels
   * (e.g. `num_class_embeds − 1`). Needed when `guidanceScale > 1`.
   */
  unconditionalClassLabel?: number;
  /** Classifier-free guidance scale on class labels (default 1: none). */
  guidanceScale?: number;
  /**
   * The guidances, applied in order at every step; replaces the default classifier-free guidance on class labels
   * built from `guidanceScale` (give that or this).
   */
  guidances?: readonly Guidance[];
  /** DDIM's η. */
  eta?: number;
  /** The noise source; random when omitted. */
  generator?: NoiseGenerator;
  /** Initial noise `[B, C, H, W]`, already multiplied by `initNoiseSigma`. */
  latents?: TensorLike;
  /** Called after each step; may replace the sample or stop. */
  callbackOnStepEnd?: StepEndCallback;
  /** Cancels generation between model calls. */
  signal?: AbortSignal;
}

function labelTensor(labels: readonly number[]): Tensor<'int32'> {
  return new Tensor(Int32Array.from(labels), [labels.length]);
}

/** Checks a class label: an integer, and below the UNet's class count when its config gives one. */
function checkLabel(label: number, name: string, numClassEmbeds: number | undefined): void {
  const valid = Number.isInteger(label) && label >= 0 && (numClassEmbeds === undefined || label < numClassEmbeds);
  if (!valid) {
    const range = numClassEmbeds === undefined ? 'a non-negative integer' : `an integer in [0, ${numClassEmbeds})`;
    throw new InvalidArgumentError(`${name} must be ${range}, got ${label}.`);
  }
}

/**
 * Unconditional or class-conditional pixel-space diffusion over a `unet` graph with inputs `sample`,
 * `timestep` (and `class_labels`). The UNet may output twice the image channels (a learned variance).
 */
export class DDPMPipeline extends DiffusionPipeline {
  /** {@inheritDoc DiffusionPipeline.kind} */
  readonly kind = 'DDPMPipeline';
  /** The UNet session. */
  readonly unet: ModelSession;
  /** The image size and channels the UNet works at. */
  readonly imageShape: { channels: number; size: number };
  /** The number of classes of a class-conditional UNet (`num_class_embeds` of its config), when known. */
  readonly numClassEmbeds: number | undefined;

  /**
   * @param repository - where the UNet comes from
   * @param scheduler - the scheduler
   * @param unet - the UNet session
   * @param imageShape - channels and side length of the images
   * @param numClassEmbeds - the class count of a class-conditional UNet, to check labels against
   */
  constructor(
    repository: ModelRepository,
    scheduler: Scheduler,
    unet: ModelSession,
    imageShape: { channels: number; size: number },
    numClassEmbeds?: number,
  ) {
    super(repository, scheduler);
    this.unet = unet;
    this.imageShape = imageShape;
    this.numClassEmbeds = numClassEmbeds;
  }

  /**
   * Builds the pipeline from a repository with `unet` and `scheduler` components.
   *
   * @param repository - a diffusers-layout DDPM repository
   */
  static async fromRepository(repository: ModelRepository): Promise<DDPMPipeline> {
    const scheduler = await DiffusionPipeline.loadScheduler(repository);
    const unet = await repository.createSession('unet');
    const files = repository.components.unet?.files ?? [];
    const config = files.includes('unet/config.json')
      ? ((await repository.readJson('unet/config.json')) as Record<string, unknown>)
      : {};
    const shape = unet.inputs.find((i) => i.name === 'sample')?.shape ?? [];
    const pick = (configValue: unknown, graphValue: unknown, fallback: number) =>
      typeof configValue === 'number' ? configValue : typeof graphValue === 'number' ? graphValue : fallback;
    const imageShape = {
      channels: pick(config.in_channels, shape[1], 3),
      size: pick(config.sample_size, shape[2], 32),
    };
    const numClassEmbeds = typeof config.num_class_embeds === 'number' ? config.num_class_embeds : undefined;
    return new DDPMPipeline(repository, scheduler, unet, imageShape, numClassEmbeds);
  }

  /**
   * Generates images.
   *
   * @param options - batch, steps, labels, guidance; see {@link DDPMOptions}
   */
  async generate(options: DDPMOptions = {}): Promise<PipelineOutput> {
    const { classLabels, batchSize } = options;
    if (batchSize !== undefined && !(Number.isInteger(batchSize) && batchSize >= 1)) {
      throw new InvalidArgumentError(`batchSize must be a positive integer, got ${batchSize}.`);
    }
    if (typeof classLabels === 'object' && classLabels.length === 0) {
      throw new InvalidArgumentError('classLabels needs at least one class label.');
    }
    const batch = typeof classLabels === 'object' ? classLabels.length : (batchSize ?? 1);
    const { channels, size } = this.imageShape;
    if (batch * channels * size * size > MAX_SAMPLE_VALUES) {
      throw new InvalidArgumentError(
        `${batch} images of ${channels}×${size}×${size} need more than the ${MAX_SAMPLE_VALUES} values one run can ` +
          'hold. Generate fewer images per call.',
      );
    }
    const labels =
      classLabels === undefined
        ? undefined
        : typeof classLabels === 'number'
          ? new Array<number>(batch).fill(classLabels)
          : classLabels;
    const hasClassInput = this.unet.inputs.some((i) => i.name === 'class_labels');
    if (hasClassInput !== (labels !== undefined)) {
      throw new InvalidArgumentError(
        hasClassInput
          ? 'This UNet is class-conditional: pass classLabels.'
          : 'This UNet takes no class labels; drop classLabels.',
      );
    }
    if (options.guidances !== undefined && options.guidanceScale !== undefined) {
      throw new InvalidArgumentError(
        'guidanceScale configures the default classifier-free guidance, which guidances replaces: put a ' +
          'ClassifierFreeGuidance in the list instead.',
      );
    }
    const guidanceScale = options.guidanceScale ?? 1;
    const guidances: Guidance[] = options.guidances
      ? [...options.guidances]
      : [new ClassifierFreeGuidance({ guidanceScale })];
    let conditioning = new UnetConditioning({});
    if (labels !== undefined) {
      labels.forEach((label, i) => {
        checkLabel(label, `classLabels[${i}]`, this.numClassEmbeds);
      });
      const nullLabel = options.unconditionalClassLabel;
      if (nullLabel !== undefined) checkLabel(nullLabel, 'unconditionalClassLabel', this.numClassEmbeds);
      if (guidanceScale > 1 && nullLabel === undefined) {
        throw new InvalidArgumentError('guidanceScale > 1 on class labels needs unconditionalClassLabel.');
      }
      conditioning = new UnetConditioning({
        conditional: { class_labels: labelTensor(labels) },
        unconditional: nullLabel === undefined ? undefined : { class_labels: labelTensor(labels.map(() => nullLabel)) },
      });
    }

    const scheduler = cloneScheduler(this.scheduler);
    scheduler.setTimesteps(options.numInferenceSteps ?? 1000);
    const generator = generatorOrRandom(options.generator);
    const latents = initialLatents([batch, channels, size, size], scheduler, generator, options.latents);
    const { denoiser, learnedVariance } = splitLearnedVariance(
      unetDenoiser(this.unet, conditioning),
      latents.dims,
      scheduler,
    );
    const final = await runDenoisingLoop({
      scheduler,
      latents,
      denoiser,
      learnedVariance,
      guidances,
      predictionType: (scheduler.config as { prediction_type?: PredictionType }).prediction_type ?? 'epsilon',
      generator,
      eta: options.eta,
      callbackOnStepEnd: options.callbackOnStepEnd,
      signal: options.signal,
    });
    return { images: imagesFromTensor(final) };
  }

  /** Frees the UNet session. */
  async release(): Promise<void> {
    await this.unet.release();
  }
}

/** A DDPM scheduler's variance of the step from `timestep`, given the model's variance output (docs/math.md §3). */
interface LearnedVarianceScheduler {
  getVariance(timestep: number, predictedVariance?: number): number;
}

/**
 * Adapts a UNet that may output twice the sample's channels, the second half its variance (IDDPM's `learned` /
 * `learned_range`), to the loop: the denoiser returns the predictions alone, and the learned variance gives the
 * guidances `Σ` per element and hands the scheduler the guided prediction with the variance channels it reads.
 * A UNet with as many output channels as the sample passes through unchanged.
 *
 * @param unet - the UNet denoiser
 * @param dims - the sample's dims `[B, C, H, W]`
 * @param scheduler - the run's scheduler; a DDPM scheduler turns the variance output into `Σ`
 */
function splitLearnedVariance(
  unet: Denoiser,
  dims: readonly number[],
  scheduler: Scheduler,
): { denoiser: Denoiser; learnedVariance: LearnedVariance } {
  const [batch, channels, ...spatial] = dims;
  const itemSize = channels * spatial.reduce((a, b) => a * b, 1);
  const size = batch * itemSize;
  let predictions = new Float32Array(0);
  // The conditional rows' variance channels of the last evaluation, item by item.
  const varianceChannels = new Float32Array(size);
  const variance = new Float32Array(size);
  let learned = false;
  const getVariance = (scheduler as Partial<LearnedVarianceScheduler>).getVariance?.bind(scheduler);
  let stepInputData: Float32Array | undefined;

  const denoiser: Denoiser = async (request) => {
    const output = await unet(request);
    const rows = output.dims[0];
    learned = output.dims[1] === 2 * channels;
    if (!learned) return output;
    if (predictions.length !== rows * itemSize) predictions = new Float32Array(rows * itemSize);
    const conditionalFirst = request.branches.indexOf('conditional') * batch;
    for (let row = 0; row < rows; row++) {
      const from = row * 2 * itemSize;
      predictions.set(output.data.subarray(from, from + itemSize), row * itemSize);
      const item = row - conditionalFirst;
      if (item >= 0 && item < batch) {
        varianceChannels.set(output.data.subarray(from + itemSize, from + 2 * itemSize), item * itemSize);
      }
    }
    return { data: predictions, dims: [rows, channels, ...spatial] };
  };

  const learnedVariance: LearnedVariance = {
    variance(timestep) {
      if (getVariance === undefined) return undefined;
      if (!learned) return getVariance(timestep);
      for (let i = 0; i < size; i++) variance[i] = getVariance(timestep, varianceChannels[i]);
      return { data: variance, dims };
    },
    stepInput(prediction) {
      if (!learned) return prediction;
      stepInputData ??= new Float32Array(2 * size);
      for (let b = 0; b < batch; b++) {
        stepInputData.set(prediction.data.subarray(b * itemSize, (b + 1) * itemSize), 2 * b * itemSize);
        stepInputData.set(varianceChannels.subarray(b * itemSize, (b + 1) * itemSize), (2 * b + 1) * itemSize);
      }
      return { data: stepInputData, dims: [batch, 2 * channels, ...spatial] };
    },
  };
  return { denoiser, learnedVariance };
}

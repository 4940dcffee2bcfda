/**
 * The base of every pipeline and `DiffusionPipeline.fromPretrained`, which reads a repository's
 * `model_index.json` and returns the pipeline class it names.
 */
import {
  AbortError,
  ConfigError,
  InvalidArgumentError,
  RandomGenerator,
  type Tensor,
  type TensorLike,
} from '@denoise/core';
import {
  type Device,
  type LoadOptions,
  loadRepository,
  type ModelDType,
  type ModelRepository,
  type PerComponent,
  type ProgressCallback,
} from '@denoise/core/runtime';
import { type NoiseGenerator, type Scheduler, schedulerFromConfig } from '@denoise/schedulers';
import type { StableDiffusionControlNetPipeline } from './controlnet.js';
import type { DDPMPipeline } from './ddpm.js';
import type { GeneratedImage } from './image.js';
import type { StableDiffusionPipeline } from './stable-diffusion.js';
import type { StableDiffusionImg2ImgPipeline } from './stable-diffusion-img2img.js';
import type { StableDiffusionInpaintPipeline } from './stable-diffusion-inpaint.js';
import type { StableDiffusionXLPipeline } from './stable-diffusion-xl.js';
import type { StableDiffusionXLImg2ImgPipeline } from './stable-diffusion-xl-img2img.js';
import type { StableDiffusionXLInpaintPipeline } from './stable-diffusion-xl-inpaint.js';

/** Options of `fromPretrained`. */
export interface FromPretrainedOptions extends Omit<LoadOptions, 'dtype' | 'device' | 'progressCallback'> {
  /** Where each component runs (`'auto'` by default): one device, or per component (`{ unet: 'cuda', default: 'cpu' }`). */
  device?: PerComponent<Device>;
  /** The ONNX variant to load (`'fp32'` by default), for all components or per component. */
  dtype?: PerComponent<ModelDType>;
  /** Receives download and loading progress. */
  progressCallback?: ProgressCallback;
}

/** What every pipeline's `generate` returns by default (`outputType: 'image'`). */
export interface PipelineOutput {
  /** The generated images, `numImagesPerPrompt` per prompt in prompt order. */
  images: GeneratedImage[];
}

/** What `generate` returns with `outputType: 'latent'`: the loop's result, not decoded. */
export interface LatentOutput {
  /** The final latents `[B, C, h, w]`, in the UNet's (scaled) latent space. */
  latents: Tensor;
}

/** What `generate` returns with `outputType: 'tensor'`. */
export interface TensorOutput {
  /** The decoded pixels `[B, 3, H, W]` in `[0, 1]`. */
  images: Tensor;
}

/** diffusers' `output_type`: decoded images, the latents, or the decoded pixels as a tensor. */
export type OutputType = 'image' | 'latent' | 'tensor';

/** Every {@link OutputType}. */
export const OUTPUT_TYPES: readonly OutputType[] = ['image', 'latent', 'tensor'];

/** What `generate` resolves to for an output type. */
export type OutputOf<O extends OutputType> = O extends 'latent'
  ? LatentOutput
  : O extends 'tensor'
    ? TensorOutput
    : PipelineOutput;

/** The pipeline class names of `model_index.json` that {@link DiffusionPipeline.fromPretrained} understands. */
export const STABLE_DIFFUSION_CLASS_NAMES: readonly string[] = [
  'OnnxStableDiffusionPipeline',
  'ORTStableDiffusionPipeline',
  'StableDiffusionPipeline',
  'LatentConsistencyModelPipeline',
];

/** Image-to-image pipeline class names. */
export const IMG2IMG_CLASS_NAMES: readonly string[] = [
  'OnnxStableDiffusionImg2ImgPipeline',
  'ORTStableDiffusionImg2ImgPipeline',
  'StableDiffusionImg2ImgPipeline',
];

/** Stable Diffusion XL text-to-image class names (SDXL-Turbo, SDXL-Lightning and SSD-1B repositories use them too). */
export const STABLE_DIFFUSION_XL_CLASS_NAMES: readonly string[] = [
  'StableDiffusionXLPipeline',
  'ORTStableDiffusionXLPipeline',
];

/** Stable Diffusion XL image-to-image class names, the SDXL refiner's among them. */
export const STABLE_DIFFUSION_XL_IMG2IMG_CLASS_NAMES: readonly string[] = [
  'StableDiffusionXLImg2ImgPipeline',
  'ORTStableDiffusionXLImg2ImgPipeline',
];

/** Stable Diffusion XL inpainting class names. */
export const STABLE_DIFFUSION_XL_INPAINT_CLASS_NAMES: readonly string[] = [
  'StableDiffusionXLInpaintPipeline',
  'ORTStableDiffusionXLInpaintPipeline',
];

/** Inpainting pipeline class names. */
export const INPAINT_CLASS_NAMES: readonly string[] = [
  'OnnxStableDiffusionInpaintPipeline',
  'ORTStableDiffusionInpaintPipeline',
  'StableDiffusionInpaintPipeline',
];

/**
 * ControlNet pipeline class names. A Stable Diffusion repository whose `model_index.json` has a `controlnet`
 * component loads as a ControlNet pipeline too.
 */
export const CONTROLNET_CLASS_NAMES: readonly string[] = [
  'OnnxStableDiffusionControlNetPipeline',
  'ORTStableDiffusionControlNetPipeline',
  'StableDiffusionControlNetPipeline',
];

/** Unconditional pixel-space pipeline class names. */
export const DDPM_CLASS_NAMES: readonly string[] = ['DDPMPipeline', 'DDIMPipeline'];

/** The most sample values (latents or pixels) one `generate` call may ask for: 2³⁰, a 4 GiB float32 buffer. */
export const MAX_SAMPLE_VALUES = 2 ** 30;

/**
 * A fresh scheduler with the same class and config as `scheduler`, so that concurrent generations never share
 * scheduler state (multistep history, step index).
 *
 * @param scheduler - the pipeline's scheduler
 */
export function cloneScheduler(scheduler: Scheduler): Scheduler {
  const SchedulerClass = scheduler.constructor as unknown as { fromConfig(config: object): Scheduler };
  return SchedulerClass.fromConfig(scheduler.config);
}

/** The caller's generator, or one seeded at random. */
export function generatorOrRandom(generator: NoiseGenerator | undefined): NoiseGenerator {
  if (generator === undefined) return new RandomGenerator(Math.floor(Math.random() * 2 ** 32));
  if (typeof (generator as Partial<NoiseGenerator> | null)?.randnInto !== 'function') {
    throw new InvalidArgumentError(
      `generator must be a RandomGenerator from @denoise/core (or an object with randnInto(out)), got ${
        generator === null ? 'null' : typeof generator
      }. Use generator: new RandomGenerator(seed).`,
    );
  }
  return generator;
}

/**
 * `randn(dims) · initNoiseSigma` drawn on `generator`, or the caller's latents (checked, not copied), as
 * diffusers' `prepare_latents`.
 *
 * @param dims - the latent shape `[B, C, h, w]`
 * @param scheduler - gives `initNoiseSigma`
 * @param generator - the noise source
 * @param latents - caller-supplied latents, already scaled
 */
export function initialLatents(
  dims: readonly number[],
  scheduler: Scheduler,
  generator: NoiseGenerator,
  latents: TensorLike | undefined,
): TensorLike {
  if (latents !== undefined) {
    if (latents.dims.length !== dims.length || latents.dims.some((d, i) => d !== dims[i])) {
      throw new InvalidArgumentError(`latents must have dims [${dims.join(', ')}], got [${latents.dims.join(', ')}].`);
    }
    return latents;
  }
  const data = generator.randnInto(new Float32Array(dims.reduce((a, b) => a * b, 1)));
  const sigma = scheduler.initNoiseSigma;
  if (sigma !== 1) for (let i = 0; i < data.length; i++) data[i] *= sigma;
  return { data, dims };
}

/**
 * Every pipeline `DiffusionPipeline.fromPretrained` can return. Its `kind` tells them apart, so a `switch` or
 * {@link isPipeline} narrows it to one class and its `generate` options.
 */
export type LoadedPipeline =
  | StableDiffusionPipeline
  | StableDiffusionImg2ImgPipeline
  | StableDiffusionInpaintPipeline
  | StableDiffusionXLPipeline
  | StableDiffusionXLImg2ImgPipeline
  | StableDiffusionXLInpaintPipeline
  | StableDiffusionControlNetPipeline
  | DDPMPipeline;

/** The `kind` of each pipeline class: its diffusers class name. */
export type PipelineKind = LoadedPipeline['kind'];

/**
 * Narrows a pipeline loaded with `DiffusionPipeline.fromPretrained` to the class of `kind`.
 *
 * @param pipeline - a loaded pipeline
 * @param kind - the pipeline class expected, e.g. `'StableDiffusionPipeline'`
 * @example
 * ```ts
 * const pipe = await DiffusionPipeline.fromPretrained('models/reference-world');
 * if (!isPipeline(pipe, 'StableDiffusionPipeline')) throw new Error(`${pipe.kind} is not text-to-image`);
 * await pipe.generate({ prompt: 'a red circle' }); // typed as StableDiffusionPipeline.generate
 * ```
 */
export function isPipeline<K extends PipelineKind>(
  pipeline: LoadedPipeline,
  kind: K,
): pipeline is Extract<LoadedPipeline, { kind: K }> {
  return pipeline.kind === kind;
}

/** A pipeline class as `fromPretrained` sees it: it builds itself from a loaded repository. */
export interface PipelineClass<P extends DiffusionPipeline> {
  /** Builds the pipeline from a repository loaded with `loadRepository`. */
  fromRepository(repository: ModelRepository): Promise<P>;
}

/**
 * The base of every pipeline: its repository, its scheduler (replace it to change samplers) and
 * `fromPretrained`.
 */
export abstract class DiffusionPipeline {
  /** The repository the pipeline was loaded from. */
  readonly repository: ModelRepository;
  /**
   * The scheduler. Assign another one to change samplers, e.g.
   * `pipe.scheduler = EulerAncestralDiscreteScheduler.fromConfig(pipe.scheduler.config)`. Each `generate` call
   * works on its own copy, so calls may overlap.
   */
  scheduler: Scheduler;
  /** Which pipeline this is: its diffusers class name, the discriminant of {@link LoadedPipeline}. */
  abstract readonly kind: string;

  /**
   * @param repository - the loaded repository
   * @param scheduler - the scheduler from `scheduler/scheduler_config.json`
   */
  protected constructor(repository: ModelRepository, scheduler: Scheduler) {
    this.repository = repository;
    this.scheduler = scheduler;
  }

  /**
   * Loads a diffusers-layout ONNX pipeline from a Hub repository id or a local directory.
   *
   * Called on `DiffusionPipeline`, it returns the pipeline class the repository's `model_index.json` names
   * (`OnnxStableDiffusionPipeline`, `StableDiffusionPipeline`, `LatentConsistencyModelPipeline`... →
   * {@link StableDiffusionPipeline}; `OnnxStableDiffusionInpaintPipeline`... → {@link StableDiffusionInpaintPipeline};
   * `StableDiffusionXLPipeline` → {@link StableDiffusionXLPipeline}; `StableDiffusionXLInpaintPipeline` →
   * {@link StableDiffusionXLInpaintPipeline}; `DDPMPipeline` →
   * {@link DDPMPipeline}), typed as {@link LoadedPipeline}.
   * Called on a pipeline class, it builds that class from the repository, whatever `model_index.json` names (as
   * diffusers' `StableDiffusionImg2ImgPipeline.from_pretrained` loads a text-to-image repository), typed as that
   * class.
   *
   * @param source - `'org/name'` or a directory holding `model_index.json`
   * @param options - device, dtype, progress, revision, cache, `localFilesOnly`, `signal`
   * @example
   * ```ts
   * const pipe = await StableDiffusionPipeline.fromPretrained('org/tiny-sd-onnx', { device: 'cpu' });
   * const { images } = await pipe.generate({ prompt: 'a red circle', numInferenceSteps: 20 });
   * ```
   */
  static fromPretrained<P extends DiffusionPipeline>(
    this: PipelineClass<P>,
    source: string,
    options?: FromPretrainedOptions,
  ): Promise<P>;
  static fromPretrained(source: string, options?: FromPretrainedOptions): Promise<LoadedPipeline>;
  static async fromPretrained(
    this: Partial<PipelineClass<DiffusionPipeline>>,
    source: string,
    options: FromPretrainedOptions = {},
  ): Promise<DiffusionPipeline> {
    const repository = await loadRepository(source, options);
    // Called on a subclass, `this` is that class: it builds itself; on DiffusionPipeline, model_index.json decides.
    // biome-ignore lint/complexity/noThisInStatic: the class fromPretrained was called on, not DiffusionPipeline
    const fromRepository = this.fromRepository?.bind(this);
    const pipeline = fromRepository
      ? await fromRepository(repository)
      : await DiffusionPipeline.fromRepositoryOfItsClass(repository);
    // Creating ONNX sessions cannot be interrupted; an abort that arrived meanwhile still wins.
    if (options.signal?.aborted) {
      await pipeline.release();
      throw new AbortError(`Aborted while creating the ONNX sessions of ${repository.name}.`, {
        cause: options.signal.reason,
      });
    }
    return pipeline;
  }

  private static async fromRepositoryOfItsClass(repository: ModelRepository): Promise<LoadedPipeline> {
    const className = repository.modelIndex.className;
    const hasControlNet = repository.modelIndex.components.some((c) => c.name === 'controlnet');
    if (
      CONTROLNET_CLASS_NAMES.includes(className) ||
      (hasControlNet && STABLE_DIFFUSION_CLASS_NAMES.includes(className))
    ) {
      const { StableDiffusionControlNetPipeline } = await import('./controlnet.js');
      return StableDiffusionControlNetPipeline.fromRepository(repository);
    }
    if (IMG2IMG_CLASS_NAMES.includes(className)) {
      const { StableDiffusionImg2ImgPipeline } = await import('./stable-diffusion-img2img.js');
      return StableDiffusionImg2ImgPipeline.fromRepository(repository);
    }
    if (INPAINT_CLASS_NAMES.includes(className)) {
      const { StableDiffusionInpaintPipeline } = await import('./stable-diffusion-inpaint.js');
      return StableDiffusionInpaintPipeline.fromRepository(repository);
    }
    if (STABLE_DIFFUSION_CLASS_NAMES.includes(className)) {
      const { StableDiffusionPipeline } = await import('./stable-diffusion.js');
      return StableDiffusionPipeline.fromRepository(repository);
    }
    if (STABLE_DIFFUSION_XL_CLASS_NAMES.includes(className)) {
      const { StableDiffusionXLPipeline } = await import('./stable-diffusion-xl.js');
      return StableDiffusionXLPipeline.fromRepository(repository);
    }
    if (STABLE_DIFFUSION_XL_IMG2IMG_CLASS_NAMES.includes(className)) {
      const { StableDiffusionXLImg2ImgPipeline } = await import('./stable-diffusion-xl-img2img.js');
      return StableDiffusionXLImg2ImgPipeline.fromRepository(repository);
    }
    if (STABLE_DIFFUSION_XL_INPAINT_CLASS_NAMES.includes(className)) {
      const { StableDiffusionXLInpaintPipeline } = await import('./stable-diffusion-xl-inpaint.js');
      return StableDiffusionXLInpaintPipeline.fromRepository(repository);
    }
    if (DDPM_CLASS_NAMES.includes(className)) {
      const { DDPMPipeline } = await import('./ddpm.js');
      return DDPMPipeline.fromRepository(repository);
    }
    throw new ConfigError(
      `${repository.name} is a ${className}, which denoise does not implement. Supported pipelines: ` +
        `${[
          ...STABLE_DIFFUSION_CLASS_NAMES,
          ...IMG2IMG_CLASS_NAMES,
          ...INPAINT_CLASS_NAMES,
          ...CONTROLNET_CLASS_NAMES,
          ...STABLE_DIFFUSION_XL_CLASS_NAMES,
          ...STABLE_DIFFUSION_XL_IMG2IMG_CLASS_NAMES,
          ...STABLE_DIFFUSION_XL_INPAINT_CLASS_NAMES,
          ...DDPM_CLASS_NAMES,
        ].join(', ')}.`,
    );
  }

  /**
   * Generates images. Each pipeline class takes its own options type; narrow a {@link LoadedPipeline} by its
   * `kind` (or load it with that class's `fromPretrained`) to call it.
   */
  abstract generate(options: never): Promise<object>;

  /** Frees the pipeline's ONNX sessions. */
  abstract release(): Promise<void>;

  /** Reads the scheduler of a repository from `scheduler/scheduler_config.json`, through the scheduler registry. */
  protected static async loadScheduler(repository: ModelRepository): Promise<Scheduler> {
    return schedulerFromConfig(
      (await repository.readJson('scheduler/scheduler_config.json')) as Record<string, unknown>,
    );
  }
}

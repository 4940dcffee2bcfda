/**
 * Text-to-image latent diffusion (Rombach et al. 2022) over diffusers-layout ONNX exports: CLIP tokenizer, text
 * encoder, UNet and VAE decoder, with composable guidance.
 */
import { InvalidArgumentError, type TensorLike, throwIfAborted } from '@denoise/core';
import type { ModelRepository, ModelSession } from '@denoise/core/runtime';
import type { NoiseGenerator, Scheduler } from '@denoise/schedulers';
import type { ClipTokenizer } from './clip-tokenizer.js';
import { runDenoisingLoop, type StepEndCallback } from './denoising-loop.js';
import { ClassifierFreeGuidance } from './guidance/classifier-free.js';
import type { Guidance, GuidanceInterval, PredictionType } from './guidance/guidance.js';
import { imagesFromTensor } from './image.js';
import {
  cloneScheduler,
  DiffusionPipeline,
  generatorOrRandom,
  initialLatents,
  type PipelineOutput,
} from './pipeline.js';
import { encodePrompts, loadClipTokenizer } from './text-encoding.js';
import { type UnetConditioning, unetDenoiser } from './unet-denoiser.js';
import { decodeLatents, latentSize, type VaeGeometry, vaeGeometry } from './vae.js';

/** Options of {@link StableDiffusionPipeline.generate}, with diffusers' names in camelCase. */
export interface StableDiffusionOptions {
  /** The prompt, or one prompt per batch item. */
  prompt: string | readonly string[];
  /** What to steer away from: one for all prompts or one per prompt. Default: the empty prompt. */
  negativePrompt?: string | readonly string[];
  /** Images per prompt (default 1). */
  numImagesPerPrompt?: number;
  /** Image height in pixels, a multiple of the VAE factor (default: the UNet's sample size × the factor). */
  height?: number;
  /** Image width in pixels, a multiple of the VAE factor. */
  width?: number;
  /** Denoising steps (default 50). SD-Turbo and LCM models need 1–4. */
  numInferenceSteps?: number;
  /** Classifier-free guidance scale `w` (default 7.5); `≤ 1` skips the unconditional pass (SD-Turbo uses 0). */
  guidanceScale?: number;
  /** Guidance rescale `φ` (Lin et al. 2023), default 0. */
  guidanceRescale?: number;
  /** The part of the schedule where classifier-free guidance applies (default: all of it). */
  guidanceInterval?: GuidanceInterval;
  /** More guidances, applied in order after classifier-free guidance (e.g. a `ClassifierGuidance`). */
  guidances?: readonly Guidance[];
  /** DDIM's η (default 0); ignored by schedulers without it. */
  eta?: number;
  /** The noise source: the same seed gives diffusers' CPU-generator latents. Random when omitted. */
  generator?: NoiseGenerator;
  /** Initial latents `[B, 4, h, w]`, already multiplied by `initNoiseSigma`; drawn from `generator` when omitted. */
  latents?: TensorLike;
  /** Called after each step with the latents; may replace them or stop the loop. */
  callbackOnStepEnd?: StepEndCallback;
  /** Cancels generation between model calls with an `AbortError`. */
  signal?: AbortSignal;
  /** Receives warnings (truncated prompts); `console.warn` by default. */
  onWarning?: (message: string) => void;
}

/** The components of a Stable Diffusion pipeline. */
export interface StableDiffusionComponents {
  /** The prompt tokenizer. */
  tokenizer: ClipTokenizer;
  /** The CLIP text encoder. */
  textEncoder: ModelSession;
  /** The denoising UNet. */
  unet: ModelSession;
  /** The VAE decoder. */
  vaeDecoder: ModelSession;
  /** The VAE encoder, when the repository has one (image-to-image). */
  vaeEncoder?: ModelSession;
  /** The VAE's factor and scaling factor. */
  vae: VaeGeometry;
  /** The UNet's `sample_size` (latent pixels), when known. */
  sampleSize: number | undefined;
}

function asList(value: string | readonly string[], what: string): readonly string[] {
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.length === 0 || list.some((p) => typeof p !== 'string')) {
    throw new InvalidArgumentError(`${what} must be a string or a non-empty list of strings.`);
  }
  return list;
}

async function optionalJson(repository: ModelRepository, path: string): Promise<Record<string, unknown> | undefined> {
  const [folder] = path.split('/');
  const files = repository.components[folder]?.files ?? [];
  return files.includes(path) ? ((await repository.readJson(path)) as Record<string, unknown>) : undefined;
}

/**
 * The embedding of the guidance scale that LCM-distilled UNets take as `timestep_cond` (diffusers'
 * `get_guidance_scale_embedding`: sinusoids of `1000·(w − 1)`, sines then cosines).
 */
function guidanceScaleEmbedding(w: number, dim: number, batch: number): TensorLike {
  const half = dim / 2;
  const scaled = (w - 1) * 1000;
  const row = new Float32Array(dim);
  for (let k = 0; k < half; k++) {
    const angle = scaled * Math.exp((-Math.log(10000) * k) / (half - 1));
    row[k] = Math.sin(angle);
    row[half + k] = Math.cos(angle);
  }
  const data = new Float32Array(batch * dim);
  for (let b = 0; b < batch; b++) data.set(row, b * dim);
  return { data, dims: [batch, dim] };
}

/** The most latent values one `generate` call may ask for (2³⁰, a 4 GiB float32 buffer). */
const MAX_LATENT_VALUES = 2 ** 30;

/**
 * Stable Diffusion text-to-image. Load it with `DiffusionPipeline.fromPretrained` or
 * {@link StableDiffusionPipeline.fromRepository}.
 *
 * @example
 * ```ts
 * const pipe = await DiffusionPipeline.fromPretrained('org/sd-onnx', { device: 'cpu' });
 * const { images } = await pipe.generate({ prompt: 'a red circle', generator: new RandomGenerator(0) });
 * await images[0].save('circle.png');
 * ```
 */
export class StableDiffusionPipeline extends DiffusionPipeline {
  /** The prompt tokenizer. */
  readonly tokenizer: ClipTokenizer;
  /** The text encoder session. */
  readonly textEncoder: ModelSession;
  /** The UNet session. */
  readonly unet: ModelSession;
  /** The VAE decoder session. */
  readonly vaeDecoder: ModelSession;
  /** The VAE encoder session, when loaded. */
  readonly vaeEncoder: ModelSession | undefined;
  /** The VAE's factor and latent scaling factor. */
  readonly vae: VaeGeometry;
  /** The UNet's latent sample size, when known (sets the default image size). */
  readonly sampleSize: number | undefined;

  /**
   * @param repository - where the components come from
   * @param scheduler - the scheduler
   * @param components - the loaded components
   */
  constructor(repository: ModelRepository, scheduler: Scheduler, components: StableDiffusionComponents) {
    super(repository, scheduler);
    this.tokenizer = components.tokenizer;
    this.textEncoder = components.textEncoder;
    this.unet = components.unet;
    this.vaeDecoder = components.vaeDecoder;
    this.vaeEncoder = components.vaeEncoder;
    this.vae = components.vae;
    this.sampleSize = components.sampleSize;
  }

  /** Reads the components of a loaded repository. */
  static async loadComponents(repository: ModelRepository): Promise<StableDiffusionComponents> {
    const [tokenizer, textEncoder, unet, vaeDecoder] = await Promise.all([
      loadClipTokenizer(repository),
      repository.createSession('text_encoder'),
      repository.createSession('unet'),
      repository.createSession('vae_decoder'),
    ]);
    const vaeEncoder = repository.components.vae_encoder?.model
      ? await repository.createSession('vae_encoder')
      : undefined;
    const vaeConfig = await optionalJson(repository, 'vae_decoder/config.json');
    const unetConfig = await optionalJson(repository, 'unet/config.json');
    const sampleShape = unet.inputs.find((i) => i.name === 'sample')?.shape[2];
    const sampleSize =
      typeof unetConfig?.sample_size === 'number'
        ? unetConfig.sample_size
        : typeof sampleShape === 'number'
          ? sampleShape
          : undefined;
    return {
      tokenizer,
      textEncoder,
      unet,
      vaeDecoder,
      vaeEncoder,
      vae: vaeGeometry(vaeConfig, vaeDecoder),
      sampleSize,
    };
  }

  /**
   * Builds the pipeline from a repository loaded with `loadRepository`.
   *
   * @param repository - a diffusers-layout Stable Diffusion repository
   */
  static async fromRepository(repository: ModelRepository): Promise<StableDiffusionPipeline> {
    const scheduler = await DiffusionPipeline.loadScheduler(repository);
    return new StableDiffusionPipeline(repository, scheduler, await StableDiffusionPipeline.loadComponents(repository));
  }

  /** The number of latent channels the UNet expects (4 for SD). */
  get latentChannels(): number {
    const channels = this.unet.inputs.find((i) => i.name === 'sample')?.shape[1];
    return typeof channels === 'number' ? channels : 4;
  }

  /**
   * Generates images from prompts.
   *
   * @param options - prompt, guidance, steps, size, seed; see {@link StableDiffusionOptions}
   */
  async generate(options: StableDiffusionOptions): Promise<PipelineOutput> {
    const scheduler = cloneScheduler(this.scheduler);
    scheduler.setTimesteps(options.numInferenceSteps ?? 50);
    const prepared = await this.prepare(options, scheduler, 0);
    const latents = initialLatents(prepared.latentDims, scheduler, prepared.generator, options.latents);
    return this.denoiseAndDecode(options, scheduler, prepared, latents, 0);
  }

  /**
   * Checks the options, encodes the prompts and builds the guidances: the part shared with image-to-image.
   *
   * @param options - the call options
   * @param scheduler - the run's scheduler, on which `setTimesteps` was called
   * @param startIndex - where in `scheduler.timesteps` the run starts
   * @param size - the image size, when an input image fixes it
   */
  protected async prepare(
    options: StableDiffusionOptions,
    scheduler: Scheduler,
    startIndex: number,
    size?: { height: number; width: number },
  ): Promise<{
    conditioning: UnetConditioning;
    guidances: Guidance[];
    generator: NoiseGenerator;
    latentDims: number[];
  }> {
    const prompts = asList(options.prompt, 'prompt');
    const perPrompt = options.numImagesPerPrompt ?? 1;
    if (!Number.isInteger(perPrompt) || perPrompt < 1) {
      throw new InvalidArgumentError(`numImagesPerPrompt must be a positive integer, got ${perPrompt}.`);
    }
    const defaultSize = (this.sampleSize ?? 64) * this.vae.scaleFactor;
    const height = size?.height ?? options.height ?? defaultSize;
    const width = size?.width ?? options.width ?? defaultSize;
    const latent = latentSize(height, width, this.vae.scaleFactor);
    const batch = prompts.length * perPrompt;
    const latentValues = batch * this.latentChannels * latent.height * latent.width;
    if (latentValues > MAX_LATENT_VALUES) {
      throw new InvalidArgumentError(
        `${batch} images of ${width}×${height} need ${latentValues} latent values, more than the ${MAX_LATENT_VALUES} ` +
          'one run can hold. Generate fewer or smaller images per call.',
      );
    }
    const onWarning = options.onWarning ?? ((message: string) => console.warn(`[denoise] ${message}`));

    const timestepCond = this.unet.inputs.find((i) => i.name === 'timestep_cond');
    const guidanceScale = options.guidanceScale ?? 7.5;
    // LCM-distilled UNets take the guidance scale as an embedding and need no unconditional pass.
    const guidances: Guidance[] = timestepCond
      ? []
      : [
          new ClassifierFreeGuidance({
            guidanceScale,
            guidanceRescale: options.guidanceRescale,
            interval: options.guidanceInterval,
          }),
        ];
    guidances.push(...(options.guidances ?? []));
    // Positions as the loop will see them: relative to the part of the schedule that runs.
    const timesteps = scheduler.timesteps.slice(startIndex);
    const needsUnconditional = timesteps.some((timestep, stepIndex) =>
      guidances.some((g) => g.requiresUnconditional({ stepIndex, numInferenceSteps: timesteps.length, timestep })),
    );

    throwIfAborted(options.signal, 'encoding the prompts');
    const promptEmbeds = await encodePrompts(this.tokenizer, this.textEncoder, prompts, perPrompt, onWarning);
    const conditional: Record<string, TensorLike> = { encoder_hidden_states: promptEmbeds };
    let unconditional: Record<string, TensorLike> | undefined;
    if (needsUnconditional) {
      const negatives = asList(options.negativePrompt ?? '', 'negativePrompt');
      if (negatives.length !== 1 && negatives.length !== prompts.length) {
        throw new InvalidArgumentError(
          `Got ${negatives.length} negative prompts for ${prompts.length} prompts; give one or one per prompt.`,
        );
      }
      const negativeList = negatives.length === 1 ? prompts.map(() => negatives[0]) : negatives;
      unconditional = {
        encoder_hidden_states: await encodePrompts(
          this.tokenizer,
          this.textEncoder,
          negativeList,
          perPrompt,
          onWarning,
        ),
      };
    }
    if (timestepCond) {
      const dim = typeof timestepCond.shape[1] === 'number' ? timestepCond.shape[1] : 256;
      conditional.timestep_cond = guidanceScaleEmbedding(guidanceScale, dim, batch);
    }
    return {
      conditioning: { conditional, unconditional },
      guidances,
      generator: generatorOrRandom(options.generator),
      latentDims: [batch, this.latentChannels, latent.height, latent.width],
    };
  }

  /** Runs the loop from `startIndex` of the schedule and decodes the result. */
  protected async denoiseAndDecode(
    options: StableDiffusionOptions,
    scheduler: Scheduler,
    prepared: { conditioning: UnetConditioning; guidances: Guidance[]; generator: NoiseGenerator },
    latents: TensorLike,
    startIndex: number,
  ): Promise<PipelineOutput> {
    const final = await runDenoisingLoop({
      scheduler,
      startIndex,
      latents,
      denoiser: unetDenoiser(this.unet, prepared.conditioning),
      guidances: prepared.guidances,
      predictionType: (scheduler.config as { prediction_type?: PredictionType }).prediction_type ?? 'epsilon',
      generator: prepared.generator,
      eta: options.eta,
      callbackOnStepEnd: options.callbackOnStepEnd,
      signal: options.signal,
    });
    throwIfAborted(options.signal, 'decoding the latents');
    const pixels = await decodeLatents(this.vaeDecoder, final, this.vae.scalingFactor);
    // The decoder run cannot be interrupted; an abort that arrived meanwhile still wins.
    throwIfAborted(options.signal, 'decoding the latents');
    return { images: imagesFromTensor(pixels) };
  }

  /** Frees every session of the pipeline. */
  async release(): Promise<void> {
    await Promise.all([this.textEncoder, this.unet, this.vaeDecoder, this.vaeEncoder].map((s) => s?.release()));
  }
}

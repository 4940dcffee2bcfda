/**
 * Text-to-image latent diffusion (Rombach et al. 2022) over diffusers-layout ONNX exports: CLIP tokenizer, text
 * encoder, UNet and VAE decoder, with composable guidance.
 */
import {
  ConfigError,
  InvalidArgumentError,
  NumericError,
  type Tensor,
  type TensorLike,
  throwIfAborted,
} from '@denoise/core';
import { DeviceTensor, type ModelRepository, type ModelSession, type SessionOptions } from '@denoise/core/runtime';
import { acceptsCustomSigmas, customSigmasSchedulers, type NoiseGenerator, type Scheduler } from '@denoise/schedulers';
import type { ClipTokenizer } from './clip-tokenizer.js';
import { type Denoiser, type LatentsAfterStep, runDenoisingLoop, type StepEndCallback } from './denoising-loop.js';
import { classifierFreeGuidances } from './guidance/classifier-free.js';
import type { Guidance, GuidanceInterval, PredictionType } from './guidance/guidance.js';
import { type GeneratedImage, imagesFromTensor } from './image.js';
import {
  cloneScheduler,
  DiffusionPipeline,
  generatorOrRandom,
  initialLatents,
  MAX_SAMPLE_VALUES,
  OUTPUT_TYPES,
  type OutputOf,
  type OutputType,
} from './pipeline.js';
import {
  encodePrompts,
  encodePromptsOnDevice,
  loadClipTokenizer,
  repeatBatch,
  TEXT_ENCODER_HIDDEN_STATE,
} from './text-encoding.js';
import {
  type ConditioningValue,
  staticBatch,
  UnetConditioning,
  type UnetFeedsHook,
  unetDenoiser,
} from './unet-denoiser.js';
import { decodeLatents, latentSize, type VaeGeometry, vaeGeometry } from './vae.js';

/**
 * Options of {@link StableDiffusionPipeline.generate}, with diffusers' names in camelCase.
 *
 * @typeParam O - what `generate` returns, from {@link StableDiffusionOptions.outputType}
 */
export interface StableDiffusionOptions<O extends OutputType = 'image'> {
  /** The prompt, or one prompt per batch item. Give this or {@link promptEmbeds}. */
  prompt?: string | readonly string[];
  /**
   * The text encoder's hidden states `[P, S, D]` for P prompts, instead of `prompt` (e.g. weighted or mixed
   * embeddings computed elsewhere); repeated `numImagesPerPrompt` times.
   */
  promptEmbeds?: TensorLike;
  /** What to steer away from: one for all prompts or one per prompt. Default: the empty prompt. */
  negativePrompt?: string | readonly string[];
  /** The hidden states of the negative prompts, instead of `negativePrompt`; the dims of `promptEmbeds`. */
  negativePromptEmbeds?: TensorLike;
  /** Images per prompt (default 1). */
  numImagesPerPrompt?: number;
  /** Image height in pixels, a multiple of the VAE factor (default: the UNet's sample size × the factor). */
  height?: number;
  /** Image width in pixels, a multiple of the VAE factor. */
  width?: number;
  /** Denoising steps (default 50). SD-Turbo and LCM models need 1–4. */
  numInferenceSteps?: number;
  /**
   * Explicit training timesteps in sampling (descending) order, instead of `numInferenceSteps` (diffusers'
   * `timesteps`), for schedulers that take them.
   */
  timesteps?: readonly number[];
  /**
   * Explicit noise levels in sampling order, instead of `numInferenceSteps` and `timesteps` (diffusers' `sigmas`),
   * for schedulers that take them ({@link acceptsCustomSigmas}); the scheduler reads them as its
   * `setTimesteps({ sigmas })` does: `EulerDiscreteScheduler` takes σ per step then the final σ (n + 1 values),
   * `FlowMatchEulerDiscreteScheduler` σ in (0, 1] before its shift, `EDMEulerScheduler` ramp positions in [0, 1].
   */
  sigmas?: readonly number[];
  /** Classifier-free guidance scale `w` (default 7.5); `≤ 1` skips the unconditional pass (SD-Turbo uses 0). */
  guidanceScale?: number;
  /** Guidance rescale `φ` (Lin et al. 2023), default 0. */
  guidanceRescale?: number;
  /** The part of the schedule where classifier-free guidance applies (default: all of it). */
  guidanceInterval?: GuidanceInterval;
  /**
   * The guidances, applied in order at every step; replaces the default classifier-free guidance built from
   * `guidanceScale`, `guidanceRescale` and `guidanceInterval` (give those or this). Compose with
   * `[...classifierFreeGuidances({ guidanceScale }), new ClassifierGuidance(...)]`.
   */
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
  /**
   * Receives warnings: truncated prompts, and prompts the model does not know (no token besides the special ones,
   * or the same prediction as the empty prompt at the first guided step); `console.warn` by default.
   */
  onWarning?: (message: string) => void;
  /**
   * What to return (diffusers' `output_type`): `'image'` (the default) for {@link GeneratedImage}s, `'latent'` for
   * the final latents without decoding, `'tensor'` for the decoded pixels `[B, 3, H, W]` in `[0, 1]`.
   */
  outputType?: O;
}

/** The options that only configure classifier-free guidance's unconditional pass. */
const CFG_ONLY_OPTIONS = ['guidanceRescale', 'guidanceInterval', 'negativePrompt', 'negativePromptEmbeds'] as const;

/** The scale of classifier-free guidance when the call gives none (diffusers' default). */
const DEFAULT_GUIDANCE_SCALE = 7.5;

/** What {@link LatentDiffusionPipeline.checkInputs} derives from the call options for the later steps. */
export interface GenerationPlan {
  /** The prompts, when given as text. */
  readonly prompts: readonly string[] | undefined;
  /** The number of prompts (text or embeddings). */
  readonly promptCount: number;
  /** Images per prompt. */
  readonly perPrompt: number;
  /** The latents' dims `[B, C, h, w]`, `B = promptCount · perPrompt`. */
  readonly latentDims: number[];
  /** The noise source. */
  readonly generator: NoiseGenerator;
  /** Where warnings go. */
  readonly onWarning: (message: string) => void;
}

/** The UNet's text conditioning for one generation, and what the prompt check reads of it. */
export interface TextEmbeddings {
  /**
   * The UNet inputs of the conditional and unconditional rows, wherever they live (CPU, or left on the GPU by the
   * text encoder): the one owner of those on the device, so dispose it once the generation ends.
   */
  readonly conditioning: UnetConditioning;
  /**
   * Per batch row, the text prompt whose unconditional row is the empty prompt's, so that a UNet answering both
   * alike shows it ignored the prompt; `undefined` for the other rows.
   */
  readonly promptOfRow?: readonly (string | undefined)[];
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
  /**
   * Whether the text encoder leaves `last_hidden_state` on the UNet's device (it was opened with
   * `preferredOutputLocation: { last_hidden_state: 'gpu-buffer' }` on the same WebGPU device as the UNet): the
   * embeddings then stay there for the whole generation and every UNet call takes them as is. Default false.
   */
  keepTextEmbeddingsOnDevice?: boolean;
}

function checkEmbeds(embeds: TensorLike, name: string): void {
  if (!(embeds?.data instanceof Float32Array) || embeds.dims?.length !== 3) {
    throw new InvalidArgumentError(
      `${name} must be a float32 tensor [prompts, sequence, hidden] of text-encoder hidden states.`,
    );
  }
}

/** Decoder output in `[-1, 1]` mapped in place to `[0, 1]`, clamped (diffusers' `denormalize`). */
function toUnitRange(pixels: Tensor): Tensor {
  const { data } = pixels;
  for (let i = 0; i < data.length; i++) data[i] = Math.min(Math.max(data[i] / 2 + 0.5, 0), 1);
  return pixels;
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

/**
 * Wraps a denoiser to compare, at the first step that has an unconditional pass, each watched row's conditional
 * prediction with its unconditional one (the empty prompt's): when they are equal, the model could not tell the
 * prompt from the empty one, and the run is an unconditional sample. Only reads what the run computes anyway.
 *
 * @param denoiser - the UNet denoiser
 * @param promptOfRow - per batch row, the prompt to watch, or undefined (a negative prompt, a prompt already warned of)
 * @param onWarning - receives one warning per ignored prompt
 */
function warnIfPromptIgnored(
  denoiser: Denoiser,
  promptOfRow: readonly (string | undefined)[],
  onWarning: (message: string) => void,
): Denoiser {
  let checked = !promptOfRow.some((prompt) => prompt !== undefined);
  return async (request) => {
    const prediction = await denoiser(request);
    const { branches } = request;
    const unconditionalBlock = branches.indexOf('unconditional');
    if (checked || unconditionalBlock < 0) return prediction;
    checked = true;
    const conditionalBlock = branches.indexOf('conditional');
    const batch = promptOfRow.length;
    const rowSize = prediction.data.length / (branches.length * batch);
    const ignored = new Set<string>();
    for (let row = 0; row < batch; row++) {
      const prompt = promptOfRow[row];
      if (prompt === undefined || ignored.has(prompt)) continue;
      const rowAt = (block: number) =>
        prediction.data.subarray((block * batch + row) * rowSize, (block * batch + row + 1) * rowSize);
      const unconditional = rowAt(unconditionalBlock);
      const conditional = rowAt(conditionalBlock);
      let scale = 0;
      let difference = 0;
      for (let i = 0; i < rowSize; i++) {
        scale = Math.max(scale, Math.abs(unconditional[i]));
        difference = Math.max(difference, Math.abs(conditional[i] - unconditional[i]));
      }
      // Equal up to float32 rounding of the same computation.
      if (difference <= 1e-6 * scale) ignored.add(prompt);
    }
    for (const prompt of ignored) {
      onWarning(
        `The model cannot tell the prompt ${JSON.stringify(prompt)} from the empty prompt (it predicts the same ` +
          'noise for both), so the image is an unconditional sample: the model knows none of its words. ' +
          'Use words it was trained on.',
      );
    }
    return prediction;
  };
}

/**
 * What Stable Diffusion's text-to-image and image-to-image pipelines share: the components, prompt encoding and
 * the guidances, the denoising loop and decoding. Use {@link StableDiffusionPipeline} or
 * {@link StableDiffusionImg2ImgPipeline}.
 */
export abstract class LatentDiffusionPipeline extends DiffusionPipeline {
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
  /** Whether the text embeddings stay on the UNet's device (see {@link StableDiffusionComponents}). */
  readonly keepTextEmbeddingsOnDevice: boolean;

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
    this.keepTextEmbeddingsOnDevice = components.keepTextEmbeddingsOnDevice ?? false;
  }

  /**
   * Reads the components of a loaded repository. When its text encoder and UNet are both on `'webgpu'`, the text
   * encoder leaves its output on the GPU (see {@link StableDiffusionComponents.keepTextEmbeddingsOnDevice}).
   *
   * @param repository - a diffusers-layout Stable Diffusion repository
   */
  static async loadComponents(repository: ModelRepository): Promise<StableDiffusionComponents> {
    // WebGPU sessions of one page share ONNX Runtime's GPU device, so one session's output buffer is another's input.
    const keepTextEmbeddingsOnDevice =
      repository.deviceOf('text_encoder') === 'webgpu' && repository.deviceOf('unet') === 'webgpu';
    const textEncoderOptions: SessionOptions = keepTextEmbeddingsOnDevice
      ? { preferredOutputLocation: { [TEXT_ENCODER_HIDDEN_STATE]: 'gpu-buffer' } }
      : {};
    const [tokenizer, textEncoder, imageComponents] = await Promise.all([
      loadClipTokenizer(repository),
      repository.createSession('text_encoder', textEncoderOptions),
      LatentDiffusionPipeline.loadImageComponents(repository),
    ]);
    return { tokenizer, textEncoder, ...imageComponents, keepTextEmbeddingsOnDevice };
  }

  /**
   * Reads the components every latent diffusion pipeline has besides its text encoders: the UNet, the VAE and
   * their configs.
   *
   * @param repository - a diffusers-layout repository
   */
  static async loadImageComponents(
    repository: ModelRepository,
  ): Promise<Pick<StableDiffusionComponents, 'unet' | 'vaeDecoder' | 'vaeEncoder' | 'vae' | 'sampleSize'>> {
    const [unet, vaeDecoder] = await Promise.all([
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
    return { unet, vaeDecoder, vaeEncoder, vae: await vaeGeometry(vaeConfig, vaeDecoder), sampleSize };
  }

  /** The number of latent channels the UNet expects (4 for SD). */
  get latentChannels(): number {
    const channels = this.unet.inputs.find((i) => i.name === 'sample')?.shape[1];
    return typeof channels === 'number' ? channels : 4;
  }

  /**
   * Step 1 of a generation, diffusers' `check_inputs`: the prompts or their embeddings, the batch, the image size
   * and the generator, checked before any model runs.
   *
   * @param options - the call options
   * @param size - the image size, when an input image fixes it
   */
  protected checkInputs(
    options: StableDiffusionOptions<OutputType>,
    size?: { height: number; width: number },
  ): GenerationPlan {
    const { prompt, promptEmbeds, negativePromptEmbeds } = options;
    if ((prompt === undefined) === (promptEmbeds === undefined)) {
      throw new InvalidArgumentError('Give exactly one of prompt and promptEmbeds.');
    }
    const prompts = prompt === undefined ? undefined : asList(prompt, 'prompt');
    if (promptEmbeds !== undefined) checkEmbeds(promptEmbeds, 'promptEmbeds');
    if (negativePromptEmbeds !== undefined) {
      if (options.negativePrompt !== undefined) {
        throw new InvalidArgumentError('Give at most one of negativePrompt and negativePromptEmbeds.');
      }
      checkEmbeds(negativePromptEmbeds, 'negativePromptEmbeds');
      const expected = (promptEmbeds ?? negativePromptEmbeds).dims;
      if (promptEmbeds === undefined || negativePromptEmbeds.dims.some((d, i) => d !== expected[i])) {
        throw new InvalidArgumentError(
          `negativePromptEmbeds must come with promptEmbeds of the same dims; got [${negativePromptEmbeds.dims.join(', ')}]` +
            (promptEmbeds ? ` and [${promptEmbeds.dims.join(', ')}].` : ' without promptEmbeds.'),
        );
      }
    }
    const promptCount = prompts?.length ?? (promptEmbeds as TensorLike).dims[0];
    const perPrompt = options.numImagesPerPrompt ?? 1;
    if (!Number.isInteger(perPrompt) || perPrompt < 1) {
      throw new InvalidArgumentError(`numImagesPerPrompt must be a positive integer, got ${perPrompt}.`);
    }
    const outputType = options.outputType ?? 'image';
    if (!OUTPUT_TYPES.includes(outputType)) {
      throw new InvalidArgumentError(
        `outputType must be one of ${OUTPUT_TYPES.join(', ')}, got ${String(outputType)}.`,
      );
    }
    const defaultSize = (this.sampleSize ?? 64) * this.vae.scaleFactor;
    const height = size?.height ?? options.height ?? defaultSize;
    const width = size?.width ?? options.width ?? defaultSize;
    const latent = latentSize(height, width, this.vae.scaleFactor);
    const batch = promptCount * perPrompt;
    const latentValues = batch * this.latentChannels * latent.height * latent.width;
    if (latentValues > MAX_SAMPLE_VALUES) {
      throw new InvalidArgumentError(
        `${batch} images of ${width}×${height} need ${latentValues} latent values, more than the ${MAX_SAMPLE_VALUES} ` +
          'one run can hold. Generate fewer or smaller images per call.',
      );
    }
    this.checkFixedSize(latent, size === undefined ? 'options' : 'image');
    return {
      prompts,
      promptCount,
      perPrompt,
      latentDims: [batch, this.latentChannels, latent.height, latent.width],
      generator: generatorOrRandom(options.generator),
      onWarning: options.onWarning ?? ((message: string) => console.warn(`[denoise] ${message}`)),
    };
  }

  /**
   * Step 2, diffusers' `retrieve_timesteps`: a copy of the pipeline's scheduler, for this generation alone, set to
   * the caller's `timesteps`, to the caller's `sigmas` or to `numInferenceSteps` (default 50).
   *
   * @param options - the call options
   */
  protected prepareTimesteps(options: StableDiffusionOptions<OutputType>): Scheduler {
    const scheduler = cloneScheduler(this.scheduler);
    const { numInferenceSteps, timesteps, sigmas } = options;
    if (sigmas !== undefined) {
      if (numInferenceSteps !== undefined || timesteps !== undefined) {
        throw new InvalidArgumentError(
          'Give only one of numInferenceSteps, timesteps and sigmas: sigmas set the steps and their timesteps.',
        );
      }
      if (!acceptsCustomSigmas(scheduler)) {
        throw new InvalidArgumentError(
          `${scheduler.className} does not take custom sigmas. Use a scheduler that does ` +
            `(${customSigmasSchedulers().join(', ')}), e.g. pipe.scheduler = ` +
            'EulerDiscreteScheduler.fromConfig(pipe.scheduler.config), or give timesteps or numInferenceSteps.',
        );
      }
      scheduler.setTimesteps({ sigmas });
    } else if (timesteps !== undefined) {
      if (numInferenceSteps !== undefined) {
        throw new InvalidArgumentError('Give at most one of numInferenceSteps and timesteps.');
      }
      scheduler.setTimesteps({ timesteps });
    } else {
      scheduler.setTimesteps(numInferenceSteps ?? 50);
    }
    return scheduler;
  }

  /**
   * The guidances of the run, in order: the caller's `guidances` when given, else classifier-free guidance from
   * `guidanceScale`, `guidanceInterval` and `guidanceRescale` ({@link classifierFreeGuidances}). An LCM-distilled
   * UNet takes the scale as an embedding instead, so its default list is empty and the CFG-only options are
   * reported as ignored.
   *
   * @param options - the call options
   * @param onWarning - where the ignored options are reported
   */
  protected prepareGuidances(
    options: StableDiffusionOptions<OutputType>,
    onWarning: (message: string) => void,
  ): Guidance[] {
    const cfgOnly = CFG_ONLY_OPTIONS.filter((key) => options[key] !== undefined);
    if (this.takesGuidanceEmbedding && cfgOnly.length > 0) {
      onWarning(
        `This UNet is LCM-distilled: it takes guidanceScale as an embedding and runs no unconditional pass, so ` +
          `${cfgOnly.join(', ')} ${cfgOnly.length === 1 ? 'is' : 'are'} ignored.`,
      );
    }
    if (options.guidances !== undefined) {
      // These configure the default list that guidances replaces (an LCM UNet still reads guidanceScale).
      const replaced = (['guidanceScale', 'guidanceRescale', 'guidanceInterval'] as const).filter(
        (key) => options[key] !== undefined && !(key === 'guidanceScale' && this.takesGuidanceEmbedding),
      );
      if (replaced.length > 0) {
        throw new InvalidArgumentError(
          `${replaced.join(', ')} configure${replaced.length === 1 ? 's' : ''} the default classifier-free ` +
            'guidance, which guidances replaces: put the guidance you want in the list instead, e.g. ' +
            'guidances: [...classifierFreeGuidances({ guidanceScale: 7.5 }), myGuidance].',
        );
      }
      return [...options.guidances];
    }
    if (this.takesGuidanceEmbedding) return [];
    return classifierFreeGuidances({
      guidanceScale: options.guidanceScale ?? this.defaultGuidanceScale,
      guidanceRescale: options.guidanceRescale,
      guidanceInterval: options.guidanceInterval,
    });
  }

  /**
   * Step 3, diffusers' `encode_prompt`: the UNet's conditioning for every row of the batch. The negative prompts
   * are encoded only when a guidance needs the unconditional prediction at some step of `timesteps` (the part of
   * the schedule that runs). Its conditioning owns the embeddings kept on the device: dispose it when the
   * generation ends, however it ends.
   *
   * @param options - the call options
   * @param plan - from {@link LatentDiffusionPipeline.checkInputs}
   * @param guidances - the run's guidances
   * @param timesteps - the timesteps the loop will run
   */
  protected async encodePrompt(
    options: StableDiffusionOptions<OutputType>,
    plan: GenerationPlan,
    guidances: readonly Guidance[],
    timesteps: readonly number[],
  ): Promise<TextEmbeddings> {
    const needsUnconditional = timesteps.some((timestep, stepIndex) =>
      guidances.some((g) =>
        g.branches({ stepIndex, numInferenceSteps: timesteps.length, timestep }).includes('unconditional'),
      ),
    );
    let negatives: readonly string[] | undefined;
    if (needsUnconditional && options.negativePromptEmbeds === undefined) {
      const list = asList(options.negativePrompt ?? '', 'negativePrompt');
      if (list.length !== 1 && list.length !== plan.promptCount) {
        throw new InvalidArgumentError(
          `Got ${list.length} negative prompts for ${plan.promptCount} prompts; give one or one per prompt.`,
        );
      }
      negatives = list.length === 1 ? Array.from({ length: plan.promptCount }, () => list[0]) : list;
    }
    const { perPrompt, onWarning, prompts } = plan;
    // The empty prompt asks for an unconditional sample on purpose: neither check below warns of it.
    const unknownToTokenizer = new Set(
      prompts?.filter((prompt) => prompt !== '' && !this.tokenizer.hasKnownToken(prompt)),
    );
    for (const prompt of unknownToTokenizer) {
      onWarning(
        `The prompt ${JSON.stringify(prompt)} has no token the tokenizer knows besides the start and end tokens, ` +
          "so the image will not follow it. Write it in words of the model's vocabulary.",
      );
    }
    throwIfAborted(options.signal, 'encoding the prompts');
    const conditioning =
      prompts === undefined
        ? await this.embeddingsFromTensors(options, negatives, needsUnconditional, plan)
        : await this.encodeTextPrompts(options, prompts, negatives, plan);
    // Rows whose unconditional pass is the empty prompt: if the UNet answers both passes alike, it ignored the prompt.
    const promptOfRow = prompts?.flatMap((prompt, p) => {
      const watched = negatives?.[p] === '' && prompt !== '' && !unknownToTokenizer.has(prompt) ? prompt : undefined;
      return Array.from({ length: perPrompt }, () => watched);
    });
    if (!this.takesGuidanceEmbedding) return { conditioning, promptOfRow };
    // LCM-distilled UNets take the guidance scale as an embedding instead of an unconditional pass.
    const guidanceScale = options.guidanceScale ?? this.defaultGuidanceScale;
    const timestepCond = guidanceScaleEmbedding(guidanceScale, this.guidanceEmbeddingDim, plan.latentDims[0]);
    return { conditioning: conditioning.withConditional({ timestep_cond: timestepCond }), promptOfRow };
  }

  /**
   * The conditioning of text prompts and, when the run needs the unconditional pass, of their negative prompts:
   * the text encoder's `last_hidden_state` as `encoder_hidden_states`, on the UNet's device when
   * {@link LatentDiffusionPipeline.keepTextEmbeddingsOnDevice} is set. Pipelines with other text conditioning
   * (SDXL's two encoders) override it.
   *
   * @param _options - the call options (read by overrides)
   * @param prompts - the prompts, one per prompt row
   * @param negatives - one negative prompt per prompt, or undefined when no step needs the unconditional pass
   * @param plan - from {@link LatentDiffusionPipeline.checkInputs}
   */
  protected encodeTextPrompts(
    _options: StableDiffusionOptions<OutputType>,
    prompts: readonly string[],
    negatives: readonly string[] | undefined,
    plan: GenerationPlan,
  ): Promise<UnetConditioning> {
    return this.keepTextEmbeddingsOnDevice
      ? this.encodeOnDevice(prompts, negatives, plan.perPrompt, plan.onWarning)
      : this.encodeOnCpu(prompts, negatives, plan.perPrompt, plan.onWarning);
  }

  /**
   * The caller's `promptEmbeds` (and `negativePromptEmbeds`, or the encoded negative prompts), repeated per image.
   *
   * @param options - the call options
   * @param negatives - one negative prompt per prompt, when the run needs them encoded
   * @param needsUnconditional - whether some step runs the unconditional pass
   * @param plan - from {@link LatentDiffusionPipeline.checkInputs}
   */
  protected async embeddingsFromTensors(
    options: StableDiffusionOptions<OutputType>,
    negatives: readonly string[] | undefined,
    needsUnconditional: boolean,
    plan: GenerationPlan,
  ): Promise<UnetConditioning> {
    const repeat = (embeds: TensorLike): TensorLike => repeatBatch(embeds, plan.perPrompt);
    const conditional = { encoder_hidden_states: repeat(options.promptEmbeds as TensorLike) };
    let unconditional: Record<string, ConditioningValue> | undefined;
    if (options.negativePromptEmbeds !== undefined) {
      unconditional = { encoder_hidden_states: repeat(options.negativePromptEmbeds) };
    } else if (needsUnconditional && negatives !== undefined) {
      unconditional = {
        encoder_hidden_states: await encodePrompts(
          this.tokenizer,
          this.textEncoder,
          negatives,
          plan.perPrompt,
          plan.onWarning,
        ),
      };
    }
    return new UnetConditioning({ conditional, unconditional });
  }

  /**
   * Rejects a size the UNet graph cannot take: an export with a fixed latent size (ONNX graphs exported for one
   * resolution) accepts only that size, and the message names it in pixels.
   *
   * @param latent - the latent size asked for
   * @param source - what set the size, for the message: the `width`/`height` options or the input image
   */
  private checkFixedSize(latent: { height: number; width: number }, source: 'options' | 'image'): void {
    const shape = this.unet.inputs.find((i) => i.name === 'sample')?.shape;
    const fixed = (dim: unknown) => (typeof dim === 'number' && dim > 0 ? dim : undefined);
    const [fixedHeight, fixedWidth] = [fixed(shape?.[2]), fixed(shape?.[3])];
    if ((fixedHeight ?? latent.height) === latent.height && (fixedWidth ?? latent.width) === latent.width) return;
    const factor = this.vae.scaleFactor;
    const accepted = (dim: number | undefined) => (dim === undefined ? `any multiple of ${factor}` : dim * factor);
    const [width, height] = [latent.width * factor, latent.height * factor];
    const got =
      source === 'image'
        ? `got a ${width}×${height} image. Resize the image to that size.`
        : `got width ${width} and height ${height}. Leave width and height out to get that size.`;
    throw new InvalidArgumentError(
      `The UNet of ${this.repository.name} was exported for width ${accepted(fixedWidth)} and height ` +
        `${accepted(fixedHeight)} only; ${got}`,
    );
  }

  /** The text embeddings on the CPU: one text-encoder run for the prompts, one for the negative prompts. */
  private async encodeOnCpu(
    prompts: readonly string[],
    negatives: readonly string[] | undefined,
    perPrompt: number,
    onWarning: (message: string) => void,
  ): Promise<UnetConditioning> {
    const encode = (list: readonly string[]) =>
      encodePrompts(this.tokenizer, this.textEncoder, list, perPrompt, onWarning);
    const conditional = { encoder_hidden_states: await encode(prompts) };
    const unconditional = negatives && { encoder_hidden_states: await encode(negatives) };
    return new UnetConditioning({ conditional, unconditional });
  }

  /**
   * The text embeddings left on the UNet's device for the whole generation. A UNet that takes the doubled batch
   * gets `[negatives; prompts]` from ONE text-encoder run (its steps without the unconditional half read the
   * prompts' half back once, in the conditioning); a fixed-batch UNet, called twice per step, gets one device
   * tensor per half. An output the UNet cannot take as is (another element type) is read back once.
   */
  private async encodeOnDevice(
    prompts: readonly string[],
    negatives: readonly string[] | undefined,
    perPrompt: number,
    onWarning: (message: string) => void,
  ): Promise<UnetConditioning> {
    // Freed here if encoding fails part-way; the conditioning owns them once built.
    const owned: DeviceTensor[] = [];
    const wanted = this.unet.inputs.find((i) => i.name === 'encoder_hidden_states')?.type;
    const encode = async (list: readonly string[]): Promise<ConditioningValue> => {
      const hidden = await encodePromptsOnDevice(this.tokenizer, this.textEncoder, list, perPrompt, onWarning);
      if (!(hidden instanceof DeviceTensor)) return hidden;
      if (hidden.value.type === wanted) {
        owned.push(hidden);
        return hidden;
      }
      try {
        return await hidden.toTensor();
      } finally {
        hidden.dispose();
      }
    };
    try {
      if (negatives === undefined) {
        return new UnetConditioning({ conditional: { encoder_hidden_states: await encode(prompts) } });
      }
      const rows = prompts.length * perPrompt;
      if (staticBatch(this.unet) === rows) {
        const unconditional = { encoder_hidden_states: await encode(negatives) };
        const conditional = { encoder_hidden_states: await encode(prompts) };
        return new UnetConditioning({ conditional, unconditional });
      }
      return new UnetConditioning({ stacked: { encoder_hidden_states: await encode([...negatives, ...prompts]) } });
    } catch (error) {
      for (const tensor of owned) tensor.dispose();
      throw error;
    }
  }

  /**
   * Step 5, the denoising loop: from `startIndex` of the schedule, with the UNet bound to `embeddings`.
   *
   * @param options - the call options
   * @param scheduler - the run's scheduler, from {@link LatentDiffusionPipeline.prepareTimesteps}
   * @param run - the conditioning, the guidances, the generator and where warnings go
   * @param latents - the initial latents
   * @param startIndex - where in `scheduler.timesteps` the run starts
   * @param loop - where it stops (`endIndex`, exclusive; default: the end of the schedule), channels the UNet takes
   *   after the latents, and the pipeline's edit after each step
   */
  protected denoise(
    options: StableDiffusionOptions<OutputType>,
    scheduler: Scheduler,
    run: {
      embeddings: TextEmbeddings;
      guidances: readonly Guidance[];
      generator: NoiseGenerator;
      onWarning: (message: string) => void;
      /** Extra UNet inputs per call (a ControlNet's residuals). */
      unetFeeds?: UnetFeedsHook;
    },
    latents: TensorLike,
    startIndex: number,
    loop: { endIndex?: number; extraSampleChannels?: TensorLike; afterStep?: LatentsAfterStep } = {},
  ): Promise<Tensor> {
    return runDenoisingLoop({
      scheduler,
      startIndex,
      endIndex: loop.endIndex,
      latents,
      afterStep: loop.afterStep,
      denoiser: warnIfPromptIgnored(
        unetDenoiser(this.unet, run.embeddings.conditioning, {
          extraSampleChannels: loop.extraSampleChannels,
          extraFeeds: run.unetFeeds,
        }),
        run.embeddings.promptOfRow ?? [],
        run.onWarning,
      ),
      guidances: run.guidances,
      predictionType: (scheduler.config as { prediction_type?: PredictionType }).prediction_type ?? 'epsilon',
      generator: run.generator,
      eta: options.eta,
      callbackOnStepEnd: options.callbackOnStepEnd,
      signal: options.signal,
    });
  }

  /**
   * Step 6, decoding: the final latents as `outputType` asks, images by default.
   *
   * @param latents - the loop's result
   * @param options - `outputType` and `signal`
   */
  protected async decode<O extends OutputType>(
    latents: Tensor,
    options: { outputType?: O; signal?: AbortSignal },
  ): Promise<OutputOf<O>> {
    const outputType: OutputType = options.outputType ?? 'image';
    if (outputType === 'latent') return { latents } as OutputOf<O>;
    throwIfAborted(options.signal, 'decoding the latents');
    const pixels = await decodeLatents(this.vaeDecoder, latents, this.vae.scalingFactor);
    // The decoder run cannot be interrupted; an abort that arrived meanwhile still wins.
    throwIfAborted(options.signal, 'decoding the latents');
    checkDecodedSize(pixels.dims, latents.dims, this.vae.scaleFactor);
    this.checkDecodedFinite(pixels);
    if (outputType === 'tensor') return { images: toUnitRange(pixels) } as OutputOf<O>;
    return { images: imagesFromTensor(pixels) } as OutputOf<O>;
  }

  /** The classifier-free guidance scale of a call that gives none (diffusers' default for the pipeline). */
  protected get defaultGuidanceScale(): number {
    return DEFAULT_GUIDANCE_SCALE;
  }

  /** Whether the UNet is LCM-distilled: it takes the guidance scale as `timestep_cond`, not an unconditional pass. */
  protected get takesGuidanceEmbedding(): boolean {
    return this.unet.inputs.some((i) => i.name === 'timestep_cond');
  }

  private get guidanceEmbeddingDim(): number {
    const dim = this.unet.inputs.find((i) => i.name === 'timestep_cond')?.shape[1];
    return typeof dim === 'number' ? dim : 256;
  }

  /**
   * A float16 VAE decoder can overflow (SDXL's VAE does: diffusers upcasts it to float32 by `force_upcast`); its
   * NaN/Inf would come out as a black image, so the run fails with the fixes instead.
   */
  private checkDecodedFinite(pixels: Tensor): void {
    if (this.vaeDecoder.inputs[0]?.type !== 'float16' || pixels.data.every(Number.isFinite)) return;
    throw new NumericError(
      `The float16 VAE decoder of ${this.repository.name} overflowed: its output holds NaN or Infinity, which ` +
        "would be a black image. Load the VAE decoder in float32 (dtype: { default: 'fp16', vae_decoder: 'fp32' }), " +
        'or use a VAE fine-tuned to run in float16 (for SDXL, madebyollin/sdxl-vae-fp16-fix).',
    );
  }

  /** Frees every session of the pipeline. */
  async release(): Promise<void> {
    await Promise.all([this.textEncoder, this.unet, this.vaeDecoder, this.vaeEncoder].map((s) => s?.release()));
  }
}

/**
 * Stable Diffusion text-to-image. Load it with `StableDiffusionPipeline.fromPretrained` (or `DiffusionPipeline.fromPretrained`) or
 * {@link StableDiffusionPipeline.fromRepository}.
 *
 * @example
 * ```ts
 * const pipe = await StableDiffusionPipeline.fromPretrained('org/sd-onnx', { device: 'cpu' });
 * const { images } = await pipe.generate({ prompt: 'a red circle', generator: new RandomGenerator(0) });
 * await images[0].save('circle.png');
 * ```
 */
export class StableDiffusionPipeline extends LatentDiffusionPipeline {
  /** {@inheritDoc DiffusionPipeline.kind} */
  readonly kind = 'StableDiffusionPipeline';

  /**
   * Builds the pipeline from a repository loaded with `loadRepository`.
   *
   * @param repository - a diffusers-layout Stable Diffusion repository
   */
  static async fromRepository(repository: ModelRepository): Promise<StableDiffusionPipeline> {
    const scheduler = await DiffusionPipeline.loadScheduler(repository);
    const components = await LatentDiffusionPipeline.loadComponents(repository);
    return new StableDiffusionPipeline(repository, scheduler, components);
  }

  /**
   * Generates images from prompts, in diffusers' `__call__` order.
   *
   * @param options - prompt, guidance, steps, size, seed; see {@link StableDiffusionOptions}
   * @returns the images, or the latents or pixel tensor that `outputType` asks for
   */
  async generate<O extends OutputType = 'image'>(options: StableDiffusionOptions<O>): Promise<OutputOf<O>> {
    const plan = this.checkInputs(options);
    const scheduler = this.prepareTimesteps(options);
    const guidances = this.prepareGuidances(options, plan.onWarning);
    const embeddings = await this.encodePrompt(options, plan, guidances, scheduler.timesteps);
    try {
      const latents = initialLatents(plan.latentDims, scheduler, plan.generator, options.latents);
      const final = await this.denoise(options, scheduler, { embeddings, guidances, ...plan }, latents, 0);
      return await this.decode(final, options);
    } finally {
      embeddings.conditioning.dispose();
    }
  }
}

/** A VAE config that names the wrong factor would otherwise return images of another size than requested, silently. */
function checkDecodedSize(pixelDims: readonly number[], latentDims: readonly number[], scaleFactor: number): void {
  const [height, width] = [latentDims[2] * scaleFactor, latentDims[3] * scaleFactor];
  if (pixelDims[2] === height && pixelDims[3] === width) return;
  throw new ConfigError(
    `The VAE decoder returned ${pixelDims[3]}×${pixelDims[2]} pixels for a ${width}×${height} request: its factor is ` +
      `${pixelDims[3] / latentDims[3]}, not the ${scaleFactor} of vae_decoder/config.json (block_out_channels). ` +
      'Fix that config, or delete it to let denoise measure the factor from the decoder.',
  );
}

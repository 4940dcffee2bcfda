/**
 * Text-to-image latent diffusion (Rombach et al. 2022) over diffusers-layout ONNX exports: CLIP tokenizer, text
 * encoder, UNet and VAE decoder, with composable guidance.
 */
import { InvalidArgumentError, type TensorLike, throwIfAborted } from '@denoise/core';
import { DeviceTensor, type ModelRepository, type ModelSession, type SessionOptions } from '@denoise/core/runtime';
import type { NoiseGenerator, Scheduler } from '@denoise/schedulers';
import type { ClipTokenizer } from './clip-tokenizer.js';
import { type Denoiser, runDenoisingLoop, type StepEndCallback } from './denoising-loop.js';
import { ClassifierFreeGuidance } from './guidance/classifier-free.js';
import type { Guidance, GuidanceInterval, PredictionType } from './guidance/guidance.js';
import { imagesFromTensor } from './image.js';
import {
  cloneScheduler,
  DiffusionPipeline,
  generatorOrRandom,
  initialLatents,
  MAX_SAMPLE_VALUES,
  type PipelineOutput,
} from './pipeline.js';
import { encodePrompts, encodePromptsOnDevice, loadClipTokenizer, TEXT_ENCODER_HIDDEN_STATE } from './text-encoding.js';
import { type ConditioningValue, staticBatch, type UnetConditioning, unetDenoiser } from './unet-denoiser.js';
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
  /**
   * Receives warnings: truncated prompts, and prompts the model does not know (no token besides the special ones,
   * or the same prediction as the empty prompt at the first guided step); `console.warn` by default.
   */
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
  /**
   * Whether the text encoder leaves `last_hidden_state` on the UNet's device (it was opened with
   * `preferredOutputLocation: { last_hidden_state: 'gpu-buffer' }` on the same WebGPU device as the UNet): the
   * embeddings then stay there for the whole generation and every UNet call takes them as is. Default false.
   */
  keepTextEmbeddingsOnDevice?: boolean;
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
    if (checked || !request.withUnconditional) return prediction;
    checked = true;
    const batch = promptOfRow.length;
    const rowSize = prediction.data.length / (2 * batch);
    const ignored = new Set<string>();
    for (let row = 0; row < batch; row++) {
      const prompt = promptOfRow[row];
      if (prompt === undefined || ignored.has(prompt)) continue;
      const unconditional = prediction.data.subarray(row * rowSize, (row + 1) * rowSize);
      const conditional = prediction.data.subarray((batch + row) * rowSize, (batch + row + 1) * rowSize);
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
    const [tokenizer, textEncoder, unet, vaeDecoder] = await Promise.all([
      loadClipTokenizer(repository),
      repository.createSession('text_encoder', textEncoderOptions),
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
      keepTextEmbeddingsOnDevice,
    };
  }

  /**
   * Builds the pipeline from a repository loaded with `loadRepository`.
   *
   * @param repository - a diffusers-layout Stable Diffusion repository
   */
  static async fromRepository(repository: ModelRepository): Promise<StableDiffusionPipeline> {
    const scheduler = await DiffusionPipeline.loadScheduler(repository);
    const components = await StableDiffusionPipeline.loadComponents(repository);
    return new StableDiffusionPipeline(repository, scheduler, components);
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
    try {
      const latents = initialLatents(prepared.latentDims, scheduler, prepared.generator, options.latents);
      return await this.denoiseAndDecode(options, scheduler, prepared, latents, 0);
    } finally {
      prepared.dispose();
    }
  }

  /**
   * Checks the options, encodes the prompts and builds the guidances: the part shared with image-to-image.
   * The caller must call `dispose` on the result when the generation ends, however it ends: it frees the text
   * embeddings kept on the device.
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
    promptOfRow: (string | undefined)[];
    onWarning: (message: string) => void;
    dispose: () => void;
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
    if (latentValues > MAX_SAMPLE_VALUES) {
      throw new InvalidArgumentError(
        `${batch} images of ${width}×${height} need ${latentValues} latent values, more than the ${MAX_SAMPLE_VALUES} ` +
          'one run can hold. Generate fewer or smaller images per call.',
      );
    }
    this.checkFixedSize(latent, size === undefined ? 'options' : 'image');
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

    const unknownToTokenizer = new Set(prompts.filter((prompt) => !this.tokenizer.hasKnownToken(prompt)));
    for (const prompt of unknownToTokenizer) {
      onWarning(
        `The prompt ${JSON.stringify(prompt)} has no token the tokenizer knows besides the start and end tokens, ` +
          "so the image will not follow it. Write it in words of the model's vocabulary.",
      );
    }

    let negativeList: readonly string[] | undefined;
    if (needsUnconditional) {
      const negatives = asList(options.negativePrompt ?? '', 'negativePrompt');
      if (negatives.length !== 1 && negatives.length !== prompts.length) {
        throw new InvalidArgumentError(
          `Got ${negatives.length} negative prompts for ${prompts.length} prompts; give one or one per prompt.`,
        );
      }
      negativeList = negatives.length === 1 ? prompts.map(() => negatives[0]) : negatives;
    }

    const generator = generatorOrRandom(options.generator);
    throwIfAborted(options.signal, 'encoding the prompts');
    const text = this.keepTextEmbeddingsOnDevice
      ? await this.encodeOnDevice(prompts, negativeList, perPrompt, onWarning)
      : await this.encodeOnCpu(prompts, negativeList, perPrompt, onWarning);
    const conditional: Record<string, ConditioningValue> = { ...text.conditioning.conditional };
    if (timestepCond) {
      const dim = typeof timestepCond.shape[1] === 'number' ? timestepCond.shape[1] : 256;
      conditional.timestep_cond = guidanceScaleEmbedding(guidanceScale, dim, batch);
    }
    // Rows whose unconditional pass is the empty prompt: if the UNet answers both passes alike, it ignored the prompt.
    const promptOfRow = prompts.flatMap((prompt, p) => {
      const watched = negativeList?.[p] === '' && !unknownToTokenizer.has(prompt) ? prompt : undefined;
      return Array.from({ length: perPrompt }, () => watched);
    });
    return {
      conditioning: { ...text.conditioning, conditional },
      guidances,
      generator,
      latentDims: [batch, this.latentChannels, latent.height, latent.width],
      promptOfRow,
      onWarning,
      dispose: text.dispose,
    };
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
  ): Promise<{ conditioning: UnetConditioning; dispose: () => void }> {
    const encode = (list: readonly string[]) =>
      encodePrompts(this.tokenizer, this.textEncoder, list, perPrompt, onWarning);
    const conditional = { encoder_hidden_states: await encode(prompts) };
    const unconditional = negatives && { encoder_hidden_states: await encode(negatives) };
    return { conditioning: { conditional, unconditional }, dispose: () => undefined };
  }

  /**
   * The text embeddings left on the UNet's device for the whole generation. A UNet that takes the doubled batch
   * gets `[negatives; prompts]` from ONE text-encoder run (its steps without the unconditional half read the
   * prompts' half back once, in the denoiser); a fixed-batch UNet, called twice per step, gets one device
   * tensor per half. An output the UNet cannot take as is (another element type) is read back once.
   */
  private async encodeOnDevice(
    prompts: readonly string[],
    negatives: readonly string[] | undefined,
    perPrompt: number,
    onWarning: (message: string) => void,
  ): Promise<{ conditioning: UnetConditioning; dispose: () => void }> {
    const owned: DeviceTensor[] = [];
    const dispose = () => {
      for (const tensor of owned.splice(0)) tensor.dispose();
    };
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
      if (negatives === undefined)
        return { conditioning: { conditional: { encoder_hidden_states: await encode(prompts) } }, dispose };
      const rows = prompts.length * perPrompt;
      if (staticBatch(this.unet) === rows) {
        const unconditional = { encoder_hidden_states: await encode(negatives) };
        const conditional = { encoder_hidden_states: await encode(prompts) };
        return { conditioning: { conditional, unconditional }, dispose };
      }
      const stacked = { encoder_hidden_states: await encode([...negatives, ...prompts]) };
      return { conditioning: { conditional: {}, stacked }, dispose };
    } catch (error) {
      dispose();
      throw error;
    }
  }

  /** Runs the loop from `startIndex` of the schedule and decodes the result. */
  protected async denoiseAndDecode(
    options: StableDiffusionOptions,
    scheduler: Scheduler,
    prepared: {
      conditioning: UnetConditioning;
      guidances: Guidance[];
      generator: NoiseGenerator;
      promptOfRow: (string | undefined)[];
      onWarning: (message: string) => void;
    },
    latents: TensorLike,
    startIndex: number,
  ): Promise<PipelineOutput> {
    const final = await runDenoisingLoop({
      scheduler,
      startIndex,
      latents,
      denoiser: warnIfPromptIgnored(
        unetDenoiser(this.unet, prepared.conditioning),
        prepared.promptOfRow,
        prepared.onWarning,
      ),
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

/**
 * Stable Diffusion XL (Podell et al. 2023) text-to-image over diffusers/Optimum-layout ONNX exports: two CLIP
 * text encoders whose penultimate hidden states are concatenated, the pooled `text_embeds` of the second, and the
 * size and crop conditioning `time_ids`, on the loop, I/O handling and decoding of {@link LatentDiffusionPipeline}.
 */
import { ConfigError, InvalidArgumentError, ModelLoadError, Tensor, type TensorLike } from '@denoise/core';
import type { ModelRepository, ModelSession } from '@denoise/core/runtime';
import type { Scheduler } from '@denoise/schedulers';
import type { ClipTokenizer } from './clip-tokenizer.js';
import { DiffusionPipeline, initialLatents, type OutputOf, type OutputType } from './pipeline.js';
import {
  type GenerationPlan,
  LatentDiffusionPipeline,
  type StableDiffusionComponents,
  type StableDiffusionOptions,
} from './stable-diffusion.js';
import { trainingTimestepCutoff } from './stable-diffusion-img2img.js';
import { encodePromptsWithHiddenStates, loadClipTokenizer, repeatBatch } from './text-encoding.js';
import { type ConditioningValue, UnetConditioning } from './unet-denoiser.js';

/** A `(height, width)` or `(top, left)` pair in pixels, as diffusers' `original_size` and `crops_coords_top_left`. */
export type PixelPair = readonly [number, number];

/**
 * What SDXL adds to the Stable Diffusion options, with diffusers' names in camelCase.
 *
 * @typeParam O - what `generate` returns, from `outputType`
 */
export interface StableDiffusionXLOptions<O extends OutputType = 'image'> extends StableDiffusionOptions<O> {
  /** The prompt of the second text encoder (diffusers' `prompt_2`); default: `prompt`. One, or one per prompt. */
  prompt2?: string | readonly string[];
  /** The negative prompt of the second text encoder; default: `negativePrompt`. */
  negativePrompt2?: string | readonly string[];
  /**
   * The pooled text embeddings `[P, E]` (the second encoder's `text_embeds`), required with `promptEmbeds`, which
   * are then both encoders' hidden states concatenated, `[P, S, D₁ + D₂]`.
   */
  pooledPromptEmbeds?: TensorLike;
  /** The pooled embeddings of the negative prompts, with `negativePromptEmbeds`. */
  negativePooledPromptEmbeds?: TensorLike;
  /**
   * Layers to skip before the penultimate one when reading the text encoders' hidden states (diffusers'
   * `clip_skip`; default 0, the penultimate layer).
   */
  clipSkip?: number;
  /** The `(height, width)` the image pretends to have been before resizing; default: the output size. */
  originalSize?: PixelPair;
  /** The `(top, left)` corner of the pretended crop; default `(0, 0)`, an uncropped image. */
  cropsCoordsTopLeft?: PixelPair;
  /** The `(height, width)` of the pretended target; default: the output size. */
  targetSize?: PixelPair;
  /** `originalSize` of the unconditional pass (used with `negativeTargetSize`); default: the conditional one's. */
  negativeOriginalSize?: PixelPair;
  /** `cropsCoordsTopLeft` of the unconditional pass; default `(0, 0)`. */
  negativeCropsCoordsTopLeft?: PixelPair;
  /** `targetSize` of the unconditional pass (used with `negativeOriginalSize`). */
  negativeTargetSize?: PixelPair;
  /**
   * Stop after this fraction of the schedule, in (0, 1), and return what is left noisy, for a refiner to finish
   * with `denoisingStart` (the "ensemble of experts"; use `outputType: 'latent'`).
   */
  denoisingEnd?: number;
}

/** The components of an SDXL pipeline. */
export interface StableDiffusionXLComponents extends StableDiffusionComponents {
  /**
   * The text encoders in the order their hidden states are concatenated: `text_encoder` (CLIP ViT-L) and
   * `text_encoder_2` (OpenCLIP ViT-bigG with projection), or only `text_encoder_2` (the refiner). The last gives
   * the pooled `text_embeds`. The inherited `tokenizer` and `textEncoder` are the first.
   */
  textEncoders: readonly { tokenizer: ClipTokenizer; session: ModelSession }[];
  /** Whether a call without `negativePrompt` conditions the unconditional pass on zeros (`model_index.json`). */
  forceZerosForEmptyPrompt: boolean;
  /** Whether `time_ids` carry an aesthetic score instead of the target size (the refiner's 5 ids). */
  requiresAestheticsScore: boolean;
}

/** The SDXL time ids of one pass, as diffusers' `_get_add_time_ids` lists them. */
export interface TimeIds {
  /** The conditional pass's ids. */
  conditional: number[];
  /** The unconditional pass's ids. */
  unconditional: number[];
}

/** The UNet inputs of SDXL's added conditioning (Optimum's export). */
const TEXT_EMBEDS = 'text_embeds';
const TIME_IDS = 'time_ids';
/** The pooled width of SDXL's `text_encoder_2`, for messages. */
const POOLED_WIDTH_HINT = '1280 for SDXL';

function checkPair(value: PixelPair | undefined, name: string, positive: boolean): void {
  if (value === undefined) return;
  const ok =
    Array.isArray(value) &&
    value.length === 2 &&
    value.every((v) => Number.isInteger(v) && (positive ? v > 0 : v >= 0));
  if (!ok) {
    throw new InvalidArgumentError(
      `${name} must be two ${positive ? 'positive' : 'non-negative'} integers [${positive ? 'height, width' : 'top, left'}] ` +
        `in pixels, got ${JSON.stringify(value)}.`,
    );
  }
}

/** A prompt list for `count` prompts: one string for all, or one per prompt. */
function promptList(value: string | readonly string[], count: number, name: string): readonly string[] {
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.some((p) => typeof p !== 'string')) {
    throw new InvalidArgumentError(`${name} must be a string or a list of strings.`);
  }
  if (list.length === 1) return Array.from({ length: count }, () => list[0]);
  if (list.length !== count) {
    throw new InvalidArgumentError(`Got ${list.length} ${name} for ${count} prompts; give one or one per prompt.`);
  }
  return list;
}

/**
 * Checks a `denoisingEnd`/`denoisingStart` fraction: strictly inside (0, 1).
 *
 * @param value - the caller's value
 * @param name - the option's name, for the message
 */
export function checkDenoisingFraction(value: number | undefined, name: string): void {
  if (value === undefined) return;
  if (!(typeof value === 'number' && value > 0 && value < 1)) {
    throw new InvalidArgumentError(
      `${name} must be a fraction of the schedule strictly between 0 and 1 (e.g. 0.8), got ${value}.`,
    );
  }
}

/**
 * Where a run with `denoisingEnd` stops in `scheduler.timesteps` (exclusive), diffusers' step split: it keeps the
 * timesteps at or above `round(T − denoisingEnd·T)`. Without `denoisingEnd`, the end of the schedule.
 *
 * @param scheduler - the run's scheduler, after `setTimesteps`
 * @param denoisingEnd - the fraction to run, in (0, 1)
 */
export function denoisingEndIndex(scheduler: Scheduler, denoisingEnd: number | undefined): number {
  if (denoisingEnd === undefined) return scheduler.timesteps.length;
  const cutoff = trainingTimestepCutoff(scheduler, denoisingEnd);
  const end = scheduler.timesteps.filter((t) => t >= cutoff).length;
  if (end === 0) {
    throw new InvalidArgumentError(
      `denoisingEnd ${denoisingEnd} stops before the first step; raise it or numInferenceSteps.`,
    );
  }
  return end;
}

/** Zeros of the dims of `tensor`. */
function zerosLike(tensor: TensorLike): Tensor {
  return new Tensor(new Float32Array(tensor.data.length), [...tensor.dims]);
}

/** `[N, S, D₁]` and `[N, S, D₂]` → `[N, S, D₁ + D₂]`: the encoders' hidden states side by side per token. */
function concatenateFeatures(parts: readonly TensorLike[]): TensorLike {
  if (parts.length === 1) return parts[0];
  const rows = parts[0].data.length / parts[0].dims[parts[0].dims.length - 1];
  const widths = parts.map((p) => p.dims[p.dims.length - 1]);
  for (const part of parts) {
    if (part.data.length / part.dims[part.dims.length - 1] !== rows) {
      throw new ConfigError(
        `The text encoders' hidden states have different shapes ([${parts.map((p) => p.dims.join(', ')).join('] and [')}]); ` +
          'both tokenizers must pad to the same length (model_max_length).',
      );
    }
  }
  const total = widths.reduce((a, b) => a + b, 0);
  const data = new Float32Array(rows * total);
  for (let r = 0; r < rows; r++) {
    let offset = r * total;
    parts.forEach((part, i) => {
      data.set(part.data.subarray(r * widths[i], (r + 1) * widths[i]), offset);
      offset += widths[i];
    });
  }
  return { data, dims: [...parts[0].dims.slice(0, -1), total] };
}

/** The same ids on every one of `rows` rows, `[rows, n]`. */
function timeIdRows(ids: readonly number[], rows: number): Tensor {
  const data = new Float32Array(rows * ids.length);
  for (let r = 0; r < rows; r++) data.set(ids, r * ids.length);
  return new Tensor(data, [rows, ids.length]);
}

/**
 * Reads what SDXL pipelines share from a repository: both text encoders (or `text_encoder_2` alone, the refiner),
 * the UNet and VAE, and the `force_zeros_for_empty_prompt` / `requires_aesthetics_score` options of
 * `model_index.json` (the refiner's 5 time ids are also read from the UNet's `time_ids` input).
 *
 * @param repository - an SDXL repository
 * @throws `ModelLoadError` naming a component SDXL needs that the repository lacks
 */
export async function loadStableDiffusionXLComponents(
  repository: ModelRepository,
): Promise<StableDiffusionXLComponents> {
  const declared = (name: string) => repository.modelIndex.components.some((c) => c.name === name);
  const missing = (name: string, what: string) =>
    new ModelLoadError(
      'INVALID_MODEL',
      `${repository.name} is a ${repository.modelIndex.className} without ${name} (${what}), which SDXL needs. ` +
        `Add ${name}/ to the repository, or re-export the model with optimum-cli export onnx.`,
      { repo: repository.name, file: 'model_index.json' },
    );
  const required: [string, string][] = [
    ['text_encoder_2', 'the OpenCLIP ViT-bigG text encoder'],
    ['tokenizer_2', 'its tokenizer'],
    ['unet', 'the denoiser'],
    ['vae_decoder', 'the VAE decoder'],
  ];
  for (const [name, what] of required) {
    if (!declared(name) || (repository.components[name]?.files.length ?? 0) === 0) throw missing(name, what);
  }
  const withFirstEncoder = declared('text_encoder');
  if (withFirstEncoder && (repository.components.tokenizer?.files.length ?? 0) === 0) {
    throw missing('tokenizer', 'the tokenizer of text_encoder');
  }
  const loadEncoder = async (tokenizer: string, encoder: string) => ({
    tokenizer: await loadClipTokenizer(repository, tokenizer),
    session: await repository.createSession(encoder),
  });
  const [first, second, imageComponents] = await Promise.all([
    withFirstEncoder ? loadEncoder('tokenizer', 'text_encoder') : undefined,
    loadEncoder('tokenizer_2', 'text_encoder_2'),
    LatentDiffusionXL.loadImageComponents(repository),
  ]);
  const textEncoders = first ? [first, second] : [second];
  const { options } = repository.modelIndex;
  const timeIdCount = imageComponents.unet.inputs.find((i) => i.name === TIME_IDS)?.shape[1];
  const configured = options.requires_aesthetics_score;
  const fromGraph = timeIdCount === 5 ? true : timeIdCount === 6 ? false : undefined;
  if (typeof configured === 'boolean' && fromGraph !== undefined && configured !== fromGraph) {
    throw new ConfigError(
      `model_index.json of ${repository.name} sets requires_aesthetics_score to ${configured}, but its UNet takes ` +
        `${timeIdCount} time ids (${fromGraph ? 'size, crop and aesthetic score' : 'sizes and crop'}). Fix model_index.json.`,
    );
  }
  return {
    ...imageComponents,
    tokenizer: textEncoders[0].tokenizer,
    textEncoder: textEncoders[0].session,
    textEncoders,
    forceZerosForEmptyPrompt: options.force_zeros_for_empty_prompt !== false,
    requiresAestheticsScore: fromGraph ?? configured === true,
    keepTextEmbeddingsOnDevice: false,
  };
}

/**
 * What SDXL's text-to-image and image-to-image pipelines share on top of {@link LatentDiffusionPipeline}: the two
 * text encoders and the added conditioning `text_embeds` and `time_ids`. Use {@link StableDiffusionXLPipeline} or
 * `StableDiffusionXLImg2ImgPipeline`.
 */
export abstract class LatentDiffusionXL extends LatentDiffusionPipeline {
  /** The text encoders, in concatenation order (see {@link StableDiffusionXLComponents.textEncoders}). */
  readonly textEncoders: readonly { tokenizer: ClipTokenizer; session: ModelSession }[];
  /** Whether a call without `negativePrompt` conditions the unconditional pass on zeros. */
  readonly forceZerosForEmptyPrompt: boolean;
  /** Whether the UNet takes an aesthetic score in its time ids (the refiner). */
  readonly requiresAestheticsScore: boolean;

  /**
   * @param repository - where the components come from
   * @param scheduler - the scheduler
   * @param components - the loaded components
   */
  constructor(repository: ModelRepository, scheduler: Scheduler, components: StableDiffusionXLComponents) {
    super(repository, scheduler, components);
    this.textEncoders = components.textEncoders;
    this.forceZerosForEmptyPrompt = components.forceZerosForEmptyPrompt;
    this.requiresAestheticsScore = components.requiresAestheticsScore;
  }

  /** diffusers' SDXL default guidance scale, 5. */
  protected override get defaultGuidanceScale(): number {
    return 5;
  }

  /**
   * diffusers' `check_inputs` with SDXL's options: the second prompts, the pooled embeddings, the sizes, crops,
   * `clipSkip` and `denoisingEnd`.
   *
   * @param options - the call options
   * @param size - the image size, when an input image fixes it
   */
  protected override checkInputs(
    options: StableDiffusionXLOptions<OutputType>,
    size?: { height: number; width: number },
  ): GenerationPlan {
    const plan = super.checkInputs(options, size);
    if (options.prompt2 !== undefined) {
      if (options.prompt === undefined) throw new InvalidArgumentError('prompt2 needs prompt; give both or neither.');
      promptList(options.prompt2, plan.promptCount, 'prompt2');
    }
    if (options.negativePrompt2 !== undefined) promptList(options.negativePrompt2, plan.promptCount, 'negativePrompt2');
    if ((options.promptEmbeds === undefined) !== (options.pooledPromptEmbeds === undefined)) {
      throw new InvalidArgumentError(
        'Give pooledPromptEmbeds with promptEmbeds (and only then): SDXL conditions on both, the pooled text_embeds ' +
          'of text_encoder_2 and the hidden states of both encoders.',
      );
    }
    if ((options.negativePromptEmbeds === undefined) !== (options.negativePooledPromptEmbeds === undefined)) {
      throw new InvalidArgumentError('Give negativePooledPromptEmbeds with negativePromptEmbeds (and only then).');
    }
    const pairs = [
      ['pooledPromptEmbeds', options.pooledPromptEmbeds, options.promptEmbeds],
      ['negativePooledPromptEmbeds', options.negativePooledPromptEmbeds, options.negativePromptEmbeds],
    ] as const;
    for (const [name, pooled, hidden] of pairs) {
      if (pooled === undefined) continue;
      if (!(pooled.data instanceof Float32Array) || pooled.dims?.length !== 2 || pooled.dims[0] !== hidden?.dims[0]) {
        throw new InvalidArgumentError(
          `${name} must be a float32 tensor [prompts, ${POOLED_WIDTH_HINT}] with one row per row of its hidden states.`,
        );
      }
    }
    for (const name of ['originalSize', 'targetSize', 'negativeOriginalSize', 'negativeTargetSize'] as const) {
      checkPair(options[name], name, true);
    }
    for (const name of ['cropsCoordsTopLeft', 'negativeCropsCoordsTopLeft'] as const) {
      checkPair(options[name], name, false);
    }
    const { clipSkip } = options;
    if (clipSkip !== undefined && !(Number.isInteger(clipSkip) && clipSkip >= 0)) {
      throw new InvalidArgumentError(`clipSkip must be a non-negative integer, got ${clipSkip}.`);
    }
    checkDenoisingFraction(options.denoisingEnd, 'denoisingEnd');
    const timeIds = this.unet.inputs.find((i) => i.name === TIME_IDS);
    if (timeIds === undefined || !this.unet.inputs.some((i) => i.name === TEXT_EMBEDS)) {
      throw new ConfigError(
        `The UNet of ${this.repository.name} has no text_embeds and time_ids inputs, so it is not an SDXL UNet; ` +
          'load the repository with StableDiffusionPipeline.',
      );
    }
    return plan;
  }

  /**
   * The time ids of both passes, diffusers' `_get_add_time_ids`: `(original size, crop corner, target size)`, or
   * `(original size, crop corner, aesthetic score)` for a refiner. Sizes default to the image's.
   *
   * @param options - the call options
   * @param plan - gives the image size
   */
  protected abstract timeIds(options: StableDiffusionXLOptions<OutputType>, plan: GenerationPlan): TimeIds;

  /** The image size in pixels of the plan's latents. */
  protected imageSize(plan: GenerationPlan): PixelPair {
    const [, , height, width] = plan.latentDims;
    return [height * this.vae.scaleFactor, width * this.vae.scaleFactor];
  }

  /**
   * Adds `time_ids` to the conditioning of both passes, and copies it all ONCE per generation to the UNet's GPU
   * when the UNet runs on WebGPU in a browser, so that no UNet call uploads it again (SDXL joins the two encoders'
   * outputs on the CPU, so they cannot stay where the encoders left them).
   */
  private async withTimeIds(
    options: StableDiffusionXLOptions<OutputType>,
    plan: GenerationPlan,
    conditional: Record<string, ConditioningValue>,
    unconditional: Record<string, ConditioningValue> | undefined,
  ): Promise<UnetConditioning> {
    const ids = this.timeIds(options, plan);
    const expected = this.unet.inputs.find((i) => i.name === TIME_IDS)?.shape[1];
    if (typeof expected === 'number' && expected !== ids.conditional.length) {
      throw new ConfigError(
        `The UNet of ${this.repository.name} takes ${expected} time ids, but this pipeline makes ` +
          `${ids.conditional.length}: ${expected === 5 ? 'it is a refiner; load it with StableDiffusionXLImg2ImgPipeline' : 'set requires_aesthetics_score to false in model_index.json'}.`,
      );
    }
    const rows = plan.latentDims[0];
    return UnetConditioning.uploaded(this.unet, {
      conditional: { ...conditional, [TIME_IDS]: timeIdRows(ids.conditional, rows) },
      unconditional: unconditional && { ...unconditional, [TIME_IDS]: timeIdRows(ids.unconditional, rows) },
    });
  }

  /**
   * Both encoders' conditioning of `prompts` (the first encoder's) and `prompts2` (the second's): the penultimate
   * hidden states side by side and the second encoder's pooled `text_embeds`. A refiner has only the second
   * encoder, which then reads `prompts` (as diffusers pairs the prompts with the encoders it has).
   */
  private async encodeBoth(
    prompts: readonly string[],
    prompts2: readonly string[],
    plan: GenerationPlan,
    clipSkip: number | undefined,
  ): Promise<Record<string, ConditioningValue>> {
    const lists = this.textEncoders.length === 2 ? [prompts, prompts2] : [prompts];
    const hidden: Tensor[] = [];
    let pooled: Tensor | undefined;
    for (const [i, { tokenizer, session }] of this.textEncoders.entries()) {
      const encoded = await encodePromptsWithHiddenStates(
        tokenizer,
        session,
        lists[i],
        plan.perPrompt,
        plan.onWarning,
        clipSkip,
      );
      hidden.push(encoded.hidden);
      pooled = encoded.pooled;
    }
    if (pooled === undefined) {
      const last = this.textEncoders[this.textEncoders.length - 1].session;
      throw new ConfigError(
        `text_encoder_2 of ${this.repository.name} has no text_embeds output (it has ` +
          `${last.outputs.map((o) => o.name).join(', ')}); SDXL needs the pooled, projected embedding of ` +
          'CLIPTextModelWithProjection. Re-export it with optimum-cli export onnx.',
      );
    }
    return { encoder_hidden_states: concatenateFeatures(hidden), [TEXT_EMBEDS]: pooled };
  }

  /**
   * diffusers' SDXL `encode_prompt`: `prompt2` defaults to `prompt`, `negativePrompt2` to `negativePrompt`; with
   * `force_zeros_for_empty_prompt` and no `negativePrompt`, the unconditional embeddings are zeros.
   */
  protected override async encodeTextPrompts(
    options: StableDiffusionXLOptions<OutputType>,
    prompts: readonly string[],
    negatives: readonly string[] | undefined,
    plan: GenerationPlan,
  ): Promise<UnetConditioning> {
    const prompts2 = options.prompt2 === undefined ? prompts : promptList(options.prompt2, prompts.length, 'prompt2');
    const conditional = await this.encodeBoth(prompts, prompts2, plan, options.clipSkip);
    return this.withTimeIds(
      options,
      plan,
      conditional,
      await this.unconditionalOf(options, negatives, conditional, plan),
    );
  }

  /** The caller's SDXL embeddings (hidden states and pooled), repeated per image; the negatives as for prompts. */
  protected override async embeddingsFromTensors(
    options: StableDiffusionXLOptions<OutputType>,
    negatives: readonly string[] | undefined,
    needsUnconditional: boolean,
    plan: GenerationPlan,
  ): Promise<UnetConditioning> {
    const repeat = (embeds: TensorLike) => repeatBatch(embeds, plan.perPrompt);
    const conditional = {
      encoder_hidden_states: repeat(options.promptEmbeds as TensorLike),
      [TEXT_EMBEDS]: repeat(options.pooledPromptEmbeds as TensorLike),
    };
    let unconditional: Record<string, ConditioningValue> | undefined;
    if (options.negativePromptEmbeds !== undefined) {
      unconditional = {
        encoder_hidden_states: repeat(options.negativePromptEmbeds),
        [TEXT_EMBEDS]: repeat(options.negativePooledPromptEmbeds as TensorLike),
      };
    } else if (needsUnconditional) {
      unconditional = await this.unconditionalOf(options, negatives, conditional, plan);
    }
    return this.withTimeIds(options, plan, conditional, unconditional);
  }

  /** The unconditional conditioning: zeros (`force_zeros_for_empty_prompt` without a negative prompt) or encoded. */
  private async unconditionalOf(
    options: StableDiffusionXLOptions<OutputType>,
    negatives: readonly string[] | undefined,
    conditional: Record<string, ConditioningValue>,
    plan: GenerationPlan,
  ): Promise<Record<string, ConditioningValue> | undefined> {
    if (negatives === undefined) return undefined;
    if (options.negativePrompt === undefined && this.forceZerosForEmptyPrompt) {
      return Object.fromEntries(
        Object.entries(conditional).map(([name, value]) => [name, zerosLike(value as TensorLike)]),
      );
    }
    const negatives2 =
      options.negativePrompt2 === undefined
        ? negatives
        : promptList(options.negativePrompt2, negatives.length, 'negativePrompt2');
    // Negative prompts are given per prompt; the encoders repeat them per image.
    return this.encodeBoth(negatives, negatives2, plan, options.clipSkip);
  }

  /** Frees every session of the pipeline. */
  override async release(): Promise<void> {
    await Promise.all([super.release(), ...this.textEncoders.slice(1).map((e) => e.session.release())]);
  }
}

/**
 * Stable Diffusion XL text-to-image, and its few-step distillations (SDXL-Turbo, SDXL-Lightning, LCM-SDXL, SSD-1B).
 * Load it with `StableDiffusionXLPipeline.fromPretrained` (or `DiffusionPipeline.fromPretrained`).
 *
 * @example
 * ```ts
 * const pipe = await StableDiffusionXLPipeline.fromPretrained('org/sdxl-onnx', { device: 'cpu' });
 * const { images } = await pipe.generate({ prompt: 'a lighthouse at dusk', generator: new RandomGenerator(0) });
 * ```
 */
export class StableDiffusionXLPipeline extends LatentDiffusionXL {
  /** {@inheritDoc DiffusionPipeline.kind} */
  readonly kind = 'StableDiffusionXLPipeline';

  /**
   * Builds the pipeline from a repository loaded with `loadRepository`.
   *
   * @param repository - an SDXL repository (Optimum's export layout)
   */
  static async fromRepository(repository: ModelRepository): Promise<StableDiffusionXLPipeline> {
    const scheduler = await DiffusionPipeline.loadScheduler(repository);
    return new StableDiffusionXLPipeline(repository, scheduler, await loadStableDiffusionXLComponents(repository));
  }

  protected override checkInputs(
    options: StableDiffusionXLOptions<OutputType>,
    size?: { height: number; width: number },
  ): GenerationPlan {
    if (this.requiresAestheticsScore) {
      throw new InvalidArgumentError(
        `${this.repository.name} is an SDXL refiner: it refines an image and cannot draw one from text. Load it ` +
          'with StableDiffusionXLImg2ImgPipeline and pass image (e.g. the latents of a base model run with ' +
          "denoisingEnd and outputType: 'latent').",
      );
    }
    return super.checkInputs(options, size);
  }

  protected timeIds(options: StableDiffusionXLOptions<OutputType>, plan: GenerationPlan): TimeIds {
    const size = this.imageSize(plan);
    const conditional = [
      ...(options.originalSize ?? size),
      ...(options.cropsCoordsTopLeft ?? [0, 0]),
      ...(options.targetSize ?? size),
    ];
    const { negativeOriginalSize, negativeTargetSize } = options;
    const unconditional =
      negativeOriginalSize !== undefined && negativeTargetSize !== undefined
        ? [...negativeOriginalSize, ...(options.negativeCropsCoordsTopLeft ?? [0, 0]), ...negativeTargetSize]
        : conditional;
    return { conditional, unconditional };
  }

  /**
   * Generates images from prompts, in diffusers' `__call__` order.
   *
   * @param options - prompts, sizes, guidance, steps, seed; see {@link StableDiffusionXLOptions}
   * @returns the images, or the latents or pixel tensor that `outputType` asks for
   */
  async generate<O extends OutputType = 'image'>(options: StableDiffusionXLOptions<O>): Promise<OutputOf<O>> {
    const plan = this.checkInputs(options);
    const scheduler = this.prepareTimesteps(options);
    const endIndex = denoisingEndIndex(scheduler, options.denoisingEnd);
    const guidances = this.prepareGuidances(options, plan.onWarning);
    const timesteps = scheduler.timesteps.slice(0, endIndex);
    const embeddings = await this.encodePrompt(options, plan, guidances, timesteps);
    try {
      const latents = initialLatents(plan.latentDims, scheduler, plan.generator, options.latents);
      const run = { embeddings, guidances, ...plan };
      const final = await this.denoise(options, scheduler, run, latents, 0, { endIndex });
      return await this.decode(final, options);
    } finally {
      embeddings.conditioning.dispose();
    }
  }
}

/**
 * ControlNet (Zhang et al. 2023) for Stable Diffusion 1.x: a second network reads a control image (edges, depth, a
 * pose, a silhouette) with the UNet's inputs and returns residuals that the UNet adds to its skip connections.
 * The ControlNet runs inside the UNet's call structure: one ControlNet call and one UNet call per step when the
 * graphs take the classifier-free-guidance batch. `docs/controlnet.md` lists the ONNX layouts this reads.
 */
import { ConfigError, InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import type { FeedValue, ModelRepository, ModelSession } from '@denoise/core/runtime';
import type { Scheduler } from '@denoise/schedulers';
import type { GuidanceStepPosition } from './guidance/guidance.js';
import type { RgbaImage } from './image.js';
import { DiffusionPipeline, initialLatents, type OutputOf, type OutputType } from './pipeline.js';
import {
  LatentDiffusionPipeline,
  type StableDiffusionComponents,
  type StableDiffusionOptions,
} from './stable-diffusion.js';
import type { UnetCall, UnetFeedsHook } from './unet-denoiser.js';

/**
 * Options of {@link StableDiffusionControlNetPipeline.generate}: the text-to-image options and diffusers'
 * ControlNet options, in camelCase.
 *
 * @typeParam O - what `generate` returns, from `outputType`
 */
export interface StableDiffusionControlNetOptions<O extends OutputType = 'image'> extends StableDiffusionOptions<O> {
  /**
   * The control image: RGBA pixels (e.g. `ImageData`, {@link imageFromPNG}'s result), or a float32 tensor
   * `[1 or P, 3, H, W]` in `[0, 1]` (one image for all prompts, or one per prompt). It is resized to the output
   * size when it has another size. The output size defaults to the image's, rounded down to the VAE factor.
   */
  image: RgbaImage | TensorLike;
  /** What the ControlNet's residuals are multiplied by (default 1); 0 turns the control off. */
  controlnetConditioningScale?: number;
  /** The fraction of the steps after which the ControlNet starts to apply (default 0). */
  controlGuidanceStart?: number;
  /** The fraction of the steps after which it stops applying (default 1). */
  controlGuidanceEnd?: number;
  /**
   * diffusers' guess mode: the ControlNet sees only the conditional rows (the unconditional ones get no residual)
   * and its residuals are weighted from 0.1 at the first block to 1 at the middle block, so that it recognises the
   * control image's content even with an empty prompt. Default false; forced on by a ControlNet whose config sets
   * `global_pool_conditions`.
   */
  guessMode?: boolean;
}

/** A separate ControlNet graph whose outputs are UNet inputs: both name lists, paired in residual order. */
export interface SeparateControlNetLayout {
  /** Discriminates the layouts. */
  readonly kind: 'separate';
  /** The ControlNet's output names, in residual order: the down blocks, then the middle block. */
  readonly outputs: readonly string[];
  /** The UNet's residual input names, in the same order. */
  readonly unetInputs: readonly string[];
  /** The ControlNet's `conditioning_scale` input, when it has one. */
  readonly scaleInput: string | undefined;
}

/** A UNet graph with the ControlNet built in (it takes the control images and their scales). */
export interface FusedControlNetLayout {
  /** Discriminates the layouts. */
  readonly kind: 'fused';
  /** The UNet's control image input, `[controlnets, rows, 3, H, W]`. */
  readonly imageInput: string;
  /** The UNet's per-ControlNet scale input. */
  readonly scaleInput: string;
}

/** How a repository's graphs pass the control: see `docs/controlnet.md`. */
export type ControlNetLayout = SeparateControlNetLayout | FusedControlNetLayout;

/** The components of a ControlNet pipeline: Stable Diffusion's and the ControlNet. */
export interface StableDiffusionControlNetComponents extends StableDiffusionComponents {
  /** The ControlNet graph; absent when the UNet has the ControlNet built in. */
  controlnet: ModelSession | undefined;
  /** Whether the ControlNet pools its residuals (`global_pool_conditions` in `controlnet/config.json`). */
  globalPoolConditions: boolean;
}

/** The ControlNet's control-image input. */
const CONTROLNET_COND = 'controlnet_cond';
/** The text-embedding input both graphs share. */
const HIDDEN_STATES = 'encoder_hidden_states';
/** Names of the UNet's control-image input in fused exports (diffusers' conversion script; ONNX Runtime's demo). */
const FUSED_IMAGE_INPUTS = ['controlnet_conds', 'controlnet_images'];
/** Names of the matching scale input. */
const FUSED_SCALE_INPUTS = ['conditioning_scales', 'controlnet_scales'];
/**
 * A down-block residual's index in a UNet input or ControlNet output name: `down_block_3`,
 * `down_block_3_additional_residual`, `down_block_additional_residuals_3`, `down_block_res_samples_3`.
 */
const DOWN_BLOCK = /^down_block(?:_additional_residuals|_res_samples)?_(\d+)(?:_additional_residual)?$/;
/** A middle-block residual: `mid_block_additional_residual`, `mid_block_res_sample`. */
const MID_BLOCK = /^mid_block(?:_additional_residual|_res_sample)$/;

/** The down-block names sorted by index, then the middle block's; undefined unless every name is one of those. */
function residualOrder(names: readonly string[]): string[] | undefined {
  const down: { name: string; index: number }[] = [];
  const mid: string[] = [];
  for (const name of names) {
    const match = DOWN_BLOCK.exec(name);
    if (match) down.push({ name, index: Number(match[1]) });
    else if (MID_BLOCK.test(name)) mid.push(name);
    else return undefined;
  }
  down.sort((a, b) => a.index - b.index);
  if (mid.length !== 1 || down.some((d, i) => d.index !== i)) return undefined;
  return [...down.map((d) => d.name), mid[0]];
}

/**
 * Reads how the control reaches the UNet from the graphs' names.
 *
 * @param repository - for messages
 * @param unet - the UNet session
 * @param controlnet - the ControlNet session, when the repository has one
 * @throws `ConfigError` when the graphs match no layout
 */
export function controlNetLayout(
  repository: string,
  unet: ModelSession,
  controlnet: ModelSession | undefined,
): ControlNetLayout {
  const unetNames = unet.inputs.map((i) => i.name);
  const imageInput = FUSED_IMAGE_INPUTS.find((name) => unetNames.includes(name));
  const fusedScale = FUSED_SCALE_INPUTS.find((name) => unetNames.includes(name));
  if (imageInput !== undefined && fusedScale !== undefined)
    return { kind: 'fused', imageInput, scaleInput: fusedScale };
  const residualInputs = unetNames.filter((name) => DOWN_BLOCK.test(name) || MID_BLOCK.test(name));
  const unetInputs = residualOrder(residualInputs);
  if (unetInputs === undefined) {
    throw new ConfigError(
      `The UNet of ${repository} takes no ControlNet residuals (inputs: ${unetNames.join(', ')}). A ControlNet ` +
        'pipeline needs a UNet exported with down_block_N and mid_block_additional_residual inputs, or one with ' +
        'the ControlNet built in (controlnet_conds and conditioning_scales); see docs/controlnet.md.',
    );
  }
  if (controlnet === undefined) {
    throw new ConfigError(
      `${repository} has a UNet that takes ControlNet residuals but no controlnet component. Add controlnet/model.onnx ` +
        'and a "controlnet" entry to model_index.json.',
    );
  }
  const cnInputs = controlnet.inputs.map((i) => i.name);
  const missing = [UNET_SAMPLE_INPUT, 'timestep', HIDDEN_STATES, CONTROLNET_COND].filter((n) => !cnInputs.includes(n));
  if (missing.length > 0) {
    throw new ConfigError(
      `The ControlNet of ${repository} lacks the input(s) ${missing.join(', ')} (it has ${cnInputs.join(', ')}).`,
    );
  }
  const outputNames = controlnet.outputs.map((o) => o.name);
  if (outputNames.length !== unetInputs.length) {
    throw new ConfigError(
      `The ControlNet of ${repository} returns ${outputNames.length} residuals and its UNet takes ` +
        `${unetInputs.length}; they must come from the same base model.`,
    );
  }
  // Named outputs pair by name; otherwise the order of torch.onnx's export (down blocks, then the middle block),
  // which is also what an export naming only its first two outputs gives.
  const outputs = residualOrder(outputNames) ?? outputNames;
  const scaleInput = cnInputs.find((name) => name === 'conditioning_scale');
  return { kind: 'separate', outputs, unetInputs, scaleInput };
}

const UNET_SAMPLE_INPUT = 'sample';

/** `[0, 1]` RGB planes `[1, 3, H, W]` of RGBA pixels (alpha ignored), as diffusers' `control_image_processor`. */
function unitTensorFromImage(image: RgbaImage): Tensor {
  const { width, height, data } = image;
  if (!(width > 0 && height > 0) || data?.length !== width * height * 4) {
    throw new InvalidArgumentError(
      `The control image must have positive width and height and width·height·4 RGBA bytes; got ${width}×${height}.`,
    );
  }
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) for (let p = 0; p < plane; p++) out[c * plane + p] = data[p * 4 + c] / 255;
  return new Tensor(out, [1, 3, height, width]);
}

/**
 * Resizes NCHW planes: nearest neighbour for tensors (torch's `interpolate` default, which diffusers uses for
 * tensors), bilinear with half-pixel centres for images (diffusers resizes PIL images with Lanczos).
 */
function resize(pixels: TensorLike, height: number, width: number, mode: 'nearest' | 'bilinear'): TensorLike {
  const [batch, channels, srcHeight, srcWidth] = pixels.dims;
  if (srcHeight === height && srcWidth === width) return pixels;
  const out = new Float32Array(batch * channels * height * width);
  const sy = srcHeight / height;
  const sx = srcWidth / width;
  for (let plane = 0; plane < batch * channels; plane++) {
    const src = plane * srcHeight * srcWidth;
    const dst = plane * height * width;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        let value: number;
        if (mode === 'nearest') {
          const iy = Math.min(Math.floor(y * sy), srcHeight - 1);
          const ix = Math.min(Math.floor(x * sx), srcWidth - 1);
          value = pixels.data[src + iy * srcWidth + ix];
        } else {
          const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), srcHeight - 1);
          const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), srcWidth - 1);
          const [y0, x0] = [Math.floor(fy), Math.floor(fx)];
          const [y1, x1] = [Math.min(y0 + 1, srcHeight - 1), Math.min(x0 + 1, srcWidth - 1)];
          const [wy, wx] = [fy - y0, fx - x0];
          const at = (yy: number, xx: number) => pixels.data[src + yy * srcWidth + xx];
          value = (1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x1)) + wy * ((1 - wx) * at(y1, x0) + wx * at(y1, x1));
        }
        out[dst + y * width + x] = value;
      }
    }
  }
  return { data: out, dims: [batch, channels, height, width] };
}

function isRgbaImage(image: unknown): image is RgbaImage {
  const candidate = image as Partial<RgbaImage> | null;
  return (
    typeof candidate?.width === 'number' &&
    typeof candidate.height === 'number' &&
    (candidate.data instanceof Uint8ClampedArray || candidate.data instanceof Uint8Array)
  );
}

function isUnitTensor(image: unknown): image is TensorLike {
  const candidate = image as Partial<TensorLike> | null;
  return candidate?.data instanceof Float32Array && Array.isArray(candidate.dims);
}

/** The control image as `[N, 3, H, W]` in `[0, 1]`, before resizing; `InvalidArgumentError` for anything else. */
function controlPixels(image: unknown): { pixels: TensorLike; mode: 'nearest' | 'bilinear' } {
  if (isRgbaImage(image)) return { pixels: unitTensorFromImage(image), mode: 'bilinear' };
  if (isUnitTensor(image)) {
    const { dims, data } = image;
    if (dims.length !== 4 || dims[1] !== 3 || data.length !== dims.reduce((a, b) => a * b, 1)) {
      throw new InvalidArgumentError(
        `A control image tensor must be float32 [images, 3, height, width] in [0, 1]; got [${dims.join(', ')}].`,
      );
    }
    return { pixels: image, mode: 'nearest' };
  }
  throw new InvalidArgumentError(
    'image (the control image) must be RGBA pixels ({ width, height, data }, e.g. ImageData or imageFromPNG(bytes)) ' +
      `or a float32 tensor [1, 3, H, W] in [0, 1]; got ${image === null ? 'null' : typeof image}.`,
  );
}

/** `[0; rows]` along the batch axis, in `out` (twice the length of `rows`). */
function afterZeros(out: Float32Array, rows: Float32Array): Float32Array {
  out.fill(0, 0, rows.length);
  out.set(rows, rows.length);
  return out;
}

/** The second half (the conditional rows) of a `[2B, …]` sample. */
function conditionalHalf(sample: TensorLike): TensorLike {
  const [rows, ...rest] = sample.dims;
  return { data: sample.data.subarray(sample.data.length / 2), dims: [rows / 2, ...rest] };
}

/** diffusers' `controlnet_keep`: 1 on the steps inside `[start, end]` of the run, 0 outside. */
function keepAt(position: GuidanceStepPosition, start: number, end: number): number {
  const { stepIndex, numInferenceSteps } = position;
  return stepIndex / numInferenceSteps < start || (stepIndex + 1) / numInferenceSteps > end ? 0 : 1;
}

/** What one generation's ControlNet hook needs. */
interface ControlRun {
  /** The control image for each of the B batch rows, `[B, 3, H, W]`. */
  readonly image: TensorLike;
  readonly scale: number;
  readonly start: number;
  readonly end: number;
  readonly guessMode: boolean;
}

/**
 * Stable Diffusion with a ControlNet (diffusers' `StableDiffusionControlNetPipeline`). Load it with
 * `StableDiffusionControlNetPipeline.fromPretrained` (or `DiffusionPipeline.fromPretrained` on a repository whose
 * `model_index.json` has a `controlnet` component).
 *
 * @example
 * ```ts
 * const pipe = await StableDiffusionControlNetPipeline.fromPretrained('org/sd15-controlnet-canny-onnx');
 * const image = imageFromPNG(await readFile('edges.png'));
 * const { images } = await pipe.generate({ prompt: 'a house', image, generator: new RandomGenerator(0) });
 * ```
 */
export class StableDiffusionControlNetPipeline extends LatentDiffusionPipeline {
  /** {@inheritDoc DiffusionPipeline.kind} */
  readonly kind = 'StableDiffusionControlNetPipeline';
  /** The ControlNet session; `undefined` when the UNet has the ControlNet built in. */
  readonly controlnet: ModelSession | undefined;
  /** How the control reaches the UNet. */
  readonly controlLayout: ControlNetLayout;
  /** Whether the ControlNet pools its residuals, which forces guess mode (diffusers' `global_pool_conditions`). */
  readonly globalPoolConditions: boolean;

  /**
   * @param repository - where the components come from
   * @param scheduler - the scheduler
   * @param components - the loaded components
   */
  constructor(repository: ModelRepository, scheduler: Scheduler, components: StableDiffusionControlNetComponents) {
    super(repository, scheduler, components);
    this.controlnet = components.controlnet;
    this.globalPoolConditions = components.globalPoolConditions;
    this.controlLayout = controlNetLayout(repository.name, this.unet, this.controlnet);
  }

  /**
   * Builds the pipeline from a repository loaded with `loadRepository`: Stable Diffusion's components and, unless
   * the UNet has it built in, `controlnet/model.onnx`.
   *
   * @param repository - a diffusers-layout Stable Diffusion repository with a ControlNet
   */
  static async fromRepository(repository: ModelRepository): Promise<StableDiffusionControlNetPipeline> {
    const scheduler = await DiffusionPipeline.loadScheduler(repository);
    const components = await LatentDiffusionPipeline.loadComponents(repository);
    const info = repository.components.controlnet;
    // The ControlNet reads the text embeddings too, so on WebGPU they stay on the device for both graphs.
    const controlnet = info?.model ? await repository.createSession('controlnet') : undefined;
    const config = info?.files.includes('controlnet/config.json')
      ? ((await repository.readJson('controlnet/config.json')) as Record<string, unknown>)
      : undefined;
    return new StableDiffusionControlNetPipeline(repository, scheduler, {
      ...components,
      keepTextEmbeddingsOnDevice:
        components.keepTextEmbeddingsOnDevice &&
        (controlnet === undefined || repository.deviceOf('controlnet') === 'webgpu'),
      controlnet,
      globalPoolConditions: config?.global_pool_conditions === true,
    });
  }

  /**
   * Generates images that follow the control image and the prompts, in diffusers' `__call__` order.
   *
   * @param options - the control image and its options, and the text-to-image options; see
   *   {@link StableDiffusionControlNetOptions}
   * @returns the images, or the latents or pixel tensor that `outputType` asks for
   */
  async generate<O extends OutputType = 'image'>(options: StableDiffusionControlNetOptions<O>): Promise<OutputOf<O>> {
    const scale = options.controlnetConditioningScale ?? 1;
    const start = options.controlGuidanceStart ?? 0;
    const end = options.controlGuidanceEnd ?? 1;
    if (typeof scale !== 'number' || !Number.isFinite(scale)) {
      throw new InvalidArgumentError(`controlnetConditioningScale must be a finite number, got ${String(scale)}.`);
    }
    if (!(start >= 0 && end <= 1 && start < end)) {
      throw new InvalidArgumentError(
        `controlGuidanceStart and controlGuidanceEnd must satisfy 0 ≤ start < end ≤ 1; got ${start} and ${end}.`,
      );
    }
    const guessMode = (options.guessMode ?? false) || this.globalPoolConditions;
    if (guessMode && this.controlLayout.kind === 'fused') {
      throw new InvalidArgumentError(
        `The UNet of ${this.repository.name} has the ControlNet built in, which cannot run on the conditional rows ` +
          'alone: guessMode needs a separate controlnet/model.onnx. Leave guessMode out.',
      );
    }
    const { pixels, mode } = controlPixels(options.image);
    const factor = this.vae.scaleFactor;
    const [, , imageHeight, imageWidth] = pixels.dims;
    const height = options.height ?? Math.floor(imageHeight / factor) * factor;
    const width = options.width ?? Math.floor(imageWidth / factor) * factor;
    // The size comes from the image unless the options set it, and the size errors say which.
    const sizeFromImage = options.height === undefined && options.width === undefined;
    const plan = this.checkInputs({ ...options, height, width }, sizeFromImage ? { height, width } : undefined);
    const image = this.controlRows(resize(pixels, height, width, mode), plan.promptCount, plan.perPrompt);
    const scheduler = this.prepareTimesteps(options);
    const guidances = this.prepareGuidances(options, plan.onWarning);
    const embeddings = await this.encodePrompt(options, plan, guidances, scheduler.timesteps);
    try {
      const latents = initialLatents(plan.latentDims, scheduler, plan.generator, options.latents);
      const unetFeeds = this.controlHook({ image, scale, start, end, guessMode });
      const run = { embeddings, guidances, ...plan, unetFeeds };
      const final = await this.denoise(options, scheduler, run, latents, 0);
      return await this.decode(final, options);
    } finally {
      embeddings.conditioning.dispose();
    }
  }

  /** diffusers' `prepare_image`: one image for every row, or one per prompt repeated per image. */
  private controlRows(image: TensorLike, promptCount: number, perPrompt: number): TensorLike {
    const count = image.dims[0];
    if (count !== 1 && count !== promptCount) {
      throw new InvalidArgumentError(
        `Got ${count} control images for ${promptCount} prompts; give one image, or one per prompt.`,
      );
    }
    const rows = promptCount * perPrompt;
    if (count === rows) return image;
    const size = image.data.length / count;
    const data = new Float32Array(rows * size);
    for (let row = 0; row < rows; row++) {
      const item = count === 1 ? 0 : Math.floor(row / perPrompt);
      data.set(image.data.subarray(item * size, (item + 1) * size), row * size);
    }
    return { data, dims: [rows, ...image.dims.slice(1)] };
  }

  /**
   * The per-call hook that gives the UNet its control: the fused UNet gets the control images of the call's rows
   * and the step's scale; a separate ControlNet runs on the call's rows and its residuals become UNet inputs.
   */
  private controlHook(control: ControlRun): UnetFeedsHook {
    const { image } = control;
    const doubled = new Float32Array(2 * image.data.length);
    doubled.set(image.data, 0);
    doubled.set(image.data, image.data.length);
    const imageOf = (rows: UnetCall['rows']): TensorLike =>
      rows === 'both' ? { data: doubled, dims: [2 * image.dims[0], ...image.dims.slice(1)] } : image;
    const layout = this.controlLayout;
    if (layout.kind === 'fused') {
      const rank = this.unet.inputs.find((i) => i.name === layout.scaleInput)?.shape.length ?? 1;
      return async ({ rows, position }) => {
        const rowsImage = imageOf(rows);
        const scale = control.scale * keepAt(position, control.start, control.end);
        return {
          [layout.imageInput]: { data: rowsImage.data, dims: [1, ...rowsImage.dims] },
          [layout.scaleInput]: { data: Float32Array.of(scale), dims: rank === 2 ? [1, 1] : [1] },
        };
      };
    }
    const controlnet = this.controlnet as ModelSession;
    const blocks = layout.outputs.length;
    // Guess mode weights the residuals 10^(−1 + k/(blocks−1)): 0.1 at the first down block, 1 at the middle one.
    const guessWeights = Array.from({ length: blocks }, (_, k) =>
      control.guessMode && !this.globalPoolConditions ? 10 ** (-1 + k / (blocks - 1)) : 1,
    );
    const stacked = new Map<string, Float32Array>();
    let zeros: Record<string, TensorLike> | undefined;
    return async (call) => {
      const { rows, position } = call;
      const scale = control.scale * keepAt(position, control.start, control.end);
      if (control.guessMode && rows === 'unconditional' && zeros !== undefined) return zeros;
      const conditionalOnly = control.guessMode && rows === 'both';
      // Guess mode's conditional rows: their half of the text embeddings, split once per generation.
      const text = conditionalOnly ? await call.conditioning.feeds('conditional') : call.feeds;
      const feeds: Record<string, FeedValue> = {
        [UNET_SAMPLE_INPUT]: conditionalOnly ? conditionalHalf(call.sample) : call.sample,
        timestep: call.timestep,
        [HIDDEN_STATES]: text[HIDDEN_STATES],
        [CONTROLNET_COND]: conditionalOnly ? image : imageOf(rows),
      };
      if (layout.scaleInput !== undefined) feeds[layout.scaleInput] = scale;
      const outputs = await controlnet.run(feeds);
      const residuals: Record<string, TensorLike> = {};
      layout.outputs.forEach((name, k) => {
        const residual = outputs[name];
        // A graph with a conditioning_scale input applied the scale itself.
        const weight = guessWeights[k] * (layout.scaleInput === undefined ? scale : 1);
        const zero = control.guessMode && rows === 'unconditional';
        if (zero) residual.data.fill(0);
        else if (weight !== 1) for (let i = 0; i < residual.data.length; i++) residual.data[i] *= weight;
        let value: TensorLike = residual;
        if (conditionalOnly) {
          // The unconditional rows get no residual: [0; r].
          let buffer = stacked.get(name);
          if (buffer?.length !== 2 * residual.data.length) {
            buffer = new Float32Array(2 * residual.data.length);
            stacked.set(name, buffer);
          }
          value = { data: afterZeros(buffer, residual.data), dims: [2 * residual.dims[0], ...residual.dims.slice(1)] };
        }
        residuals[layout.unetInputs[k]] = value;
      });
      if (control.guessMode && rows === 'unconditional') zeros = residuals;
      return residuals;
    };
  }

  /** Frees every session of the pipeline. */
  override async release(): Promise<void> {
    await Promise.all([super.release(), this.controlnet?.release()]);
  }
}

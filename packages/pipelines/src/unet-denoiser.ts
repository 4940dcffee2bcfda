/**
 * Binds a UNet graph to its conditioning so the denoising loop can call it as a {@link Denoiser}: the
 * unconditional and conditional rows go through in ONE call when the graph's batch is free, in two when the
 * graph was exported with a fixed batch. {@link UnetConditioning} answers the feeds of each call's rows.
 */
import { InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import { DeviceTensor, type FeedValue, type ModelSession } from '@denoise/core/runtime';
import type { Denoiser, DenoiserRequest } from './denoising-loop.js';
import type { GuidanceStepPosition } from './guidance/guidance.js';

/**
 * A conditioning input of a UNet: text embeddings (float32, on the CPU or left on the GPU by the text encoder)
 * or class labels (int32).
 */
export type ConditioningValue = TensorLike | Tensor<'int32'> | DeviceTensor;

/** Conditioning inputs by UNet input name. */
export type ConditioningInputs = Readonly<Record<string, ConditioningValue>>;

/**
 * Which rows one UNet call evaluates: the conditional ones, the unconditional ones, or both stacked
 * `[unconditional; conditional]` (the batched call of classifier-free guidance).
 */
export type UnetCallRows = 'conditional' | 'unconditional' | 'both';

/** What a {@link UnetConditioning} is built from, for the `B` rows of a batch; give the halves, or both stacked. */
export interface UnetConditioningParts {
  /** With the condition (the prompt, the class label). */
  readonly conditional?: ConditioningInputs;
  /** Without it (the negative prompt, the null label); needed only when a guidance asks for that branch. */
  readonly unconditional?: ConditioningInputs;
  /**
   * The `2B` rows `[unconditional; conditional]` already in one batch, fed as is to the calls of both rows, e.g.
   * text embeddings that one text-encoder run left on the GPU. An input missing from a half is taken from its
   * half of this batch.
   */
  readonly stacked?: ConditioningInputs;
}

/**
 * The conditioning inputs of a UNet for one generation (text embeddings, class labels), wherever they live, and
 * the one owner of those on a device. It answers the feeds of a call's rows, building each set once and reusing
 * it for every step: the `[unconditional; conditional]` batch stacked on the CPU from the halves, or the halves of
 * a stacked batch (read back from the device once) for a UNet exported with a fixed batch.
 */
export class UnetConditioning {
  readonly #parts: UnetConditioningParts;
  readonly #feeds = new Map<UnetCallRows, Promise<Readonly<Record<string, FeedValue>>>>();
  #halves: Promise<Record<'unconditional' | 'conditional', Record<string, ConditioningValue>>> | undefined;

  /**
   * @param parts - the halves and/or the stacked batch; the conditioning takes over the device tensors among them
   *   and frees them on {@link UnetConditioning.dispose}
   */
  constructor(parts: UnetConditioningParts) {
    this.#parts = parts;
  }

  /**
   * Copies the conditioning to the session's device ONCE, when the session can take uploads (a WebGPU session in
   * a browser): both halves stacked for a UNet that takes the doubled batch, each half for a fixed-batch UNet,
   * every float input in the element type the UNet declares. Elsewhere the conditioning stays on the CPU.
   *
   * @param session - the UNet
   * @param parts - the halves, on the CPU
   * @returns the conditioning, owning the uploaded tensors
   */
  static async uploaded(session: ModelSession, parts: UnetConditioningParts): Promise<UnetConditioning> {
    const { conditional = {}, unconditional } = parts;
    if (!session.canUpload) return new UnetConditioning(parts);
    const owned: DeviceTensor[] = [];
    const upload = async (values: ConditioningInputs) => {
      const out: Record<string, ConditioningValue> = {};
      for (const [name, value] of Object.entries(values)) {
        const type = session.inputs.find((i) => i.name === name)?.type;
        const float = !(value instanceof DeviceTensor) && value.data instanceof Float32Array;
        if (!float || (type !== 'float32' && type !== 'float16')) {
          out[name] = value;
          continue;
        }
        const tensor = await session.upload(name, value as TensorLike);
        owned.push(tensor);
        out[name] = tensor;
      }
      return out;
    };
    try {
      if (unconditional === undefined) return new UnetConditioning({ conditional: await upload(conditional) });
      if (staticBatch(session) === firstRows(conditional)) {
        return new UnetConditioning({
          conditional: await upload(conditional),
          unconditional: await upload(unconditional),
        });
      }
      return new UnetConditioning({ stacked: await upload(stackHalves(conditional, unconditional)) });
    } catch (error) {
      for (const tensor of owned) tensor.dispose();
      throw error;
    }
  }

  /**
   * This conditioning with `inputs` added to its conditional rows (LCM's guidance-scale embedding). The result
   * takes over the device tensors of this one: dispose the result.
   *
   * @param inputs - the conditional rows' extra inputs, on the CPU
   */
  withConditional(inputs: ConditioningInputs): UnetConditioning {
    const { conditional = {} } = this.#parts;
    return new UnetConditioning({ ...this.#parts, conditional: { ...conditional, ...inputs } });
  }

  /**
   * The conditioning feeds of a UNet call on `rows`, the same object at every step.
   *
   * @param rows - which rows the call evaluates
   * @throws `InvalidArgumentError` when the unconditional rows were asked for but never prepared
   */
  feeds(rows: UnetCallRows): Promise<Readonly<Record<string, FeedValue>>> {
    let feeds = this.#feeds.get(rows);
    if (feeds === undefined) {
      feeds = rows === 'both' ? this.#stacked() : this.#half(rows);
      this.#feeds.set(rows, feeds);
    }
    return feeds;
  }

  /** Frees the device tensors the conditioning holds; call it once the generation ends, however it ends. */
  dispose(): void {
    const { conditional = {}, unconditional = {}, stacked = {} } = this.#parts;
    const onDevice = new Set(
      [conditional, unconditional, stacked].flatMap((inputs) =>
        Object.values(inputs).filter((value) => value instanceof DeviceTensor),
      ),
    );
    for (const tensor of onDevice) tensor.dispose();
  }

  async #stacked(): Promise<Readonly<Record<string, FeedValue>>> {
    const { stacked, conditional = {} } = this.#parts;
    if (stacked !== undefined) return stacked;
    return stackHalves(conditional, this.#unconditional());
  }

  async #half(which: 'unconditional' | 'conditional'): Promise<Readonly<Record<string, FeedValue>>> {
    const { stacked } = this.#parts;
    const own = which === 'unconditional' ? this.#unconditional() : (this.#parts.conditional ?? {});
    if (stacked === undefined || Object.keys(stacked).every((name) => name in own)) return own;
    this.#halves ??= (async () => {
      const unconditional: Record<string, ConditioningValue> = {};
      const conditional: Record<string, ConditioningValue> = {};
      for (const [name, value] of Object.entries(stacked)) {
        [unconditional[name], conditional[name]] = await halvesOf(value);
      }
      return { unconditional, conditional };
    })();
    return { ...(await this.#halves)[which], ...own };
  }

  /** The unconditional half's own inputs (possibly none, when it is all in the stacked batch). */
  #unconditional(): ConditioningInputs {
    const { unconditional, stacked } = this.#parts;
    if (unconditional !== undefined) return unconditional;
    if (stacked !== undefined) return {};
    throw new InvalidArgumentError(
      'A guidance asked for the unconditional prediction, but no unconditional input was prepared.',
    );
  }
}

/** The number of rows of the first input. */
function firstRows(inputs: ConditioningInputs): number | undefined {
  return Object.values(inputs)[0]?.dims[0];
}

/** `[unconditional; conditional]` of every conditional input, on the CPU. */
function stackHalves(conditional: ConditioningInputs, unconditional: ConditioningInputs): ConditioningInputs {
  return Object.fromEntries(
    Object.entries(conditional).map(([name, value]) => {
      const other = unconditional[name];
      if (other === undefined) {
        throw new InvalidArgumentError(`The unconditional rows have no ${name} input; the conditional rows do.`);
      }
      return [name, stackRows(name, other, value)];
    }),
  );
}

/** One UNet call, as a {@link UnetFeedsHook} sees it before the call runs. */
export interface UnetCall {
  /** The call's `sample` rows. */
  readonly sample: TensorLike;
  /** The timestep. */
  readonly timestep: number;
  /** Which rows `sample` holds. */
  readonly rows: UnetCallRows;
  /** The conditioning feeds of these rows (e.g. `encoder_hidden_states`), as the UNet gets them. */
  readonly feeds: Readonly<Record<string, FeedValue>>;
  /** The generation's conditioning, for the feeds of other rows (e.g. the conditional half of a batched call). */
  readonly conditioning: UnetConditioning;
  /** Where in the run the call is. */
  readonly position: GuidanceStepPosition;
  /** The caller's signal. */
  readonly signal: AbortSignal | undefined;
}

/**
 * Computes extra UNet inputs for one call from the same rows, e.g. a ControlNet run on the call's sample and text
 * embeddings whose residuals the UNet takes as inputs. It runs once per UNet call, so it follows the call
 * structure: one batched call for both halves when the UNet takes the batch, two calls for a fixed-batch UNet.
 */
export type UnetFeedsHook = (call: UnetCall) => Promise<Readonly<Record<string, FeedValue>>>;

/** The name diffusers' and Optimum's ONNX exports give the UNet's noisy-sample input. */
export const UNET_SAMPLE = 'sample';
/** The name of the UNet's timestep input. */
export const UNET_TIMESTEP = 'timestep';

/** The declared batch size of the graph's `sample` input, or `undefined` when it is free. */
export function staticBatch(session: ModelSession): number | undefined {
  const sample = session.inputs.find((i) => i.name === UNET_SAMPLE) ?? session.inputs[0];
  const batch = sample?.shape[0];
  return typeof batch === 'number' && batch > 0 ? batch : undefined;
}

/** `[a; b]` along the batch axis, keeping the element type (both on the CPU). */
function stackRows(name: string, a: ConditioningValue, b: ConditioningValue): ConditioningValue {
  if (a instanceof DeviceTensor || b instanceof DeviceTensor) {
    throw new InvalidArgumentError(
      `The UNet input ${name} is on the device and cannot be stacked on the CPU; pass both halves in one batch as ` +
        'UnetConditioningParts.stacked.',
    );
  }
  const dims = [a.dims[0] + b.dims[0], ...a.dims.slice(1)];
  const first = a.data;
  const second = b.data;
  if (first instanceof Int32Array) return new Tensor(Int32Array.from([...first, ...second]), dims);
  const data = new Float32Array(first.length + second.length);
  data.set(first, 0);
  data.set(second as Float32Array, first.length);
  return new Tensor<'float32'>(data, dims);
}

/** The two halves of a value stacked along the batch axis, on the CPU (a device value is read back). */
async function halvesOf(value: ConditioningValue): Promise<[ConditioningValue, ConditioningValue]> {
  const cpu = value instanceof DeviceTensor ? await value.toTensor() : value;
  const [rows, ...rest] = cpu.dims;
  const dims = [rows / 2, ...rest];
  const { data } = cpu;
  const split = data.length / 2;
  if (data instanceof Int32Array) {
    return [new Tensor<'int32'>(data.subarray(0, split), dims), new Tensor<'int32'>(data.subarray(split), dims)];
  }
  return [new Tensor<'float32'>(data.subarray(0, split), dims), new Tensor<'float32'>(data.subarray(split), dims)];
}

/** Options of {@link unetDenoiser} beyond the conditioning. */
export interface UnetDenoiserOptions {
  /**
   * Channels appended to every row's `sample` after the latents, `[B, C', h, w]` for the `B` rows of the batch
   * (an inpainting UNet's mask and masked-image latents); the unconditional rows get the same ones.
   */
  readonly extraSampleChannels?: TensorLike;
  /** Adds inputs to each call, computed from the call's rows (a ControlNet's residuals). */
  readonly extraFeeds?: UnetFeedsHook;
}

/** `[sample, extra]` along the channel axis, row `r` of `sample` taking row `r mod B` of `extra`, into `out`. */
function appendChannels(sample: TensorLike, extra: TensorLike, out: Float32Array): TensorLike {
  const [rows, channels, ...spatial] = sample.dims;
  const sampleRow = sample.data.length / rows;
  const extraRows = extra.dims[0];
  const extraRow = extra.data.length / extraRows;
  for (let r = 0; r < rows; r++) {
    const at = r * (sampleRow + extraRow);
    out.set(sample.data.subarray(r * sampleRow, (r + 1) * sampleRow), at);
    const e = r % extraRows;
    out.set(extra.data.subarray(e * extraRow, (e + 1) * extraRow), at + sampleRow);
  }
  return { data: out, dims: [rows, channels + extra.dims[1], ...spatial] };
}

/** The rows of a request for the branches a UNet serves: the conditional pass alone, or with the unconditional one. */
function rowsOf(request: DenoiserRequest): 'conditional' | 'both' {
  const { branches } = request;
  if (branches.length === 1 && branches[0] === 'conditional') return 'conditional';
  if (branches.length === 2 && branches[0] === 'unconditional' && branches[1] === 'conditional') return 'both';
  throw new InvalidArgumentError(
    `The UNet denoiser serves the conditional and unconditional branches; a guidance asked for ` +
      `[${branches.join(', ')}]. Serve other branches with a Denoiser of your own that calls this one for these two.`,
  );
}

/**
 * A {@link Denoiser} over a UNet session, serving the `'conditional'` and `'unconditional'` branches. It asks
 * `conditioning` for the feeds of each call's rows, which are built once per generation.
 *
 * @param session - the UNet
 * @param conditioning - the conditioning inputs (text embeddings, class labels)
 * @param options - extra sample channels, and extra inputs computed per call (a ControlNet's residuals)
 */
export function unetDenoiser(
  session: ModelSession,
  conditioning: UnetConditioning,
  options: UnetDenoiserOptions = {},
): Denoiser {
  const fixedBatch = staticBatch(session);
  const outputName = session.outputs[0].name;
  const { extraSampleChannels, extraFeeds } = options;
  // One buffer per row count (B or 2B), reused by every step.
  const widened = new Map<number, Float32Array>();
  const run = async (call: DenoiserRequest, sample: TensorLike, rows: UnetCallRows) => {
    const { timestep, position, signal } = call;
    const feeds = await conditioning.feeds(rows);
    const extra = extraFeeds && (await extraFeeds({ sample, timestep, rows, feeds, conditioning, position, signal }));
    let input = sample;
    if (extraSampleChannels !== undefined) {
      const count = sample.dims[0];
      const length = sample.data.length + (count * extraSampleChannels.data.length) / extraSampleChannels.dims[0];
      const buffer = widened.get(count) ?? new Float32Array(length);
      widened.set(count, buffer);
      input = appendChannels(sample, extraSampleChannels, buffer);
    }
    const out = await session.run({ [UNET_SAMPLE]: input, [UNET_TIMESTEP]: timestep, ...feeds, ...extra });
    return out[outputName];
  };
  let joined: Float32Array | undefined;

  return async (call: DenoiserRequest) => {
    const { sample } = call;
    if (rowsOf(call) === 'conditional') return run(call, sample, 'conditional');
    const rows = sample.dims[0];
    const half = rows / 2;
    if (fixedBatch === undefined || fixedBatch === rows) return run(call, sample, 'both');
    if (fixedBatch !== half) {
      throw new InvalidArgumentError(
        `The UNet graph was exported for batch ${fixedBatch}; this call needs ${half} (or ${rows}). ` +
          'Generate that many images per call or re-export the UNet with a dynamic batch axis.',
      );
    }
    // A fixed-batch graph forces two runs: unconditional rows, then conditional rows.
    const dims = [half, ...sample.dims.slice(1)];
    const split = sample.data.length / 2;
    const first = await run(call, { data: sample.data.subarray(0, split), dims }, 'unconditional');
    const second = await run(call, { data: sample.data.subarray(split), dims }, 'conditional');
    if (joined?.length !== 2 * first.data.length) joined = new Float32Array(2 * first.data.length);
    joined.set(first.data, 0);
    joined.set(second.data, first.data.length);
    return new Tensor(joined, [rows, ...first.dims.slice(1)]);
  };
}

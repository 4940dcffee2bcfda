/**
 * Binds a UNet graph to its conditioning so the denoising loop can call it as a {@link Denoiser}: the
 * unconditional and conditional rows go through in ONE call when the graph's batch is free, in two when the
 * graph was exported with a fixed batch.
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

/** The conditioning inputs of a UNet by input name, for the `B` rows of a batch. */
export interface UnetConditioning {
  /** With the condition (the prompt, the class label). */
  readonly conditional: Readonly<Record<string, ConditioningValue>>;
  /** Without it (the negative prompt, the null label); needed only when a guidance asks for it. */
  readonly unconditional?: Readonly<Record<string, ConditioningValue>>;
  /**
   * The `2B` rows `[unconditional; conditional]` already in one batch, for the batched calls of classifier-free
   * guidance: fed as is, e.g. text embeddings that one text-encoder run left on the GPU. Without it, batched
   * calls stack `unconditional` and `conditional` on the CPU once per generation.
   */
  readonly stacked?: Readonly<Record<string, ConditioningValue>>;
}

/**
 * Which rows one UNet call evaluates: the conditional ones, the unconditional ones, or both stacked
 * `[unconditional; conditional]` (the batched call of classifier-free guidance).
 */
export type UnetCallRows = 'conditional' | 'unconditional' | 'both';

/** One UNet call, as a {@link UnetFeedsHook} sees it before the call runs. */
export interface UnetCall {
  /** The call's `sample` rows. */
  readonly sample: TensorLike;
  /** The timestep. */
  readonly timestep: number;
  /** Which rows `sample` holds. */
  readonly rows: UnetCallRows;
  /** The conditioning feeds of these rows (e.g. `encoder_hidden_states`), as the UNet gets them. */
  readonly conditioning: Readonly<Record<string, FeedValue>>;
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
export function stackRows(name: string, a: ConditioningValue, b: ConditioningValue): ConditioningValue {
  if (a instanceof DeviceTensor || b instanceof DeviceTensor) {
    throw new InvalidArgumentError(
      `The UNet input ${name} is on the device and cannot be stacked on the CPU; pass both halves in one batch as ` +
        'UnetConditioning.stacked.',
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

/**
 * A {@link Denoiser} over a UNet session. Feeds are built once per generation (the denoiser's lifetime): the
 * `[unconditional; conditional]` batch on the first batched call, and the halves of
 * {@link UnetConditioning.stacked} (read back from the device once) on the first call that needs one half alone.
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
  const run = async (
    call: DenoiserRequest,
    sample: TensorLike,
    feeds: Readonly<Record<string, FeedValue>>,
    rows: UnetCallRows,
  ) => {
    const { timestep, position, signal } = call;
    const extra = extraFeeds && (await extraFeeds({ sample, timestep, rows, conditioning: feeds, position, signal }));
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
  // Built on first use, once per generation.
  let batched: Record<string, FeedValue> | undefined;
  let halves: Promise<Record<'unconditional' | 'conditional', Record<string, ConditioningValue>>> | undefined;
  let joined: Float32Array | undefined;

  /** The inputs `conditional` (or `unconditional`) lacks, taken from their half of `stacked`. */
  const completed = async <K extends 'unconditional' | 'conditional'>(which: K): Promise<UnetConditioning[K]> => {
    const own = conditioning[which];
    const { stacked } = conditioning;
    if (stacked === undefined || Object.keys(stacked).every((name) => own !== undefined && name in own)) return own;
    halves ??= (async () => {
      const unconditional: Record<string, ConditioningValue> = {};
      const conditional: Record<string, ConditioningValue> = {};
      for (const [name, value] of Object.entries(stacked)) {
        [unconditional[name], conditional[name]] = await halvesOf(value);
      }
      return { unconditional, conditional };
    })();
    return { ...(await halves)[which], ...own };
  };

  return async (call: DenoiserRequest) => {
    const { sample, withUnconditional } = call;
    if (!withUnconditional) return run(call, sample, await completed('conditional'), 'conditional');
    const { stacked } = conditioning;
    const rows = sample.dims[0];
    const half = rows / 2;
    const batchedCall = fixedBatch === undefined || fixedBatch === rows;
    if (batchedCall && stacked !== undefined) return run(call, sample, stacked, 'both');
    const unconditional = await completed('unconditional');
    if (unconditional === undefined) {
      throw new InvalidArgumentError(
        'A guidance asked for the unconditional prediction, but no unconditional input was prepared.',
      );
    }
    if (batchedCall) {
      batched ??= Object.fromEntries(
        Object.entries(conditioning.conditional).map(([name, value]) => [
          name,
          stackRows(name, unconditional[name], value),
        ]),
      );
      return run(call, sample, batched, 'both');
    }
    if (fixedBatch !== half) {
      throw new InvalidArgumentError(
        `The UNet graph was exported for batch ${fixedBatch}; this call needs ${half} (or ${rows}). ` +
          'Generate that many images per call or re-export the UNet with a dynamic batch axis.',
      );
    }
    // A fixed-batch graph forces two runs: unconditional rows, then conditional rows.
    const conditional = await completed('conditional');
    const dims = [half, ...sample.dims.slice(1)];
    const split = sample.data.length / 2;
    const first = await run(call, { data: sample.data.subarray(0, split), dims }, unconditional, 'unconditional');
    const second = await run(call, { data: sample.data.subarray(split), dims }, conditional, 'conditional');
    if (joined?.length !== 2 * first.data.length) joined = new Float32Array(2 * first.data.length);
    joined.set(first.data, 0);
    joined.set(second.data, first.data.length);
    return new Tensor(joined, [rows, ...first.dims.slice(1)]);
  };
}

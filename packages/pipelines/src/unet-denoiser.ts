/**
 * Binds a UNet graph to its conditioning so the denoising loop can call it as a {@link Denoiser}: the
 * unconditional and conditional rows go through in ONE call when the graph's batch is free, in two when the
 * graph was exported with a fixed batch.
 */
import { InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import type { FeedValue, ModelSession } from '@denoise/core/runtime';
import type { Denoiser, DenoiserRequest } from './denoising-loop.js';

/** A conditioning input of a UNet: text embeddings (float32) or class labels (int32). */
export type ConditioningValue = TensorLike | Tensor<'int32'>;

/** The conditioning inputs of a UNet by input name, for the `B` rows of a batch. */
export interface UnetConditioning {
  /** With the condition (the prompt, the class label). */
  readonly conditional: Readonly<Record<string, ConditioningValue>>;
  /** Without it (the negative prompt, the null label); needed only when a guidance asks for it. */
  readonly unconditional?: Readonly<Record<string, ConditioningValue>>;
}

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

/** `[a; b]` along the batch axis, keeping the element type. */
function stack(a: ConditioningValue, b: ConditioningValue): ConditioningValue {
  const dims = [a.dims[0] + b.dims[0], ...a.dims.slice(1)];
  const first = a.data;
  const second = b.data;
  if (first instanceof Int32Array) return new Tensor(Int32Array.from([...first, ...second]), dims);
  const data = new Float32Array(first.length + second.length);
  data.set(first, 0);
  data.set(second as Float32Array, first.length);
  return new Tensor<'float32'>(data, dims);
}

/**
 * A {@link Denoiser} over a UNet session.
 *
 * @param session - the UNet
 * @param conditioning - the conditioning inputs (text embeddings, class labels)
 */
export function unetDenoiser(session: ModelSession, conditioning: UnetConditioning): Denoiser {
  const fixedBatch = staticBatch(session);
  const outputName = session.outputs[0].name;
  const run = async (sample: TensorLike, timestep: number, extra: Readonly<Record<string, FeedValue>>) => {
    const out = await session.run({ [UNET_SAMPLE]: sample, [UNET_TIMESTEP]: timestep, ...extra });
    return out[outputName];
  };
  // Built on first use, once per generation.
  let batched: Record<string, FeedValue> | undefined;
  let joined: Float32Array | undefined;

  return async ({ sample, timestep, withUnconditional }: DenoiserRequest) => {
    if (!withUnconditional) return run(sample, timestep, conditioning.conditional);
    const { unconditional } = conditioning;
    if (unconditional === undefined) {
      throw new InvalidArgumentError(
        'A guidance asked for the unconditional prediction, but no unconditional input was prepared.',
      );
    }
    const rows = sample.dims[0];
    const half = rows / 2;
    if (fixedBatch === undefined || fixedBatch === rows) {
      batched ??= Object.fromEntries(
        Object.entries(conditioning.conditional).map(([name, value]) => [name, stack(unconditional[name], value)]),
      );
      return run(sample, timestep, batched);
    }
    if (fixedBatch !== half) {
      throw new InvalidArgumentError(
        `The UNet graph was exported for batch ${fixedBatch}; this call needs ${half} (or ${rows}). ` +
          'Generate that many images per call or re-export the UNet with a dynamic batch axis.',
      );
    }
    // A fixed-batch graph forces two runs: unconditional rows, then conditional rows.
    const dims = [half, ...sample.dims.slice(1)];
    const split = sample.data.length / 2;
    const first = await run({ data: sample.data.subarray(0, split), dims }, timestep, unconditional);
    const second = await run({ data: sample.data.subarray(split), dims }, timestep, conditioning.conditional);
    if (joined?.length !== 2 * first.data.length) joined = new Float32Array(2 * first.data.length);
    joined.set(first.data, 0);
    joined.set(second.data, first.data.length);
    return new Tensor(joined, [rows, ...first.dims.slice(1)]);
  };
}

/**
 * Adapts what callers pass (float32 tensors, integer tensors, plain numbers) to what each graph declares in its
 * input metadata, and every output back to float32, so that one pipeline works with fp32 and fp16 exports and
 * with every timestep convention (int64, float32 or float16; rank 0, `[1]` or `[batch]`) without knowing which.
 */
import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-common';
import { InvalidArgumentError } from '../errors.js';
import { float16ToFloat32, float32ToFloat16 } from '../float16.js';
import { type DataType, sizeOf, Tensor, type TensorLike } from '../tensor.js';
import type { DeviceTensor } from './device-tensor.js';

/** A graph input or output as the runtime declares it. Strings in `shape` are symbolic (free) dimensions. */
export interface TensorSpec {
  /** The input or output name. */
  name: string;
  /** The ONNX Runtime element type, e.g. `'float32'`, `'float16'`, `'int64'`. */
  type: string;
  /** The declared shape; strings are free dimensions. */
  shape: readonly (number | string)[];
}

/**
 * A value for one model input: a tensor of any {@link DataType} (float32 ones may be plain {@link TensorLike}s),
 * a number (a timestep or a guidance scale; broadcast to the declared shape), or a {@link DeviceTensor}.
 */
export type FeedValue = number | TensorLike | Tensor<DataType> | DeviceTensor;

/** The constructor of runtime tensors of the `ort` module in use. */
export type OrtTensorConstructor = typeof import('onnxruntime-common').Tensor;

type NumericArray = Float64Array | Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array;

/** The element types a graph input may declare, and the typed array that holds each. */
const TARGET_ARRAYS = {
  float32: Float32Array,
  float16: Uint16Array,
  int32: Int32Array,
  int64: BigInt64Array,
} as const;
type Target = keyof typeof TARGET_ARRAYS;

function isTarget(type: string): type is Target {
  return type in TARGET_ARRAYS;
}

function describe(spec: TensorSpec): string {
  return `${spec.name}: ${spec.type}[${spec.shape.join(', ')}]`;
}

/** Converts runtime output data of any numeric type to a float32 {@link Tensor} (no copy when already float32). */
export function toFloat32(type: string, data: OrtTensor['data'], dims: readonly number[]): Tensor {
  if (data instanceof Float32Array) return new Tensor(data, dims);
  if (type === 'float16') return new Tensor(float16ToFloat32(data as Uint16Array), dims);
  if (typeof data === 'object' && data !== null && 'length' in data) {
    const out = new Float32Array(data.length);
    for (let i = 0; i < data.length; i++) out[i] = Number((data as ArrayLike<number | bigint | string>)[i]);
    return new Tensor(out, dims);
  }
  throw new InvalidArgumentError(`Cannot convert a model output of type ${type} to float32.`);
}

/** A number or one-element tensor fed to a rank-0 or rank-1 input (a timestep): broadcast, not reshaped. */
function isBroadcastScalar(value: FeedValue, spec: TensorSpec): value is number | TensorLike | Tensor<DataType> {
  if (spec.shape.length > 1) return false;
  return typeof value === 'number' || (!isDeviceTensor(value) && value.dims.length <= 1 && sizeOf(value.dims) === 1);
}

function isDeviceTensor(value: FeedValue): value is DeviceTensor {
  return typeof value === 'object' && 'value' in value && 'toTensor' in value;
}

/** Element type of a caller's value. TensorLikes without a `type` hold float32. */
function sourceType(value: TensorLike | Tensor<DataType>): DataType {
  return 'type' in value ? value.type : 'float32';
}

/** Writes `source` (of type `from`) into `out` (of type `to`), repeating it to fill `out`; integers truncate. */
function convert(source: NumericArray, from: DataType | 'float64', out: NumericArray, to: Target): void {
  const values = from === 'float16' ? float16ToFloat32(source as Uint16Array) : source;
  const n = values.length;
  if (to === 'float16') {
    const floats =
      values instanceof Float32Array && n === out.length
        ? values
        : Float32Array.from({ length: out.length }, (_, k) => Number(values[k % n]));
    float32ToFloat16(floats, out as Uint16Array);
    return;
  }
  for (let k = 0; k < out.length; k++) {
    const v = Number(values[k % n]);
    if (to === 'int64') (out as BigInt64Array)[k] = BigInt(Math.trunc(v));
    else if (to === 'int32') (out as Int32Array)[k] = Math.trunc(v);
    else (out as Float32Array)[k] = v;
  }
}

/**
 * Turns caller feeds into runtime tensors for one session. Conversion buffers are kept per input and reused by
 * later runs of the same shape, so a denoising loop allocates nothing new for its inputs after the first step.
 */
export class InputAdapter {
  readonly #specs: readonly TensorSpec[];
  readonly #Tensor: OrtTensorConstructor;
  readonly #model: string;
  readonly #scratch = new Map<string, NumericArray>();

  /**
   * @param specs - the graph's inputs
   * @param TensorClass - the `Tensor` class of the `ort` module in use
   * @param model - the model's name, for error messages
   */
  constructor(specs: readonly TensorSpec[], TensorClass: OrtTensorConstructor, model: string) {
    this.#specs = specs;
    this.#Tensor = TensorClass;
    this.#model = model;
  }

  /**
   * Builds the runtime feeds.
   *
   * @throws `InvalidArgumentError` naming the expected and actual inputs when they do not match
   */
  adapt(feeds: Readonly<Record<string, FeedValue>>): InferenceSession.FeedsType {
    this.#checkNames(feeds);
    const sizes = this.#bindFreeDimensions(feeds);
    const out: Record<string, OrtTensor> = {};
    for (const spec of this.#specs) out[spec.name] = this.#adaptOne(spec, feeds[spec.name], sizes);
    return out;
  }

  #mismatch(why: string, feeds: Readonly<Record<string, FeedValue>>): InvalidArgumentError {
    const actual = Object.entries(feeds).map(([name, v]) =>
      typeof v === 'number'
        ? `${name}: number`
        : `${name}: ${isDeviceTensor(v) ? v.value.type : sourceType(v)}[${v.dims.join(', ')}]`,
    );
    return new InvalidArgumentError(
      `${this.#model}: ${why}. The graph expects {${this.#specs.map(describe).join('; ')}}, ` +
        `got {${actual.join('; ')}}. Pass one value per graph input, named as the graph names it.`,
    );
  }

  #checkNames(feeds: Readonly<Record<string, FeedValue>>): void {
    const missing = this.#specs.filter((s) => !(s.name in feeds)).map((s) => s.name);
    const unknown = Object.keys(feeds).filter((name) => !this.#specs.some((s) => s.name === name));
    if (missing.length > 0) throw this.#mismatch(`missing input(s) ${missing.join(', ')}`, feeds);
    if (unknown.length > 0) throw this.#mismatch(`unknown input(s) ${unknown.join(', ')}`, feeds);
  }

  /** Sizes of the free dimensions, read off the tensors the caller passed (e.g. `batch` from `sample`). */
  #bindFreeDimensions(feeds: Readonly<Record<string, FeedValue>>): Map<string, number> {
    const sizes = new Map<string, number>();
    for (const spec of this.#specs) {
      const value = feeds[spec.name];
      if (isBroadcastScalar(value, spec) || value.dims.length !== spec.shape.length) continue;
      spec.shape.forEach((d, i) => {
        if (typeof d === 'string' && !sizes.has(d)) sizes.set(d, value.dims[i]);
      });
    }
    return sizes;
  }

  #buffer(name: string, type: Target, length: number): NumericArray {
    const kept = this.#scratch.get(name);
    if (kept instanceof TARGET_ARRAYS[type] && kept.length === length) return kept;
    const fresh = new TARGET_ARRAYS[type](length);
    this.#scratch.set(name, fresh);
    return fresh;
  }

  #adaptOne(spec: TensorSpec, value: FeedValue, sizes: ReadonlyMap<string, number>): OrtTensor {
    const feeds = { [spec.name]: value };
    const target = spec.type;
    if (!isTarget(target)) {
      throw this.#mismatch(`input ${spec.name} has type ${target}, which denoise cannot feed`, feeds);
    }
    if (typeof value !== 'number' && isDeviceTensor(value)) {
      if (value.value.type !== target) throw this.#mismatch(`device tensor ${spec.name} is ${value.value.type}`, feeds);
      return value.value;
    }
    if (isBroadcastScalar(value, spec)) return this.#broadcastScalar(spec, target, value, sizes);

    const tensor = value as TensorLike | Tensor<DataType>;
    const from = sourceType(tensor);
    const shapeFits =
      spec.shape.length === tensor.dims.length &&
      spec.shape.every((d, i) => typeof d === 'string' || d === tensor.dims[i]);
    if (!shapeFits) throw this.#mismatch(`input ${spec.name} has shape [${tensor.dims.join(', ')}]`, feeds);
    if (from === target) return new this.#Tensor(target, tensor.data as OrtTensor['data'], tensor.dims);
    if (from === 'uint8') throw this.#mismatch(`input ${spec.name} is uint8`, feeds);
    const out = this.#buffer(spec.name, target, tensor.data.length);
    convert(tensor.data as NumericArray, from, out, target);
    return new this.#Tensor(target, out as OrtTensor['data'], tensor.dims);
  }

  /** A number (or one-element tensor) fed to a rank-0 or rank-1 input: rank 0, `[1]`, or repeated to `[batch]`. */
  #broadcastScalar(
    spec: TensorSpec,
    target: Target,
    value: number | TensorLike | Tensor<DataType>,
    sizes: ReadonlyMap<string, number>,
  ): OrtTensor {
    const single = typeof value === 'number' ? Float64Array.of(value) : (value.data as NumericArray);
    const from = typeof value === 'number' ? 'float64' : sourceType(value);
    const d = spec.shape[0];
    const dims = spec.shape.length === 0 ? [] : [typeof d === 'number' ? d : (sizes.get(d) ?? 1)];
    const out = this.#buffer(spec.name, target, sizeOf(dims));
    convert(single, from, out, target);
    return new this.#Tensor(target, out as OrtTensor['data'], dims);
  }
}

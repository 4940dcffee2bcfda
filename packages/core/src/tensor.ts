import { InvalidArgumentError } from './errors.js';

/** Element types a {@link Tensor} can hold. `float16` values are stored as their IEEE half-precision bits. */
export type DataType = 'float32' | 'float16' | 'int32' | 'int64' | 'uint8';

/** The typed array that stores each {@link DataType}. */
export interface DataTypeStorage {
  /** IEEE single precision. */
  float32: Float32Array;
  /** IEEE half precision, as raw 16-bit patterns. */
  float16: Uint16Array;
  /** 32-bit signed integers. */
  int32: Int32Array;
  /** 64-bit signed integers. */
  int64: BigInt64Array;
  /** 8-bit unsigned integers (image bytes). */
  uint8: Uint8Array;
}

/**
 * The minimal tensor shape the schedulers accept: a float32 buffer in row-major (NCHW) order and its dims.
 * A {@link Tensor}, an `onnxruntime` float32 tensor and a plain object all qualify.
 */
export interface TensorLike {
  /** The values, row-major. */
  readonly data: Float32Array;
  /** The shape, outermost first (e.g. `[batch, channels, height, width]`). */
  readonly dims: readonly number[];
}

/** The number of elements of a tensor with the given shape. */
export function sizeOf(dims: readonly number[]): number {
  let size = 1;
  for (const d of dims) size *= d;
  return size;
}

/**
 * A zero-filled `Float32Array` of `size` elements. A size the runtime cannot allocate is an
 * `InvalidArgumentError` naming `what`, instead of the engine's `RangeError`.
 *
 * @param size - the element count
 * @param what - what the buffer is for, for the message (e.g. `'the latents [1000000000, 4, 64, 64]'`)
 */
export function allocateFloat32(size: number, what: string): Float32Array {
  try {
    return new Float32Array(size);
  } catch (cause) {
    throw new InvalidArgumentError(`${what} would need ${size} float32 values, more than this runtime can allocate.`, {
      cause,
    });
  }
}

function checkDims(dims: readonly number[]): void {
  if (!Array.isArray(dims) || dims.some((d) => !Number.isInteger(d) || d < 0)) {
    const shown = Array.isArray(dims) ? `[${dims.join(', ')}]` : String(JSON.stringify(dims));
    throw new InvalidArgumentError(`Tensor dims must be an array of non-negative integers, got ${shown}.`);
  }
}

function inferType(data: DataTypeStorage[DataType]): DataType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof Uint16Array) return 'float16';
  if (data instanceof Uint8Array) return 'uint8';
  throw new InvalidArgumentError(
    'Tensor data must be a Float32Array, Uint16Array (float16 bits), Int32Array, BigInt64Array or Uint8Array.',
  );
}

/**
 * A dense n-dimensional array: a typed array and a shape. Tensors never copy their data on construction,
 * so wrapping an existing buffer is free. A float32 tensor is a {@link TensorLike}.
 *
 * @example
 * ```ts
 * const x = new Tensor(new Float32Array(2 * 4 * 8 * 8), [2, 4, 8, 8]);
 * ```
 */
export class Tensor<T extends DataType = 'float32'> {
  /** The element type. */
  readonly type: T;
  /** The values, row-major. */
  readonly data: DataTypeStorage[T];
  /** The shape, outermost first. */
  readonly dims: readonly number[];

  /**
   * @param data - the values in row-major order; the type is inferred from the array unless given
   * @param dims - the shape; its product must equal `data.length`
   * @param type - the element type, needed only to tell `float16` bits from other 16-bit data
   */
  constructor(data: DataTypeStorage[T], dims: readonly number[], type?: T) {
    checkDims(dims);
    if (sizeOf(dims) !== data.length) {
      throw new InvalidArgumentError(
        `Tensor dims [${dims.join(', ')}] describe ${sizeOf(dims)} elements but the data holds ${data.length}.`,
      );
    }
    this.type = type ?? (inferType(data) as T);
    this.data = data;
    this.dims = Object.freeze([...dims]);
  }

  /** The number of elements. */
  get size(): number {
    return this.data.length;
  }

  /** A float32 tensor of zeros. */
  static zeros(dims: readonly number[]): Tensor<'float32'> {
    checkDims(dims);
    return new Tensor(allocateFloat32(sizeOf(dims), `A tensor of dims [${dims.join(', ')}]`), dims);
  }

  /** A float32 tensor whose data is a copy of `like.data`. */
  static from(like: TensorLike): Tensor<'float32'> {
    return new Tensor(Float32Array.from(like.data), like.dims);
  }
}

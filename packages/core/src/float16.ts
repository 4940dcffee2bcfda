import { InvalidArgumentError } from './errors.js';

// IEEE 754 binary16 ("half"): 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits. Models exported in
// float16 take and return their tensors as raw 16-bit patterns, stored in a Uint16Array.

/** The typed-array constructor of runtimes that have `Float16Array` (ES2025); absent in Node 20. */
type Float16ArrayConstructor = new (
  buffer: ArrayBufferLike,
  byteOffset: number,
  length: number,
) => {
  set(values: ArrayLike<number>): void;
  readonly length: number;
  [index: number]: number;
};

const NativeFloat16Array = (globalThis as { Float16Array?: Float16ArrayConstructor }).Float16Array;

/** float32 exponent bias (127) minus float16 exponent bias (15), in float32 exponent position. */
const REBIAS = (127 - 15) << 23;
/** |x| from here on (65520, halfway between the largest half 65504 and 2^16) rounds to infinity. */
const OVERFLOW_THRESHOLD = 0x477ff000;
/** |x| below 2^-14, the smallest normal half, becomes a subnormal half (or zero). */
const SUBNORMAL_THRESHOLD = 0x38800000;
const FLOAT32_INFINITY = 0x7f800000;
const HALF_INFINITY = 0x7c00;
const HALF_QUIET_NAN = 0x7e00;

/** The half bits of one float32, given as its raw bits: round to nearest, ties to even. */
function encode(bits: number, value: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const magnitude = bits & 0x7fffffff;
  if (magnitude >= SUBNORMAL_THRESHOLD) {
    if (magnitude < OVERFLOW_THRESHOLD) {
      // Rebias the exponent and drop 13 mantissa bits; adding 0xfff plus the lowest kept bit rounds ties to
      // even, and a carry out of the mantissa correctly bumps the exponent.
      const rebased = magnitude - REBIAS;
      return sign | ((rebased + 0xfff + ((rebased >>> 13) & 1)) >>> 13);
    }
    if (magnitude <= FLOAT32_INFINITY) return sign | HALF_INFINITY;
    return sign | HALF_QUIET_NAN | ((magnitude >>> 13) & 0x3ff); // keeps the payload's top bits
  }
  // Subnormal half: a whole number of 2^-24 steps. Scaling by 2^24 is exact, and the result is below 1024,
  // so rounding it to an integer in double arithmetic is exact too.
  const steps = Math.abs(value) * 16777216;
  let whole = Math.floor(steps);
  const fraction = steps - whole;
  if (fraction > 0.5 || (fraction === 0.5 && (whole & 1) === 1)) whole += 1;
  return sign | whole; // 1024 steps is the smallest normal half, 0x0400: the encoding carries over by itself
}

let decodeTable: Uint32Array | undefined;

/** float32 bits of every half, indexed by the half bits (256 KiB, built on first use). */
function float32BitsOfHalves(): Uint32Array {
  if (decodeTable) return decodeTable;
  const table = new Uint32Array(65536);
  const asFloat = new Float32Array(table.buffer);
  for (let half = 0; half < 65536; half++) {
    const sign = (half & 0x8000) << 16;
    const exponent = (half >>> 10) & 0x1f;
    const mantissa = half & 0x3ff;
    if (exponent === 0x1f) {
      table[half] = sign | FLOAT32_INFINITY | (mantissa << 13); // infinities, and NaNs with their payload
    } else if (exponent !== 0) {
      table[half] = sign | ((((exponent << 10) | mantissa) << 13) + REBIAS);
    } else {
      asFloat[half] = mantissa * 2 ** -24; // subnormal half: a normal float32, exactly
      table[half] |= sign;
    }
  }
  decodeTable = table;
  return table;
}

function checkOutput(what: string, outLength: number, srcLength: number): void {
  if (outLength !== srcLength) {
    throw new InvalidArgumentError(
      `${what}: the output holds ${outLength} elements but the input has ${srcLength}; pass an output of the same length or none.`,
    );
  }
}

/**
 * The portable float32 → float16 encoder behind {@link float32ToFloat16}, exported for tests.
 *
 * @internal
 */
export function float32ToFloat16Portable(src: Float32Array, out: Uint16Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < src.length; i++) out[i] = encode(bits[i], src[i]);
  return out;
}

/**
 * The portable float16 → float32 decoder behind {@link float16ToFloat32}, exported for tests.
 *
 * @internal
 */
export function float16ToFloat32Portable(src: Uint16Array, out: Float32Array): Float32Array {
  const table = float32BitsOfHalves();
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) bits[i] = table[src[i]];
  return out;
}

/**
 * Converts float32 values to IEEE half precision, returned as raw 16-bit patterns (the layout ONNX Runtime and
 * `Tensor<'float16'>` use). Rounds to nearest, ties to even, like a hardware conversion: values beyond ±65504
 * that round past it become ±Infinity, tiny values become subnormals or ±0, NaN stays NaN. Uses the runtime's
 * `Float16Array` when it has one, a bit-level encoder otherwise; both give the same bits (NaN payloads aside).
 *
 * @param src - the values to convert
 * @param out - where to write the bits, of the same length; allocated when omitted
 * @returns `out`, or a new array
 * @throws {@link InvalidArgumentError} when `out` has a different length
 */
export function float32ToFloat16(src: Float32Array, out?: Uint16Array): Uint16Array {
  const target = out ?? new Uint16Array(src.length);
  checkOutput('float32ToFloat16', target.length, src.length);
  if (NativeFloat16Array) {
    new NativeFloat16Array(target.buffer, target.byteOffset, target.length).set(src);
    return target;
  }
  return float32ToFloat16Portable(src, target);
}

/**
 * Converts IEEE half-precision bit patterns to float32 values. Every half, subnormals, infinities and NaNs
 * included, is exactly representable in float32, so this is exact and `float32ToFloat16` inverts it. Uses
 * the runtime's `Float16Array` when it has one, a lookup table otherwise.
 *
 * @param src - the half-precision bits
 * @param out - where to write the values, of the same length; allocated when omitted
 * @returns `out`, or a new array
 * @throws {@link InvalidArgumentError} when `out` has a different length
 */
export function float16ToFloat32(src: Uint16Array, out?: Float32Array): Float32Array {
  const target = out ?? new Float32Array(src.length);
  checkOutput('float16ToFloat32', target.length, src.length);
  if (NativeFloat16Array) {
    target.set(new NativeFloat16Array(src.buffer, src.byteOffset, src.length) as unknown as ArrayLike<number>);
    return target;
  }
  return float16ToFloat32Portable(src, target);
}

import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../src/errors.js';
import {
  float16ToFloat32,
  float16ToFloat32Portable,
  float32ToFloat16,
  float32ToFloat16Portable,
} from '../src/float16.js';

// The oracle is written with plain arithmetic from the IEEE 754 definition of binary16, independent of the
// bit manipulations under test.

/** The value of a half bit pattern: (−1)^s · 2^(e−15) · (1 + m/1024), or 2^−14 · m/1024 when e = 0. */
function referenceValue(half: number): number {
  const sign = half & 0x8000 ? -1 : 1;
  const exponent = (half >> 10) & 0x1f;
  const mantissa = half & 0x3ff;
  if (exponent === 31) return mantissa === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  if (exponent === 0) return sign * 2 ** -14 * (mantissa / 1024);
  return sign * 2 ** (exponent - 15) * (1 + mantissa / 1024);
}

/** `x` rounded to the nearest half value, ties to even: the binade's step is 2^(e−10), at least 2^−24. */
function referenceRound(x: number): number {
  if (Number.isNaN(x)) return Number.NaN;
  const negative = x < 0 || Object.is(x, -0);
  const magnitude = Math.abs(x);
  let rounded: number;
  if (magnitude >= 65520) {
    rounded = Number.POSITIVE_INFINITY;
  } else {
    let exponent = 15;
    while (exponent > -14 && magnitude < 2 ** exponent) exponent--;
    const step = 2 ** (exponent - 10);
    const steps = magnitude / step;
    let whole = Math.floor(steps);
    const fraction = steps - whole;
    if (fraction > 0.5 || (fraction === 0.5 && whole % 2 === 1)) whole++;
    rounded = whole * step;
  }
  return negative ? -rounded : rounded;
}

const f16round: (x: number) => number = (Math as { f16round?: (x: number) => number }).f16round ?? referenceRound;

/** Whether two numbers are the same value: NaN equals NaN, +0 and -0 differ. */
function sameValue(actual: number, expected: number): boolean {
  return Number.isNaN(expected) ? Number.isNaN(actual) : Object.is(actual, expected);
}

function nextFloat32(x: number, direction: 1 | -1): number {
  const f = new Float32Array([x]);
  const bits = new Uint32Array(f.buffer);
  bits[0] += x >= 0 ? direction : -direction;
  return f[0];
}

const allHalves = Uint16Array.from({ length: 65536 }, (_, i) => i);
const isNaNHalf = (half: number) => (half & 0x7c00) === 0x7c00 && (half & 0x3ff) !== 0;

const codecs = [
  {
    name: 'public (native Float16Array where the runtime has one)',
    encode: float32ToFloat16,
    decode: float16ToFloat32,
  },
  {
    name: 'portable',
    encode: (src: Float32Array) => float32ToFloat16Portable(src, new Uint16Array(src.length)),
    decode: (src: Uint16Array) => float16ToFloat32Portable(src, new Float32Array(src.length)),
  },
];

describe.each(codecs)('float16 codec: $name', ({ encode, decode }) => {
  it('decodes all 65,536 halves exactly', () => {
    const values = decode(allHalves);
    const wrong = [];
    for (let half = 0; half < 65536; half++) {
      if (!sameValue(values[half], referenceValue(half))) wrong.push(`0x${half.toString(16)} -> ${values[half]}`);
    }
    expect(wrong).toEqual([]);
  });

  it('round-trips every non-NaN half through float32 bit for bit, and keeps NaNs NaN', () => {
    const back = encode(decode(allHalves));
    const wrong = [];
    for (let half = 0; half < 65536; half++) {
      const ok = isNaNHalf(half) ? isNaNHalf(back[half]) : back[half] === half;
      if (!ok) wrong.push(`0x${half.toString(16)} -> 0x${back[half].toString(16)}`);
    }
    expect(wrong).toEqual([]);
  });

  it('rounds every float32 halfway between two halves to the even one, and its neighbours to the nearer', () => {
    const inputs: number[] = [];
    const expected: number[] = [];
    // Each finite half 0x0000..0x7bff and its successor, both signs; the successor of 0x7bff (65504) is 0x7c00
    // (Infinity), which puts the overflow threshold at 65520.
    for (let half = 0; half < 0x7c00; half++) {
      const midpoint = (referenceValue(half) + (half === 0x7bff ? 65536 : referenceValue(half + 1))) / 2;
      for (const signBit of [0, 0x8000]) {
        const sign = signBit ? -1 : 1;
        inputs.push(sign * midpoint, sign * nextFloat32(midpoint, -1), sign * nextFloat32(midpoint, 1));
        expected.push(signBit | (half % 2 === 0 ? half : half + 1), signBit | half, signBit | (half + 1));
      }
    }
    const src = Float32Array.from(inputs);
    const bits = encode(src);
    const wrong = [];
    for (let i = 0; i < expected.length; i++) {
      if (src[i] !== inputs[i]) wrong.push(`${inputs[i]} is not a float32`);
      if (bits[i] !== expected[i])
        wrong.push(`${inputs[i]} -> 0x${bits[i].toString(16)}, not 0x${expected[i].toString(16)}`);
    }
    expect(wrong).toEqual([]);
  });

  it('matches Math.f16round where the runtime has it, the arithmetic reference otherwise, across float32', () => {
    // A stride through the float32 bit patterns from 2^-26 to 2^17 (zero, subnormal and normal halves,
    // overflow), both signs, plus special values.
    const patterns: number[] = [];
    for (let bits = 0x32800000; bits < 0x48000000; bits += 1009) patterns.push(bits, bits | 0x80000000);
    const specials = [0, -0, 1e-45, -1e-45, 2 ** -25, 2 ** -24, 65504, 65519.99, 65520, 1e30, -1e30];
    const all = Float32Array.from([
      ...new Float32Array(new Uint32Array(patterns).buffer),
      ...specials,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      Number.NaN,
    ]);
    const decoded = decode(encode(all));
    const wrong = [];
    for (let i = 0; i < all.length; i++) {
      if (!sameValue(decoded[i], f16round(all[i]))) wrong.push(`${all[i]} -> ${decoded[i]}, not ${f16round(all[i])}`);
    }
    expect(wrong).toEqual([]);
  });
});

describe('float16 codec edge cases', () => {
  it('encodes the landmarks of the format', () => {
    const src = Float32Array.from([
      0,
      -0,
      1,
      -2,
      65504,
      65536,
      2 ** -14,
      2 ** -24,
      2 ** -25,
      2 ** -25 * 1.0000001,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      1 / 3,
    ]);
    expect(Array.from(float32ToFloat16(src))).toEqual([
      0x0000, 0x8000, 0x3c00, 0xc000, 0x7bff, 0x7c00, 0x0400, 0x0001, 0x0000, 0x0001, 0x7c00, 0xfc00, 0x3555,
    ]);
    expect(Number.isNaN(float16ToFloat32(float32ToFloat16(Float32Array.of(Number.NaN)))[0])).toBe(true);
  });

  it('quiets NaNs and keeps the top of their payload in the portable encoder', () => {
    const nan = new Float32Array(new Uint32Array([0x7f802000, 0xffc00000]).buffer);
    expect(Array.from(float32ToFloat16Portable(nan, new Uint16Array(2)))).toEqual([0x7e01, 0xfe00]);
  });

  it('writes into a given output (also on views with an offset) and returns it', () => {
    const buffer = new ArrayBuffer(64);
    const src = new Float32Array(buffer, 8, 3);
    src.set([0.5, -1.5, 3]);
    const halves = new Uint16Array(8).subarray(2, 5);
    expect(float32ToFloat16(src, halves)).toBe(halves);
    expect(Array.from(halves)).toEqual([0x3800, 0xbe00, 0x4200]);
    const floats = new Float32Array(5).subarray(1, 4);
    expect(float16ToFloat32(halves, floats)).toBe(floats);
    expect(Array.from(floats)).toEqual([0.5, -1.5, 3]);
  });

  it('rejects an output of the wrong length', () => {
    expect(() => float32ToFloat16(new Float32Array(4), new Uint16Array(3))).toThrow(InvalidArgumentError);
    expect(() => float16ToFloat32(new Uint16Array(4), new Float32Array(5))).toThrow(/same length/);
  });
});

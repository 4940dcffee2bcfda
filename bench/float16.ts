import { float16ToFloat32, float32ToFloat16, RandomGenerator } from '@denoise/core';
import { type PairedTiming, pairedTiming, timeMs } from './stats.js';

/** The target-3 figures: the float16 codec against a plain typed-array copy of the same tensor. */
export interface Float16Result {
  values: number;
  encode: PairedTiming;
  decode: PairedTiming;
  /** Whether the runtime has a native `Float16Array` (the codec uses it when present). */
  nativeFloat16Array: boolean;
}

/**
 * Target 3: encode (float32 → float16) and decode (float16 → float32) of a 2x4x128x128 tensor into preallocated
 * outputs, each against `Float32Array.prototype.set` of the same number of float32 values.
 *
 * @param rounds - timed rounds (5 calls of each side per round)
 */
export function benchFloat16(rounds: number): Float16Result {
  const source = new RandomGenerator(0).randn([2, 4, 128, 128]).data;
  const values = source.length;
  const copy = new Float32Array(values);
  const halves = new Uint16Array(values);
  const decoded = new Float32Array(values);
  const plainCopy = () => timeMs(() => copy.set(source));
  const encode = pairedTiming(plainCopy, () => timeMs(() => float32ToFloat16(source, halves)), rounds, 5);
  const decode = pairedTiming(plainCopy, () => timeMs(() => float16ToFloat32(halves, decoded)), rounds, 5);
  return { values, encode, decode, nativeFloat16Array: 'Float16Array' in globalThis };
}

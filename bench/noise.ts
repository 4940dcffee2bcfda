import { RandomGenerator } from '@denoise/core';
import { type PairedTiming, pairedTiming, timeMs } from './stats.js';

/**
 * The baseline of target 2: standard normals from `Math.random` by the textbook Box-Muller transform
 * (z₀ = √(−2 ln u₁)·cos 2πu₂, z₁ = √(−2 ln u₁)·sin 2πu₂), written into a float32 buffer.
 */
function mathRandomBoxMuller(out: Float32Array): void {
  for (let i = 0; i + 1 < out.length; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(1 - Math.random()));
    const angle = 2 * Math.PI * Math.random();
    out[i] = radius * Math.cos(angle);
    out[i + 1] = radius * Math.sin(angle);
  }
}

/** The target-2 figures: `RandomGenerator.randn` (torch-exact) beside a Math.random Box-Muller fill. */
export interface NoiseResult {
  values: number;
  timing: PairedTiming;
  /** Values per second, at the median time. */
  randnPerSecond: number;
  baselinePerSecond: number;
}

/**
 * Target 2: `randn` of a [2,4,128,128] tensor against the Math.random fill of the same length.
 *
 * @param rounds - timed rounds (3 calls of each side per round)
 */
export function benchNoise(rounds: number): NoiseResult {
  const dims = [2, 4, 128, 128];
  const values = 2 * 4 * 128 * 128;
  const generator = new RandomGenerator(0);
  const out = new Float32Array(values);
  const timing = pairedTiming(
    () => timeMs(() => mathRandomBoxMuller(out)),
    () => timeMs(() => generator.randn(dims)),
    rounds,
    3,
  );
  return {
    values,
    timing,
    randnPerSecond: values / (timing.candidateMs.median / 1e3),
    baselinePerSecond: values / (timing.baselineMs.median / 1e3),
  };
}

/**
 * What the EDM schedulers (Euler and DPM-Solver++ in the σ parametrisation `x = x_0 + σ·ε`) share: the
 * preconditioning of Karras et al. 2022, Table 1 (`docs/math.md` §15), `D(x; σ) = c_skip·x + c_out·F(c_in·x; c_noise)`,
 * and the float32 log-σ ramp of their exponential schedule.
 */
import { Tensor, type TensorLike } from '@denoise/core';

const f32 = Math.fround;

/**
 * The network input `c_in·x` with `c_in = 1/√(σ² + σ_d²)`, as a new tensor.
 *
 * @param sample - x at σ
 * @param sigma - the current σ
 * @param sigmaData - σ_d
 */
export function edmScaleModelInput(sample: TensorLike, sigma: number, sigmaData: number): Tensor {
  const cIn = 1 / Math.sqrt(sigma * sigma + sigmaData ** 2);
  const out = new Float32Array(sample.data.length);
  for (let i = 0; i < out.length; i++) out[i] = sample.data[i] * cIn;
  return new Tensor(out, sample.dims);
}

/**
 * c_skip(σ) = σ_d²/(σ² + σ_d²), the weight of x in the denoiser D.
 *
 * @param sigma - σ
 * @param sigmaData - σ_d
 */
export function edmSkipScale(sigma: number, sigmaData: number): number {
  return sigmaData ** 2 / (sigma * sigma + sigmaData ** 2);
}

/**
 * c_out(σ) = σ·σ_d/√(σ² + σ_d²), the weight of the network output F in D; negative for a `v_prediction` network,
 * whose F points from the data to the noise.
 *
 * @param sigma - σ
 * @param sigmaData - σ_d
 * @param predictionType - what F predicts
 */
export function edmOutputScale(sigma: number, sigmaData: number, predictionType: 'epsilon' | 'v_prediction'): number {
  const magnitude = (sigma * sigmaData) / Math.sqrt(sigma * sigma + sigmaData ** 2);
  return predictionType === 'epsilon' ? magnitude : -magnitude;
}

/**
 * The timesteps c_noise = ¼·ln σ for each σ of a schedule but the final one (float32, as torch).
 *
 * @param sigmas - the schedule, final σ last
 */
export function edmNoiseConditioning(sigmas: Float64Array): number[] {
  return Array.from(sigmas.subarray(0, -1), (s) => f32(0.25 * f32(Math.log(s))));
}

/**
 * Writes `n` σ evenly spaced in log σ from σ_max down to σ_min into `out[0..n)`: diffusers' exp of
 * `torch.linspace(log σ_min, log σ_max, n)` in float32, flipped.
 *
 * @param out - the destination, at least `n` long
 * @param n - the number of levels
 * @param sigmaMin - the smallest σ
 * @param sigmaMax - the largest σ
 */
export function edmExponentialSigmas(out: Float64Array, n: number, sigmaMin: number, sigmaMax: number): void {
  const logMin = f32(Math.log(sigmaMin));
  const logMax = f32(Math.log(sigmaMax));
  for (let i = 0; i < n; i++) out[n - 1 - i] = f32(Math.exp(linspaceFloat32At(logMin, logMax, n, i)));
}

/**
 * Element `i` of `torch.linspace(start, end, n)` in float32: the first half counts up, the second half down.
 *
 * @param start - the first value
 * @param end - the last value
 * @param n - the number of values
 * @param i - the index
 */
export function linspaceFloat32At(start: number, end: number, n: number, i: number): number {
  if (n === 1) return f32(start);
  const step = (end - start) / (n - 1);
  return f32(i < Math.floor(n / 2) ? start + step * i : end - step * (n - 1 - i));
}

/**
 * Stable Diffusion's training noise schedule, which the reference world's UNet is exact for: `scaled_linear`
 * betas from 0.00085 to 0.012 over 1000 steps (`docs/math.md` §4), `ᾱ_t = Π (1 − β_s)` and the matching noise levels
 * `σ_t = √((1 − ᾱ_t)/ᾱ_t)` of the sigma-based schedulers.
 */

/** `num_train_timesteps`. */
export const trainTimesteps = 1000;
/** `beta_start` of Stable Diffusion's scheduler config. */
export const betaStart = 0.00085;
/** `beta_end` of Stable Diffusion's scheduler config. */
export const betaEnd = 0.012;

/** `ᾱ_t` for t = 0 … 999 (float64). */
export function alphasCumprod(): Float64Array {
  const out = new Float64Array(trainTimesteps);
  const from = Math.sqrt(betaStart);
  const step = (Math.sqrt(betaEnd) - from) / (trainTimesteps - 1);
  let product = 1;
  for (let t = 0; t < trainTimesteps; t++) {
    const sqrtBeta = from + step * t; // scaled_linear: β = linspace(√β_start, √β_end, T)²
    product *= 1 - sqrtBeta * sqrtBeta;
    out[t] = product;
  }
  return out;
}

/** `σ_t = √((1 − ᾱ_t)/ᾱ_t)` for t = 0 … 999, rounded to float32 as the UNet graph stores them. */
export function trainingSigmas(): Float32Array {
  return Float32Array.from(alphasCumprod(), (a) => Math.sqrt((1 - a) / a));
}

/**
 * Noise levels in the "sigma" (variance-exploding) parametrisation shared by the k-diffusion style schedulers
 * (Euler, Heun, LMS, DPM-Solver, UniPC, ...).
 *
 * A variance-preserving sample `x_t = √ᾱ_t · x_0 + √(1−ᾱ_t) · ε` divided by `√ᾱ_t` is `x_0 + σ_t · ε` with
 * `σ_t = √((1−ᾱ_t)/ᾱ_t)` (Karras et al. 2022, "Elucidating the Design Space", §2 and Table 1). The helpers
 * here build sigma schedules and map sigmas back to (fractional) training timesteps, as diffusers does.
 *
 * All arrays are `Float64Array`s: these are per-schedule tables of at most `num_train_timesteps` values,
 * never per-pixel data.
 */
import { InvalidArgumentError } from '@denoise/core';

/**
 * `σ_t = √((1−ᾱ_t)/ᾱ_t)` for every training timestep, in timestep order (index `t`, so ascending in noise).
 *
 * @param alphasCumprod - `ᾱ_0 … ᾱ_{T−1}`, each in (0, 1]
 */
export function sigmasFromAlphasCumprod(alphasCumprod: ArrayLike<number>): Float64Array {
  const sigmas = new Float64Array(alphasCumprod.length);
  for (let t = 0; t < sigmas.length; t++) {
    const a = alphasCumprod[t];
    sigmas[t] = Math.sqrt((1 - a) / a);
  }
  return sigmas;
}

/** The natural logarithm of each sigma: the table {@link sigmaToTimestep} interpolates in. */
export function logSigmas(sigmas: ArrayLike<number>): Float64Array {
  const out = new Float64Array(sigmas.length);
  for (let i = 0; i < out.length; i++) out[i] = Math.log(sigmas[i]);
  return out;
}

/**
 * The variance-preserving coefficients of a sigma: `α_t = 1/√(σ²+1)` and `σ_t = σ · α_t`, so that
 * `x_t = α_t · x_0 + σ_t · ε` (DPM-Solver, Lu et al. 2022, uses `λ_t = log(α_t/σ_t)`).
 *
 * @param sigma - a noise level `σ ≥ 0`
 */
export function sigmaToAlphaSigma(sigma: number): { alphaT: number; sigmaT: number } {
  const alphaT = 1 / Math.sqrt(sigma * sigma + 1);
  return { alphaT, sigmaT: sigma * alphaT };
}

/**
 * Evaluates the piecewise-linear function through `(i, table[i])` at the (fractional) positions `x`, clamping
 * outside `[0, table.length − 1]` (numpy's `interp(x, arange(n), table)`). Used to read sigmas at timesteps.
 *
 * @param x - positions, e.g. inference timesteps
 * @param table - values at the integer positions `0 … n−1`, e.g. {@link sigmasFromAlphasCumprod}
 */
export function interpolateAt(x: ArrayLike<number>, table: ArrayLike<number>): Float64Array {
  const last = table.length - 1;
  const out = new Float64Array(x.length);
  for (let i = 0; i < out.length; i++) {
    const position = Math.min(Math.max(x[i], 0), last);
    const low = Math.min(Math.floor(position), Math.max(last - 1, 0));
    const high = Math.min(low + 1, last);
    const w = position - low;
    out[i] = (1 - w) * table[low] + w * table[high];
  }
  return out;
}

/**
 * The fractional training timestep whose sigma is `sigma`, interpolating linearly in log-sigma space between
 * the two neighbouring training timesteps (k-diffusion's `sigma_to_t`, as diffusers' `_sigma_to_t`). Sigmas
 * outside the table clamp to its ends; `sigma = 0` maps to timestep 0.
 *
 * @param sigma - the noise level to place
 * @param logSigmaTable - `log σ_t` for `t = 0 … T−1` (ascending), from {@link logSigmas}
 */
export function sigmaToTimestep(sigma: number, logSigmaTable: ArrayLike<number>): number {
  const n = logSigmaTable.length;
  if (n < 2) {
    throw new InvalidArgumentError(`sigmaToTimestep needs a table of at least 2 log-sigmas, got ${n}.`);
  }
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  // The last table entry at or below logSigma (0 if none), kept one short of the end so `low + 1` exists.
  let low = 0;
  for (let i = 0; i < n; i++) if (logSigma >= logSigmaTable[i]) low = i;
  low = Math.min(low, n - 2);
  const lowLog = logSigmaTable[low];
  const highLog = logSigmaTable[low + 1];
  const w = Math.min(Math.max((lowLog - logSigma) / (lowLog - highLog), 0), 1);
  return low + w;
}

/**
 * {@link sigmaToTimestep} for every sigma of a schedule.
 *
 * @param sigmas - noise levels
 * @param logSigmaTable - `log σ_t` for `t = 0 … T−1`, from {@link logSigmas}
 */
export function sigmasToTimesteps(sigmas: ArrayLike<number>, logSigmaTable: ArrayLike<number>): Float64Array {
  const out = new Float64Array(sigmas.length);
  for (let i = 0; i < out.length; i++) out[i] = sigmaToTimestep(sigmas[i], logSigmaTable);
  return out;
}

function checkRange(what: string, sigmaMin: number, sigmaMax: number, steps: number): void {
  if (!Number.isInteger(steps) || steps < 1) {
    throw new InvalidArgumentError(`${what} needs a positive integer number of steps, got ${steps}.`);
  }
  if (!(sigmaMin > 0) || !(sigmaMax >= sigmaMin) || !Number.isFinite(sigmaMax)) {
    throw new InvalidArgumentError(
      `${what} needs 0 < sigmaMin ≤ sigmaMax < ∞, got sigmaMin = ${sigmaMin}, sigmaMax = ${sigmaMax}.`,
    );
  }
}

/** `linspace(0, 1, steps)[i]`, with a single step at 0 as numpy gives. */
function ramp(i: number, steps: number): number {
  return steps === 1 ? 0 : i / (steps - 1);
}

/**
 * Karras et al. 2022 noise levels (eq. 5): `σ_i = (σ_max^{1/ρ} + i/(n−1) · (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ`,
 * from `sigmaMax` down to `sigmaMin`. `ρ = 7` is the paper's and diffusers' choice.
 *
 * @param sigmaMin - the smallest noise level (the last)
 * @param sigmaMax - the largest noise level (the first)
 * @param steps - how many levels
 * @param rho - the schedule's curvature
 */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, steps: number, rho = 7): Float64Array {
  checkRange('karrasSigmas', sigmaMin, sigmaMax, steps);
  const minInvRho = sigmaMin ** (1 / rho);
  const maxInvRho = sigmaMax ** (1 / rho);
  const sigmas = new Float64Array(steps);
  for (let i = 0; i < steps; i++) sigmas[i] = (maxInvRho + ramp(i, steps) * (minInvRho - maxInvRho)) ** rho;
  return sigmas;
}

/**
 * Noise levels evenly spaced in `log σ` from `sigmaMax` down to `sigmaMin` (k-diffusion's
 * `get_sigmas_exponential`).
 *
 * @param sigmaMin - the smallest noise level (the last)
 * @param sigmaMax - the largest noise level (the first)
 * @param steps - how many levels
 */
export function exponentialSigmas(sigmaMin: number, sigmaMax: number, steps: number): Float64Array {
  checkRange('exponentialSigmas', sigmaMin, sigmaMax, steps);
  const logMax = Math.log(sigmaMax);
  const logMin = Math.log(sigmaMin);
  const sigmas = new Float64Array(steps);
  for (let i = 0; i < steps; i++) sigmas[i] = Math.exp(logMax + ramp(i, steps) * (logMin - logMax));
  return sigmas;
}

/**
 * Noise levels placed at the quantiles of a Beta(α, β) distribution (Lee et al. 2024, "Beta Sampling is All
 * You Need"): `σ_i = σ_min + F⁻¹(1 − i/(n−1)) · (σ_max − σ_min)`, with `F` the Beta CDF. With α = β = 0.6
 * (diffusers' default) the steps crowd at both ends of the range.
 *
 * @param sigmaMin - the smallest noise level (the last)
 * @param sigmaMax - the largest noise level (the first)
 * @param steps - how many levels
 * @param alpha - the Beta distribution's first shape parameter
 * @param beta - the Beta distribution's second shape parameter
 */
export function betaSigmas(sigmaMin: number, sigmaMax: number, steps: number, alpha = 0.6, beta = 0.6): Float64Array {
  checkRange('betaSigmas', sigmaMin, sigmaMax, steps);
  const sigmas = new Float64Array(steps);
  for (let i = 0; i < steps; i++) {
    sigmas[i] = sigmaMin + betaQuantile(1 - ramp(i, steps), alpha, beta) * (sigmaMax - sigmaMin);
  }
  return sigmas;
}

/** `log Γ(x)` for `x > 0` (Lanczos approximation, g = 7, n = 9; relative error below 1e-15). */
function logGamma(x: number): number {
  const g = 7;
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x); // reflection formula
  x -= 1;
  let sum = c[0];
  for (let i = 1; i < g + 2; i++) sum += c[i] / (x + i);
  const t = x + g + 0.5;
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(sum);
}

/**
 * The continued fraction of the incomplete beta function (DLMF 8.17.22), evaluated with the modified Lentz
 * method; it converges fast for `x < (a+1)/(a+b+2)`.
 */
function incompleteBetaFraction(x: number, a: number, b: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let result = d;
  for (let m = 1; m <= 500; m++) {
    const m2 = 2 * m;
    // Even term d_{2m}, then odd term d_{2m+1}.
    for (const numerator of [
      (m * (b - m) * x) / ((a + m2 - 1) * (a + m2)),
      (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1)),
    ]) {
      d = 1 + numerator * d;
      if (Math.abs(d) < tiny) d = tiny;
      c = 1 + numerator / c;
      if (Math.abs(c) < tiny) c = tiny;
      d = 1 / d;
      result *= d * c;
    }
    if (Math.abs(d * c - 1) < 1e-16) break;
  }
  return result;
}

/** The regularised incomplete beta function `I_x(a, b)`: the CDF of Beta(a, b) at `x`. */
function betaCdf(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const logFront = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log1p(-x);
  // Use the symmetry I_x(a, b) = 1 − I_{1−x}(b, a) where the continued fraction converges faster.
  if (x < (a + 1) / (a + b + 2)) return (Math.exp(logFront) * incompleteBetaFraction(x, a, b)) / a;
  return 1 - (Math.exp(logFront) * incompleteBetaFraction(1 - x, b, a)) / b;
}

/**
 * The quantile function (inverse CDF) of the Beta(a, b) distribution, as `scipy.stats.beta.ppf`. Found by
 * bisection on the monotone CDF, to about 1e-15.
 *
 * @param p - a probability in [0, 1]
 * @param a - first shape parameter, > 0
 * @param b - second shape parameter, > 0
 */
export function betaQuantile(p: number, a: number, b: number): number {
  if (!(p >= 0 && p <= 1) || !(a > 0) || !(b > 0)) {
    throw new InvalidArgumentError(`betaQuantile needs 0 ≤ p ≤ 1 and a, b > 0, got p = ${p}, a = ${a}, b = ${b}.`);
  }
  if (p === 0) return 0;
  if (p === 1) return 1;
  let low = 0;
  let high = 1;
  for (let i = 0; i < 60; i++) {
    const mid = 0.5 * (low + high);
    if (betaCdf(mid, a, b) < p) low = mid;
    else high = mid;
  }
  return 0.5 * (low + high);
}

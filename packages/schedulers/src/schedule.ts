import { ConfigError } from '@denoise/core';

/**
 * The noise schedule of a discrete-time diffusion model: β_t, α_t = 1 − β_t and ᾱ_t = ∏ α_s (`docs/math.md` §1, §4),
 * and the spacing of inference timesteps over the training timesteps (`docs/math.md` §6).
 *
 * Values are the float32 numbers diffusers/torch store (rounded with `Math.fround` wherever torch stores a
 * float32 tensor), widened to float64 so that the step arithmetic can run in double precision.
 */

/**
 * The named β schedules of diffusers' `beta_schedule`. Every class accepts `linear`, `scaled_linear` and
 * `squaredcos_cap_v2`; `laplace` and `sigmoid` only DDPM, `exp` only Heun, as in diffusers.
 */
export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2' | 'laplace' | 'sigmoid' | 'exp';

/** All values `beta_schedule` takes in one class or another (see {@link BetaSchedule}). */
export const BETA_SCHEDULES: readonly BetaSchedule[] = [
  'linear',
  'scaled_linear',
  'squaredcos_cap_v2',
  'laplace',
  'sigmoid',
  'exp',
];

/** The `beta_schedule` values every scheduler class accepts. */
export const COMMON_BETA_SCHEDULES: readonly BetaSchedule[] = ['linear', 'scaled_linear', 'squaredcos_cap_v2'];

/** How inference timesteps are placed over the training timesteps (diffusers' `timestep_spacing`). */
export type TimestepSpacing = 'leading' | 'linspace' | 'trailing';

/** All values `timestep_spacing` accepts. */
export const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ['leading', 'linspace', 'trailing'];

/** The config keys that define a β schedule, as in every diffusers `scheduler_config.json`. */
export interface BetaScheduleConfig {
  /** Number of diffusion steps the model was trained with (T). */
  num_train_timesteps: number;
  /** β_0 of the `linear`, `scaled_linear` and `sigmoid` schedules. */
  beta_start: number;
  /** β_{T−1} of the `linear`, `scaled_linear` and `sigmoid` schedules. */
  beta_end: number;
  /** The β schedule; ignored when `trained_betas` is given. */
  beta_schedule: BetaSchedule;
  /** Explicit β values (length T), overriding `beta_schedule`. */
  trained_betas: number[] | null;
}

/**
 * {@link BetaScheduleConfig} plus `rescale_betas_zero_snr`, which most diffusers classes take (LMS, Heun and PNDM
 * do not: their diffusers namesakes have no such key and `from_config` drops it).
 */
export interface NoiseScheduleConfig extends BetaScheduleConfig {
  /** Rescale the schedule so the last step has zero SNR (Lin et al. 2023, Algorithm 1). */
  rescale_betas_zero_snr: boolean;
}

/** `n` evenly spaced values from `start` to `end` inclusive, as `torch.linspace(..., dtype=float32)`. */
function linspaceFloat32(start: number, end: number, n: number): Float64Array {
  const out = new Float64Array(n);
  if (n === 1) {
    out[0] = Math.fround(start);
    return out;
  }
  // torch fills the first half forward from `start` and the second half backward from `end`.
  const step = (end - start) / (n - 1);
  const halfway = Math.floor(n / 2);
  for (let i = 0; i < n; i++) {
    out[i] = Math.fround(i < halfway ? start + step * i : end - step * (n - 1 - i));
  }
  return out;
}

/** The continuous ᾱ(t), t ∈ [0, 1], that diffusers' `betas_for_alpha_bar` discretises (`alpha_transform_type`). */
export type AlphaBarTransform = 'cosine' | 'exp' | 'laplace';

const ALPHA_BAR_FUNCTIONS: Record<AlphaBarTransform, (t: number) => number> = {
  // IDDPM (Nichol & Dhariwal 2021, eq. 17), s = 0.008.
  cosine: (t) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2,
  exp: (t) => Math.exp(-12 * t),
  // A Laplace distribution of log-SNR λ around 0 (Hang et al. 2024), written as diffusers writes it: it returns
  // √(SNR/(1 + SNR)) as ᾱ, and 1e-6 keeps the log finite at t = 1.
  laplace: (t) => {
    const sign = 0.5 - t >= 0 ? 1 : -1;
    const snr = Math.exp(-0.5 * sign * Math.log(1 - 2 * Math.abs(0.5 - t) + 1e-6));
    return Math.sqrt(snr / (1 + snr));
  },
};

/**
 * β_t = min(1 − ᾱ((t+1)/T)/ᾱ(t/T), maxBeta) for a continuous ᾱ (diffusers' `betas_for_alpha_bar`, computed in
 * double precision and stored as float32).
 *
 * @param numTrainTimesteps - T
 * @param transform - which ᾱ(t)
 * @param maxBeta - the cap that keeps β < 1 near t = T
 */
export function betasForAlphaBar(
  numTrainTimesteps: number,
  transform: AlphaBarTransform,
  maxBeta = 0.999,
): Float64Array {
  const alphaBar = ALPHA_BAR_FUNCTIONS[transform];
  const betas = new Float64Array(numTrainTimesteps);
  for (let i = 0; i < numTrainTimesteps; i++) {
    const ratio = alphaBar((i + 1) / numTrainTimesteps) / alphaBar(i / numTrainTimesteps);
    betas[i] = Math.fround(Math.min(1 - ratio, maxBeta));
  }
  return betas;
}

/**
 * The IDDPM cosine schedule (Nichol & Dhariwal 2021, eq. 17): ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2), s = 0.008,
 * β_t = min(1 − ᾱ((t+1)/T)/ᾱ(t/T), maxBeta). This is diffusers' `betas_for_alpha_bar` (`squaredcos_cap_v2`).
 *
 * @param numTrainTimesteps - T
 * @param maxBeta - the cap that keeps β < 1 near t = T
 */
export function cosineBetas(numTrainTimesteps: number, maxBeta = 0.999): Float64Array {
  return betasForAlphaBar(numTrainTimesteps, 'cosine', maxBeta);
}

/**
 * Rescales β so that the final ᾱ is exactly 0 (zero terminal SNR) while ᾱ_0 is unchanged: √ᾱ is shifted so its
 * last value is 0 and scaled so its first value is kept (Lin et al. 2023, "Common Diffusion Noise Schedules and
 * Sample Steps are Flawed", Algorithm 1). Returns new β values; the input is not modified.
 *
 * @param betas - β_0 … β_{T−1}
 */
export function rescaleZeroTerminalSnr(betas: ArrayLike<number>): Float64Array {
  const n = betas.length;
  const sqrtAlphaBar = new Float64Array(n);
  let alphaBar = 1;
  for (let i = 0; i < n; i++) {
    alphaBar *= 1 - betas[i];
    sqrtAlphaBar[i] = Math.sqrt(Math.fround(alphaBar));
  }
  const first = sqrtAlphaBar[0];
  const last = sqrtAlphaBar[n - 1];
  const scale = first / (first - last);
  const rescaled = new Float64Array(n);
  let previousAlphaBar = 1;
  for (let i = 0; i < n; i++) {
    const currentAlphaBar = ((sqrtAlphaBar[i] - last) * scale) ** 2;
    rescaled[i] = Math.fround(1 - currentAlphaBar / previousAlphaBar);
    previousAlphaBar = currentAlphaBar;
  }
  return rescaled;
}

/**
 * β_0 … β_{T−1} for a config: `trained_betas` when given, else the named `beta_schedule` (`docs/math.md` §4), then
 * rescaled to zero terminal SNR when the config has `rescale_betas_zero_snr: true`. Which schedules a class
 * accepts is its config spec's business; this computes any of them.
 *
 * @param config - the schedule keys of a scheduler config
 * @throws ConfigError when `trained_betas` has the wrong length or the schedule yields β outside [0, 1]
 */
export function betasFromConfig(
  config: BetaScheduleConfig & { readonly rescale_betas_zero_snr?: boolean },
): Float64Array {
  const { num_train_timesteps: steps, beta_start: start, beta_end: end } = config;
  let betas: Float64Array;
  if (config.trained_betas) {
    if (config.trained_betas.length !== steps) {
      throw new ConfigError(
        `trained_betas has ${config.trained_betas.length} values but num_train_timesteps is ${steps}; ` +
          'give one β per training timestep.',
      );
    }
    betas = Float64Array.from(config.trained_betas, Math.fround);
  } else if (config.beta_schedule === 'linear') {
    betas = linspaceFloat32(start, end, steps);
  } else if (config.beta_schedule === 'scaled_linear') {
    // Stable Diffusion's schedule: linear in √β.
    betas = linspaceFloat32(Math.sqrt(start), Math.sqrt(end), steps).map((b) => Math.fround(b * b));
  } else if (config.beta_schedule === 'sigmoid') {
    betas = linspaceFloat32(-6, 6, steps).map((x) => Math.fround((1 / (1 + Math.exp(-x))) * (end - start) + start));
  } else if (config.beta_schedule === 'squaredcos_cap_v2') {
    betas = cosineBetas(steps);
  } else if (config.beta_schedule === 'laplace' || config.beta_schedule === 'exp') {
    betas = betasForAlphaBar(steps, config.beta_schedule);
  } else {
    // Only an untyped caller gets here: a σ-defined config (flow matching, EDM) has no β schedule to compute.
    throw new ConfigError(
      `beta_schedule must be one of ${BETA_SCHEDULES.map((b) => `"${b}"`).join(', ')}, got ${JSON.stringify(config.beta_schedule)}.`,
    );
  }
  if (config.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
  for (let i = 0; i < steps; i++) {
    if (!(betas[i] >= 0 && betas[i] <= 1)) {
      throw new ConfigError(
        `The noise schedule gives β[${i}] = ${betas[i]}, outside [0, 1]; check beta_start/beta_end ` +
          `(${start}, ${end}) or trained_betas.`,
      );
    }
  }
  return betas;
}

/**
 * ᾱ_t = ∏_{s ≤ t} (1 − β_s) (`docs/math.md` §1). Like torch's CPU `cumprod`, the product accumulates in double precision
 * and each stored value is rounded to float32.
 *
 * @param betas - β_0 … β_{T−1}
 */
export function alphasCumprodFromBetas(betas: ArrayLike<number>): Float64Array {
  const out = new Float64Array(betas.length);
  let product = 1;
  for (let i = 0; i < betas.length; i++) {
    product *= Math.fround(1 - betas[i]);
    out[i] = Math.fround(product);
  }
  return out;
}

/** Rounds half to even, as `numpy.round` and `torch.round` do. */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff < 0.5) return floor;
  if (diff > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * Inference timesteps in sampling order (descending) for `numInferenceSteps` steps over `numTrainTimesteps`
 * training steps (`docs/math.md` §6; "Common Diffusion Noise Schedules and Sample Steps are Flawed", Table 2):
 * - `leading`: `arange(n) · (T // n)`, reversed, plus `stepsOffset`;
 * - `linspace`: `round(linspace(0, T − 1, n))`, reversed;
 * - `trailing`: `round(arange(T, 0, −T/n)) − 1`.
 *
 * @param spacing - the `timestep_spacing` rule
 * @param numInferenceSteps - n, between 1 and T
 * @param numTrainTimesteps - T
 * @param stepsOffset - added to every `leading` timestep (diffusers' `steps_offset`)
 */
export function spacedTimesteps(
  spacing: TimestepSpacing,
  numInferenceSteps: number,
  numTrainTimesteps: number,
  stepsOffset = 0,
): number[] {
  const n = numInferenceSteps;
  const timesteps: number[] = new Array(n);
  if (spacing === 'leading') {
    const ratio = Math.floor(numTrainTimesteps / n);
    for (let i = 0; i < n; i++) timesteps[i] = (n - 1 - i) * ratio + stepsOffset;
  } else if (spacing === 'linspace') {
    const step = n === 1 ? 0 : (numTrainTimesteps - 1) / (n - 1);
    for (let i = 0; i < n; i++) timesteps[i] = roundHalfEven((n - 1 - i) * step);
  } else {
    const ratio = numTrainTimesteps / n;
    for (let i = 0; i < n; i++) timesteps[i] = roundHalfEven(numTrainTimesteps - i * ratio) - 1;
  }
  return timesteps;
}

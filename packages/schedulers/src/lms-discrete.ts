import { InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import { assertFiniteStepResult, assertStepTensors } from './checks.js';
import {
  BETA_SCHEDULE_SPEC,
  type ConfigSpec,
  configField,
  KARRAS_DIFFUSION_SCHEDULERS,
  type SchedulerConfigInput,
} from './config.js';
import { sigmaScheduleKind } from './euler-discrete.js';
import { denoisedWeights, PREDICTION_TYPES } from './prediction.js';
import { TIMESTEP_SPACINGS } from './schedule.js';
import type { SchedulerOptions, SchedulerOutput, SetTimestepsOptions, StepOptions } from './scheduler.js';
import { type SigmaScheduleKind, SigmaScheduler, type SigmaSchedulerBaseConfig } from './sigma-scheduler.js';

/**
 * The config of {@link LMSDiscreteScheduler}: diffusers' `LMSDiscreteScheduler` keys and defaults (no
 * `rescale_betas_zero_snr`).
 */
export interface LMSDiscreteSchedulerConfig extends SigmaSchedulerBaseConfig {
  /** Use Karras et al.'s ρ = 7 sigma spacing ("LMS Karras"). */
  use_karras_sigmas: boolean | null;
  /** Space sigmas evenly in log σ. */
  use_exponential_sigmas: boolean | null;
  /** Place sigmas at Beta(0.6, 0.6) quantiles. */
  use_beta_sigmas: boolean | null;
}

const optionalFlag = configField.nullable(configField.boolean(false), false);

/** The keys, defaults and checks of {@link LMSDiscreteSchedulerConfig}. */
export const LMS_DISCRETE_CONFIG_SPEC: ConfigSpec<LMSDiscreteSchedulerConfig> = {
  ...BETA_SCHEDULE_SPEC,
  prediction_type: configField.oneOf(PREDICTION_TYPES, 'epsilon'),
  use_karras_sigmas: optionalFlag,
  use_exponential_sigmas: optionalFlag,
  use_beta_sigmas: optionalFlag,
  timestep_spacing: configField.oneOf(TIMESTEP_SPACINGS, 'linspace'),
  steps_offset: configField.number(0, { integer: true, min: 0 }),
};

/** Step options of {@link LMSDiscreteScheduler}. */
export interface LMSStepOptions extends StepOptions {
  /** The number of past slopes the multistep formula uses (1 to 4; diffusers' default 4). */
  order?: number;
}

/** Gauss–Legendre nodes and weights on [−1, 1], three points: exact for polynomials up to degree 5. */
const GAUSS_NODES = [-Math.sqrt(3 / 5), 0, Math.sqrt(3 / 5)];
const GAUSS_WEIGHTS = [5 / 9, 8 / 9, 5 / 9];

/** The most past slopes any LMS step uses. */
const MAX_ORDER = 4;

/**
 * The linear multistep method on the probability-flow ODE `dx/dσ = d(x, σ)` (k-diffusion's `sample_lms`):
 * `x_{i+1} = x_i + Σ_k c_k · d_{i−k}`, where `c_k` integrates the Lagrange basis polynomial through the past
 * sigmas σ_i, σ_{i−1}, … from σ_i to σ_{i+1} (Adams–Bashforth with variable steps). The slopes of a run are kept
 * until the next `setTimesteps`.
 *
 * Differences from diffusers: the coefficients are integrated exactly (3-point Gauss–Legendre) where diffusers
 * calls `scipy.integrate.quad` to a relative 1e-4. Like diffusers' class, it has no `rescale_betas_zero_snr`.
 *
 * @example
 * ```ts
 * const scheduler = LMSDiscreteScheduler.fromConfig({ ...sdConfig, use_karras_sigmas: true }); // "LMS Karras"
 * scheduler.setTimesteps(30);
 * for (const t of scheduler.timesteps) {
 *   const eps = await unet(scheduler.scaleModelInput(latents, t), t);
 *   latents = scheduler.step(eps, t, latents).prevSample;
 * }
 * ```
 */
export class LMSDiscreteScheduler extends SigmaScheduler<LMSDiscreteSchedulerConfig> {
  /** The classes whose configs this one accepts. */
  static override readonly compatibles: readonly string[] = KARRAS_DIFFUSION_SCHEDULERS;

  private readonly sigmaKind: SigmaScheduleKind;
  /** Past slopes d, newest last; reused buffers. */
  private derivatives: Float32Array[] = [];
  private spareBuffers: Float32Array[] = [];

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   */
  constructor(config: SchedulerConfigInput<LMSDiscreteSchedulerConfig> = {}, options?: SchedulerOptions) {
    super('LMSDiscreteScheduler', LMS_DISCRETE_CONFIG_SPEC, config, options);
    this.sigmaKind = sigmaScheduleKind('LMSDiscreteScheduler', this.config);
  }

  /**
   * Sets the sampling schedule (spaced or explicit timesteps, interpolated or Karras/exponential/beta sigmas,
   * then 0) and forgets the slopes of the previous run.
   *
   * @param steps - the number of steps, or `{ numInferenceSteps }` / `{ timesteps }`
   */
  setTimesteps(steps: number | SetTimestepsOptions): void {
    const schedule = this.timestepsAndSigmas(steps, this.sigmaKind);
    const { sigmas, timesteps } = schedule;
    const withFinal = new Float64Array(sigmas.length + 1);
    withFinal.set(sigmas);
    this.spareBuffers.push(...this.derivatives);
    this.derivatives = [];
    this.setSchedule(timesteps, withFinal);
  }

  /**
   * `∫_{σ_i}^{σ_{i+1}} ℓ_k(τ) dτ`, with ℓ_k the Lagrange basis polynomial that is 1 at σ_{i−k} and 0 at the
   * other `order − 1` sigmas σ_i, σ_{i−1}, … (diffusers' `get_lms_coefficient`, integrated exactly).
   *
   * @param order - how many past sigmas the polynomial goes through
   * @param index - the current step index i
   * @param k - which past slope (0 = the current one)
   */
  lmsCoefficient(order: number, index: number, k: number): number {
    const s = this.sigmas;
    const basis = (tau: number) => {
      let product = 1;
      for (let j = 0; j < order; j++) {
        if (j !== k) product *= (tau - s[index - j]) / (s[index - k] - s[index - j]);
      }
      return product;
    };
    const a = s[index];
    const b = s[index + 1];
    let integral = 0;
    for (let q = 0; q < GAUSS_NODES.length; q++) {
      integral += GAUSS_WEIGHTS[q] * basis((a + b) / 2 + ((b - a) / 2) * GAUSS_NODES[q]);
    }
    return ((b - a) / 2) * integral;
  }

  /**
   * One multistep step: the slope d_i = (x − x̂_0)/σ_i joins the history and the Adams–Bashforth combination of
   * up to `order` slopes moves x from σ_i to σ_{i+1}.
   *
   * @param modelOutput - ε̂, x̂_0 or v̂ (per `prediction_type`) for the scaled model input
   * @param timestep - the current timestep, one of {@link Scheduler.timesteps}
   * @param sample - the current latents (unscaled)
   * @param options - `order` (default 4)
   */
  step(modelOutput: TensorLike, timestep: number, sample: TensorLike, options: LMSStepOptions = {}): SchedulerOutput {
    assertStepTensors(modelOutput, sample);
    const maxOrder = options.order ?? MAX_ORDER;
    if (!Number.isInteger(maxOrder) || maxOrder < 1 || maxOrder > MAX_ORDER) {
      throw new InvalidArgumentError(`LMS order must be an integer from 1 to ${MAX_ORDER}, got ${options.order}.`);
    }
    const index = this.cursor.stepIndexFor(timestep);
    const sigma = this.sigmas[index];

    // As diffusers: the polynomial's order follows the step index; a run that starts mid-schedule has fewer
    // stored slopes than that and uses only the coefficients it has slopes for.
    let order = Math.min(index + 1, maxOrder);
    // A repeated σ (a timestep repeated by rounding or steps_offset) makes the Lagrange basis 0/0 (NaN in diffusers):
    // the polynomial then uses only the slopes taken since it.
    for (let k = 1; k < order; k++) {
      if (this.sigmas[index - k] === this.sigmas[index - k + 1]) order = k;
    }
    const terms = Math.min(order, this.derivatives.length + 1);
    // c_k weighs the slope d_{i−k}; the slopes beyond `terms` get weight 0 (and stand in as the current slope).
    const coefficient = (k: number) => (k < terms ? this.lmsCoefficient(order, index, k) : 0);
    const [c0, c1, c2, c3] = [coefficient(0), coefficient(1), coefficient(2), coefficient(3)];
    const n = sample.data.length;
    const derivative = this.takeBuffer(n);
    const previousSlope = (k: number) => (k < terms ? this.derivatives[this.derivatives.length - k] : derivative);
    const [d1, d2, d3] = [previousSlope(1), previousSlope(2), previousSlope(3)];

    const x = sample.data;
    const m = modelOutput.data;
    const [a, b] = denoisedWeights(this.config.prediction_type, sigma);
    const x0 = new Float32Array(n);
    const prev = new Float32Array(n);
    // Multiplying by 1/σ_i instead of dividing: a division per element costs about as much as the rest of the loop.
    const inverseSigma = 1 / sigma;
    let nonFinite = 0;
    for (let i = 0; i < n; i++) {
      // x̂_0 and the slope d_i = (x − x̂_0)/σ_i, rounded to float32 as they are stored.
      const xi = x[i];
      const denoised = Math.fround(a * xi + b * m[i]);
      const slope = Math.fround((xi - denoised) * inverseSigma);
      x0[i] = denoised;
      derivative[i] = slope;
      // x_{i+1} = x + Σ_k c_k·d_{i−k} (Adams–Bashforth).
      const value = xi + c0 * slope + c1 * d1[i] + c2 * d2[i] + c3 * d3[i];
      prev[i] = value;
      nonFinite += value * 0;
    }
    assertFiniteStepResult(nonFinite, modelOutput, sample, timestep, this.className);
    this.derivatives.push(derivative);
    if (this.derivatives.length > maxOrder) this.spareBuffers.push(this.derivatives.shift() as Float32Array);
    this.cursor.advance();
    return { prevSample: new Tensor(prev, sample.dims), predOriginalSample: new Tensor(x0, sample.dims) };
  }

  private takeBuffer(size: number): Float32Array {
    const spare = this.spareBuffers.pop();
    return spare && spare.length === size ? spare : new Float32Array(size);
  }
}

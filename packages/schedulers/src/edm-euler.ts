import { InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import type { CustomSigmas } from './capabilities.js';
import { assertFiniteStepResult, assertStepTensors, assertTensorLike } from './checks.js';
import { type ConfigSpec, configField, type SchedulerConfigInput } from './config.js';
import {
  edmExponentialSigmas,
  edmNoiseConditioning,
  edmOutputScale,
  edmScaleModelInput,
  edmSkipScale,
} from './edm-preconditioning.js';
import { Scheduler, type SchedulerOptions, type SchedulerOutput, type StepOptions } from './scheduler.js';

const f32 = Math.fround;

/** The config of {@link EDMEulerScheduler}: diffusers' `EDMEulerScheduler` keys and defaults. */
export interface EDMEulerSchedulerConfig {
  /** The smallest noise level of the schedule. */
  sigma_min: number;
  /** The largest noise level of the schedule. */
  sigma_max: number;
  /** The standard deviation of the data, σ_data of the preconditioning (Karras et al. 2022, Table 1). */
  sigma_data: number;
  /** How the noise levels are spaced: Karras et al.'s ρ-schedule, or evenly in log σ. */
  sigma_schedule: 'karras' | 'exponential';
  /** The length of the schedule before `setTimesteps` (diffusers' `arange(T + 1) / T` ramp). */
  num_train_timesteps: number;
  /** What the network F predicts; it enters as D = c_skip·x + c_out·F with c_out's sign per type. */
  prediction_type: 'epsilon' | 'v_prediction';
  /** The curvature ρ of the Karras schedule. */
  rho: number;
  /** The σ the last step lands on: `zero`, or the schedule's last σ (`sigma_min`). */
  final_sigmas_type: 'zero' | 'sigma_min';
}

/** The keys, defaults and checks of {@link EDMEulerSchedulerConfig}. */
export const EDM_EULER_CONFIG_SPEC: ConfigSpec<EDMEulerSchedulerConfig> = {
  sigma_min: configField.number(0.002, { above: 0 }),
  sigma_max: configField.number(80, { above: 0 }),
  sigma_data: configField.number(0.5, { above: 0 }),
  sigma_schedule: configField.oneOf(['karras', 'exponential'] as const, 'karras'),
  num_train_timesteps: configField.number(1000, { integer: true, min: 1, max: 1_000_000 }),
  prediction_type: configField.oneOf(['epsilon', 'v_prediction'] as const, 'epsilon'),
  rho: configField.number(7, { above: 0 }),
  final_sigmas_type: configField.oneOf(['zero', 'sigma_min'] as const, 'zero'),
};

/** `setTimesteps` arguments of {@link EDMEulerScheduler}. */
export interface EDMEulerSetTimestepsOptions {
  /** The number of steps, σ spaced per `sigma_schedule` from `sigma_max` to `sigma_min`. */
  numInferenceSteps?: number;
  /** Explicit ramp positions in [0, 1] (0 is `sigma_max`, 1 is `sigma_min`), one per step; diffusers' `sigmas`. */
  sigmas?: readonly number[];
}

/** Step options of {@link EDMEulerScheduler}: Karras et al.'s stochastic "churn" (Algorithm 2). */
export interface EDMEulerStepOptions extends StepOptions {
  /** Amount of noise added back per step (γ = min(sChurn / steps, √2 − 1)); 0 (the default) is deterministic. */
  sChurn?: number;
  /** Churn only where σ ≥ sTmin. */
  sTmin?: number;
  /** Churn only where σ ≤ sTmax. */
  sTmax?: number;
  /** Scale of the added noise. */
  sNoise?: number;
}

/**
 * Karras et al. 2022's Euler sampler (Algorithm 2) with the EDM preconditioning of Table 1: the network F sees
 * `c_in·x` with `c_in = 1/√(σ² + σ_data²)` at timestep `c_noise = ¼·ln σ`, the denoiser is
 * `D = c_skip·x + c_out·F` with `c_skip = σ_data²/(σ² + σ_data²)`, `c_out = ±σ·σ_data/√(σ² + σ_data²)` (+ for
 * `epsilon`, − for `v_prediction`, as diffusers), and a step is `x' = x + (σ' − σ̂)·(x − D)/σ̂`. For EDM-trained
 * models (Playground v2.5, Stable Cascade's EDM variants); the latents live at `x = x_0 + σ·ε`.
 *
 * @example
 * ```ts
 * const scheduler = EDMEulerScheduler.fromConfig({ sigma_min: 0.002, sigma_max: 80, sigma_data: 0.5 });
 * scheduler.setTimesteps(25);
 * let latents = scale(noise, scheduler.initNoiseSigma);
 * for (const t of scheduler.timesteps) {
 *   const f = await unet(scheduler.scaleModelInput(latents, t), t);
 *   latents = scheduler.step(f, t, latents).prevSample;
 * }
 * ```
 */
export class EDMEulerScheduler extends Scheduler<EDMEulerSchedulerConfig> implements CustomSigmas {
  /** diffusers lists no compatible classes: EDM models are not parametrised by a β schedule. */
  static override readonly compatibles: readonly string[] = [];
  /** `setTimesteps({ sigmas })` takes ramp positions in [0, 1], one per step ({@link CustomSigmas}). */
  readonly acceptsCustomSigmas = true;
  /** σ for each timestep of the schedule, then the final σ; float32 values. */
  sigmas: Float64Array;

  private churnBuffer = new Float32Array(0);

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   */
  constructor(config: SchedulerConfigInput<EDMEulerSchedulerConfig> = {}, options?: SchedulerOptions) {
    super('EDMEulerScheduler', EDM_EULER_CONFIG_SPEC, config, options);
    const T = this.config.num_train_timesteps;
    this.sigmas = this.scheduleFromRamp(Float64Array.from({ length: T + 1 }, (_, i) => i / T));
    this.timesteps = edmNoiseConditioning(this.sigmas);
    // diffusers' initial noise scale: √(σ_max² + 1), whatever the schedule's first σ.
    this.initNoiseSigma = Math.sqrt(this.config.sigma_max ** 2 + 1);
  }

  /**
   * Sets the sampling schedule: σ at `n` evenly spaced ramp positions from `sigma_max` to `sigma_min` (or at the
   * given ramp positions), then the final σ.
   *
   * @param steps - the number of steps, or `{ numInferenceSteps }` / `{ sigmas }` (ramp positions)
   */
  setTimesteps(steps: number | EDMEulerSetTimestepsOptions): void {
    const options = typeof steps === 'number' ? { numInferenceSteps: steps } : (steps ?? {});
    const { numInferenceSteps, sigmas: ramp } = options;
    if ((numInferenceSteps === undefined) === (ramp === undefined)) {
      throw new InvalidArgumentError('setTimesteps needs exactly one of numInferenceSteps or sigmas.');
    }
    let positions: Float64Array;
    if (ramp !== undefined) {
      if (ramp.length === 0 || !ramp.every((r) => Number.isFinite(r) && r >= 0 && r <= 1)) {
        throw new InvalidArgumentError(
          'setTimesteps: sigmas are ramp positions in [0, 1] (0 is sigma_max, 1 is sigma_min), one per step.',
        );
      }
      positions = Float64Array.from(ramp);
    } else {
      if (!Number.isInteger(numInferenceSteps) || (numInferenceSteps as number) < 1) {
        throw new InvalidArgumentError(`numInferenceSteps must be a positive integer, got ${numInferenceSteps}.`);
      }
      const n = numInferenceSteps as number;
      positions = Float64Array.from({ length: n }, (_, i) => (n === 1 ? 0 : i / (n - 1)));
    }
    this.sigmas = this.scheduleFromRamp(positions);
    this.timesteps = edmNoiseConditioning(this.sigmas);
    this.numInferenceSteps = positions.length;
    this.cursor.reset();
  }

  /**
   * The network input `c_in·x`, `c_in = 1/√(σ² + σ_data²)` (Karras et al. 2022, Table 1). Returns a new tensor.
   *
   * @param sample - the current latents x = x_0 + σ·ε
   * @param timestep - the current timestep, one of {@link Scheduler.timesteps}
   */
  override scaleModelInput(sample: TensorLike, timestep: number): Tensor {
    assertTensorLike(sample, 'sample');
    return edmScaleModelInput(sample, this.sigmas[this.cursor.current(timestep)], this.config.sigma_data);
  }

  /**
   * One Euler step from σ to the next σ (Karras et al. 2022, Algorithm 2). With `sChurn > 0` it first raises the
   * noise level to σ̂ = σ(1 + γ) with fresh noise (from `generator` or `noise`).
   *
   * @param modelOutput - the network output F for the preconditioned input
   * @param timestep - the current timestep, one of {@link Scheduler.timesteps}
   * @param sample - the current latents x (not preconditioned)
   * @param options - churn parameters and their noise source
   */
  step(
    modelOutput: TensorLike,
    timestep: number,
    sample: TensorLike,
    options: EDMEulerStepOptions = {},
  ): SchedulerOutput {
    assertStepTensors(modelOutput, sample);
    const index = this.cursor.stepIndexFor(timestep);
    const { sChurn = 0, sTmin = 0, sTmax = Number.POSITIVE_INFINITY, sNoise = 1 } = options;
    const sigma = this.sigmas[index];
    const gamma = sTmin <= sigma && sigma <= sTmax ? Math.min(sChurn / (this.sigmas.length - 1), Math.SQRT2 - 1) : 0;
    const sigmaHat = sigma * (gamma + 1);
    const n = sample.data.length;
    let current = sample.data;
    if (gamma > 0) {
      if (this.churnBuffer.length !== n) this.churnBuffer = new Float32Array(n);
      const noise = this.stepNoise(options, sample);
      const extra = sNoise * Math.sqrt(sigmaHat * sigmaHat - sigma * sigma);
      for (let i = 0; i < n; i++) this.churnBuffer[i] = current[i] + noise[i] * extra;
      current = this.churnBuffer;
    }
    // x̂_0 = D = c_skip·x + c_out·F at σ̂ (Karras et al. 2022, Table 1, eq. 7; `docs/math.md` §15).
    const cSkip = edmSkipScale(sigmaHat, this.config.sigma_data);
    const cOut = edmOutputScale(sigmaHat, this.config.sigma_data, this.config.prediction_type);
    // The Euler step x + (σ_next − σ̂)·d with d = (x − D)/σ̂ (`docs/math.md` §10).
    const ratio = (this.sigmas[index + 1] - sigmaHat) / sigmaHat;
    const m = modelOutput.data;
    const x0 = new Float32Array(n);
    const prev = new Float32Array(n);
    let nonFinite = 0;
    for (let i = 0; i < n; i++) {
      const denoised = cSkip * current[i] + cOut * m[i];
      x0[i] = denoised;
      const value = current[i] + (current[i] - denoised) * ratio;
      prev[i] = value;
      nonFinite += value * 0;
    }
    assertFiniteStepResult(nonFinite, modelOutput, sample, timestep, this.className);
    this.cursor.advance();
    return { prevSample: new Tensor(prev, sample.dims), predOriginalSample: new Tensor(x0, sample.dims) };
  }

  /**
   * The forward process in the σ parametrisation: `x = x_0 + σ·ε` with σ of the schedule at `timesteps` (or at
   * the begin index / current step once a pipeline set one, as diffusers does for img2img).
   *
   * @param timestep - one of {@link Scheduler.timesteps}
   */
  protected override forwardProcess(timestep: number): readonly [number, number] {
    return [1, this.sigmas[this.cursor.noiseIndex(timestep)]];
  }

  /**
   * The σ at ramp positions r ∈ [0, 1] (float32), then the final σ. Karras: `(σ_max^{1/ρ} + r·(σ_min^{1/ρ} −
   * σ_max^{1/ρ}))^ρ` (Karras et al. 2022, eq. 5); exponential: evenly in log σ over as many points.
   */
  private scheduleFromRamp(ramp: Float64Array): Float64Array {
    const { sigma_min: sigmaMin, sigma_max: sigmaMax, rho } = this.config;
    const n = ramp.length;
    const out = new Float64Array(n + 1);
    if (this.config.sigma_schedule === 'karras') {
      const minInvRho = sigmaMin ** (1 / rho);
      const maxInvRho = sigmaMax ** (1 / rho);
      for (let i = 0; i < n; i++) out[i] = f32((maxInvRho + ramp[i] * (minInvRho - maxInvRho)) ** rho);
    } else {
      // diffusers ignores the ramp values here and spaces as many levels evenly in log σ.
      edmExponentialSigmas(out, n, sigmaMin, sigmaMax);
    }
    out[n] = this.config.final_sigmas_type === 'sigma_min' ? out[n - 1] : 0;
    return out;
  }
}

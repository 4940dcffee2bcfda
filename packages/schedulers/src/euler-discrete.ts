import { ConfigError, InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import type { CustomSigmas } from './capabilities.js';
import { assertFiniteStepResult, assertStepTensors } from './checks.js';
import {
  type ConfigField,
  type ConfigSpec,
  configField,
  KARRAS_DIFFUSION_SCHEDULERS,
  NOISE_SCHEDULE_SPEC,
  type SchedulerConfigInput,
} from './config.js';
import { denoisedWeights, PREDICTION_TYPES, type PredictionType } from './prediction.js';
import { TIMESTEP_SPACINGS } from './schedule.js';
import type { SchedulerOptions, SchedulerOutput, SetTimestepsOptions, StepOptions } from './scheduler.js';
import { type SigmaScheduleKind, SigmaScheduler, type SigmaSchedulerConfig } from './sigma-scheduler.js';
import { interpolateAt, sigmasToTimesteps } from './sigmas.js';

/** The config of {@link EulerDiscreteScheduler}: diffusers' `EulerDiscreteScheduler` keys and defaults. */
export interface EulerDiscreteSchedulerConfig extends SigmaSchedulerConfig {
  /** How sigmas between training timesteps are found: `linear` in σ at the timesteps, or `log_linear` spacing. */
  interpolation_type: 'linear' | 'log_linear';
  /** Use Karras et al.'s ρ = 7 sigma spacing (`null` counts as `false`). */
  use_karras_sigmas: boolean | null;
  /** Space sigmas evenly in log σ (`null` counts as `false`). */
  use_exponential_sigmas: boolean | null;
  /** Place sigmas at Beta(0.6, 0.6) quantiles (`null` counts as `false`). */
  use_beta_sigmas: boolean | null;
  /** Lower end of the Karras / exponential / beta range; the smallest interpolated σ when `null`. */
  sigma_min: number | null;
  /** Upper end of the Karras / exponential / beta range; the largest interpolated σ when `null`. */
  sigma_max: number | null;
  /** `continuous` (with v-prediction) gives the model `0.25 · log σ` instead of a training timestep (EDM-style). */
  timestep_type: 'discrete' | 'continuous';
  /** The σ the last step lands on: `zero`, or `sigma_min` (σ of training timestep 0). */
  final_sigmas_type: 'zero' | 'sigma_min';
}

const optionalFlag = configField.nullable(configField.boolean(false), false);

const predictionTypeOrAlias = configField.oneOf([...PREDICTION_TYPES, 'original_sample'] as const, 'epsilon');

/** `prediction_type`, where diffusers' Euler also takes `original_sample`, its old name of `sample` (stored as `sample`). */
const predictionTypeWithAlias: ConfigField<PredictionType> = {
  default: 'epsilon',
  parse(value, key) {
    const type = predictionTypeOrAlias.parse(value, key);
    return type === 'original_sample' ? 'sample' : type;
  },
};

/** The keys, defaults and checks of {@link EulerDiscreteSchedulerConfig}. */
export const EULER_DISCRETE_CONFIG_SPEC: ConfigSpec<EulerDiscreteSchedulerConfig> = {
  ...NOISE_SCHEDULE_SPEC,
  prediction_type: predictionTypeWithAlias,
  interpolation_type: configField.oneOf(['linear', 'log_linear'] as const, 'linear'),
  use_karras_sigmas: optionalFlag,
  use_exponential_sigmas: optionalFlag,
  use_beta_sigmas: optionalFlag,
  sigma_min: configField.nullable(configField.number(0, { above: 0 })),
  sigma_max: configField.nullable(configField.number(0, { above: 0 })),
  timestep_spacing: configField.oneOf(TIMESTEP_SPACINGS, 'linspace'),
  timestep_type: configField.oneOf(['discrete', 'continuous'] as const, 'discrete'),
  steps_offset: configField.number(0, { integer: true, min: 0 }),
  final_sigmas_type: configField.oneOf(['zero', 'sigma_min'] as const, 'zero'),
};

/**
 * The sigma schedule a config asks for through its `use_*_sigmas` flags, with a {@link ConfigError} when more
 * than one is set.
 *
 * @param className - for the message
 * @param config - the flags
 */
export function sigmaScheduleKind(
  className: string,
  config: {
    use_karras_sigmas?: boolean | null;
    use_exponential_sigmas?: boolean | null;
    use_beta_sigmas?: boolean | null;
  },
): SigmaScheduleKind {
  const kinds: SigmaScheduleKind[] = [];
  if (config.use_karras_sigmas) kinds.push('karras');
  if (config.use_exponential_sigmas) kinds.push('exponential');
  if (config.use_beta_sigmas) kinds.push('beta');
  if (kinds.length > 1) {
    throw new ConfigError(
      `${className}: only one of use_karras_sigmas, use_exponential_sigmas and use_beta_sigmas may be true.`,
    );
  }
  return kinds[0] ?? 'interpolated';
}

/** `setTimesteps` arguments of {@link EulerDiscreteScheduler}: also accepts explicit sigmas. */
export interface EulerSetTimestepsOptions extends SetTimestepsOptions {
  /** Explicit descending sigmas, the final one included (n + 1 values for n steps). */
  sigmas?: readonly number[];
}

/** Step options of {@link EulerDiscreteScheduler}: Karras et al.'s stochastic "churn" (Algorithm 2). */
export interface EulerStepOptions extends StepOptions {
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
 * The Euler method on the probability-flow ODE `dx/dσ = (x − x̂_0)/σ` (Karras et al. 2022, Algorithm 2 with
 * optional churn): `x_{i+1} = x_i + (σ_{i+1} − σ̂_i) · (x_i − x̂_0)/σ̂_i`. The "Euler" sampler of UIs; with
 * `timestep_spacing: 'trailing'` it is the SD-Turbo / zero-SNR setup.
 *
 * Differences from diffusers: `setTimesteps({ sigmas })` as well as timesteps; `prediction_type:
 * 'original_sample'` (diffusers' old name of `sample`) is stored as `sample`.
 *
 * @example
 * ```ts
 * const scheduler = EulerDiscreteScheduler.fromConfig({ ...sdConfig, use_karras_sigmas: true });
 * scheduler.setTimesteps(25);
 * let latents = scale(noise, scheduler.initNoiseSigma);
 * for (const t of scheduler.timesteps) {
 *   const eps = await unet(scheduler.scaleModelInput(latents, t), t);
 *   latents = scheduler.step(eps, t, latents).prevSample;
 * }
 * ```
 */
export class EulerDiscreteScheduler extends SigmaScheduler<EulerDiscreteSchedulerConfig> implements CustomSigmas {
  /** The classes whose configs this one accepts. */
  static override readonly compatibles: readonly string[] = KARRAS_DIFFUSION_SCHEDULERS;
  /** `setTimesteps({ sigmas })` takes explicit σ values, the final one included ({@link CustomSigmas}). */
  readonly acceptsCustomSigmas = true;

  private readonly sigmaKind: SigmaScheduleKind;
  private churnBuffer = new Float32Array(0);

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   */
  constructor(config: SchedulerConfigInput<EulerDiscreteSchedulerConfig> = {}, options?: SchedulerOptions) {
    super('EulerDiscreteScheduler', EULER_DISCRETE_CONFIG_SPEC, config, options);
    this.sigmaKind = sigmaScheduleKind('EulerDiscreteScheduler', this.config);
    if (this.usesContinuousTimesteps) {
      this.timesteps = Array.from(this.sigmas.subarray(0, -1), (s) => Math.fround(0.25 * Math.log(s)));
    }
  }

  private get usesContinuousTimesteps(): boolean {
    return this.config.timestep_type === 'continuous' && this.config.prediction_type === 'v_prediction';
  }

  /**
   * Sets the sampling schedule from a step count (spaced per `timestep_spacing`, sigmas per the config), from
   * explicit training timesteps, or from explicit sigmas.
   *
   * @param steps - the number of steps, or `{ numInferenceSteps }` / `{ timesteps }` / `{ sigmas }`
   */
  setTimesteps(steps: number | EulerSetTimestepsOptions): void {
    const customSigmas = typeof steps === 'object' ? steps.sigmas : undefined;
    let timesteps: number[];
    let sigmas: Float64Array;
    if (customSigmas !== undefined) {
      if (typeof steps === 'object' && (steps.numInferenceSteps !== undefined || steps.timesteps !== undefined)) {
        throw new InvalidArgumentError('setTimesteps takes exactly one of numInferenceSteps, timesteps or sigmas.');
      }
      if (customSigmas.length < 2 || !customSigmas.every((s) => Number.isFinite(s) && s >= 0)) {
        throw new InvalidArgumentError(
          'setTimesteps: sigmas must hold at least two finite values >= 0 (one per step plus the final sigma).',
        );
      }
      sigmas = Float64Array.from(customSigmas, Math.fround);
      timesteps = [...sigmasToTimesteps(sigmas.subarray(0, -1), this.trainingLogSigmas)];
      this.numInferenceSteps = sigmas.length - 1;
    } else {
      const parsed = this.parseSetTimesteps(steps);
      if (parsed.timesteps && (this.sigmaKind !== 'interpolated' || this.usesContinuousTimesteps)) {
        throw new InvalidArgumentError(
          'Custom timesteps cannot be combined with use_karras/exponential/beta_sigmas or continuous timesteps; pass sigmas instead.',
        );
      }
      const n = parsed.numInferenceSteps;
      this.numInferenceSteps = n;
      timesteps = parsed.timesteps ? [...parsed.timesteps] : this.spacedTimesteps(n);
      const training = this.trainingSigmas;
      if (this.config.interpolation_type === 'linear') {
        sigmas = interpolateAt(timesteps, training);
      } else {
        // diffusers' log_linear: n + 1 sigmas evenly spaced in log σ from σ_max to σ_min (torch.linspace and exp
        // in float32). The timesteps stay the spaced ones.
        const logMax = Math.log(training[training.length - 1]);
        const logMin = Math.log(training[0]);
        sigmas = Float64Array.from({ length: n + 1 }, (_, i) =>
          Math.fround(Math.exp(Math.fround(logMax + (i / n) * (logMin - logMax)))),
        );
      }
      if (this.sigmaKind !== 'interpolated') {
        // n sigmas over the range of whichever interpolation ran, as diffusers converts with num_inference_steps.
        const range = { sigmaMin: this.config.sigma_min, sigmaMax: this.config.sigma_max };
        const converted = this.convertSigmas(this.sigmaKind, sigmas, range, n);
        sigmas = converted.sigmas;
        timesteps = converted.timesteps;
      }
      const finalSigma = this.config.final_sigmas_type === 'sigma_min' ? training[0] : 0;
      const withFinal = new Float64Array(sigmas.length + 1);
      withFinal.set(sigmas);
      withFinal[sigmas.length] = finalSigma;
      sigmas = withFinal;
    }
    if (this.usesContinuousTimesteps) {
      timesteps = Array.from(sigmas.subarray(0, -1), (s) => 0.25 * Math.log(Math.fround(s)));
    }
    this.setSchedule(timesteps, sigmas);
  }

  /**
   * One Euler step from σ_i to σ_{i+1}. With `sChurn > 0` it first raises the noise level to σ̂ = σ(1 + γ) by
   * adding fresh noise (from `generator` or `noise`).
   *
   * @param modelOutput - ε̂, x̂_0 or v̂ (per `prediction_type`) for the scaled model input
   * @param timestep - the current timestep, one of {@link Scheduler.timesteps}
   * @param sample - the current latents x_i (unscaled)
   * @param options - churn parameters and their noise source
   */
  step(modelOutput: TensorLike, timestep: number, sample: TensorLike, options: EulerStepOptions = {}): SchedulerOutput {
    assertStepTensors(modelOutput, sample);
    const index = this.cursor.stepIndexFor(timestep);
    const { sChurn = 0, sTmin = 0, sTmax = Number.POSITIVE_INFINITY, sNoise = 1 } = options;
    const sigma = this.sigmas[index];
    const gamma = sTmin <= sigma && sigma <= sTmax ? Math.min(sChurn / (this.sigmas.length - 1), Math.SQRT2 - 1) : 0;
    const sigmaHat = sigma * (gamma + 1);
    const n = sample.data.length;
    const x = sample.data;
    const m = modelOutput.data;
    let churned: Float32Array | null = null;
    if (gamma > 0) {
      const noise = this.stepNoise(options, sample);
      const extra = sNoise * Math.sqrt(sigmaHat * sigmaHat - sigma * sigma);
      if (this.churnBuffer.length !== n) this.churnBuffer = new Float32Array(n);
      churned = this.churnBuffer;
      for (let i = 0; i < n; i++) churned[i] = x[i] + noise[i] * extra;
    }
    const current = churned ?? x;
    // diffusers scales ε̂ by σ̂ but v̂ by σ (the level the model saw).
    const sigmaForPrediction = this.config.prediction_type === 'epsilon' ? sigmaHat : sigma;
    const dt = this.sigmas[index + 1] - sigmaHat;
    const [a, b] = denoisedWeights(this.config.prediction_type, sigmaForPrediction);
    const x0 = new Float32Array(n);
    const prev = new Float32Array(n);
    // Multiplying by 1/σ̂ instead of dividing: a division per element costs about as much as the rest of the loop.
    const inverseSigmaHat = 1 / sigmaHat;
    let nonFinite = 0;
    for (let i = 0; i < n; i++) {
      // x̂_0 = a·x + b·m, d = (x − x̂_0)/σ̂, x_{i+1} = x + d·(σ_{i+1} − σ̂) (Karras et al. 2022, Alg. 2).
      x0[i] = a * current[i] + b * m[i];
      const derivative = (current[i] - x0[i]) * inverseSigmaHat;
      const value = current[i] + derivative * dt;
      prev[i] = value;
      nonFinite += value * 0;
    }
    assertFiniteStepResult(nonFinite, modelOutput, sample, timestep, this.className);
    this.cursor.advance();
    return { prevSample: new Tensor(prev, sample.dims), predOriginalSample: new Tensor(x0, sample.dims) };
  }
}

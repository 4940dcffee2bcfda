import { ConfigError, InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import { assertFiniteStepInputs, assertFiniteStepResult, assertStepTensors, assertTensorLike } from './checks.js';
import { type ConfigField, type ConfigSpec, configField, type SchedulerConfigInput } from './config.js';
import { DPM_SOLVER_MULTISTEP_CONFIG_SPEC, dpmSolverWeights } from './dpm-solver-multistep.js';
import {
  edmExponentialSigmas,
  edmNoiseConditioning,
  edmOutputScale,
  edmScaleModelInput,
  edmSkipScale,
  linspaceFloat32At,
} from './edm-preconditioning.js';
import { type AlphaSigmaLambda, combineHistory, multistepOrder, nextWarmUp, solverHistory } from './multistep.js';
import { Scheduler, type SchedulerOptions, type SchedulerOutput, type StepOptions } from './scheduler.js';
import { applyDynamicThresholding, THRESHOLDING_SPEC, type ThresholdingConfig } from './thresholding.js';

const f32 = Math.fround;

/**
 * DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models",
 * Algorithm 2 and its third-order multistep form) in the EDM parametrisation of Karras et al. 2022: the sample is
 * `x = x_0 + σ·ε` (α = 1), λ = −log σ, and the data prediction is EDM's preconditioned denoiser
 * `D = c_skip·x + c_out·F` (Table 1). A step goes from σ_s0 to σ_t with h = λ_t − λ_s0 = log(σ_s0/σ_t).
 */

/** The config of {@link EDMDPMSolverMultistepScheduler}: diffusers' `EDMDPMSolverMultistepScheduler` keys. */
export interface EDMDPMSolverMultistepSchedulerConfig extends ThresholdingConfig {
  /** The smallest noise level of the schedule. */
  sigma_min: number;
  /** The largest noise level of the schedule. */
  sigma_max: number;
  /** The standard deviation of the data, σ_data of the preconditioning. */
  sigma_data: number;
  /** How the noise levels are spaced: Karras et al.'s ρ-schedule, or evenly in log σ. */
  sigma_schedule: 'karras' | 'exponential';
  /** The length of the schedule before `setTimesteps`. */
  num_train_timesteps: number;
  /** What the network F predicts (the sign of c_out); diffusers cannot precondition `sample`. */
  prediction_type: 'epsilon' | 'v_prediction';
  /** The curvature ρ of the Karras schedule. */
  rho: number;
  /** The order of the multistep solver: 1, 2 or 3 (3 only for `dpmsolver++`). */
  solver_order: number;
  /** The ODE solver `dpmsolver++` or the SDE solver `sde-dpmsolver++`; `deis` loads as `dpmsolver++`. */
  algorithm_type: 'dpmsolver++' | 'sde-dpmsolver++';
  /** The second-order variant; `logrho`, `bh1` and `bh2` (other schedulers' types) load as `midpoint`. */
  solver_type: 'midpoint' | 'heun';
  /** Fall back to lower orders for the last steps when there are fewer than 15 steps. */
  lower_order_final: boolean;
  /** Use a first-order step at the very end. */
  euler_at_final: boolean;
  /** The σ after the last step: 0 (then the last step is first order), or `sigma_min`. */
  final_sigmas_type: 'zero' | 'sigma_min';
}

const algorithmTypeField: ConfigField<'dpmsolver++' | 'sde-dpmsolver++'> = {
  default: 'dpmsolver++',
  parse(value, key) {
    if (value === 'deis') return 'dpmsolver++';
    return configField.oneOf(['dpmsolver++', 'sde-dpmsolver++'] as const, 'dpmsolver++').parse(value, key);
  },
};

/** The keys, defaults and checks of {@link EDMDPMSolverMultistepSchedulerConfig}. */
export const EDM_DPM_SOLVER_MULTISTEP_CONFIG_SPEC: ConfigSpec<EDMDPMSolverMultistepSchedulerConfig> = {
  sigma_min: configField.number(0.002, { above: 0 }),
  sigma_max: configField.number(80, { above: 0 }),
  sigma_data: configField.number(0.5, { above: 0 }),
  sigma_schedule: configField.oneOf(['karras', 'exponential'] as const, 'karras'),
  num_train_timesteps: configField.number(1000, { integer: true, min: 1, max: 1_000_000 }),
  prediction_type: configField.oneOf(['epsilon', 'v_prediction'] as const, 'epsilon'),
  rho: configField.number(7, { above: 0 }),
  solver_order: configField.number(2, { integer: true, min: 1, max: 3 }),
  ...THRESHOLDING_SPEC,
  algorithm_type: algorithmTypeField,
  solver_type: DPM_SOLVER_MULTISTEP_CONFIG_SPEC.solver_type,
  lower_order_final: configField.boolean(true),
  euler_at_final: configField.boolean(false),
  final_sigmas_type: configField.oneOf(['zero', 'sigma_min'] as const, 'zero'),
};

/**
 * diffusers' `EDMDPMSolverMultistepScheduler`: multistep DPM-Solver++ (orders 1–3, ODE or SDE) for EDM-trained
 * models, on an EDM σ schedule. The model sees `c_in·x` (`c_in = 1/√(σ² + σ_data²)`) at timestep `¼·ln σ`.
 *
 * The history of D lives in preallocated buffers reused across steps and reset by `setTimesteps`; a step
 * allocates only the returned tensor.
 *
 * Differences from diffusers: `sde-dpmsolver++` with `solver_order: 3` and `prediction_type: "sample"` are config
 * errors (diffusers fails at the first step); a zero-length step (the last σ repeated) is the identity.
 *
 * @example
 * ```ts
 * const scheduler = new EDMDPMSolverMultistepScheduler({ sigma_data: 0.5, sigma_max: 80 });
 * scheduler.setTimesteps(25);
 * let latents = scale(noise, scheduler.initNoiseSigma);
 * for (const t of scheduler.timesteps) {
 *   const f = await unet(scheduler.scaleModelInput(latents, t), t);
 *   latents = scheduler.step(f, t, latents).prevSample;
 * }
 * ```
 */
export class EDMDPMSolverMultistepScheduler extends Scheduler<EDMDPMSolverMultistepSchedulerConfig> {
  /** diffusers lists no compatible classes: EDM models are not parametrised by a β schedule. */
  static override readonly compatibles: readonly string[] = [];
  /** σ for each timestep of the schedule, then the final σ; float32 values. */
  sigmas: Float64Array;

  /** α = 1, σ_t = σ and λ = −log σ at each σ, the solver's view of the schedule. */
  private coefficients: AlphaSigmaLambda;
  /** How many D of this run the history holds (diffusers' `lower_order_nums`, capped at the order). */
  private lowerOrderNums = 0;
  /** The data predictions D of the last steps, a ring: `history[newest]` is the latest. */
  private history: Float32Array[] = [];
  private newest = 0;
  private thresholdScratch: Float32Array = new Float32Array(0);
  private readonly weights = new Float64Array(5);
  private readonly terms = new Array<Float32Array>(5);
  private readonly termWeights = new Float64Array(5);

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   * @throws ConfigError for a third-order SDE solver
   */
  constructor(config: SchedulerConfigInput<EDMDPMSolverMultistepSchedulerConfig> = {}, options?: SchedulerOptions) {
    super('EDMDPMSolverMultistepScheduler', EDM_DPM_SOLVER_MULTISTEP_CONFIG_SPEC, config, options);
    if (this.config.algorithm_type === 'sde-dpmsolver++' && this.config.solver_order === 3) {
      throw new ConfigError('algorithm_type "sde-dpmsolver++" supports solver_order 1 or 2, not 3.');
    }
    this.sigmas = this.scheduleFromRamp(this.config.num_train_timesteps, 0);
    this.timesteps = edmNoiseConditioning(this.sigmas);
    this.coefficients = edmCoefficients(this.sigmas);
    this.initNoiseSigma = Math.sqrt(this.config.sigma_max ** 2 + 1);
  }

  /**
   * Sets the schedule of `n` steps from `sigma_max` to `sigma_min` per `sigma_schedule`, then the final σ, and
   * clears the multistep history.
   *
   * @param steps - the number of steps, or `{ numInferenceSteps }`
   */
  setTimesteps(steps: number | { numInferenceSteps?: number }): void {
    const n = typeof steps === 'number' ? steps : steps?.numInferenceSteps;
    if (!Number.isInteger(n) || (n as number) < 1) {
      throw new InvalidArgumentError(`numInferenceSteps must be a positive integer, got ${n}.`);
    }
    const finalSigma = this.config.final_sigmas_type === 'sigma_min' ? f32(this.config.sigma_min) : 0;
    this.sigmas = this.scheduleFromRamp(n as number, finalSigma);
    this.timesteps = edmNoiseConditioning(this.sigmas);
    this.coefficients = edmCoefficients(this.sigmas);
    this.numInferenceSteps = n as number;
    this.cursor.reset();
    this.lowerOrderNums = 0;
    this.newest = 0;
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
   * One multistep DPM-Solver++ step on D from `timestep` to the next σ, of the configured order once enough
   * history exists (first order on the first step, and at the end per `lower_order_final`, `euler_at_final` and
   * `final_sigmas_type: "zero"`). `sde-dpmsolver++` draws noise from `generator` or takes `noise`.
   *
   * @param modelOutput - the network output F for the preconditioned input
   * @param timestep - the current timestep, one of {@link Scheduler.timesteps}
   * @param sample - the current latents x (not preconditioned)
   * @param options - `generator` or `noise` for the SDE solver
   */
  step(modelOutput: TensorLike, timestep: number, sample: TensorLike, options: StepOptions = {}): SchedulerOutput {
    assertStepTensors(modelOutput, sample);
    const i = this.cursor.stepIndexFor(timestep);
    const n = this.timesteps.length;
    const { solver_order: solverOrder, lower_order_final, euler_at_final, final_sigmas_type } = this.config;
    this.history = solverHistory(this.history, solverOrder, sample.data.length, this.lowerOrderNums > 0);
    const shortRun = lower_order_final && n < 15;
    const firstOrderAtEnd = i === n - 1 && (euler_at_final || shortRun || final_sigmas_type === 'zero');
    const secondOrderAtEnd = i === n - 2 && shortRun;

    // D0 = D(x; σ_s0), the data prediction, replaces the oldest one; `newest` moves only once it is finite.
    const slot = (this.newest + 1) % solverOrder;
    this.denoise(modelOutput, sample, timestep, this.sigmas[i], this.history[slot]);
    this.newest = slot;
    const stochastic = this.config.algorithm_type === 'sde-dpmsolver++';
    const noise = stochastic ? this.stepNoise(options, sample) : null;
    const order = multistepOrder(solverOrder, this.lowerOrderNums, firstOrderAtEnd, secondOrderAtEnd);

    // DPM-Solver++'s update with α = 1, σ_t = σ and λ = −log σ.
    const { algorithm_type, solver_type } = this.config;
    const weights = dpmSolverWeights(this.weights, this.coefficients, i, order, algorithm_type, solver_type);
    const prev = new Float32Array(sample.data.length);
    combineHistory(prev, weights, sample.data, this.history, this.newest, order, noise, this.terms, this.termWeights);

    this.lowerOrderNums = nextWarmUp(this.sigmas, i, this.lowerOrderNums, solverOrder);
    this.cursor.advance();
    return { prevSample: new Tensor(prev, sample.dims) };
  }

  /**
   * The forward process in the σ parametrisation: `x = x_0 + σ·ε` with σ of the schedule at `timesteps` (or at
   * the begin index / current step once a pipeline set one).
   *
   * @param timestep - one of {@link Scheduler.timesteps}
   */
  protected override forwardProcess(timestep: number): readonly [number, number] {
    return [1, this.sigmas[this.cursor.noiseIndex(timestep)]];
  }

  /**
   * The data prediction D = c_skip·x + c_out·F at σ (Karras et al. 2022, Table 1; `docs/math.md` §15) into `out`,
   * thresholded when configured.
   */
  private denoise(
    modelOutput: TensorLike,
    sample: TensorLike,
    timestep: number,
    sigma: number,
    out: Float32Array,
  ): void {
    const { sigma_data: sigmaData, thresholding } = this.config;
    if (thresholding) assertFiniteStepInputs(modelOutput, sample, timestep, this.className);
    const cSkip = edmSkipScale(sigma, sigmaData);
    const cOut = edmOutputScale(sigma, sigmaData, this.config.prediction_type);
    const x = sample.data;
    const m = modelOutput.data;
    let nonFinite = 0;
    for (let k = 0; k < out.length; k++) {
      const value = cSkip * x[k] + cOut * m[k];
      out[k] = value;
      nonFinite += value * 0;
    }
    if (!thresholding) {
      assertFiniteStepResult(nonFinite, modelOutput, sample, timestep, this.className);
      return;
    }
    const batch = sample.dims[0];
    const itemSize = x.length / batch;
    if (this.thresholdScratch.length < itemSize) this.thresholdScratch = new Float32Array(itemSize);
    const { dynamic_thresholding_ratio, sample_max_value } = this.config;
    applyDynamicThresholding(out, batch, dynamic_thresholding_ratio, sample_max_value, this.thresholdScratch);
  }

  /**
   * `n` σ values from σ_max to σ_min in float32 as torch computes them, then `finalSigma`: Karras
   * `(σ_max^{1/ρ} + r·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ` at r = linspace(0, 1, n) (Karras et al. 2022, eq. 5), or
   * exp of linspace(log σ_min, log σ_max, n), reversed.
   */
  private scheduleFromRamp(n: number, finalSigma: number): Float64Array {
    const { sigma_min: sigmaMin, sigma_max: sigmaMax, rho } = this.config;
    const out = new Float64Array(n + 1);
    if (this.config.sigma_schedule === 'karras') {
      const maxInvRho = f32(sigmaMax ** (1 / rho));
      const span = f32(sigmaMin ** (1 / rho) - sigmaMax ** (1 / rho));
      for (let i = 0; i < n; i++) {
        const r = linspaceFloat32At(0, 1, n, i);
        out[i] = f32(f32(maxInvRho + f32(r * span)) ** f32(rho));
      }
    } else {
      edmExponentialSigmas(out, n, sigmaMin, sigmaMax);
    }
    out[n] = finalSigma;
    return out;
  }
}

/** The EDM schedule in the variance-exploding form of the DPM-Solver formulas: α = 1, σ_t = σ, λ = −log σ. */
function edmCoefficients(sigmas: Float64Array): AlphaSigmaLambda {
  return {
    alpha: new Float64Array(sigmas.length).fill(1),
    sigma: sigmas,
    lambda: Float64Array.from(sigmas, (sigma) => -Math.log(sigma)),
  };
}

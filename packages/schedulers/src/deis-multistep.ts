import { ConfigError, InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import {
  BETA_SCHEDULE_SPEC,
  type ConfigField,
  type ConfigSpec,
  configField,
  KARRAS_DIFFUSION_SCHEDULERS,
  type SchedulerConfigInput,
} from './config.js';
import {
  type AlphaSigmaLambda,
  alphaSigmaLambda,
  assertOneSigmaSpacing,
  combineHistory,
  multistepOrder,
  multistepSchedule,
  multistepTimesteps,
  nextWarmUp,
  predictionStride,
  solverAlphaSigma,
  solverHistory,
  solverPrediction,
} from './multistep.js';
import { PREDICTION_TYPES, type PredictionType } from './prediction.js';
import { type BetaScheduleConfig, TIMESTEP_SPACINGS, type TimestepSpacing } from './schedule.js';
import {
  Scheduler,
  type SchedulerOptions,
  type SchedulerOutput,
  type SetTimestepsOptions,
  type StepOptions,
} from './scheduler.js';
import { THRESHOLDING_SPEC, type ThresholdingConfig } from './thresholding.js';

/**
 * DEIS, the Diffusion Exponential Integrator Sampler (Zhang & Chen 2022, "Fast Sampling of Diffusion Models with
 * Exponential Integrator"), in its multistep "log-ρ" form (ρAB-DEIS, §4 and eq. 15): with `ρ = σ_t/α_t` the
 * variance-preserving sample `x_t = α_t·x_0 + σ_t·ε` obeys `d(x/α)/dρ = ε̂`, and the step integrates a Lagrange
 * polynomial through the last k noise predictions in log ρ exactly.
 */

/** The config of {@link DEISMultistepScheduler}: diffusers' `DEISMultistepScheduler` keys and defaults. */
export interface DEISMultistepSchedulerConfig extends BetaScheduleConfig, ThresholdingConfig {
  /** The order of the multistep solver: 1, 2 or 3. */
  solver_order: number;
  /** What the model predicts. */
  prediction_type: PredictionType;
  /** Always `deis`; other multistep schedulers' `dpmsolver` / `dpmsolver++` load as `deis` (as diffusers). */
  algorithm_type: 'deis';
  /** Always `logrho`; `midpoint`, `heun`, `bh1` and `bh2` load as `logrho` (as diffusers). */
  solver_type: 'logrho';
  /** Fall back to lower orders for the last steps when there are fewer than 15 steps. */
  lower_order_final: boolean;
  /** Space the noise levels as Karras et al. (2022), eq. 5. */
  use_karras_sigmas: boolean;
  /** Space the noise levels evenly in log σ. */
  use_exponential_sigmas: boolean;
  /** Place the noise levels at Beta(0.6, 0.6) quantiles (Lee et al. 2024). */
  use_beta_sigmas: boolean;
  /** How `setTimesteps(n)` places its timesteps. */
  timestep_spacing: TimestepSpacing;
  /** Added to every `leading` timestep. */
  steps_offset: number;
}

/** diffusers loads the DPM-Solver algorithm types as `deis`. */
const algorithmTypeField: ConfigField<'deis'> = {
  default: 'deis',
  parse(value, key) {
    if (value === 'dpmsolver' || value === 'dpmsolver++') return 'deis';
    return configField.oneOf(['deis'] as const, 'deis').parse(value, key);
  },
};

/** diffusers loads the solver types of DPM-Solver (`midpoint`, `heun`) and UniPC (`bh1`, `bh2`) as `logrho`. */
const solverTypeField: ConfigField<'logrho'> = {
  default: 'logrho',
  parse(value, key) {
    if (value === 'midpoint' || value === 'heun' || value === 'bh1' || value === 'bh2') return 'logrho';
    return configField.oneOf(['logrho'] as const, 'logrho').parse(value, key);
  },
};

/** The keys, defaults and checks of {@link DEISMultistepSchedulerConfig}. */
export const DEIS_MULTISTEP_CONFIG_SPEC: ConfigSpec<DEISMultistepSchedulerConfig> = {
  ...BETA_SCHEDULE_SPEC,
  ...THRESHOLDING_SPEC,
  // diffusers' DEIS has no sigmoid schedule.
  beta_schedule: configField.oneOf(['linear', 'scaled_linear', 'squaredcos_cap_v2'] as const, 'linear'),
  solver_order: configField.number(2, { integer: true, min: 1, max: 3 }),
  prediction_type: configField.oneOf(PREDICTION_TYPES, 'epsilon'),
  algorithm_type: algorithmTypeField,
  solver_type: solverTypeField,
  lower_order_final: configField.boolean(true),
  use_karras_sigmas: configField.boolean(false),
  use_exponential_sigmas: configField.boolean(false),
  use_beta_sigmas: configField.boolean(false),
  timestep_spacing: configField.oneOf(TIMESTEP_SPACINGS, 'linspace'),
  steps_offset: configField.number(0, { integer: true, min: 0 }),
};

/**
 * diffusers' `DEISMultistepScheduler`: the multistep log-ρ DEIS of order 1–3 on the noise prediction. The first
 * order is DDIM; orders 2 and 3 reuse the previous steps' ε̂, so each step costs one model evaluation. The
 * schedule is DPM-Solver's (same spacing and sigma options), ending on the smallest training σ rather than 0.
 *
 * The history of ε̂ lives in preallocated buffers reused across steps and reset by `setTimesteps`; a step
 * allocates only the returned tensor.
 *
 * Differences from diffusers: the flow-matching options (`use_flow_sigmas`, `flow_prediction`,
 * `use_dynamic_shifting`) are not supported.
 *
 * @example
 * ```ts
 * const scheduler = DEISMultistepScheduler.fromConfig(sdSchedulerConfig);
 * scheduler.setTimesteps(20);
 * for (const t of scheduler.timesteps) sample = scheduler.step(await unet(sample, t), t, sample).prevSample;
 * ```
 */
export class DEISMultistepScheduler extends Scheduler<DEISMultistepSchedulerConfig> {
  /** The classes whose configs this one accepts (diffusers' `KarrasDiffusionSchedulers`). */
  static override readonly compatibles: readonly string[] = KARRAS_DIFFUSION_SCHEDULERS;
  /** σ at each step of the current schedule plus the final σ (empty before `setTimesteps`). */
  sigmas: Float64Array = new Float64Array(0);

  private coefficients: AlphaSigmaLambda = alphaSigmaLambda(new Float64Array(0));
  /** How many ε̂ of this run the history holds (diffusers' `lower_order_nums`, capped at the order). */
  private lowerOrderNums = 0;
  /** The ε̂ of the last steps, a ring: `history[newest]` is the latest. */
  private history: Float32Array[] = [];
  private newest = 0;
  private thresholdScratch: Float32Array = new Float32Array(0);
  private readonly weights = new Float64Array(4);
  // The buffers of an update (sample, history) and their weights, reused across steps.
  private readonly terms = new Array<Float32Array>(4);
  private readonly termWeights = new Float64Array(4);

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   * @throws ConfigError for two sigma spacings at once, or the flow-matching options
   */
  constructor(config: SchedulerConfigInput<DEISMultistepSchedulerConfig> = {}, options?: SchedulerOptions) {
    const raw = (config ?? {}) as Record<string, unknown>;
    if (raw.use_flow_sigmas === true || raw.prediction_type === 'flow_prediction') {
      throw new ConfigError(
        'DEISMultistepScheduler does not support use_flow_sigmas / flow_prediction (flow-matching models); use FlowMatchEulerDiscreteScheduler.',
      );
    }
    super('DEISMultistepScheduler', DEIS_MULTISTEP_CONFIG_SPEC, config, options);
    assertOneSigmaSpacing(this.config);
  }

  /**
   * Sets the sampling schedule and clears the multistep history. With `{ timesteps }` the given training
   * timesteps are used (not with Karras, exponential or beta spacing).
   *
   * @param steps - the number of steps, or `{ numInferenceSteps }` / `{ timesteps }`
   */
  setTimesteps(steps: number | SetTimestepsOptions): void {
    const { numInferenceSteps, timesteps: custom } = this.parseSetTimesteps(steps);
    const c = this.config;
    const spaced = c.use_karras_sigmas || c.use_exponential_sigmas || c.use_beta_sigmas;
    if (custom && spaced) {
      throw new InvalidArgumentError(
        'Custom timesteps cannot be combined with Karras, exponential or beta spacing; pass a step count.',
      );
    }
    const T = c.num_train_timesteps;
    const spacedTimesteps = custom ?? multistepTimesteps(c.timestep_spacing, numInferenceSteps, T, T, c.steps_offset);
    // DEIS ends on the smallest σ of the range (σ at timestep 0, or the spacing's last σ), never on 0.
    const schedule = multistepSchedule(spacedTimesteps, {
      alphasCumprod: this.alphasCumprod,
      karras: c.use_karras_sigmas,
      luLambdas: false,
      exponential: c.use_exponential_sigmas,
      beta: c.use_beta_sigmas,
      roundTimesteps: true,
      finalSigmasType: 'sigma_min',
    });
    this.timesteps = schedule.timesteps;
    this.sigmas = schedule.sigmas;
    this.numInferenceSteps = schedule.timesteps.length;
    this.coefficients = alphaSigmaLambda(schedule.sigmas);
    this.cursor.reset();
    this.lowerOrderNums = 0;
    this.newest = 0;
  }

  /**
   * One multistep DEIS step from `timestep` to the next timestep of the schedule, of the configured order once
   * enough history exists (first order on the first step; lower orders for the last two steps of a short run with
   * `lower_order_final`).
   *
   * @param modelOutput - ε̂, x̂_0 or v̂ (per `prediction_type`)
   * @param timestep - the current timestep
   * @param sample - x_t
   * @param _options - unused: DEIS is deterministic
   */
  step(modelOutput: TensorLike, timestep: number, sample: TensorLike, _options: StepOptions = {}): SchedulerOutput {
    predictionStride(modelOutput, sample, false);
    const i = this.cursor.stepIndexFor(timestep);
    const n = this.timesteps.length;
    const solverOrder = this.config.solver_order;
    this.history = solverHistory(this.history, solverOrder, sample.data.length, this.lowerOrderNums > 0);
    const shortRun = this.config.lower_order_final && n < 15;
    const firstOrderAtEnd = i === n - 1 && shortRun;
    const secondOrderAtEnd = i === n - 2 && shortRun;

    // ε̂_0 (at s0) replaces the oldest ε̂; `newest` moves only once it is known to be finite.
    const slot = (this.newest + 1) % solverOrder;
    this.convertModelOutput(modelOutput, sample, timestep, this.history[slot]);
    this.newest = slot;
    const order = multistepOrder(solverOrder, this.lowerOrderNums, firstOrderAtEnd, secondOrderAtEnd);

    const weights = this.updateWeights(order);
    const prev = new Float32Array(sample.data.length);
    combineHistory(prev, weights, sample.data, this.history, this.newest, order, null, this.terms, this.termWeights);

    // After a zero-length step the next Lagrange basis would divide by log ρ − log ρ = 0: restart the warm-up.
    this.lowerOrderNums = nextWarmUp(this.coefficients.lambda, i, this.lowerOrderNums, solverOrder);
    this.cursor.advance();
    return { prevSample: new Tensor(prev, sample.dims) };
  }

  /**
   * The forward process at the schedule's sigmas (diffusers' `add_noise`): x = α·x_0 + σ_t·ε at the σ of
   * `timesteps` in the current schedule (or of the begin index, when set).
   *
   * @param timestep - one of {@link Scheduler.timesteps}
   */
  protected override forwardProcess(timestep: number): readonly [number, number] {
    return this.forwardProcessAtScheduleSigmas(timestep, this.sigmas, (sigma) => solverAlphaSigma(sigma, false));
  }

  /** ε̂_0 at the current step into `out`; with thresholding, via the thresholded x̂_0: ε̂ = (x − α·x̂_0)/σ. */
  private convertModelOutput(modelOutput: TensorLike, sample: TensorLike, timestep: number, out: Float32Array): void {
    const s0 = this.cursor.stepIndex as number;
    this.thresholdScratch = solverPrediction(
      modelOutput,
      sample.data.length / sample.dims[0],
      sample,
      timestep,
      this.className,
      this.coefficients.alpha[s0],
      this.coefficients.sigma[s0],
      this.config.prediction_type,
      'noise',
      this.config,
      this.thresholdScratch,
      out,
    );
  }

  /**
   * The weights of x_s0, ε̂_0, ε̂_1, ε̂_2 in x_t for a step of the given order. With ρ = σ/α, the step is
   * `x_t = α_t·(x_s0/α_s0 + Σ_j C_j·ε̂_j)`, where C_j integrates the j-th Lagrange basis polynomial in log ρ
   * over [ρ_s0, ρ_t] (Zhang & Chen 2022, eq. 15; `docs/math.md` §11); order 1 is DDIM, `(α_t/α_s0)·x − σ_t·(e^h − 1)·ε̂`.
   */
  private updateWeights(order: number): Float64Array {
    const { alpha, sigma, lambda } = this.coefficients;
    const i = this.cursor.stepIndex as number;
    const w = this.weights;
    const alphaT = alpha[i + 1];
    w[0] = alphaT / alpha[i];
    // A zero-length step is the identity, whatever the order.
    if (order === 1 || sigma[i + 1] === sigma[i]) {
      w[1] = -sigma[i + 1] * Math.expm1(lambda[i + 1] - lambda[i]);
      w[2] = 0;
      w[3] = 0;
      return w;
    }
    const rho = (k: number) => sigma[k] / alpha[k];
    const [rhoT, rho0, rho1] = [rho(i + 1), rho(i), rho(i - 1)];
    if (order === 2) {
      // ∫ of the linear Lagrange basis in log ρ: ρ·(log ρ − log c − 1)/(log b − log c) at the ends.
      const basis = (t: number, b: number, c: number) =>
        (t * (Math.log(t) - Math.log(c) - 1)) / (Math.log(b) - Math.log(c));
      w[1] = alphaT * (basis(rhoT, rho0, rho1) - basis(rho0, rho0, rho1));
      w[2] = alphaT * (basis(rhoT, rho1, rho0) - basis(rho0, rho1, rho0));
      return w;
    }
    const rho2 = rho(i - 2);
    // ∫ of the quadratic Lagrange basis through log b (value 1), log c and log d (value 0), antiderivative in ρ.
    const basis = (t: number, b: number, c: number, d: number) => {
      const [lt, lb, lc, ld] = [Math.log(t), Math.log(b), Math.log(c), Math.log(d)];
      return (t * (lc * (ld - lt + 1) - ld * lt + ld + lt * lt - 2 * lt + 2)) / ((lb - lc) * (lb - ld));
    };
    w[1] = alphaT * (basis(rhoT, rho0, rho1, rho2) - basis(rho0, rho0, rho1, rho2));
    w[2] = alphaT * (basis(rhoT, rho1, rho2, rho0) - basis(rho0, rho1, rho2, rho0));
    w[3] = alphaT * (basis(rhoT, rho2, rho0, rho1) - basis(rho0, rho2, rho0, rho1));
    return w;
  }
}

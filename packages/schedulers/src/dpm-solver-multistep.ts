import { ConfigError, InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import {
  type ConfigField,
  type ConfigSpec,
  configField,
  KARRAS_DIFFUSION_SCHEDULERS,
  NOISE_SCHEDULE_SPEC,
  type SchedulerConfigInput,
} from './config.js';
import { VARIANCE_TYPES, type VarianceType } from './ddpm.js';
import {
  type AlphaSigmaLambda,
  alphaSigmaLambda,
  assertOneSigmaSpacing,
  checkFlowConfig,
  combineHistory,
  flowLinspace,
  flowShift,
  lambdaClippedLength,
  MULTISTEP_PREDICTION_TYPES,
  type MultistepPredictionType,
  type MultistepSchedule,
  type MultistepSetTimestepsOptions,
  multistepOrder,
  multistepSchedule,
  multistepTimesteps,
  nextWarmUp,
  predictionStride,
  shiftFlowSigma,
  solverAlphaSigma,
  solverAlphasCumprod,
  solverHistory,
  solverPrediction,
} from './multistep.js';
import { type NoiseScheduleConfig, TIMESTEP_SPACINGS, type TimestepSpacing } from './schedule.js';
import { Scheduler, type SchedulerOptions, type SchedulerOutput, type StepOptions } from './scheduler.js';
import { THRESHOLDING_SPEC, type ThresholdingConfig } from './thresholding.js';

/**
 * DPM-Solver (Lu et al. 2022, "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model Sampling in Around
 * 10 Steps") and DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
 * Probabilistic Models"), multistep form, with the SDE variants of diffusers.
 *
 * Notation: the variance-preserving sample is `x_t = α_t·x_0 + σ_t·ε` with `α_t = 1/√(σ²+1)`, `σ_t = σ·α_t` for the
 * schedule's noise level σ, and `λ_t = log(α_t/σ_t)` the half log-SNR. A step goes from `s0` (the current
 * timestep) to `t` (the next), `h = λ_t − λ_s0 > 0`; `m0, m1, m2` are the converted model outputs at `s0` and the
 * two steps before it (x̂_0 for the `++` algorithms, ε̂ for the others).
 */

/** diffusers' `algorithm_type`: which integral is discretised (x̂_0 for `++`, ε̂ otherwise) and ODE vs SDE. */
export type DPMSolverAlgorithmType = 'dpmsolver' | 'dpmsolver++' | 'sde-dpmsolver' | 'sde-dpmsolver++';

/** All values `algorithm_type` accepts (diffusers also maps `"deis"` to `"dpmsolver++"`). */
export const DPM_SOLVER_ALGORITHM_TYPES: readonly DPMSolverAlgorithmType[] = [
  'dpmsolver',
  'dpmsolver++',
  'sde-dpmsolver',
  'sde-dpmsolver++',
];

/** diffusers' `solver_type`: how the second-order step estimates the derivative term. */
export type DPMSolverType = 'midpoint' | 'heun';

/** The config of {@link DPMSolverMultistepScheduler}: diffusers' `DPMSolverMultistepScheduler` keys and defaults. */
export interface DPMSolverMultistepSchedulerConfig extends NoiseScheduleConfig, ThresholdingConfig {
  /** The order of the multistep solver: 1, 2 or 3 (2 is recommended for guided sampling). */
  solver_order: number;
  /** What the model predicts (`flow_prediction` needs `use_flow_sigmas` and a `++` algorithm). */
  prediction_type: MultistepPredictionType;
  /** The solver family; `dpmsolver` and `sde-dpmsolver` are deprecated in diffusers. */
  algorithm_type: DPMSolverAlgorithmType;
  /** The second-order variant; diffusers' `logrho`, `bh1` and `bh2` (other schedulers' types) load as `midpoint`. */
  solver_type: DPMSolverType;
  /** Fall back to lower orders for the last steps when there are fewer than 15 steps. */
  lower_order_final: boolean;
  /** Use a first-order step at the very end. */
  euler_at_final: boolean;
  /** Space the noise levels as Karras et al. (2022), eq. 5. */
  use_karras_sigmas: boolean;
  /** Space the noise levels evenly in log σ. */
  use_exponential_sigmas: boolean;
  /** Place the noise levels at Beta(0.6, 0.6) quantiles (Lee et al. 2024). */
  use_beta_sigmas: boolean;
  /** Space the steps evenly in log-SNR λ, as Lu et al. recommend. */
  use_lu_lambdas: boolean;
  /**
   * Sample a rectified-flow model: `x_t = (1 − σ)·x_0 + σ·ε`, σ from 1 − 1/T down in even steps, shifted by
   * `flow_shift` (so α_t = 1 − σ and σ_t = σ in the solver's formulas).
   */
  use_flow_sigmas: boolean;
  /** The flow shift s of σ' = s·σ/(1 + (s − 1)·σ); 1 leaves the flow sigmas evenly spaced. */
  flow_shift: number;
  /** Take the flow shift from `setTimesteps({ numInferenceSteps, mu })` (resolution-dependent shifting). */
  use_dynamic_shifting: boolean;
  /** How μ becomes the shift: e^μ (`exponential`, diffusers' only one here) or μ (`linear`, as UniPC's). */
  time_shift_type: 'exponential' | 'linear';
  /** The noise level after the last step: 0, or the smallest training σ. `zero` needs a `++` algorithm. */
  final_sigmas_type: 'zero' | 'sigma_min';
  /**
   * Timesteps whose λ lies below this value are not used (critical for the cosine schedule). `null` means no
   * clipping: diffusers' default `-inf`, which JSON cannot carry; `-Infinity` given here resolves to `null`.
   */
  lambda_min_clipped: number | null;
  /**
   * `learned` or `learned_range` for models that also predict a variance (IDDPM): the model output then has twice
   * the sample's channels and only the prediction half is used. DDPM's fixed variance types load unchanged and mean
   * a plain output, as `null` does.
   */
  variance_type: VarianceType | null;
  /** How `setTimesteps(n)` places its timesteps. */
  timestep_spacing: TimestepSpacing;
  /** Added to every `leading` timestep. */
  steps_offset: number;
}

/** diffusers loads other schedulers' `algorithm_type` `"deis"` as DPM-Solver++. */
const algorithmTypeField: ConfigField<DPMSolverAlgorithmType> = {
  default: 'dpmsolver++',
  parse(value, key) {
    if (value === 'deis') return 'dpmsolver++';
    return configField.oneOf(DPM_SOLVER_ALGORITHM_TYPES, 'dpmsolver++').parse(value, key);
  },
};

/** diffusers loads the solver types of DEIS (`logrho`) and UniPC (`bh1`, `bh2`) as `midpoint`. */
const solverTypeField: ConfigField<DPMSolverType> = {
  default: 'midpoint',
  parse(value, key) {
    if (value === 'logrho' || value === 'bh1' || value === 'bh2') return 'midpoint';
    return configField.oneOf<DPMSolverType>(['midpoint', 'heun'], 'midpoint').parse(value, key);
  },
};

/** A finite number, or `null`/`-Infinity` for "no clipping". */
const lambdaMinClippedField: ConfigField<number | null> = {
  default: null,
  parse(value, key) {
    if (value === null || value === Number.NEGATIVE_INFINITY) return null;
    return configField.number(0).parse(value, key);
  },
};

/** The keys, defaults and checks of {@link DPMSolverMultistepSchedulerConfig}. */
export const DPM_SOLVER_MULTISTEP_CONFIG_SPEC: ConfigSpec<DPMSolverMultistepSchedulerConfig> = {
  ...NOISE_SCHEDULE_SPEC,
  ...THRESHOLDING_SPEC,
  solver_order: configField.number(2, { integer: true, min: 1, max: 3 }),
  prediction_type: configField.oneOf(MULTISTEP_PREDICTION_TYPES, 'epsilon'),
  algorithm_type: algorithmTypeField,
  solver_type: solverTypeField,
  lower_order_final: configField.boolean(true),
  euler_at_final: configField.boolean(false),
  use_karras_sigmas: configField.boolean(false),
  use_exponential_sigmas: configField.boolean(false),
  use_beta_sigmas: configField.boolean(false),
  use_lu_lambdas: configField.boolean(false),
  use_flow_sigmas: configField.boolean(false),
  flow_shift: configField.number(1, { above: 0 }),
  use_dynamic_shifting: configField.boolean(false),
  time_shift_type: configField.oneOf<'exponential' | 'linear'>(['exponential', 'linear'], 'exponential'),
  final_sigmas_type: configField.oneOf<'zero' | 'sigma_min'>(['zero', 'sigma_min'], 'zero'),
  lambda_min_clipped: lambdaMinClippedField,
  variance_type: configField.nullable(configField.oneOf(VARIANCE_TYPES, 'fixed_small')),
  timestep_spacing: configField.oneOf(TIMESTEP_SPACINGS, 'linspace'),
  steps_offset: configField.number(0, { integer: true, min: 0 }),
};

/**
 * The multistep DPM-Solver and DPM-Solver++ (Lu et al. 2022), diffusers' `DPMSolverMultistepScheduler`: high-order
 * exponential-integrator steps for the diffusion ODE (or, with `sde-*`, the SDE), reusing the model outputs of the
 * previous steps, so each step costs one model evaluation. 10–25 steps give good samples.
 *
 * The history of model outputs lives in preallocated buffers that are reused across steps and reset by
 * `setTimesteps`; a step allocates only the returned tensor.
 *
 * Differences from diffusers: with `variance_type` `learned` or `learned_range`, the prediction is the first half of
 * the output's channels (diffusers takes the first 3 channels whatever the sample has); `sde-dpmsolver` with
 * `solver_order: 3` is a config error (diffusers has no third-order SDE step for it and fails at the first
 * third-order step); a zero-length step (the last σ repeated, as with Karras or Lu spacing and
 * `final_sigmas_type: "sigma_min"`) is the identity (diffusers divides 0 by 0 there for heun and third-order
 * steps); `lambda_min_clipped` is `null` rather than `-inf` when unset, so the config stays JSON; `mu` sets the
 * shift of one schedule (diffusers writes e^μ into `config.flow_shift`); combinations diffusers computes without
 * meaning are config errors (flow sigmas with another spacing, `flow_prediction` without flow sigmas or with an ε̂
 * algorithm, dynamic shifting without flow sigmas).
 *
 * @example
 * ```ts
 * const scheduler = new DPMSolverMultistepScheduler({ algorithm_type: 'dpmsolver++', use_karras_sigmas: true });
 * scheduler.setTimesteps(20);
 * for (const t of scheduler.timesteps) {
 *   const eps = await unet(sample, t);
 *   sample = scheduler.step(eps, t, sample).prevSample;
 * }
 * ```
 */
export class DPMSolverMultistepScheduler extends Scheduler<DPMSolverMultistepSchedulerConfig> {
  /** The classes whose configs this one accepts (diffusers' `KarrasDiffusionSchedulers`). */
  static override readonly compatibles: readonly string[] = KARRAS_DIFFUSION_SCHEDULERS;
  /** σ at each step of the current schedule plus the final σ (empty before `setTimesteps`). */
  sigmas: Float64Array = new Float64Array(0);

  private coefficients: AlphaSigmaLambda = alphaSigmaLambda(new Float64Array(0));
  private readonly solverAlphas: Float64Array;
  /** How many model outputs of this run the history holds (diffusers' `lower_order_nums`, capped at the order). */
  private lowerOrderNums = 0;
  /** The converted model outputs, a ring: `history[newest]` is the latest. */
  private history: Float32Array[] = [];
  private newest = 0;
  private thresholdScratch: Float32Array = new Float32Array(0);
  private readonly weights = new Float64Array(5);
  // The buffers of an update (sample, history, noise) and their weights, reused across steps.
  private readonly terms = new Array<Float32Array>(5);
  private readonly termWeights = new Float64Array(5);

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   * @throws ConfigError for contradictory settings (two sigma spacings, `final_sigmas_type: "zero"` without a `++`
   *   algorithm, a third-order `sde-dpmsolver`, flow sigmas with another spacing, `flow_prediction` without flow
   *   sigmas or with an ε̂ algorithm, dynamic shifting without flow sigmas)
   */
  constructor(config: SchedulerConfigInput<DPMSolverMultistepSchedulerConfig> = {}, options?: SchedulerOptions) {
    super('DPMSolverMultistepScheduler', DPM_SOLVER_MULTISTEP_CONFIG_SPEC, config, options);
    const c = this.config;
    this.solverAlphas = solverAlphasCumprod(this.alphasCumprod, c.rescale_betas_zero_snr);
    assertOneSigmaSpacing(c);
    const plusPlus = c.algorithm_type === 'dpmsolver++' || c.algorithm_type === 'sde-dpmsolver++';
    if (!plusPlus && c.final_sigmas_type === 'zero') {
      throw new ConfigError(
        `final_sigmas_type "zero" needs algorithm_type "dpmsolver++" or "sde-dpmsolver++"; with ` +
          `"${c.algorithm_type}" set final_sigmas_type to "sigma_min".`,
      );
    }
    if (c.algorithm_type === 'sde-dpmsolver' && c.solver_order === 3) {
      throw new ConfigError('algorithm_type "sde-dpmsolver" supports solver_order 1 or 2, not 3.');
    }
    checkFlowConfig(this.className, c, plusPlus, c.use_lu_lambdas ? 'use_lu_lambdas' : undefined);
  }

  /**
   * Sets the sampling schedule and clears the multistep history. With `{ timesteps }` the given training
   * timesteps are used (not with Karras, exponential, beta, Lu or flow spacing); with `{ numInferenceSteps, mu }`
   * and `use_dynamic_shifting` the flow shift of this schedule is e^μ.
   *
   * @param steps - the number of steps, or `{ numInferenceSteps, mu? }` / `{ timesteps }`
   */
  setTimesteps(steps: number | MultistepSetTimestepsOptions): void {
    const { numInferenceSteps, timesteps: custom } = this.parseSetTimesteps(steps);
    const c = this.config;
    const spaced =
      c.use_karras_sigmas || c.use_lu_lambdas || c.use_exponential_sigmas || c.use_beta_sigmas || c.use_flow_sigmas;
    if (custom && spaced) {
      throw new InvalidArgumentError(
        'Custom timesteps cannot be combined with Karras, exponential, beta, Lu or flow spacing; pass a step count.',
      );
    }
    const mu = typeof steps === 'number' ? undefined : steps.mu;
    // diffusers' DPM-Solver keeps flow_shift when no μ is given, even with dynamic shifting.
    const shift = mu === undefined ? c.flow_shift : flowShift(this.className, c, mu, c.time_shift_type === 'linear');
    const schedule = c.use_flow_sigmas
      ? this.flowSchedule(numInferenceSteps, shift)
      : this.varianceSchedule(custom ?? this.spacedTimesteps(numInferenceSteps));
    this.timesteps = schedule.timesteps;
    this.sigmas = schedule.sigmas;
    this.numInferenceSteps = schedule.timesteps.length;
    this.coefficients = alphaSigmaLambda(schedule.sigmas, c.use_flow_sigmas);
    this.cursor.reset();
    this.lowerOrderNums = 0;
    this.newest = 0;
  }

  /** The variance-preserving schedule at the spaced timesteps (or per the configured sigma spacing). */
  private varianceSchedule(timesteps: readonly number[]): MultistepSchedule {
    const c = this.config;
    return multistepSchedule(timesteps, {
      alphasCumprod: this.solverAlphas,
      karras: c.use_karras_sigmas,
      luLambdas: c.use_lu_lambdas,
      exponential: c.use_exponential_sigmas,
      beta: c.use_beta_sigmas,
      roundTimesteps: c.beta_schedule !== 'squaredcos_cap_v2',
      finalSigmasType: c.final_sigmas_type,
    });
  }

  /**
   * diffusers' flow schedule of DPM-Solver: σ_i = shift(1 − ℓ_{n−i}) for the points ℓ of linspace(1, 1/T, n + 1), so
   * it starts at shift(1 − 1/T), timesteps σ·T truncated; the final σ is 0 or the training schedule's smallest
   * (variance-preserving) σ, as diffusers does.
   */
  private flowSchedule(n: number, shift: number): MultistepSchedule {
    const T = this.config.num_train_timesteps;
    const sigmas = new Float64Array(n + 1);
    const timesteps: number[] = [];
    for (let i = 0; i < n; i++) {
      const sigma = shiftFlowSigma(1 - flowLinspace(n - i, n, T), shift);
      sigmas[i] = Math.fround(sigma);
      timesteps.push(Math.trunc(sigma * T));
    }
    const alphaBar0 = this.solverAlphas[0];
    sigmas[n] = this.config.final_sigmas_type === 'zero' ? 0 : Math.fround(Math.sqrt((1 - alphaBar0) / alphaBar0));
    return { timesteps, sigmas };
  }

  /** diffusers' spaced timesteps below the λ clip (`docs/math.md` §6). */
  private spacedTimesteps(n: number): number[] {
    const { timestep_spacing, num_train_timesteps: T, steps_offset, lambda_min_clipped } = this.config;
    const last = lambdaClippedLength(this.solverAlphas, lambda_min_clipped);
    return multistepTimesteps(timestep_spacing, n, T, last, steps_offset);
  }

  /**
   * One multistep DPM-Solver step from `timestep` to the next timestep of the schedule. The order used is the
   * configured one once enough history exists (first order on the first step, and at the end per
   * `lower_order_final`, `euler_at_final` and `final_sigmas_type: "zero"`). The `sde-*` algorithms draw noise from
   * `options.generator` (one `randn` of the sample's shape per step, as diffusers) or take `options.noise`.
   *
   * @param modelOutput - ε̂, x̂_0 or v̂ (per `prediction_type`)
   * @param timestep - the current timestep
   * @param sample - x_t
   * @param options - `generator` or `noise` for the `sde-*` algorithms
   */
  step(modelOutput: TensorLike, timestep: number, sample: TensorLike, options: StepOptions = {}): SchedulerOutput {
    const { variance_type } = this.config;
    const learned = variance_type === 'learned' || variance_type === 'learned_range';
    const stride = predictionStride(modelOutput, sample, learned, 'set variance_type to "learned_range" to use them');
    const i = this.cursor.stepIndexFor(timestep);
    const n = this.timesteps.length;
    const { solver_order: solverOrder, lower_order_final, euler_at_final, final_sigmas_type } = this.config;
    this.history = solverHistory(this.history, solverOrder, sample.data.length, this.lowerOrderNums > 0);

    // Lower orders near the end stabilise short schedules (diffusers' `lower_order_final` logic).
    const isLast = i === n - 1;
    const shortRun = lower_order_final && n < 15;
    const firstOrderAtEnd = isLast && (euler_at_final || shortRun || final_sigmas_type === 'zero');
    const secondOrderAtEnd = i === n - 2 && shortRun;

    // m0 (x̂_0 or ε̂ at s0) replaces the oldest output, which this step no longer reads; `newest` moves only once it
    // is known to be finite, so a NumericError leaves the history as it was.
    const slot = (this.newest + 1) % solverOrder;
    this.convertModelOutput(modelOutput, stride, sample, timestep, this.history[slot]);
    this.newest = slot;

    const stochastic = this.config.algorithm_type.startsWith('sde-');
    const noise = stochastic ? this.stepNoise(options, sample) : null;
    const order = multistepOrder(solverOrder, this.lowerOrderNums, firstOrderAtEnd, secondOrderAtEnd);

    // x_t = A·x_s0 + w0·m0 [+ w1·m1] [+ w2·m2] [+ w_z·z], in one pass.
    const { algorithm_type, solver_type } = this.config;
    const weights = dpmSolverWeights(this.weights, this.coefficients, i, order, algorithm_type, solver_type);
    const prev = new Float32Array(sample.data.length);
    combineHistory(prev, weights, sample.data, this.history, this.newest, order, noise, this.terms, this.termWeights);

    this.lowerOrderNums = nextWarmUp(this.coefficients.lambda, i, this.lowerOrderNums, solverOrder);
    this.cursor.advance();
    return { prevSample: new Tensor(prev, sample.dims) };
  }

  /**
   * The forward process at the schedule's sigmas, as diffusers' `add_noise` for this scheduler: x = α·x_0 + σ_t·ε
   * with α, σ_t from the σ of `timesteps` in the current schedule (or of the begin index, when set).
   *
   * @param timestep - one of {@link Scheduler.timesteps}
   */
  protected override forwardProcess(timestep: number): readonly [number, number] {
    return this.forwardProcessAtScheduleSigmas(timestep, this.sigmas, (sigma) =>
      solverAlphaSigma(sigma, this.config.use_flow_sigmas),
    );
  }

  /**
   * m0, the quantity the solver integrates, written into `out`: x̂_0 for the `++` algorithms, ε̂ otherwise
   * (`docs/math.md` §2 with α = α_s0, σ = σ_s0), with dynamic thresholding applied to x̂_0 when enabled.
   */
  private convertModelOutput(
    modelOutput: TensorLike,
    stride: number,
    sample: TensorLike,
    timestep: number,
    out: Float32Array,
  ): void {
    const { prediction_type, algorithm_type } = this.config;
    const s0 = this.cursor.stepIndex as number;
    const dataPrediction = algorithm_type === 'dpmsolver++' || algorithm_type === 'sde-dpmsolver++';
    this.thresholdScratch = solverPrediction(
      modelOutput,
      stride,
      sample,
      timestep,
      this.className,
      this.coefficients.alpha[s0],
      this.coefficients.sigma[s0],
      prediction_type,
      dataPrediction ? 'data' : 'noise',
      this.config,
      this.thresholdScratch,
      out,
    );
  }
}

/**
 * The weights [x_s0, m0, m1, m2, z] of a multistep DPM-Solver step of the given order from schedule index `i` to
 * `i + 1`, in a reused array (`docs/math.md` §11). Each update is written as in the papers, in the data (`++`) or
 * noise prediction D0 = m0 and the divided differences D1, D2 of the history, with the ratios r0 = h_0/h,
 * r1 = h_1/h of the earlier λ steps; the weights of m0…m2 follow by expanding those differences. The EDM solver
 * uses it with α = 1.
 *
 * @param weights - the destination, 5 long
 * @param coefficients - α, σ_t and λ of the schedule
 * @param i - the step's schedule index (s0)
 * @param order - 1, 2 or 3
 * @param algorithm - the solver family
 * @param solverType - the second-order variant
 */
export function dpmSolverWeights(
  weights: Float64Array,
  coefficients: AlphaSigmaLambda,
  i: number,
  order: number,
  algorithm: DPMSolverAlgorithmType,
  solverType: DPMSolverType,
): Float64Array {
  const { alpha, sigma, lambda } = coefficients;
  const alphaT = alpha[i + 1];
  const sigmaT = sigma[i + 1];
  const h = lambda[i + 1] - lambda[i];
  // A zero-length step (a schedule whose last σ repeats, e.g. Karras or Lu spacing with final σ_min) is the
  // identity; the formulas below would divide 0 by 0 (diffusers then returns NaN for orders above 2M midpoint).
  if (h === 0) return setWeights(weights, 1, 0, 0, 0, 0);
  const expMinusH = Math.exp(-h);
  const expm1H = Math.expm1(h);
  const expm1Minus2H = Math.expm1(-2 * h);

  // x_t = A·x_s0 + c0·D0 + c1·D1 + c2·D2 + noiseWeight·z
  let sampleWeight: number;
  let c0: number;
  let c1 = 0;
  let c2 = 0;
  let noiseWeight = 0;
  const midpoint = order === 2 && solverType === 'midpoint';
  switch (algorithm) {
    case 'dpmsolver++':
      // DPM-Solver++ (Lu et al. 2022b): the first-order step (eq. 8, DDIM), the multistep 2M of Algorithm 2
      // (midpoint: c1 = c0/2) and the third-order multistep of the authors' implementation.
      sampleWeight = sigmaT / sigma[i];
      c0 = -alphaT * Math.expm1(-h);
      c1 = midpoint ? 0.5 * c0 : alphaT * (Math.expm1(-h) / h + 1);
      c2 = -alphaT * ((Math.expm1(-h) + h) / (h * h) - 0.5);
      break;
    case 'dpmsolver':
      // DPM-Solver (Lu et al. 2022a): DPM-Solver-1 (again DDIM) and its multistep forms, in ε̂.
      sampleWeight = alphaT / alpha[i];
      c0 = -sigmaT * expm1H;
      c1 = midpoint ? 0.5 * c0 : -sigmaT * (expm1H / h - 1);
      c2 = -sigmaT * ((expm1H - h) / (h * h) - 0.5);
      break;
    case 'sde-dpmsolver++':
      // SDE-DPM-Solver++ (DPM-Solver++ §5, as k-diffusion's dpmpp_2m_sde): the data-prediction solver of the
      // reverse SDE, which decays the sample by e^{−h} more and injects noise σ_t·√(1 − e^{−2h}).
      sampleWeight = (sigmaT / sigma[i]) * expMinusH;
      c0 = -alphaT * expm1Minus2H;
      c1 = midpoint ? 0.5 * c0 : alphaT * (expm1Minus2H / (2 * h) + 1);
      c2 = alphaT * ((-expm1Minus2H - 2 * h) / (4 * h * h) - 0.5);
      noiseWeight = sigmaT * Math.sqrt(-expm1Minus2H);
      break;
    case 'sde-dpmsolver':
      // SDE-DPM-Solver: twice the ε̂ drift of DPM-Solver, noise σ_t·√(e^{2h} − 1).
      sampleWeight = alphaT / alpha[i];
      c0 = -2 * sigmaT * expm1H;
      c1 = midpoint ? 0.5 * c0 : -2 * sigmaT * (expm1H / h - 1);
      noiseWeight = sigmaT * Math.sqrt(Math.expm1(2 * h));
      break;
  }

  if (order === 1) return setWeights(weights, sampleWeight, c0, 0, 0, noiseWeight);
  const h0 = lambda[i] - lambda[i - 1];
  const r0 = h0 / h;
  if (order === 2) {
    // D1 = (m0 − m1)/r0 (Algorithm 2)
    return setWeights(weights, sampleWeight, c0 + c1 / r0, -c1 / r0, 0, noiseWeight);
  }
  // Third order: D1_0 = (m0 − m1)/r0, D1_1 = (m1 − m2)/r1, D1 = D1_0 + r0/(r0 + r1)·(D1_0 − D1_1),
  // D2 = (D1_0 − D1_1)/(r0 + r1); so c1·D1 + c2·D2 = u·D1_0 + v·D1_1.
  const r1 = (lambda[i - 1] - lambda[i - 2]) / h;
  const u = c1 * (1 + r0 / (r0 + r1)) + c2 / (r0 + r1);
  const v = -c1 * (r0 / (r0 + r1)) - c2 / (r0 + r1);
  return setWeights(weights, sampleWeight, c0 + u / r0, -u / r0 + v / r1, -v / r1, noiseWeight);
}

/** Fills the reused weight array [x_s0, m0, m1, m2, noise]. */
function setWeights(weights: Float64Array, x: number, m0: number, m1: number, m2: number, noise: number): Float64Array {
  weights[0] = x;
  weights[1] = m0;
  weights[2] = m1;
  weights[3] = m2;
  weights[4] = noise;
  return weights;
}

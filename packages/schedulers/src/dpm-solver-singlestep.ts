import { ConfigError, InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import {
  BETA_SCHEDULE_SPEC,
  type ConfigField,
  type ConfigSpec,
  configField,
  KARRAS_DIFFUSION_SCHEDULERS,
  type SchedulerConfigInput,
} from './config.js';
import type { VarianceType } from './ddpm.js';
import { DPM_SOLVER_MULTISTEP_CONFIG_SPEC, type DPMSolverType } from './dpm-solver-multistep.js';
import {
  type AlphaSigmaLambda,
  alphaSigmaLambda,
  assertOneSigmaSpacing,
  combineHistory,
  lambdaClippedLength,
  multistepSchedule,
  multistepTimesteps,
  predictionStride,
  solverAlphaSigma,
  solverHistory,
  solverPrediction,
} from './multistep.js';
import { PREDICTION_TYPES, type PredictionType } from './prediction.js';
import type { BetaScheduleConfig } from './schedule.js';
import {
  Scheduler,
  type SchedulerOptions,
  type SchedulerOutput,
  type SetTimestepsOptions,
  type StepOptions,
} from './scheduler.js';
import { THRESHOLDING_SPEC, type ThresholdingConfig } from './thresholding.js';

/**
 * The singlestep DPM-Solver (Lu et al. 2022, "DPM-Solver", Algorithms 1 and 2) and DPM-Solver++ (Lu et al. 2022,
 * "DPM-Solver++", Algorithm 1), diffusers' `DPMSolverSinglestepScheduler`, the "DPM++ 2S" of UIs.
 *
 * Notation as in `dpm-solver-multistep.ts`: `x_t = α_t·x_0 + σ_t·ε` with `α = 1/√(σ²+1)`, `σ_t = σ·α` for the
 * schedule's noise level σ, and `λ = log(α/σ_t)`. A k-th order singlestep solver spends k model evaluations on one
 * step from s (the group's start) to t, evaluating the model at the intermediate schedule points it passes: the
 * schedule's steps are grouped as the order list says (`[1, 2, 1, 2, …]` for order 2), each group starting from
 * the sample where its first-order step began.
 */

/** diffusers' `algorithm_type` for the singlestep solver (it has no `sde-dpmsolver`). */
export type DPMSolverSinglestepAlgorithmType = 'dpmsolver' | 'dpmsolver++' | 'sde-dpmsolver++';

/** All values `algorithm_type` accepts (diffusers also maps DEIS's `"deis"` to `"dpmsolver++"`). */
export const DPM_SOLVER_SINGLESTEP_ALGORITHM_TYPES: readonly DPMSolverSinglestepAlgorithmType[] = [
  'dpmsolver',
  'dpmsolver++',
  'sde-dpmsolver++',
];

/** The config of {@link DPMSolverSinglestepScheduler}: diffusers' `DPMSolverSinglestepScheduler` keys and defaults. */
export interface DPMSolverSinglestepSchedulerConfig extends BetaScheduleConfig, ThresholdingConfig {
  /** The order of the singlestep solver: 1, 2 or 3 model evaluations per solver step. */
  solver_order: number;
  /** What the model predicts. */
  prediction_type: PredictionType;
  /** The solver family; `dpmsolver` is deprecated in diffusers. */
  algorithm_type: DPMSolverSinglestepAlgorithmType;
  /** The second- and third-order variant; DEIS's `logrho` and UniPC's `bh1`, `bh2` load as `midpoint`. */
  solver_type: DPMSolverType;
  /**
   * End on lower orders (a last group that fits the remaining steps, and a first-order last step). It is in effect
   * whatever its value when the step count is not a multiple of `solver_order` or `final_sigmas_type` is `zero`,
   * where diffusers turns it on.
   */
  lower_order_final: boolean;
  /** Space the noise levels as Karras et al. (2022), eq. 5. */
  use_karras_sigmas: boolean;
  /** Space the noise levels evenly in log σ. */
  use_exponential_sigmas: boolean;
  /** Place the noise levels at Beta(0.6, 0.6) quantiles (Lee et al. 2024). */
  use_beta_sigmas: boolean;
  /** The noise level after the last step: 0, or the smallest training σ. `zero` needs a `++` algorithm. */
  final_sigmas_type: 'zero' | 'sigma_min';
  /** Timesteps whose λ lies below this value are not used; `null` (diffusers' `-inf`) means no clipping. */
  lambda_min_clipped: number | null;
  /**
   * `learned` / `learned_range` for models that also predict a variance (only the prediction half of the channels
   * is used); DDPM's fixed types load as a plain output.
   */
  variance_type: VarianceType | null;
}

/** diffusers loads other schedulers' `algorithm_type` `"deis"` as DPM-Solver++. */
const algorithmTypeField: ConfigField<DPMSolverSinglestepAlgorithmType> = {
  default: 'dpmsolver++',
  parse(value, key) {
    if (value === 'deis') return 'dpmsolver++';
    return configField.oneOf(DPM_SOLVER_SINGLESTEP_ALGORITHM_TYPES, 'dpmsolver++').parse(value, key);
  },
};

/** The keys, defaults and checks of {@link DPMSolverSinglestepSchedulerConfig}. */
export const DPM_SOLVER_SINGLESTEP_CONFIG_SPEC: ConfigSpec<DPMSolverSinglestepSchedulerConfig> = {
  ...BETA_SCHEDULE_SPEC,
  ...THRESHOLDING_SPEC,
  solver_order: configField.number(2, { integer: true, min: 1, max: 3 }),
  prediction_type: configField.oneOf(PREDICTION_TYPES, 'epsilon'),
  algorithm_type: algorithmTypeField,
  solver_type: DPM_SOLVER_MULTISTEP_CONFIG_SPEC.solver_type,
  lower_order_final: configField.boolean(false),
  use_karras_sigmas: configField.boolean(false),
  use_exponential_sigmas: configField.boolean(false),
  use_beta_sigmas: configField.boolean(false),
  final_sigmas_type: configField.oneOf<'zero' | 'sigma_min'>(['zero', 'sigma_min'], 'zero'),
  lambda_min_clipped: DPM_SOLVER_MULTISTEP_CONFIG_SPEC.lambda_min_clipped,
  variance_type: DPM_SOLVER_MULTISTEP_CONFIG_SPEC.variance_type,
};

/**
 * The solver order of each step of an n-step run (diffusers' `get_order_list`): repeated groups `[1, 2, …, k]`;
 * with `lowerOrderFinal` the last group is shortened to the steps that remain, or, when the groups fit exactly,
 * the last one ends on a first-order step.
 *
 * @param n - the number of steps
 * @param order - the solver order k
 * @param lowerOrderFinal - whether to end on lower orders
 */
export function singlestepOrders(n: number, order: number, lowerOrderFinal: boolean): number[] {
  const group = Array.from({ length: order }, (_, i) => i + 1);
  const remainder = n % order;
  const orders: number[] = [];
  if (!lowerOrderFinal) {
    for (let i = 0; i < n; i++) orders.push(group[i % order]);
    return orders;
  }
  // Whole groups, then the remainder as a shorter group; with no remainder the last whole group becomes
  // [1, …, k − 1] and a first-order step ([1, 2, 1] instead of [1, 2, 3]).
  const whole = Math.floor(n / order) - (remainder === 0 ? 1 : 0);
  for (let g = 0; g < whole; g++) orders.push(...group);
  if (remainder === 0) orders.push(...group.slice(0, order - 1), 1);
  else orders.push(...group.slice(0, remainder));
  return orders;
}

/**
 * The singlestep DPM-Solver and DPM-Solver++ (Lu et al. 2022), diffusers' `DPMSolverSinglestepScheduler` ("DPM++ 2S"
 * with the defaults, "DPM++ 2S Karras" with `use_karras_sigmas`). Each solver step of order k goes from the group's
 * starting sample to the k-th next noise level with the model outputs evaluated along the way (Lu et al. 2022a,
 * Algorithm 1 with r₁ = the intermediate point's place in λ; DPM-Solver++(2S) of Lu et al. 2022b, Algorithm 1), so
 * one `step` per timestep and one model evaluation per step, like the multistep solver, but with the history reset
 * at every group.
 *
 * Differences from diffusers: `lower_order_final` is not rewritten in the config when diffusers would switch it on
 * (an odd step count, or `final_sigmas_type: "zero"`); the run behaves as if it were on, and a later run with a step
 * count that allows `false` honours it (diffusers keeps it on from then on). A step whose λ interval is empty (a
 * noise level repeated by rounding) falls back to the first-order formula instead of dividing 0 by 0. Dynamic
 * thresholding with `algorithm_type: "dpmsolver"` uses the step's α and σ (diffusers indexes a table with `None`
 * there and fails). `use_flow_sigmas` is not supported.
 *
 * @example
 * ```ts
 * const scheduler = DPMSolverSinglestepScheduler.fromConfig({ ...sdConfig, use_karras_sigmas: true });
 * scheduler.setTimesteps(20);
 * for (const t of scheduler.timesteps) {
 *   const eps = await unet(sample, t);
 *   sample = scheduler.step(eps, t, sample).prevSample;
 * }
 * ```
 */
export class DPMSolverSinglestepScheduler extends Scheduler<DPMSolverSinglestepSchedulerConfig> {
  /** The classes whose configs this one accepts (diffusers' `KarrasDiffusionSchedulers`). */
  static override readonly compatibles: readonly string[] = KARRAS_DIFFUSION_SCHEDULERS;
  /** σ at each step of the current schedule plus the final σ (empty before `setTimesteps`). */
  sigmas: Float64Array = new Float64Array(0);
  /** The solver order of each step of the current schedule (diffusers' `order_list`). */
  orderList: readonly number[] = [];

  private coefficients: AlphaSigmaLambda = alphaSigmaLambda(new Float64Array(0));
  /** How many model outputs of this run the history holds, capped at the order. */
  private filled = 0;
  /** The converted model outputs, a ring: `history[newest]` is the latest. */
  private history: Float32Array[] = [];
  private newest = 0;
  /** The sample the current group started from (diffusers' `self.sample`). */
  private groupStart = new Float32Array(0);
  private thresholdScratch: Float32Array = new Float32Array(0);
  private readonly weights = new Float64Array(5);
  // The buffers of an update (group start, outputs, noise) and their weights, reused across steps.
  private readonly terms = new Array<Float32Array>(5);
  private readonly termWeights = new Float64Array(5);

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   * @throws ConfigError for contradictory settings (two sigma spacings, `final_sigmas_type: "zero"` without a `++`
   *   algorithm, flow sigmas)
   */
  constructor(config: SchedulerConfigInput<DPMSolverSinglestepSchedulerConfig> = {}, options?: SchedulerOptions) {
    if (config && (config as Record<string, unknown>).use_flow_sigmas === true) {
      throw new ConfigError('DPMSolverSinglestepScheduler does not support use_flow_sigmas (flow-matching models).');
    }
    super('DPMSolverSinglestepScheduler', DPM_SOLVER_SINGLESTEP_CONFIG_SPEC, config, options);
    const c = this.config;
    assertOneSigmaSpacing(c);
    if (c.algorithm_type === 'dpmsolver' && c.final_sigmas_type === 'zero') {
      throw new ConfigError(
        'final_sigmas_type "zero" needs algorithm_type "dpmsolver++" or "sde-dpmsolver++"; with "dpmsolver" set ' +
          'final_sigmas_type to "sigma_min".',
      );
    }
  }

  /**
   * Sets the sampling schedule (diffusers' `linspace` timesteps, or Karras / exponential / beta noise levels, or
   * explicit training timesteps), the order of each step, and clears the history.
   *
   * @param steps - the number of steps, or `{ numInferenceSteps }` / `{ timesteps }`
   */
  setTimesteps(steps: number | SetTimestepsOptions): void {
    const { numInferenceSteps, timesteps: custom } = this.parseSetTimesteps(steps);
    const c = this.config;
    if (custom && (c.use_karras_sigmas || c.use_exponential_sigmas || c.use_beta_sigmas)) {
      throw new InvalidArgumentError(
        'Custom timesteps cannot be combined with Karras, exponential or beta sigmas; pass a step count.',
      );
    }
    const schedule = multistepSchedule(custom ?? this.spacedTimesteps(numInferenceSteps), {
      alphasCumprod: this.alphasCumprod,
      karras: c.use_karras_sigmas,
      luLambdas: false,
      exponential: c.use_exponential_sigmas,
      beta: c.use_beta_sigmas,
      roundTimesteps: true,
      finalSigmasType: c.final_sigmas_type,
    });
    const n = schedule.timesteps.length;
    this.timesteps = schedule.timesteps;
    this.sigmas = schedule.sigmas;
    this.numInferenceSteps = n;
    this.coefficients = alphaSigmaLambda(schedule.sigmas);
    const lowerOrderFinal = c.lower_order_final || n % c.solver_order !== 0 || c.final_sigmas_type === 'zero';
    const orders = singlestepOrders(n, c.solver_order, lowerOrderFinal);
    if (c.final_sigmas_type === 'zero') orders[n - 1] = 1;
    this.orderList = orders;
    this.cursor.reset();
    this.filled = 0;
    this.newest = 0;
  }

  /**
   * One step of the current group: the model output joins the history; a first-order step remembers the sample
   * as the group's start; the update goes from that start to the next noise level with the group's outputs. The
   * order is the order list's, lowered when a run entered mid-group (img2img). `sde-dpmsolver++` draws one
   * `randn` of the sample's shape per step from `options.generator`, or takes `options.noise`.
   *
   * @param modelOutput - ε̂, x̂_0 or v̂ (per `prediction_type`)
   * @param timestep - the current timestep
   * @param sample - x_t
   * @param options - `generator` or `noise` for `sde-dpmsolver++`
   */
  step(modelOutput: TensorLike, timestep: number, sample: TensorLike, options: StepOptions = {}): SchedulerOutput {
    const { variance_type } = this.config;
    const learned = variance_type === 'learned' || variance_type === 'learned_range';
    const stride = predictionStride(modelOutput, sample, learned, 'set variance_type to "learned_range" to use them');
    const i = this.cursor.stepIndexFor(timestep);
    const solverOrder = this.config.solver_order;
    const size = sample.data.length;
    this.history = solverHistory(this.history, solverOrder, size, this.filled > 0);
    if (this.groupStart.length !== size) this.groupStart = new Float32Array(size);
    // A run that enters mid-group (img2img) has fewer outputs than the group's order: lower it.
    const order = Math.min(this.orderList[i], this.filled + 1);
    const slot = (this.newest + 1) % solverOrder;
    this.convertModelOutput(modelOutput, stride, sample, timestep, this.history[slot], order === 1);
    this.newest = slot;
    this.filled = Math.min(this.filled + 1, solverOrder);

    const stochastic = this.config.algorithm_type === 'sde-dpmsolver++';
    const noise = stochastic ? this.stepNoise(options, sample) : null;
    // x_t = A·x_s + w_0·m_0 + … + w_z·z (m_0 the newest output), in one pass.
    const weights = this.updateWeights(order);
    const { groupStart, history, newest, terms, termWeights } = this;
    const prev = new Float32Array(size);
    combineHistory(prev, weights, groupStart, history, newest, order, noise, terms, termWeights);
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
    return this.forwardProcessAtScheduleSigmas(timestep, this.sigmas, (sigma) => solverAlphaSigma(sigma, false));
  }

  /** diffusers' timesteps: `round(linspace(0, last − 1, n + 1))` reversed without its final 0, λ-clipped. */
  private spacedTimesteps(n: number): number[] {
    const { num_train_timesteps: T, lambda_min_clipped } = this.config;
    const last = lambdaClippedLength(this.alphasCumprod, lambda_min_clipped);
    return multistepTimesteps('linspace', n, T, last, 0);
  }

  /**
   * Writes the quantity the solver integrates into `out` (x̂_0 for the `++` algorithms, ε̂ for `dpmsolver`,
   * `docs/math.md` §2 at the step's α and σ, thresholded when enabled) and, at a group's first step, keeps the
   * sample as the group start x_s.
   */
  private convertModelOutput(
    modelOutput: TensorLike,
    stride: number,
    sample: TensorLike,
    timestep: number,
    out: Float32Array,
    startsGroup: boolean,
  ): void {
    const i = this.cursor.stepIndex as number;
    this.thresholdScratch = solverPrediction(
      modelOutput,
      stride,
      sample,
      timestep,
      this.className,
      this.coefficients.alpha[i],
      this.coefficients.sigma[i],
      this.config.prediction_type,
      this.config.algorithm_type === 'dpmsolver' ? 'noise' : 'data',
      this.config,
      this.thresholdScratch,
      out,
    );
    if (startsGroup) this.groupStart.set(sample.data);
  }

  /**
   * The weights of the group start x_s, the model outputs newest first (m_0 at the current point, m_1, m_2 at the
   * earlier points of the group, m_{k−1} at s) and the noise in x_t, for a solver step of the given order. Each
   * update is written as in diffusers (Lu et al.'s D0, D1, D2 in terms of r_i = h_i/h); the weights of m_0…m_2
   * follow by expanding those differences.
   */
  private updateWeights(order: number): Float64Array {
    const { alpha, sigma, lambda } = this.coefficients;
    const i = this.cursor.stepIndex as number;
    const s = i - order + 1;
    const { algorithm_type: algorithm, solver_type: solverType } = this.config;
    const alphaT = alpha[i + 1];
    const sigmaT = sigma[i + 1];
    const h = lambda[i + 1] - lambda[s];
    const weights = this.weights.fill(0);
    // An empty λ interval (a noise level repeated by rounding) is the identity.
    if (h === 0) {
      weights[0] = 1;
      return weights;
    }
    // x_t = A·x_s + c0·D0 + c1·D1 (+ c2·D2): the first-order (DDIM) part and the Taylor terms of each family
    // (`docs/math.md` §11; Lu et al. 2022b, Algorithm 1 for the `++` second order).
    let sampleWeight: number;
    let c0: number;
    let c1: number;
    let c2: number;
    let noiseWeight = 0;
    switch (algorithm) {
      case 'dpmsolver++':
        sampleWeight = sigmaT / sigma[s];
        c0 = -alphaT * Math.expm1(-h);
        c1 = alphaT * (Math.expm1(-h) / h + 1);
        c2 = -alphaT * ((Math.expm1(-h) + h) / (h * h) - 0.5);
        break;
      case 'dpmsolver':
        sampleWeight = alpha[i + 1] / alpha[s];
        c0 = -sigmaT * Math.expm1(h);
        c1 = -sigmaT * (Math.expm1(h) / h - 1);
        c2 = -sigmaT * ((Math.expm1(h) - h) / (h * h) - 0.5);
        break;
      case 'sde-dpmsolver++':
        sampleWeight = (sigmaT / sigma[s]) * Math.exp(-h);
        c0 = -alphaT * Math.expm1(-2 * h);
        c1 = alphaT * (Math.expm1(-2 * h) / (2 * h) + 1);
        c2 = alphaT * ((-Math.expm1(-2 * h) - 2 * h) / (4 * h * h) - 0.5);
        noiseWeight = sigmaT * Math.sqrt(-Math.expm1(-2 * h));
        break;
    }
    weights[0] = sampleWeight;
    weights[4] = noiseWeight;
    const midpoint = solverType === 'midpoint';
    if (order === 2) {
      // D0 = m_1 (at s), D1 = (m_0 − m_1)/r0 with r0 = (λ_i − λ_s)/h.
      const r0 = (lambda[i] - lambda[s]) / h;
      // The midpoint rule of order 2 halves the first-order weight (Lu et al. 2022b, Algorithm 1).
      const d1 = midpoint ? 0.5 * c0 : c1;
      if (r0 === 0) {
        weights[2] = c0;
        return weights;
      }
      weights[1] = d1 / r0;
      weights[2] = c0 - d1 / r0;
      return weights;
    }
    if (order === 3) {
      // D0 = m_2 (at s); D1_0 = (m_1 − m_2)/r1, D1_1 = (m_0 − m_2)/r0; midpoint uses c1·D1_1, heun c1·D1 + c2·D2
      // with D1 = (r0·D1_0 − r1·D1_1)/(r0 − r1), D2 = 2(D1_1 − D1_0)/(r0 − r1).
      const r0 = (lambda[i] - lambda[s]) / h;
      const r1 = (lambda[i - 1] - lambda[s]) / h;
      if (r0 === 0 || r1 === 0 || r0 === r1) {
        weights[3] = c0;
        return weights;
      }
      const onD11 = midpoint ? c1 : (-c1 * r1 + 2 * c2) / (r0 - r1);
      const onD10 = midpoint ? 0 : (c1 * r0 - 2 * c2) / (r0 - r1);
      weights[1] = onD11 / r0;
      weights[2] = onD10 / r1;
      weights[3] = c0 - onD11 / r0 - onD10 / r1;
      return weights;
    }
    weights[1] = c0;
    return weights;
  }
}

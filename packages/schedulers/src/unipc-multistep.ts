import { ConfigError, InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import {
  type ConfigField,
  type ConfigSpec,
  configField,
  KARRAS_DIFFUSION_SCHEDULERS,
  NOISE_SCHEDULE_SPEC,
  type SchedulerConfigInput,
} from './config.js';
import { linearCombination } from './linear-combination.js';
import {
  type AlphaSigmaLambda,
  alphaSigmaLambda,
  assertOneSigmaSpacing,
  checkFlowConfig,
  flowLinspace,
  flowShift,
  MULTISTEP_PREDICTION_TYPES,
  type MultistepPredictionType,
  type MultistepSchedule,
  type MultistepSetTimestepsOptions,
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
import { Scheduler, type SchedulerOptions, type SchedulerOutput } from './scheduler.js';
import { karrasSigmas, sigmasFromAlphasCumprod } from './sigmas.js';
import { THRESHOLDING_SPEC, type ThresholdingConfig } from './thresholding.js';

/**
 * UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion
 * Models"). Notation as in `dpm-solver-multistep.ts`: `x_t = α_t·x_0 + σ_t·ε`, `λ = log(α/σ)`, `h` the λ step.
 * With `predict_x0` the solver integrates the data prediction x̂_0 (in `hh = −h`), otherwise ε̂ (in `hh = h`).
 */

/** diffusers' `solver_type` for UniPC: the choice of B(h) in the order conditions. */
export type UniPCSolverType = 'bh1' | 'bh2';

/** The config of {@link UniPCMultistepScheduler}: diffusers' `UniPCMultistepScheduler` keys and defaults. */
export interface UniPCMultistepSchedulerConfig extends NoiseScheduleConfig, ThresholdingConfig {
  /** The order p of the predictor; with the corrector the accuracy order is p + 1. */
  solver_order: number;
  /** What the model predicts (`flow_prediction` needs `use_flow_sigmas` and `predict_x0`). */
  prediction_type: MultistepPredictionType;
  /** Integrate the data prediction x̂_0 (UniPC's default) rather than ε̂. */
  predict_x0: boolean;
  /**
   * B(h) = h (`bh1`, for unconditional sampling with few steps) or e^h − 1 (`bh2`); the solver types of other
   * schedulers load as `bh2`.
   */
  solver_type: UniPCSolverType;
  /** Lower the order of the final steps when there are fewer than 15 steps. */
  lower_order_final: boolean;
  /** Step indices after which the corrector is skipped (it corrects the sample the next model call sees). */
  disable_corrector: number[];
  /** Space the noise levels as Karras et al. (2022), eq. 5. */
  use_karras_sigmas: boolean;
  /** Space the noise levels evenly in log σ. */
  use_exponential_sigmas: boolean;
  /** Place the noise levels at Beta(0.6, 0.6) quantiles (Lee et al. 2024). */
  use_beta_sigmas: boolean;
  /**
   * Sample a rectified-flow model: `x_t = (1 − σ)·x_0 + σ·ε` with σ from 1 down in even steps, shifted by
   * `flow_shift` (or by μ with dynamic shifting); with `use_karras_sigmas` the Karras levels σ_K map to
   * σ = σ_K/(1 + σ_K) instead.
   */
  use_flow_sigmas: boolean;
  /** The flow shift s of σ' = s·σ/(1 + (s − 1)·σ); 1 leaves the flow sigmas evenly spaced. */
  flow_shift: number;
  /** Shift the flow sigmas by `setTimesteps({ numInferenceSteps, mu })`'s μ instead of `flow_shift`. */
  use_dynamic_shifting: boolean;
  /** The dynamic shift: s = e^μ (`exponential`) or s = μ (`linear`). */
  time_shift_type: 'exponential' | 'linear';
  /** Stretch the shifted flow sigmas so that the last one is this value, in (0, 1) (LTX-Video); `null`: no stretch. */
  shift_terminal: number | null;
  /** diffusers' external predictor (a scheduler object); only `null`, its default, is supported. */
  solver_p: null;
  /** How `setTimesteps(n)` places its timesteps. */
  timestep_spacing: TimestepSpacing;
  /** Added to every `leading` timestep. */
  steps_offset: number;
  /** The noise level after the last step: 0, or the smallest σ of the schedule. */
  final_sigmas_type: 'zero' | 'sigma_min';
  /** The smallest σ of Karras/exponential/beta spacing (`null`: the training schedule's). */
  sigma_min: number | null;
  /** The largest σ of Karras/exponential/beta spacing (`null`: the training schedule's). */
  sigma_max: number | null;
}

/** diffusers loads the solver types of DPM-Solver (`midpoint`, `heun`) and DEIS (`logrho`) as `bh2`. */
const solverTypeField: ConfigField<UniPCSolverType> = {
  default: 'bh2',
  parse(value, key) {
    if (value === 'midpoint' || value === 'heun' || value === 'logrho') return 'bh2';
    return configField.oneOf<UniPCSolverType>(['bh1', 'bh2'], 'bh2').parse(value, key);
  },
};

/** A list of step indices. */
const stepIndexListField: ConfigField<number[]> = {
  default: [],
  parse(value, key) {
    if (!Array.isArray(value) || !value.every((v) => Number.isInteger(v) && v >= 0)) {
      throw new ConfigError(
        `Config key "${key}" must be a list of step indices (integers >= 0), got ${JSON.stringify(value)}.`,
      );
    }
    return [...value];
  },
};

/** `solver_p` holds a scheduler object in diffusers, which no JSON config carries: only `null` loads. */
const solverPField: ConfigField<null> = {
  default: null,
  parse(value, key) {
    if (value !== null) {
      throw new ConfigError(
        `Config key "${key}" (another scheduler as UniPC's predictor) is not supported; remove it or set it to null.`,
      );
    }
    return null;
  },
};

/** The keys, defaults and checks of {@link UniPCMultistepSchedulerConfig}. */
export const UNIPC_MULTISTEP_CONFIG_SPEC: ConfigSpec<UniPCMultistepSchedulerConfig> = {
  ...NOISE_SCHEDULE_SPEC,
  ...THRESHOLDING_SPEC,
  solver_order: configField.number(2, { integer: true, min: 1, max: 10 }),
  prediction_type: configField.oneOf(MULTISTEP_PREDICTION_TYPES, 'epsilon'),
  predict_x0: configField.boolean(true),
  solver_type: solverTypeField,
  lower_order_final: configField.boolean(true),
  disable_corrector: stepIndexListField,
  use_karras_sigmas: configField.boolean(false),
  use_exponential_sigmas: configField.boolean(false),
  use_beta_sigmas: configField.boolean(false),
  use_flow_sigmas: configField.boolean(false),
  flow_shift: configField.number(1, { above: 0 }),
  use_dynamic_shifting: configField.boolean(false),
  time_shift_type: configField.oneOf<'exponential' | 'linear'>(['exponential', 'linear'], 'exponential'),
  shift_terminal: configField.nullable(configField.number(0, { above: 0, max: 1 - Number.EPSILON })),
  solver_p: solverPField,
  timestep_spacing: configField.oneOf(TIMESTEP_SPACINGS, 'linspace'),
  steps_offset: configField.number(0, { integer: true, min: 0 }),
  final_sigmas_type: configField.oneOf<'zero' | 'sigma_min'>(['zero', 'sigma_min'], 'zero'),
  sigma_min: configField.nullable(configField.number(0, { above: 0 })),
  sigma_max: configField.nullable(configField.number(0, { above: 0 })),
};

/**
 * The unified predictor-corrector multistep sampler UniPC (Zhao et al. 2023), diffusers' `UniPCMultistepScheduler`.
 * Each step first corrects the current sample with the model output just computed (UniC, which costs no extra
 * model call), then predicts the next sample from the corrected one (UniP, order p). 5–10 steps give usable
 * samples.
 *
 * The history of model outputs and the sample before the last prediction live in preallocated buffers reused
 * across steps and reset by `setTimesteps`; a step allocates only the returned tensor.
 *
 * Not supported from diffusers: `solver_p` (another scheduler as predictor), `setTimesteps`' custom `sigmas`.
 * Differences: `predict_x0: false` with `final_sigmas_type: "zero"` is a config error (diffusers returns NaN at the
 * last step); a zero-length step (the last σ repeated) is the identity; combinations diffusers accepts and then
 * ignores or computes without meaning are config errors (flow sigmas with exponential or beta spacing; with
 * Karras spacing, a flow shift, dynamic shifting or `shift_terminal`; `flow_prediction` without flow sigmas or
 * `predict_x0`; `shift_terminal` or dynamic shifting without flow sigmas).
 *
 * @example
 * ```ts
 * const scheduler = new UniPCMultistepScheduler({ solver_order: 2, use_karras_sigmas: true });
 * scheduler.setTimesteps(10);
 * for (const t of scheduler.timesteps) {
 *   const eps = await unet(sample, t);
 *   sample = scheduler.step(eps, t, sample).prevSample;
 * }
 * ```
 */
export class UniPCMultistepScheduler extends Scheduler<UniPCMultistepSchedulerConfig> {
  /** The classes whose configs this one accepts (diffusers' `KarrasDiffusionSchedulers`). */
  static override readonly compatibles: readonly string[] = KARRAS_DIFFUSION_SCHEDULERS;
  /** σ at each step of the current schedule plus the final σ (empty before `setTimesteps`). */
  sigmas: Float64Array = new Float64Array(0);

  private coefficients: AlphaSigmaLambda = alphaSigmaLambda(new Float64Array(0));
  private readonly solverAlphas: Float64Array;
  /** How many model outputs of this run the history holds, capped at the order. */
  private lowerOrderNums = 0;
  /** The predictor order of the previous step, which the corrector of this step matches. */
  private lastOrder = 0;
  /** Converted model outputs, a ring of `solver_order + 1` (the corrector needs p old ones and the new one). */
  private history: Float32Array[] = [];
  private newest = 0;
  /** The sample the last prediction started from (after its correction); `hasLastSample` says if it is set. */
  private lastSample = new Float32Array(0);
  private hasLastSample = false;
  private thresholdScratch: Float32Array = new Float32Array(0);
  // Scratch for the small linear systems of the order conditions (at most (solver_order)² entries).
  private readonly rks: Float64Array;
  private readonly rhs: Float64Array;
  private readonly matrix: Float64Array;
  private readonly rhos: Float64Array;
  private readonly weights: Float64Array;
  // The buffers an update combines (the sample, then model outputs), reused across steps.
  private readonly terms: Float32Array[];
  /** h·φ_1 = e^{hh} − 1 and B(h) of the step {@link UniPCMultistepScheduler.orderConditions} last set up. */
  private hPhi1 = 0;
  private bOfH = 0;

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   * @throws ConfigError for two sigma spacings at once, `final_sigmas_type: "zero"` with `predict_x0: false`, or
   *   flow-matching settings that contradict each other
   */
  constructor(config: SchedulerConfigInput<UniPCMultistepSchedulerConfig> = {}, options?: SchedulerOptions) {
    super('UniPCMultistepScheduler', UNIPC_MULTISTEP_CONFIG_SPEC, config, options);
    const c = this.config;
    assertOneSigmaSpacing(c);
    if (!c.predict_x0 && c.final_sigmas_type === 'zero') {
      // The ε̂ update's last step would multiply σ_t = 0 by e^h = ∞ (diffusers returns NaN there).
      throw new ConfigError(
        'final_sigmas_type "zero" needs predict_x0: true; with predict_x0 false set final_sigmas_type to "sigma_min".',
      );
    }
    checkFlowConfig(this.className, c, c.predict_x0, undefined, true);
    if (c.shift_terminal !== null && !c.use_flow_sigmas) {
      throw new ConfigError(
        'shift_terminal stretches flow-matching sigmas; set use_flow_sigmas too, or set it to null.',
      );
    }
    if (c.use_flow_sigmas && c.use_karras_sigmas) {
      const ignored = c.use_dynamic_shifting
        ? 'use_dynamic_shifting'
        : c.shift_terminal !== null
          ? 'shift_terminal'
          : c.flow_shift !== 1
            ? `flow_shift ${c.flow_shift}`
            : undefined;
      if (ignored) {
        throw new ConfigError(
          `Flow sigmas with use_karras_sigmas are σ/(1 + σ) of Karras levels, which ${ignored} does not shift; ` +
            'turn off use_karras_sigmas or the shift.',
        );
      }
    }
    this.solverAlphas = solverAlphasCumprod(this.alphasCumprod, c.rescale_betas_zero_snr);
    const p = c.solver_order;
    this.rks = new Float64Array(p);
    this.rhs = new Float64Array(p);
    this.matrix = new Float64Array(p * p);
    this.rhos = new Float64Array(p);
    this.weights = new Float64Array(p + 2);
    this.terms = new Array<Float32Array>(p + 2);
  }

  /**
   * Sets the sampling schedule and clears the multistep history and the corrector's state.
   *
   * @param steps - the number of steps, or `{ numInferenceSteps, mu? }` (μ: the flow shift e^μ or μ of dynamic
   *   shifting, required then) / `{ timesteps }` (not with a sigma spacing)
   */
  setTimesteps(steps: number | MultistepSetTimestepsOptions): void {
    const { numInferenceSteps: n, timesteps: custom } = this.parseSetTimesteps(steps);
    const c = this.config;
    if (custom && (c.use_karras_sigmas || c.use_exponential_sigmas || c.use_beta_sigmas || c.use_flow_sigmas)) {
      throw new InvalidArgumentError(
        'Custom timesteps cannot be combined with Karras, exponential, beta or flow spacing; pass a step count.',
      );
    }
    const mu = typeof steps === 'number' ? undefined : steps.mu;
    const shift = flowShift(this.className, c, mu, c.time_shift_type === 'linear');
    const T = c.num_train_timesteps;
    const schedule = !c.use_flow_sigmas
      ? multistepSchedule(custom ?? multistepTimesteps(c.timestep_spacing, n, T, T, c.steps_offset), {
          alphasCumprod: this.solverAlphas,
          karras: c.use_karras_sigmas,
          luLambdas: false,
          exponential: c.use_exponential_sigmas,
          beta: c.use_beta_sigmas,
          roundTimesteps: true,
          finalSigmasType: c.final_sigmas_type,
          sigmaMin: c.sigma_min,
          sigmaMax: c.sigma_max,
        })
      : c.use_karras_sigmas
        ? this.flowKarrasSchedule(n)
        : this.flowSchedule(n, shift);
    this.timesteps = schedule.timesteps;
    this.sigmas = schedule.sigmas;
    this.numInferenceSteps = schedule.timesteps.length;
    this.coefficients = alphaSigmaLambda(schedule.sigmas, c.use_flow_sigmas);
    this.cursor.reset();
    this.lowerOrderNums = 0;
    this.lastOrder = 0;
    this.newest = 0;
    this.hasLastSample = false;
  }

  /**
   * diffusers' flow schedule of UniPC: σ from linspace(1, 1/T, n + 1) without its last point, shifted, stretched to
   * `shift_terminal` when set, the first σ moved 10⁻⁶ below 1 (so λ is finite), timesteps σ·T truncated; the final
   * σ is 0 or the last σ.
   */
  private flowSchedule(n: number, shift: number): MultistepSchedule {
    const c = this.config;
    const levels = Float64Array.from({ length: n }, (_, k) =>
      shiftFlowSigma(flowLinspace(k, n, c.num_train_timesteps), shift),
    );
    if (c.shift_terminal !== null) {
      // 1 − σ scaled so that the last σ becomes shift_terminal.
      const scale = (1 - levels[n - 1]) / (1 - c.shift_terminal);
      for (let k = 0; k < n; k++) levels[k] = 1 - (1 - levels[k]) / scale;
    }
    if (Math.abs(levels[0] - 1) < 1e-6) levels[0] -= 1e-6;
    return this.flowScheduleAt(levels);
  }

  /** Karras levels σ_K (between `sigma_min`/`sigma_max` or the training extremes) as flow sigmas σ_K/(1 + σ_K). */
  private flowKarrasSchedule(n: number): MultistepSchedule {
    const table = sigmasFromAlphasCumprod(this.solverAlphas);
    const sigmaMin = this.config.sigma_min ?? table[0];
    const sigmaMax = this.config.sigma_max ?? table[table.length - 1];
    return this.flowScheduleAt(karrasSigmas(sigmaMin, sigmaMax, n).map((sigma) => sigma / (1 + sigma)));
  }

  /** Flow sigmas as a schedule: timesteps σ·T truncated, float32 sigmas, the final σ 0 or the last level. */
  private flowScheduleAt(levels: Float64Array): MultistepSchedule {
    const n = levels.length;
    const T = this.config.num_train_timesteps;
    const sigmas = new Float64Array(n + 1);
    for (let k = 0; k < n; k++) sigmas[k] = Math.fround(levels[k]);
    sigmas[n] = this.config.final_sigmas_type === 'zero' ? 0 : sigmas[n - 1];
    return { timesteps: Array.from(levels, (sigma) => Math.trunc(sigma * T)), sigmas };
  }

  /**
   * One UniPC step: corrects `sample` with this model output (UniC, unless disabled for this step or on the
   * first step), then predicts the sample at the next timestep (UniP) from the corrected one. Deterministic.
   *
   * @param modelOutput - ε̂, x̂_0 or v̂ (per `prediction_type`) at `sample`
   * @param timestep - the current timestep
   * @param sample - x_t
   */
  step(modelOutput: TensorLike, timestep: number, sample: TensorLike): SchedulerOutput {
    const stride = predictionStride(
      modelOutput,
      sample,
      false,
      'UniPC reads no variance channels (diffusers neither); use DPMSolverMultistepScheduler with variance_type "learned_range"',
    );
    const i = this.cursor.stepIndexFor(timestep);
    const n = this.timesteps.length;
    const { solver_order: solverOrder, lower_order_final, disable_corrector, final_sigmas_type } = this.config;
    const ring = solverOrder + 1;
    const size = sample.data.length;
    this.history = solverHistory(this.history, ring, size, this.lowerOrderNums > 0);
    if (this.lastSample.length !== size) this.lastSample = new Float32Array(size);
    const slot = (this.newest + 1) % ring;
    // The new output goes to the ring's oldest slot, which no update reads any more, so a NaN stops the step
    // before any state that matters has changed.
    this.convertModelOutput(modelOutput, stride, sample, timestep, this.history[slot]);

    // UniC: the sample this output was computed at is re-derived from the previous sample (in place).
    if (i > 0 && this.hasLastSample && !disable_corrector.includes(i - 1)) {
      this.correct(slot, this.lastOrder);
    } else {
      this.lastSample.set(sample.data);
      this.hasLastSample = true;
    }
    this.newest = slot;

    // UniP from the (corrected) sample; warm up from order 1 and lower the order near the end of short runs. A last
    // step to σ = 0 (λ = ∞) is finite only at order 1, as DPM-Solver's; diffusers' UniPC returns NaN there.
    const toZero = i === n - 1 && final_sigmas_type === 'zero';
    const wanted = lower_order_final || toZero ? Math.min(solverOrder, n - i) : solverOrder;
    const order = Math.min(wanted, this.lowerOrderNums + 1);
    const prev = new Float32Array(size);
    this.predict(order, prev);
    this.lastOrder = order;

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
   * m0, written into `out`: x̂_0 (thresholded when enabled) for `predict_x0`, else ε̂ (`docs/math.md` §2 at the
   * step's α and σ).
   */
  private convertModelOutput(
    modelOutput: TensorLike,
    stride: number,
    sample: TensorLike,
    timestep: number,
    out: Float32Array,
  ): void {
    const { prediction_type, predict_x0 } = this.config;
    const s0 = this.cursor.stepIndex as number;
    this.thresholdScratch = solverPrediction(
      modelOutput,
      stride,
      sample,
      timestep,
      this.className,
      this.coefficients.alpha[s0],
      this.coefficients.sigma[s0],
      prediction_type,
      predict_x0 ? 'data' : 'noise',
      // diffusers thresholds only the data prediction.
      predict_x0 ? this.config : null,
      this.thresholdScratch,
      out,
    );
  }

  /** The history slot `k` outputs before the newest one. */
  private previous(k: number): Float32Array {
    const ring = this.history.length;
    return this.history[(this.newest - k + ring) % ring];
  }

  /**
   * Sets up the shared terms of UniP and UniC for a step from schedule index `s0` to `t` of order `p`:
   * `hh` = ∓h, h·φ_1 = e^{hh} − 1, B(h), the ratios r_k = (λ_{s_k} − λ_{s0})/h of the earlier outputs
   * (r_p = 1) and the right-hand sides b_j = h·φ_{j+1}(hh)·j!/B(h) of the order conditions Σ_k a_k r_k^{j−1} = b_j.
   */
  private orderConditions(s0: number, t: number, p: number): void {
    const { lambda } = this.coefficients;
    const h = lambda[t] - lambda[s0];
    const hh = this.config.predict_x0 ? -h : h;
    const hPhi1 = Math.expm1(hh);
    // B(h) = hh (bh1) or e^{hh} − 1 (bh2), Zhao et al. 2023 §3.3.
    const bOfH = this.config.solver_type === 'bh1' ? hh : hPhi1;
    this.hPhi1 = hPhi1;
    this.bOfH = bOfH;
    for (let k = 1; k < p; k++) this.rks[k - 1] = (lambda[s0 - k] - lambda[s0]) / h;
    this.rks[p - 1] = 1;
    let hPhiK = hPhi1 / hh - 1;
    let factorial = 1;
    for (let j = 1; j <= p; j++) {
      this.rhs[j - 1] = (hPhiK * factorial) / bOfH;
      factorial *= j + 1;
      hPhiK = hPhiK / hh - 1 / factorial;
    }
  }

  /** Solves Σ_k r_k^j · ρ_k = b_j (j, k < size) into `rhos` (Gaussian elimination with partial pivoting). */
  private solveOrderConditions(size: number): void {
    const a = this.matrix;
    const rho = this.rhos;
    for (let j = 0; j < size; j++) {
      for (let k = 0; k < size; k++) a[j * size + k] = this.rks[k] ** j;
      rho[j] = this.rhs[j];
    }
    for (let col = 0; col < size; col++) {
      let pivot = col;
      for (let r = col + 1; r < size; r++) if (Math.abs(a[r * size + col]) > Math.abs(a[pivot * size + col])) pivot = r;
      if (pivot !== col) {
        for (let k = 0; k < size; k++) {
          const tmp = a[col * size + k];
          a[col * size + k] = a[pivot * size + k];
          a[pivot * size + k] = tmp;
        }
        const tmp = rho[col];
        rho[col] = rho[pivot];
        rho[pivot] = tmp;
      }
      for (let r = col + 1; r < size; r++) {
        const f = a[r * size + col] / a[col * size + col];
        for (let k = col; k < size; k++) a[r * size + k] -= f * a[col * size + k];
        rho[r] -= f * rho[col];
      }
    }
    for (let r = size - 1; r >= 0; r--) {
      let value = rho[r];
      for (let k = r + 1; k < size; k++) value -= a[r * size + k] * rho[k];
      rho[r] = value / a[r * size + r];
    }
  }

  /**
   * The update's weights and buffers up to m_{p−1}: A·x + w_0·m0 + Σ_{k<p} w_k·m_k with w_k = −C·B(h)·ρ_k/r_k (the
   * divided differences D_k = (m_k − m0)/r_k expanded, so w_0 = `m0Weight` − Σ w_k), where A = σ_t/σ_s0 and
   * C = α_t for the x̂_0 form, A = α_t/α_s0 and C = σ_t for the ε̂ form.
   */
  private setUpdate(s0: number, t: number, p: number, m0Weight: number): void {
    const { alpha, sigma } = this.coefficients;
    const predictX0 = this.config.predict_x0;
    const outputScale = predictX0 ? alpha[t] : sigma[t];
    const w = this.weights;
    const terms = this.terms;
    w[0] = predictX0 ? sigma[t] / sigma[s0] : alpha[t] / alpha[s0];
    terms[0] = this.lastSample;
    w[1] = m0Weight;
    terms[1] = this.previous(0);
    for (let k = 1; k < p; k++) {
      w[k + 1] = (-outputScale * this.bOfH * this.rhos[k - 1]) / this.rks[k - 1];
      w[1] -= w[k + 1];
      terms[k + 1] = this.previous(k);
    }
  }

  /** C = α_t (x̂_0 form) or σ_t (ε̂ form): the scale of the model-output terms in an update. */
  private outputScale(t: number): number {
    return this.config.predict_x0 ? this.coefficients.alpha[t] : this.coefficients.sigma[t];
  }

  /**
   * UniP-p, the B(h) predictor of Zhao et al. (2023, eq. 9; `docs/math.md` §11):
   * x_t = A·x − C·h·φ_1·m0 − C·B(h)·Σ_k ρ_k·D_k, with ρ solving the first p − 1 order conditions (ρ = ½ for p = 2).
   */
  private predict(p: number, out: Float32Array): void {
    const s0 = this.cursor.stepIndex as number;
    if (this.coefficients.lambda[s0 + 1] === this.coefficients.lambda[s0]) {
      // A zero-length step (the last σ repeated, as with Karras spacing and final σ_min) is the identity.
      out.set(this.lastSample);
      return;
    }
    this.orderConditions(s0, s0 + 1, p);
    if (p === 2) this.rhos[0] = 0.5;
    else if (p > 2) this.solveOrderConditions(p - 1);
    this.setUpdate(s0, s0 + 1, p, -this.outputScale(s0 + 1) * this.hPhi1);
    linearCombination(out, this.weights, this.terms, p + 1);
  }

  /**
   * UniC-p, the B(h) corrector of Zhao et al. (2023; `docs/math.md` §11), in place on the last sample:
   * x_t^c = A·x − C·h·φ_1·m0 − C·B(h)·(Σ_k ρ_k·D_k + ρ_p·(m_t − m0)), where m0 is the previous output, m_t the new
   * one (in `slot`) and ρ solves all p order conditions (ρ = ½ for p = 1).
   */
  private correct(slot: number, p: number): void {
    const t = this.cursor.stepIndex as number;
    const s0 = t - 1;
    if (this.coefficients.lambda[t] === this.coefficients.lambda[s0]) return; // a zero-length step changes nothing
    this.orderConditions(s0, t, p);
    if (p === 1) this.rhos[0] = 0.5;
    else this.solveOrderConditions(p);
    const outputScale = this.outputScale(t);
    // The weight of ρ_p·D_t = ρ_p·(m_t − m0): its −m0 part goes to m0's weight.
    const newWeight = -outputScale * this.bOfH * this.rhos[p - 1];
    this.setUpdate(s0, t, p, -outputScale * this.hPhi1 - newWeight);
    this.weights[p + 1] = newWeight;
    this.terms[p + 1] = this.history[slot];
    linearCombination(this.lastSample, this.weights, this.terms, p + 2);
  }
}

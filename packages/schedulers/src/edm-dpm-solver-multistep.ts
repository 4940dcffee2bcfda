import { ConfigError, InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import { assertFiniteStepInputs, assertFiniteStepResult, assertStepTensors, assertTensorLike } from './checks.js';
import { type ConfigField, type ConfigSpec, configField, type SchedulerConfigInput } from './config.js';
import { linearCombination } from './linear-combination.js';
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

const solverTypeField: ConfigField<'midpoint' | 'heun'> = {
  default: 'midpoint',
  parse(value, key) {
    if (value === 'logrho' || value === 'bh1' || value === 'bh2') return 'midpoint';
    return configField.oneOf(['midpoint', 'heun'] as const, 'midpoint').parse(value, key);
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
  solver_type: solverTypeField,
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

  /** How many D of this run the history holds (diffusers' `lower_order_nums`, capped at the order). */
  private lowerOrderNums = 0;
  /** The data predictions D of the last steps, a ring: `history[newest]` is the latest. */
  private history: Float32Array[] = [];
  private newest = 0;
  private thresholdScratch = new Float32Array(0);
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
    this.timesteps = this.noiseConditioning(this.sigmas);
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
    this.timesteps = this.noiseConditioning(this.sigmas);
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
    const sigma = this.sigmas[this.cursor.current(timestep)];
    const cIn = 1 / Math.sqrt(sigma * sigma + this.config.sigma_data ** 2);
    const out = new Float32Array(sample.data.length);
    for (let i = 0; i < out.length; i++) out[i] = sample.data[i] * cIn;
    return new Tensor(out, sample.dims);
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
    this.prepareBuffers(sample.data.length);
    const shortRun = lower_order_final && n < 15;
    const firstOrderAtEnd = i === n - 1 && (euler_at_final || shortRun || final_sigmas_type === 'zero');
    const secondOrderAtEnd = i === n - 2 && shortRun;

    // The new D replaces the oldest one; `newest` moves only once it is known to be finite.
    const slot = (this.newest + 1) % solverOrder;
    this.denoise(modelOutput, sample, timestep, this.sigmas[i], this.history[slot]);
    this.newest = slot;
    const stochastic = this.config.algorithm_type === 'sde-dpmsolver++';
    const noise = stochastic ? this.stepNoise(options, sample) : null;

    let order = 3;
    if (solverOrder === 1 || this.lowerOrderNums < 1 || firstOrderAtEnd) order = 1;
    else if (solverOrder === 2 || this.lowerOrderNums < 2 || secondOrderAtEnd) order = 2;

    const weights = this.updateWeights(order, i);
    this.termWeights[0] = weights[0];
    this.terms[0] = sample.data;
    for (let k = 0; k < order; k++) {
      this.termWeights[k + 1] = weights[k + 1];
      this.terms[k + 1] = this.history[(this.newest + solverOrder - k) % solverOrder];
    }
    let count = order + 1;
    if (noise) {
      this.termWeights[count] = weights[4];
      this.terms[count++] = noise;
    }
    const prev = new Float32Array(sample.data.length);
    linearCombination(prev, this.termWeights, this.terms, count);

    // After a zero-length step the next divided difference would be 0/0: restart the warm-up from order 1.
    if (this.sigmas[i + 1] === this.sigmas[i]) this.lowerOrderNums = 0;
    else if (this.lowerOrderNums < solverOrder) this.lowerOrderNums++;
    this.cursor.advance();
    return { prevSample: new Tensor(prev, sample.dims) };
  }

  /**
   * The forward process in the σ parametrisation: `x = x_0 + σ·ε` with σ of the schedule at `timesteps` (or at
   * the begin index / current step once a pipeline set one).
   *
   * @param originalSamples - x_0
   * @param noise - ε, same dims
   * @param timesteps - one timestep of the schedule for the batch, or one per batch item
   * @param out - receives x_t instead of a new buffer (x_0's length)
   */
  override addNoise(
    originalSamples: TensorLike,
    noise: TensorLike,
    timesteps: number | readonly number[],
    out?: Float32Array,
  ): Tensor {
    return this.combinePerItem(originalSamples, noise, timesteps, out, (t) => [
      1,
      this.sigmas[this.cursor.noiseIndex(t)],
    ]);
  }

  /** D = c_skip·x + c_out·F at σ (Karras et al. 2022, Table 1) into `out`, thresholded when configured. */
  private denoise(
    modelOutput: TensorLike,
    sample: TensorLike,
    timestep: number,
    sigma: number,
    out: Float32Array,
  ): void {
    const { sigma_data: sigmaData, thresholding } = this.config;
    if (thresholding) assertFiniteStepInputs(modelOutput, sample, timestep, this.className);
    const cSkip = sigmaData ** 2 / (sigma * sigma + sigmaData ** 2);
    const cOutMagnitude = (sigma * sigmaData) / Math.sqrt(sigma * sigma + sigmaData ** 2);
    const cOut = this.config.prediction_type === 'epsilon' ? cOutMagnitude : -cOutMagnitude;
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
   * The weights of x_s0, D_0, D_1, D_2 and the noise in x_t for a step of the given order. Written as in the
   * papers in terms of D0 = m0 and the divided differences D1, D2 of the history, then expanded to m0…m2.
   */
  private updateWeights(order: number, i: number): Float64Array {
    const w = this.weights;
    const sigmaT = this.sigmas[i + 1];
    const sigmaS0 = this.sigmas[i];
    const lambda = (k: number) => -Math.log(this.sigmas[k]);
    const h = lambda(i + 1) - lambda(i);
    w.fill(0);
    if (h === 0) {
      w[0] = 1;
      return w;
    }
    let sampleWeight: number;
    let d0: number;
    let d1: number;
    let d2 = 0;
    const midpoint = order === 2 && this.config.solver_type === 'midpoint';
    if (this.config.algorithm_type === 'dpmsolver++') {
      // DPM-Solver++ with α = 1: x_t = (σ_t/σ_s)·x − (e^{−h} − 1)·D0 + …
      sampleWeight = sigmaT / sigmaS0;
      d0 = -Math.expm1(-h);
      d1 = midpoint ? 0.5 * d0 : Math.expm1(-h) / h + 1;
      d2 = -((Math.expm1(-h) + h) / (h * h) - 0.5);
    } else {
      // SDE-DPM-Solver++: the sample decays by e^{−h} more and noise σ_t·√(1 − e^{−2h}) is injected.
      const expm1Minus2H = Math.expm1(-2 * h);
      sampleWeight = (sigmaT / sigmaS0) * Math.exp(-h);
      d0 = -expm1Minus2H;
      d1 = midpoint ? 0.5 * d0 : expm1Minus2H / (2 * h) + 1;
      w[4] = sigmaT * Math.sqrt(-expm1Minus2H);
    }
    w[0] = sampleWeight;
    if (order === 1) {
      w[1] = d0;
      return w;
    }
    const r0 = (lambda(i) - lambda(i - 1)) / h;
    if (order === 2) {
      // D1 = (m0 − m1)/r0
      w[1] = d0 + d1 / r0;
      w[2] = -d1 / r0;
      return w;
    }
    // D1_0 = (m0 − m1)/r0, D1_1 = (m1 − m2)/r1, D1 = D1_0 + r0/(r0 + r1)·(D1_0 − D1_1), D2 = (D1_0 − D1_1)/(r0 + r1).
    const r1 = (lambda(i - 1) - lambda(i - 2)) / h;
    const u = d1 * (1 + r0 / (r0 + r1)) + d2 / (r0 + r1);
    const v = -d1 * (r0 / (r0 + r1)) - d2 / (r0 + r1);
    w[1] = d0 + u / r0;
    w[2] = -u / r0 + v / r1;
    w[3] = -v / r1;
    return w;
  }

  private prepareBuffers(size: number): void {
    const order = this.config.solver_order;
    if (this.history.length === order && this.history[0].length === size) return;
    if (this.lowerOrderNums > 0) {
      throw new InvalidArgumentError(
        `The sample size changed in the middle of a run (${this.history[0].length} → ${size} values); ` +
          'call setTimesteps before sampling a different shape.',
      );
    }
    this.history = Array.from({ length: order }, () => new Float32Array(size));
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
      const logMin = f32(Math.log(sigmaMin));
      const logMax = f32(Math.log(sigmaMax));
      for (let i = 0; i < n; i++) out[n - 1 - i] = f32(Math.exp(linspaceFloat32At(logMin, logMax, n, i)));
    }
    out[n] = finalSigma;
    return out;
  }

  /** c_noise = ¼·ln σ for each σ of the schedule but the final one (float32, as torch). */
  private noiseConditioning(sigmas: Float64Array): number[] {
    return Array.from(sigmas.subarray(0, -1), (s) => f32(0.25 * f32(Math.log(s))));
  }
}

/** Element `i` of `torch.linspace(start, end, n)` in float32: the first half counts up, the second half down. */
function linspaceFloat32At(start: number, end: number, n: number, i: number): number {
  if (n === 1) return f32(start);
  const step = (end - start) / (n - 1);
  return f32(i < Math.floor(n / 2) ? start + step * i : end - step * (n - 1 - i));
}

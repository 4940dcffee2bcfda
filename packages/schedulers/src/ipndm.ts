import { ConfigError, InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import { assertFiniteStepResult, assertStepTensors } from './checks.js';
import { type ConfigSpec, configField, type SchedulerConfigInput } from './config.js';
import { linearCombination } from './linear-combination.js';
import { Scheduler, type SchedulerOptions, type SchedulerOutput, type StepOptions } from './scheduler.js';

const f32 = Math.fround;

/** The Adams–Bashforth weights of e_0 (newest) … e_{k−1} for orders 1–4 (iPNDM's warm-up and its 4-step rule). */
const ADAMS_BASHFORTH: readonly (readonly number[])[] = [
  [1],
  [3 / 2, -1 / 2],
  [23 / 12, -16 / 12, 5 / 12],
  [55 / 24, -59 / 24, 37 / 24, -9 / 24],
];

/** The config of {@link IPNDMScheduler}: diffusers' `IPNDMScheduler` keys and defaults. */
export interface IPNDMSchedulerConfig {
  /** The number of steps of the schedule before `setTimesteps` (diffusers builds one of that length). */
  num_train_timesteps: number;
  /** Only `null`: diffusers' explicit per-step σ values fit a single step count, which denoise does not support. */
  trained_betas: null;
}

/** The keys, defaults and checks of {@link IPNDMSchedulerConfig}. */
export const IPNDM_CONFIG_SPEC: ConfigSpec<IPNDMSchedulerConfig> = {
  num_train_timesteps: configField.number(1000, { integer: true, min: 1, max: 1_000_000 }),
  trained_betas: {
    default: null,
    parse(value, key) {
      if (value === null) return null;
      throw new ConfigError(
        `IPNDMScheduler: config key "${key}" must be null; explicit per-step sigmas are not supported (remove the key).`,
      );
    },
  },
};

/**
 * The improved pseudo numerical method iPNDM (Zhang & Chen 2022, "Fast Sampling of Diffusion Models with
 * Exponential Integrator", Appendix: PNDM's linear multistep method with lower-order Adams–Bashforth warm-up instead
 * of Runge–Kutta steps), as diffusers' `IPNDMScheduler`. Its own continuous schedule: at s = 1 − i/n,
 * `σ_i = sin²(πs/2)`, `α_i = √(1 − σ_i²)`, and the model sees timestep `t = (2/π)·atan2(σ, α)` ∈ (0, 1]. The
 * network's output m enters as `e = σ·x + α·m` (ε for a v-predicting model), extrapolated with the 1–4-step
 * Adams–Bashforth weights, and the step is DDIM's: `x' = α'·(x − σ·ê)/α + σ'·ê`.
 *
 * Each step keeps its e in a reused ring of four buffers; a step allocates only the returned tensor.
 *
 * @example
 * ```ts
 * const scheduler = new IPNDMScheduler();
 * scheduler.setTimesteps(20);
 * for (const t of scheduler.timesteps) sample = scheduler.step(await model(sample, t), t, sample).prevSample;
 * ```
 */
export class IPNDMScheduler extends Scheduler<IPNDMSchedulerConfig> {
  /** diffusers lists no compatible classes: the schedule is the scheduler's own, not a model's β schedule. */
  static override readonly compatibles: readonly string[] = [];
  /** σ_i of the schedule, one per step plus the final 0 (diffusers' `betas`); float32 values. */
  sigmas = new Float64Array(0);
  /** α_i = √(1 − σ_i²) of the schedule (diffusers' `alphas`); float32 values. */
  signalScales = new Float64Array(0);

  /** The e of the steps so far, a ring of four; `history[newest]` is the latest. */
  private history: Float32Array[] = [];
  private newest = -1;
  /** How many e the history holds (at most 4). Like diffusers' `ets`, it is cleared only by `setTimesteps`. */
  private count = 0;
  private readonly terms = new Array<Float32Array>(5);
  private readonly weights = new Float64Array(5);

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   */
  constructor(config: SchedulerConfigInput<IPNDMSchedulerConfig> = {}, options?: SchedulerOptions) {
    super('IPNDMScheduler', IPNDM_CONFIG_SPEC, config, options);
    // As diffusers, a fresh scheduler holds a schedule of num_train_timesteps steps.
    this.setTimesteps(this.config.num_train_timesteps);
  }

  /**
   * Sets the schedule of `n` steps (any positive integer: the schedule is continuous) and clears the history.
   *
   * @param steps - the number of steps, or `{ numInferenceSteps }`
   */
  setTimesteps(steps: number | { numInferenceSteps?: number }): void {
    const n = typeof steps === 'number' ? steps : steps?.numInferenceSteps;
    if (!Number.isInteger(n) || (n as number) < 1) {
      throw new InvalidArgumentError(`numInferenceSteps must be a positive integer, got ${n}.`);
    }
    const count = n as number;
    const halfPi = f32(Math.PI / 2);
    const pi = f32(Math.PI);
    this.sigmas = new Float64Array(count + 1);
    this.signalScales = new Float64Array(count + 1);
    const timesteps: number[] = [];
    for (let i = 0; i <= count; i++) {
      // torch.linspace(1, 0, n + 1), its last value replaced by an exact 0, all in float32.
      const s = i === count ? 0 : linspaceFloat32At(1, 0, count + 1, i);
      const sine = f32(Math.sin(f32(s * halfPi)));
      const sigma = f32(sine * sine);
      const alpha = f32(Math.sqrt(f32(1 - f32(sigma * sigma))));
      this.sigmas[i] = sigma;
      this.signalScales[i] = alpha;
      if (i < count) timesteps.push(f32(f32(f32(Math.atan2(sigma, alpha)) / pi) * 2));
    }
    this.timesteps = timesteps;
    this.numInferenceSteps = count;
    this.cursor.reset();
    this.count = 0;
    this.newest = -1;
  }

  /**
   * One iPNDM step: e = σ·x + α·m joins the history, ê is its Adams–Bashforth extrapolation (orders 1–4 as the
   * history grows), and `x' = α'·(x − σ·ê)/max(α, 10⁻⁸) + σ'·ê`.
   *
   * @param modelOutput - the network output m
   * @param timestep - the current timestep, one of {@link Scheduler.timesteps}
   * @param sample - the current sample x
   * @param _options - unused: iPNDM is deterministic
   */
  step(modelOutput: TensorLike, timestep: number, sample: TensorLike, _options: StepOptions = {}): SchedulerOutput {
    assertStepTensors(modelOutput, sample);
    const i = this.cursor.stepIndexFor(timestep);
    const n = sample.data.length;
    if (this.history.length === 0 || this.history[0].length !== n) {
      if (this.count > 0) {
        throw new InvalidArgumentError(
          'The sample size changed in the middle of a run; call setTimesteps before sampling a different shape.',
        );
      }
      this.history = Array.from({ length: 4 }, () => new Float32Array(n));
    }
    const sigma = this.sigmas[i];
    const alpha = this.signalScales[i];
    const nextSigma = this.sigmas[i + 1];
    const nextAlpha = this.signalScales[i + 1];
    const x = sample.data;
    const m = modelOutput.data;
    const slot = (this.newest + 1) % 4;
    const e0 = this.history[slot];
    const order = Math.min(this.count + 1, 4);
    const terms = this.terms;
    for (let back = 0; back < 4; back++) terms[back + 1] = this.history[(slot + 4 - back) % 4];
    const prev = new Float32Array(n);
    let nonFinite = 0;
    if (alpha > 0) {
      // σ, α > 0 here, so e is finite exactly when both inputs are: the check rides on this pass.
      for (let k = 0; k < n; k++) {
        const value = x[k] * sigma + m[k] * alpha;
        e0[k] = value;
        nonFinite += value * 0;
      }
      // x' = α'·(x − σ·ê)/α + σ'·ê = (α'/α)·x + (σ' − α'σ/α)·Σ_j c_j·e_j, one pass over x and the history.
      const onExtrapolation = nextSigma - (nextAlpha * sigma) / alpha;
      const weights = this.weights;
      weights[0] = nextAlpha / alpha;
      for (let j = 0; j < order; j++) weights[j + 1] = onExtrapolation * ADAMS_BASHFORTH[order - 1][j];
      terms[0] = x;
      linearCombination(prev, weights, terms, order + 1);
    } else {
      // α = 0 (σ = 1, the first timestep): diffusers divides x − σ·ê by 10⁻⁸, which amplifies every rounding
      // difference 10⁸-fold, so this step follows torch's float32 operations one by one.
      const [s, a, s1, a1] = [f32(sigma), f32(alpha), f32(nextSigma), f32(nextAlpha)];
      const divisor = f32(1e-8);
      const [, , e1, e2, e3] = terms;
      for (let k = 0; k < n; k++) e0[k] = f32(f32(x[k] * s) + f32(m[k] * a));
      for (let k = 0; k < n; k++) {
        let extrapolated: number;
        if (order === 1) extrapolated = e0[k];
        else if (order === 2) extrapolated = f32(f32(f32(3 * e0[k]) - e1[k]) / 2);
        else if (order === 3) {
          extrapolated = f32(f32(f32(f32(23 * e0[k]) - f32(16 * e1[k])) + f32(5 * e2[k])) / 12);
        } else {
          const sum = f32(f32(f32(f32(55 * e0[k]) - f32(59 * e1[k])) + f32(37 * e2[k])) - f32(9 * e3[k]));
          extrapolated = f32(f32(1 / 24) * sum);
        }
        const predicted = f32(f32(x[k] - f32(s * extrapolated)) / divisor);
        const value = f32(f32(a1 * predicted) + f32(extrapolated * s1));
        prev[k] = value;
        nonFinite += value * 0;
      }
    }
    assertFiniteStepResult(nonFinite, modelOutput, sample, timestep, this.className);
    this.newest = slot;
    this.count = Math.min(this.count + 1, 4);
    this.cursor.advance();
    return { prevSample: new Tensor(prev, sample.dims) };
  }
}

/** Element `i` of `torch.linspace(start, end, n)` in float32: the first half counts up, the second half down. */
function linspaceFloat32At(start: number, end: number, n: number, i: number): number {
  if (n === 1) return f32(start);
  const step = (end - start) / (n - 1);
  return f32(i < Math.floor(n / 2) ? start + step * i : end - step * (n - 1 - i));
}

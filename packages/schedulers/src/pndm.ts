import { InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import { assertFiniteStepInputs, assertFiniteStepResult, assertStepTensors } from './checks.js';
import {
  BETA_SCHEDULE_SPEC,
  type ConfigSpec,
  configField,
  KARRAS_DIFFUSION_SCHEDULERS,
  type SchedulerConfigInput,
} from './config.js';
import type { BetaScheduleConfig } from './schedule.js';
import { spacedTimesteps, TIMESTEP_SPACINGS, type TimestepSpacing } from './schedule.js';
import {
  Scheduler,
  type SchedulerOptions,
  type SchedulerOutput,
  type SetTimestepsOptions,
  type StepOptions,
} from './scheduler.js';

/** The linear multistep weights of PNDM eq. (12) for 1–4 estimates, newest first (Adams–Bashforth). */
const PLMS_WEIGHTS: readonly (readonly number[])[] = [
  [1],
  [3 / 2, -1 / 2],
  [23 / 12, -16 / 12, 5 / 12],
  [55 / 24, -59 / 24, 37 / 24, -9 / 24],
];

/**
 * The config of {@link PNDMScheduler}: diffusers' `PNDMScheduler` keys and defaults (no `rescale_betas_zero_snr`).
 */
export interface PNDMSchedulerConfig extends BetaScheduleConfig {
  /** Start with linear multistep (PLMS) steps right away instead of three Runge–Kutta (PRK) steps. */
  skip_prk_steps: boolean;
  /** At the last step use ᾱ_prev = 1; otherwise ᾱ_0. */
  set_alpha_to_one: boolean;
  /** What the model predicts (PNDM supports ε and v). */
  prediction_type: 'epsilon' | 'v_prediction';
  /** How `setTimesteps(n)` places its timesteps. */
  timestep_spacing: TimestepSpacing;
  /** Added to every `leading` timestep (Stable Diffusion uses 1). */
  steps_offset: number;
}

/** The keys, defaults and checks of {@link PNDMSchedulerConfig}. */
export const PNDM_CONFIG_SPEC: ConfigSpec<PNDMSchedulerConfig> = {
  ...BETA_SCHEDULE_SPEC,
  skip_prk_steps: configField.boolean(false),
  set_alpha_to_one: configField.boolean(false),
  prediction_type: configField.oneOf(['epsilon', 'v_prediction'] as const, 'epsilon'),
  timestep_spacing: configField.oneOf(TIMESTEP_SPACINGS, 'leading'),
  steps_offset: configField.number(0, { integer: true, min: 0 }),
};

/**
 * Pseudo numerical methods for diffusion models (Liu et al. 2022, "PNDM"): the transfer x_t → x_{t−δ} of
 * eq. (9), `x' = √(ᾱ'/ᾱ) x − (ᾱ' − ᾱ) ε / (ᾱ √(1−ᾱ') + √(ᾱ(1−ᾱ)ᾱ'))`, driven by a combined noise estimate.
 * The first three steps are pseudo Runge–Kutta (PRK, eq. 13: four model calls each, at t, t − δ/2 twice and
 * t − δ); later steps are pseudo linear multistep (PLMS, eq. 12), the fourth-order Adams–Bashforth combination
 * `(55 e_t − 59 e_{t+δ} + 37 e_{t+2δ} − 9 e_{t+3δ})/24` of past estimates. With `skip_prk_steps` (Stable
 * Diffusion's config) PLMS starts at once with lower orders and one extra model call.
 *
 * Call `step` once per entry of {@link Scheduler.timesteps}; the history is reset by `setTimesteps`.
 *
 * Differences from diffusers: with Runge–Kutta steps, 2 or 3 inference steps run (the warm-up covers the base
 * timesteps there are; diffusers fails to lay it out from fewer than 4), 1 is refused. Like diffusers' class, it has
 * no `rescale_betas_zero_snr`: the key of a zero-SNR config is dropped.
 */
export class PNDMScheduler extends Scheduler<PNDMSchedulerConfig> {
  /** The classes whose configs this one accepts. */
  static override readonly compatibles: readonly string[] = KARRAS_DIFFUSION_SCHEDULERS;
  /** The timesteps of the Runge–Kutta phase (empty with `skip_prk_steps`). */
  prkTimesteps: readonly number[] = [];
  /** The timesteps of the linear multistep phase. */
  plmsTimesteps: readonly number[] = [];

  /** Past noise estimates e, newest last (at most four). */
  private ets: Float32Array[] = [];
  private spareBuffers: Float32Array[] = [];
  /** The running Runge–Kutta combination of the current PRK step. */
  private rkAccumulator = new Float32Array(0);
  /** The sample the current PRK step (or the first PLMS step) started from. */
  private startSample: Float32Array | null = null;
  private startSampleBuffer = new Float32Array(0);
  /** Scratch for the combined estimate of a step (never returned). */
  private estimateBuffer = new Float32Array(0);
  private counter = 0;

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   */
  constructor(config: SchedulerConfigInput<PNDMSchedulerConfig> = {}, options?: SchedulerOptions) {
    super('PNDMScheduler', PNDM_CONFIG_SPEC, config, options);
  }

  /** ᾱ of the target of the last step: 1 with `set_alpha_to_one`, else ᾱ_0. */
  get finalAlphaCumprod(): number {
    return this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
  }

  /**
   * Sets the schedule: n base timesteps per `timestep_spacing`, expanded into the PRK and PLMS phases, and
   * clears the history of the previous run.
   *
   * @param steps - the number of steps, or `{ numInferenceSteps }`
   */
  setTimesteps(steps: number | SetTimestepsOptions): void {
    const { numInferenceSteps: n, timesteps: custom } = this.parseSetTimesteps(steps);
    if (custom) throw new InvalidArgumentError('PNDMScheduler does not take custom timesteps; pass a step count.');
    const T = this.config.num_train_timesteps;
    const base = spacedTimesteps(this.config.timestep_spacing, n, T, this.config.steps_offset).reverse(); // ascending
    if (base[n - 1] >= T) {
      throw new InvalidArgumentError(
        `${n} steps with timestep_spacing "${this.config.timestep_spacing}" and steps_offset ${this.config.steps_offset} ` +
          `reach timestep ${base[n - 1]}, past the last training timestep ${T - 1}; use fewer steps or "trailing" spacing.`,
      );
    }
    if (this.config.skip_prk_steps) {
      // The second-to-last base timestep is visited twice: PLMS's first step is corrected by a second call.
      this.prkTimesteps = [];
      this.plmsTimesteps = [...base.slice(0, -1), ...base.slice(-2, -1), ...base.slice(-1)].reverse();
    } else {
      const half = Math.floor(Math.floor(T / n) / 2);
      // The last four base timesteps, each followed by its midpoint t + δ/2, …
      const withMidpoints = base.slice(-4).flatMap((t) => [t, t + half]);
      // … and every point but the first and last taken twice: three RK steps of four evaluations.
      const doubled = withMidpoints.slice(0, -1).flatMap((t) => [t, t]);
      this.prkTimesteps = doubled.slice(1, -1).reverse();
      this.plmsTimesteps = base.slice(0, -3).reverse();
    }
    if (this.prkTimesteps.length + this.plmsTimesteps.length === 0) {
      // One step has no room for the Runge–Kutta warm-up, which would leave an empty schedule (no step at all).
      throw new InvalidArgumentError(
        'PNDMScheduler with skip_prk_steps: false needs at least 2 inference steps; use more, or skip_prk_steps: true.',
      );
    }
    this.numInferenceSteps = n;
    this.timesteps = [...this.prkTimesteps, ...this.plmsTimesteps];
    this.spareBuffers.push(...this.ets);
    this.ets = [];
    this.counter = 0;
    this.startSample = null;
    this.rkAccumulator.fill(0);
  }

  /**
   * One model evaluation's worth of PNDM: a PRK stage during the first `prkTimesteps.length` calls (unless
   * `skip_prk_steps`), a PLMS step after.
   *
   * @param modelOutput - ε̂ or v̂ at `timestep`
   * @param timestep - the current entry of {@link Scheduler.timesteps}
   * @param sample - the current sample
   * @param _options - unused: PNDM is deterministic
   */
  step(modelOutput: TensorLike, timestep: number, sample: TensorLike, _options: StepOptions = {}): SchedulerOutput {
    if (this.numInferenceSteps === undefined) {
      throw new InvalidArgumentError(
        'PNDMScheduler.step needs a schedule: call setTimesteps(numInferenceSteps) first.',
      );
    }
    if (!this.timesteps.includes(timestep)) {
      throw new InvalidArgumentError(
        `Timestep ${timestep} is not in the current schedule of PNDMScheduler; pass one of scheduler.timesteps.`,
      );
    }
    assertStepTensors(modelOutput, sample);
    if (this.counter < this.prkTimesteps.length && !this.config.skip_prk_steps) {
      assertFiniteStepInputs(modelOutput, sample, timestep, this.className);
      return this.stepPrk(modelOutput, timestep, sample);
    }
    return this.stepPlms(modelOutput, timestep, sample);
  }

  /**
   * A Runge–Kutta stage (PNDM eq. 13): stages 1–3 accumulate e/6, e/3, e/3 and move to the midpoint or end
   * from the step's starting sample; stage 4 completes the combination and takes the full step.
   *
   * @param modelOutput - ε̂ or v̂ at `timestep`
   * @param timestep - the current PRK timestep
   * @param sample - the current sample
   */
  stepPrk(modelOutput: TensorLike, timestep: number, sample: TensorLike): SchedulerOutput {
    const n = sample.data.length;
    const stride = Math.floor(this.config.num_train_timesteps / (this.numInferenceSteps as number));
    const prevTimestep = timestep - (this.counter % 2 ? 0 : Math.floor(stride / 2));
    const stepStart = this.prkTimesteps[Math.floor(this.counter / 4) * 4];
    if (this.rkAccumulator.length !== n) this.rkAccumulator = new Float32Array(n);
    const acc = this.rkAccumulator;
    const m = modelOutput.data;
    const stage = this.counter % 4;
    let estimate: Float32Array = m;
    if (stage === 0) {
      for (let i = 0; i < n; i++) acc[i] += m[i] / 6;
      this.ets.push(this.copyToBuffer(m));
      this.startSample = this.copySample(sample.data);
    } else if (stage === 1 || stage === 2) {
      for (let i = 0; i < n; i++) acc[i] += m[i] / 3;
    } else {
      estimate = this.estimateScratch(n);
      for (let i = 0; i < n; i++) estimate[i] = acc[i] + m[i] / 6;
      acc.fill(0);
    }
    const from = this.startSample ?? sample.data;
    const prev = this.transfer(from, stepStart, prevTimestep, estimate);
    this.counter++;
    return { prevSample: new Tensor(prev, sample.dims) };
  }

  /**
   * A linear multistep step (PNDM eq. 12) with as many past estimates as exist (up to four). With
   * `skip_prk_steps`, the second call repeats the first step with the average of two estimates (a Heun-like
   * start).
   *
   * @param modelOutput - ε̂ or v̂ at `timestep`
   * @param timestep - the current PLMS timestep
   * @param sample - the current sample
   */
  stepPlms(modelOutput: TensorLike, timestep: number, sample: TensorLike): SchedulerOutput {
    if (!this.config.skip_prk_steps && this.ets.length < 3) {
      throw new InvalidArgumentError(
        'PNDMScheduler: PLMS steps need the three Runge–Kutta steps first; call step() for every scheduler.timesteps entry in order.',
      );
    }
    const n = sample.data.length;
    const m = modelOutput.data;
    const stride = Math.floor(this.config.num_train_timesteps / (this.numInferenceSteps as number));
    let from = timestep;
    let to = timestep - stride;
    if (this.counter !== 1) {
      while (this.ets.length > 3) this.spareBuffers.push(this.ets.shift() as Float32Array);
      this.ets.push(this.copyToBuffer(m));
    } else {
      to = timestep;
      from = timestep + stride;
    }
    const e = this.ets;
    const k = e.length;
    let x = sample.data;
    if (k === 1 && this.counter === 0) this.startSample = this.copySample(x);
    const heunStart = k === 1 && this.counter === 1;
    if (heunStart) {
      // This step restarts from the first step's sample, so `sample` does not reach the result: check the inputs.
      assertFiniteStepInputs(modelOutput, sample, timestep, this.className);
      x = this.startSample ?? x;
      this.startSample = null;
    }
    // The combined estimate ε' = Σ_j w_j·e_j over the estimates, newest first (PNDM eq. 12; the Heun-like start
    // averages the two estimates of its first step); missing terms get weight 0 and stand in as the newest.
    const [w0, w1 = 0, w2 = 0, w3 = 0] = heunStart ? [1 / 2, 1 / 2] : PLMS_WEIGHTS[k - 1];
    const [e0, e1 = e0, e2 = e0, e3 = e0] = heunStart ? [m, e[0]] : [...e].reverse();
    const { sampleCoefficient, estimateCoefficient, epsilonFromEstimate, epsilonFromSample } =
      this.transferCoefficients(from, to);
    const prev = new Float32Array(n);
    let nonFinite = 0;
    for (let i = 0; i < n; i++) {
      // ε' is stored as float32 in diffusers; then x_{t'} = A·x − B·ε (eq. 9, ε from v̂ when predicting v).
      const estimate = Math.fround(w0 * e0[i] + w1 * e1[i] + w2 * e2[i] + w3 * e3[i]);
      const value =
        sampleCoefficient * x[i] - estimateCoefficient * (epsilonFromEstimate * estimate + epsilonFromSample * x[i]);
      prev[i] = value;
      nonFinite += value * 0;
    }
    if (!heunStart) assertFiniteStepResult(nonFinite, modelOutput, sample, timestep, this.className);
    this.counter++;
    return { prevSample: new Tensor(prev, sample.dims) };
  }

  /**
   * The coefficients of PNDM eq. (9) from `timestep` to `prevTimestep`: x_{t'} = A·x − B·ε, with ε = a·e + b·x
   * from the estimate e (ε itself, or v̂ converted: ε = √ᾱ·v̂ + √(1 − ᾱ)·x).
   */
  private transferCoefficients(
    timestep: number,
    prevTimestep: number,
  ): {
    sampleCoefficient: number;
    estimateCoefficient: number;
    epsilonFromEstimate: number;
    epsilonFromSample: number;
  } {
    const alphaBar = this.alphaCumprodAt(timestep);
    const alphaBarPrev = prevTimestep >= 0 ? this.alphaCumprodAt(prevTimestep) : this.finalAlphaCumprod;
    const denominator = alphaBar * Math.sqrt(1 - alphaBarPrev) + Math.sqrt(alphaBar * (1 - alphaBar) * alphaBarPrev);
    const v = this.config.prediction_type === 'v_prediction';
    return {
      sampleCoefficient: Math.sqrt(alphaBarPrev / alphaBar),
      estimateCoefficient: (alphaBarPrev - alphaBar) / denominator,
      epsilonFromEstimate: v ? Math.sqrt(alphaBar) : 1,
      epsilonFromSample: v ? Math.sqrt(1 - alphaBar) : 0,
    };
  }

  /** PNDM eq. (9): x_t → x_{t'} given the combined estimate (converted from v to ε when needed). */
  private transfer(x: Float32Array, timestep: number, prevTimestep: number, estimate: Float32Array): Float32Array {
    const { sampleCoefficient, estimateCoefficient, epsilonFromEstimate, epsilonFromSample } =
      this.transferCoefficients(timestep, prevTimestep);
    const prev = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const eps = epsilonFromEstimate * estimate[i] + epsilonFromSample * x[i];
      prev[i] = sampleCoefficient * x[i] - estimateCoefficient * eps;
    }
    return prev;
  }

  private estimateScratch(size: number): Float32Array {
    if (this.estimateBuffer.length !== size) this.estimateBuffer = new Float32Array(size);
    return this.estimateBuffer;
  }

  private copyToBuffer(values: Float32Array): Float32Array {
    const spare = this.spareBuffers.pop();
    const buffer = spare && spare.length === values.length ? spare : new Float32Array(values.length);
    buffer.set(values);
    return buffer;
  }

  private copySample(values: Float32Array): Float32Array {
    if (this.startSampleBuffer.length !== values.length) this.startSampleBuffer = new Float32Array(values.length);
    this.startSampleBuffer.set(values);
    return this.startSampleBuffer;
  }
}

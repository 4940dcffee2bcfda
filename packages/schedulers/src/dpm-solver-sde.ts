import { RandomGenerator, Tensor, type TensorLike } from '@denoise/core';
import { assertFiniteStepResult, assertStepTensors } from './checks.js';
import {
  BETA_SCHEDULE_SPEC,
  type ConfigSpec,
  configField,
  KARRAS_DIFFUSION_SCHEDULERS,
  type SchedulerConfigInput,
} from './config.js';
import { sigmaScheduleKind } from './euler-discrete.js';
import { denoisedWeights, PREDICTION_TYPES } from './prediction.js';
import { TIMESTEP_SPACINGS } from './schedule.js';
import type {
  NoiseGenerator,
  SchedulerOptions,
  SchedulerOutput,
  SetTimestepsOptions,
  StepOptions,
} from './scheduler.js';
import { type SigmaScheduleKind, SigmaScheduler, type SigmaSchedulerBaseConfig } from './sigma-scheduler.js';
import { sigmaToTimestep } from './sigmas.js';

/** The config of {@link DPMSolverSDEScheduler}: diffusers' `DPMSolverSDEScheduler` keys and defaults. */
export interface DPMSolverSDESchedulerConfig extends SigmaSchedulerBaseConfig {
  /** Use Karras et al.'s ρ = 7 sigma spacing (`null` counts as `false`). */
  use_karras_sigmas: boolean | null;
  /** Space sigmas evenly in log σ (`null` counts as `false`). */
  use_exponential_sigmas: boolean | null;
  /** Place sigmas at Beta(0.6, 0.6) quantiles (`null` counts as `false`). */
  use_beta_sigmas: boolean | null;
  /**
   * Seeds the Brownian noise of every run when `step` gets neither `generator` nor `noise` (each `setTimesteps`
   * starts the same path again, as diffusers' noise sampler); `null` draws unseeded noise.
   */
  noise_sampler_seed: number | null;
}

const optionalFlag = configField.nullable(configField.boolean(false), false);

/** The keys, defaults and checks of {@link DPMSolverSDESchedulerConfig}. */
export const DPM_SOLVER_SDE_CONFIG_SPEC: ConfigSpec<DPMSolverSDESchedulerConfig> = {
  ...BETA_SCHEDULE_SPEC,
  beta_start: configField.number(0.00085, { min: 0, max: 1 }),
  beta_end: configField.number(0.012, { min: 0, max: 1 }),
  prediction_type: configField.oneOf(PREDICTION_TYPES, 'epsilon'),
  use_karras_sigmas: optionalFlag,
  use_exponential_sigmas: optionalFlag,
  use_beta_sigmas: optionalFlag,
  noise_sampler_seed: configField.nullable(
    configField.number(0, { integer: true, min: 0, max: Number.MAX_SAFE_INTEGER }),
  ),
  timestep_spacing: configField.oneOf(TIMESTEP_SPACINGS, 'linspace'),
  steps_offset: configField.number(0, { integer: true, min: 0 }),
};

/**
 * The ancestral split of a move from σ to σ_to: σ_up = min(σ_to, √(σ_to² (σ² − σ_to²) / σ²)) of fresh noise and the
 * weight σ_down/σ of x in x_to = (σ_down/σ)·x + (1 − σ_down/σ)·x̂_0 + σ_up·ξ (e^{−(s_down − s)} with s = −log σ).
 * A move to a larger σ (zero terminal SNR) adds no noise.
 */
function ancestralSplit(sigma: number, sigmaTo: number): { up: number; keep: number } {
  const up = Math.min(sigmaTo, Math.sqrt(Math.max(0, (sigmaTo ** 2 * (sigma ** 2 - sigmaTo ** 2)) / sigma ** 2)));
  return { up, keep: Math.sqrt(sigmaTo ** 2 - up ** 2) / sigma };
}

/** The buffers and per-step weights of one half's pass: x̂_0 = a·x + b·m and x' = …·x + …·m + noiseScale·z. */
interface HalfPass {
  readonly x: Float32Array;
  readonly m: Float32Array;
  readonly z: Float32Array;
  readonly x0: Float32Array;
  readonly prev: Float32Array;
  /** The first half writes the second half's terms in x_i and z₁ here; the second half reads them. */
  readonly carry: Float32Array;
  readonly a: number;
  readonly b: number;
  readonly sampleWeight: number;
  readonly outputWeight: number;
  readonly noiseScale: number;
}

/**
 * The first half in one pass: x̂_0, x_mid = sampleWeight·x + outputWeight·m + noiseScale·z₁, and
 * carry = keep·x_i + carryNoise·z₁ (the whole step's terms in x_i and z₁). A function of its own, as every pass
 * here: inside the step, next to the other loops, V8 compiled it about 1.4x slower.
 *
 * @param h - the buffers and weights
 * @param keep - σ_down/σ_i of the whole step
 * @param carryNoise - the weight of z₁ in the whole step's increment
 * @returns Σ 0·x_mid (0 unless a value is not finite)
 */
function firstHalfPass(h: HalfPass, keep: number, carryNoise: number): number {
  const { x, m, z, x0, prev, carry, a, b, sampleWeight, outputWeight, noiseScale } = h;
  let nonFinite = 0;
  for (let i = 0; i < x.length; i++) {
    const xi = x[i];
    const mi = m[i];
    const zi = z[i];
    x0[i] = a * xi + b * mi;
    carry[i] = keep * xi + carryNoise * zi;
    const value = sampleWeight * xi + outputWeight * mi + noiseScale * zi;
    prev[i] = value;
    nonFinite += value * 0;
  }
  return nonFinite;
}

/**
 * The second half in one pass: x̂_0 and x_{i+1} = carry + sampleWeight·x + outputWeight·m + noiseScale·z₂.
 *
 * @param h - the buffers and weights
 * @returns Σ 0·x_{i+1} (0 unless a value is not finite)
 */
function secondHalfPass(h: HalfPass): number {
  const { x, m, z, x0, prev, carry, a, b, sampleWeight, outputWeight, noiseScale } = h;
  let nonFinite = 0;
  for (let i = 0; i < x.length; i++) {
    const xi = x[i];
    const mi = m[i];
    x0[i] = a * xi + b * mi;
    const value = carry[i] + sampleWeight * xi + outputWeight * mi + noiseScale * z[i];
    prev[i] = value;
    nonFinite += value * 0;
  }
  return nonFinite;
}

/**
 * x̂_0 = a·x + b·m into both outputs: the final Euler step to σ = 0, which lands on x̂_0.
 *
 * @returns Σ 0·x̂_0 (0 unless a value is not finite)
 */
function denoisedInto(
  x: Float32Array,
  m: Float32Array,
  a: number,
  b: number,
  x0: Float32Array,
  prev: Float32Array,
): number {
  let nonFinite = 0;
  for (let i = 0; i < x.length; i++) {
    const value = a * x[i] + b * m[i];
    x0[i] = value;
    prev[i] = value;
    nonFinite += value * 0;
  }
  return nonFinite;
}

/** Step options of {@link DPMSolverSDEScheduler}. */
export interface DPMSolverSDEStepOptions extends StepOptions {
  /** Scale of the injected noise (diffusers' `s_noise`), 1 by default. */
  sNoise?: number;
}

/**
 * DPM-Solver++(2S) for the reverse SDE (Lu et al. 2022, "DPM-Solver++", §4 and Algorithm 1 with r = ½; k-diffusion's
 * `sample_dpmpp_sde`, the "DPM++ SDE" of UIs). In the variance-exploding parametrisation, with s = −log σ, each step
 * from σ_i to σ_{i+1} is two ancestral exponential-integrator steps that share one Brownian path:
 *
 *     σ_mid = √(σ_i σ_{i+1});  to σ_to ∈ {σ_mid, σ_{i+1}}:  σ_up = min(σ_to, √(σ_to² (σ_i² − σ_to²) / σ_i²)),
 *     σ_down = √(σ_to² − σ_up²),  x ← (σ_down/σ_i)·x_i + (1 − σ_down/σ_i)·x̂_0 + σ_up·ξ(σ_i, σ_to),
 *
 * first to σ_mid with x̂_0 at σ_i (giving the model input at σ_mid), then from x_i again to σ_{i+1} with x̂_0 at
 * σ_mid. The last step (to σ = 0) is a plain Euler step. `order = 2`: the schedule lists `[t_0, t_mid0, t_1, …]`.
 *
 * **The noise.** ξ(a, b) = (W(b) − W(a))/√|a − b| is the normalised increment of one Brownian motion W(σ) per
 * element, as diffusers' torchsde `BrownianInterval` gives it: each ξ is N(0, 1), increments over disjoint σ
 * intervals are independent, and the two queries of a step, over [σ_mid, σ_i] and over [σ_{i+1}, σ_i], overlap, so
 * their correlation is √((σ_i − σ_mid)/(σ_i − σ_{i+1})). This scheduler samples W exactly along the path it is
 * queried on: the first half draws z₁ (W(σ_mid) − W(σ_i) = √(σ_i − σ_mid)·z₁), the second half draws z₂ for
 * W(σ_{i+1}) − W(σ_mid) and returns ξ = (√(σ_i − σ_mid)·z₁ + √(σ_mid − σ_{i+1})·z₂)/√(σ_i − σ_{i+1}). The z's
 * come from `options.generator` (one `randn` of the sample's shape per half), `options.noise`, or a generator
 * seeded with `noise_sampler_seed` at every `setTimesteps`; the same seed gives the same samples. The joint
 * distribution is torchsde's exactly, but the numbers are not bit-identical with torchsde's tree (which derives its
 * values from the seed through its own interval splitting and PRNG), so diffusers' published loop values for this
 * scheduler cannot be reproduced.
 *
 * Differences from diffusers: `prediction_type: 'sample'` is accepted (diffusers raises); a zero-length or
 * increasing step (a repeated σ, zero terminal SNR) adds no noise instead of dividing by 0 or taking the root of a
 * negative number; Karras timesteps are fractional, as diffusers leaves them for this class.
 *
 * @example
 * ```ts
 * const scheduler = DPMSolverSDEScheduler.fromConfig({ ...sdConfig, use_karras_sigmas: true });
 * scheduler.setTimesteps(20);
 * const generator = new RandomGenerator(42);
 * for (const t of scheduler.timesteps) {
 *   const eps = await unet(scheduler.scaleModelInput(latents, t), t);
 *   latents = scheduler.step(eps, t, latents, { generator }).prevSample;
 * }
 * ```
 */
export class DPMSolverSDEScheduler extends SigmaScheduler<DPMSolverSDESchedulerConfig> {
  /** The classes whose configs this one accepts. */
  static override readonly compatibles: readonly string[] = KARRAS_DIFFUSION_SCHEDULERS;
  /** Two model evaluations per step. */
  override order = 2;

  private readonly sigmaKind: SigmaScheduleKind;
  /** The σ_mid the first half went to; `undefined` before a first half. */
  private midpointSigma: number | undefined = undefined;
  /** The second half's terms in x_i and z₁, formed by the first half. */
  private carry = new Float32Array(0);
  /** The generator seeded with `noise_sampler_seed` for the current run. */
  private seededNoise: NoiseGenerator | undefined = undefined;

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   */
  constructor(config: SchedulerConfigInput<DPMSolverSDESchedulerConfig> = {}, options?: SchedulerOptions) {
    super('DPMSolverSDEScheduler', DPM_SOLVER_SDE_CONFIG_SPEC, config, options);
    this.sigmaKind = sigmaScheduleKind('DPMSolverSDEScheduler', this.config);
  }

  /** Whether the next `step` is a first half. */
  get stateInFirstOrder(): boolean {
    return this.midpointSigma === undefined;
  }

  /**
   * Sets the sampling schedule: n timesteps (spaced or explicit) and their sigmas (Karras, exponential or beta when
   * configured), with the timestep of each step's σ_mid between them. Resets a half-finished step and restarts the
   * seeded Brownian path.
   *
   * @param steps - the number of steps, or `{ numInferenceSteps }` / `{ timesteps }`
   */
  setTimesteps(steps: number | SetTimestepsOptions): void {
    const schedule = this.timestepsAndSigmas(steps, this.sigmaKind);
    const { sigmas, timesteps } = schedule;
    const n = sigmas.length;
    // [σ_0, σ_1, σ_1, …, σ_{n−1}, σ_{n−1}, 0] and [t_0, t_mid0, t_1, t_mid1, …, t_{n−1}].
    const doubledSigmas = new Float64Array(2 * n);
    const doubledTimesteps = [timesteps[0]];
    doubledSigmas[0] = sigmas[0];
    for (let k = 1; k < n; k++) {
      doubledSigmas[2 * k - 1] = sigmas[k];
      doubledSigmas[2 * k] = sigmas[k];
      const midpoint = Math.sqrt(sigmas[k - 1] * sigmas[k]);
      doubledTimesteps.push(sigmaToTimestep(midpoint, this.trainingLogSigmas), timesteps[k]);
    }
    this.setSchedule(doubledTimesteps, doubledSigmas);
    this.midpointSigma = undefined;
    const seed = this.config.noise_sampler_seed;
    this.seededNoise = seed === null ? undefined : new RandomGenerator(seed);
  }

  /**
   * The σ the model sees next: σ_i for a first half, σ_mid for a second.
   *
   * @param index - the current step index
   */
  protected override modelInputSigma(index: number): number {
    return this.midpointSigma ?? this.sigmas[index];
  }

  /**
   * The first half (to σ_mid) or the second half (from x_i to σ_{i+1} with x̂_0 at σ_mid), alternately; the final
   * step to σ = 0 is an Euler step without noise. `sNoise` scales each half's fresh noise (the first half's also
   * scales its share, z₁, of the whole step's increment).
   *
   * @param modelOutput - ε̂, x̂_0 or v̂ (per `prediction_type`) for the scaled model input
   * @param timestep - the current timestep, one of {@link Scheduler.timesteps}
   * @param sample - the current latents (unscaled)
   * @param options - the source of the Brownian increments (`generator` or `noise`) and `sNoise`
   */
  step(
    modelOutput: TensorLike,
    timestep: number,
    sample: TensorLike,
    options: DPMSolverSDEStepOptions = {},
  ): SchedulerOutput {
    assertStepTensors(modelOutput, sample);
    const index = this.cursor.stepIndexFor(timestep);
    const firstHalf = this.midpointSigma === undefined;
    const sigma = firstHalf ? this.sigmas[index] : this.sigmas[index - 1];
    const sigmaNext = firstHalf ? this.sigmas[index + 1] : this.sigmas[index];
    const sigmaMid = Math.sqrt(sigma * sigmaNext);
    const n = sample.data.length;
    const x = sample.data;
    const m = modelOutput.data;
    const [a, b] = denoisedWeights(this.config.prediction_type, firstHalf ? sigma : sigmaMid);
    const x0 = new Float32Array(n);
    const prev = new Float32Array(n);
    if (sigmaNext === 0) {
      // The Euler step x + (σ_{i+1} − σ_i)·(x − x̂_0)/σ_i to σ = 0 lands on x̂_0.
      assertFiniteStepResult(denoisedInto(x, m, a, b, x0, prev), modelOutput, sample, timestep, this.className);
      this.cursor.advance();
      return { prevSample: new Tensor(prev, sample.dims), predOriginalSample: new Tensor(x0, sample.dims) };
    }
    // The whole step's ancestral split (σ_i → σ_{i+1}) and the Brownian weights of
    // ξ(σ_i, σ_{i+1}) = (√(σ_i − σ_mid)·z₁ + √(σ_mid − σ_{i+1})·z₂)/√(σ_i − σ_{i+1}): the increment over the whole step
    // contains the first half's.
    const whole = ancestralSplit(sigma, sigmaNext);
    const span = Math.abs(sigma - sigmaNext);
    const w1 = span > 0 ? Math.sqrt(Math.abs(sigma - sigmaMid) / span) : 1;
    const w2 = span > 0 ? Math.sqrt(Math.abs(sigmaMid - sigmaNext) / span) : 0;
    const sNoise = options.sNoise ?? 1;
    if (this.carry.length !== n) this.carry = new Float32Array(n);
    const source =
      options.noise !== undefined || options.generator !== undefined ? options : { generator: this.seededNoise };
    const z = this.stepNoise(source, sample);
    const carry = this.carry;
    let nonFinite: number;
    if (firstHalf) {
      // To σ_mid with ξ(σ_i, σ_mid) = z₁; the second half's terms in x_i and z₁ are formed now, so x_i and z₁ need
      // not be kept: carry = (σ_down/σ_i)·x_i + s_noise·σ_up·w₁·z₁ for the whole step.
      const half = ancestralSplit(sigma, sigmaMid);
      const noiseScale = sNoise * half.up;
      const carryNoise = sNoise * whole.up * w1;
      // x_mid = keep·x + (1 − keep)·(a·x + b·m) + noise·z, in x and m directly.
      const sampleWeight = half.keep + (1 - half.keep) * a;
      const outputWeight = (1 - half.keep) * b;
      nonFinite = firstHalfPass(
        { x, m, z, x0, prev, carry, a, b, sampleWeight, outputWeight, noiseScale },
        whole.keep,
        carryNoise,
      );
    } else {
      // From x_i to σ_{i+1} with x̂_0 at σ_mid and z₂.
      const noiseScale = sNoise * whole.up * w2;
      const sampleWeight = (1 - whole.keep) * a;
      const outputWeight = (1 - whole.keep) * b;
      nonFinite = secondHalfPass({ x, m, z, x0, prev, carry, a, b, sampleWeight, outputWeight, noiseScale });
    }
    assertFiniteStepResult(nonFinite, modelOutput, sample, timestep, this.className);
    this.midpointSigma = firstHalf ? sigmaMid : undefined;
    this.cursor.advance();
    return { prevSample: new Tensor(prev, sample.dims), predOriginalSample: new Tensor(x0, sample.dims) };
  }
}

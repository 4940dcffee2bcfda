import { Tensor, type TensorLike } from '@denoise/core';
import { assertFiniteStepResult, assertStepTensors } from './checks.js';
import {
  BETA_SCHEDULE_SPEC,
  type ConfigSpec,
  configField,
  KARRAS_DIFFUSION_SCHEDULERS,
  type SchedulerConfigInput,
} from './config.js';
import { sigmaScheduleKind } from './euler-discrete.js';
import { midpointHalfStep } from './midpoint-step.js';
import { denoisedWeights, PREDICTION_TYPES } from './prediction.js';
import { roundHalfEven, TIMESTEP_SPACINGS } from './schedule.js';
import type { SchedulerOptions, SchedulerOutput, SetTimestepsOptions, StepOptions } from './scheduler.js';
import { type SigmaScheduleKind, SigmaScheduler, type SigmaSchedulerBaseConfig } from './sigma-scheduler.js';
import { sigmaToTimestep } from './sigmas.js';

/** The config of {@link KDPM2DiscreteScheduler}: diffusers' `KDPM2DiscreteScheduler` keys and defaults. */
export interface KDPM2DiscreteSchedulerConfig extends SigmaSchedulerBaseConfig {
  /** Use Karras et al.'s ρ = 7 sigma spacing (`null` counts as `false`). */
  use_karras_sigmas: boolean | null;
  /** Space sigmas evenly in log σ (`null` counts as `false`). */
  use_exponential_sigmas: boolean | null;
  /** Place sigmas at Beta(0.6, 0.6) quantiles (`null` counts as `false`). */
  use_beta_sigmas: boolean | null;
}

const optionalFlag = configField.nullable(configField.boolean(false), false);

/** The keys, defaults and checks of {@link KDPM2DiscreteSchedulerConfig} (shared by the ancestral variant). */
export const KDPM2_DISCRETE_CONFIG_SPEC: ConfigSpec<KDPM2DiscreteSchedulerConfig> = {
  ...BETA_SCHEDULE_SPEC,
  beta_start: configField.number(0.00085, { min: 0, max: 1 }),
  beta_end: configField.number(0.012, { min: 0, max: 1 }),
  prediction_type: configField.oneOf(PREDICTION_TYPES, 'epsilon'),
  use_karras_sigmas: optionalFlag,
  use_exponential_sigmas: optionalFlag,
  use_beta_sigmas: optionalFlag,
  timestep_spacing: configField.oneOf(TIMESTEP_SPACINGS, 'linspace'),
  steps_offset: configField.number(0, { integer: true, min: 0 }),
};

/**
 * DPM2 (k-diffusion's `sample_dpm_2`, the "DPM2" of UIs): DPM-Solver-2 (Lu et al. 2022, Algorithm 1 with r = ½)
 * written as Karras et al. 2022's second-order sampler (Algorithm 2 without churn). Each step from σ_i to σ_{i+1}
 * first takes an Euler step to the geometric midpoint `σ_mid = √(σ_i σ_{i+1})` (midway in log σ), evaluates the
 * model there, and then takes the whole step from σ_i with that midpoint slope:
 *
 *     d_i = (x_i − x̂_0(x_i, σ_i)) / σ_i,   x_mid = x_i + (σ_mid − σ_i) · d_i,
 *     d_mid = (x_mid − x̂_0(x_mid, σ_mid)) / σ_mid,   x_{i+1} = x_i + (σ_{i+1} − σ_i) · d_mid.
 *
 * The last step (to σ = 0) is a plain Euler step. Each step but the last costs two model evaluations, so the
 * schedule lists the midpoint timestep before every timestep after the first (`order = 2`); call `step` once per
 * listed timestep.
 *
 * Differences from diffusers: `prediction_type: 'sample'` is accepted (diffusers raises); `sigmas` and
 * `sigmasInterpol` omit the two trailing zeros diffusers appends and never reads.
 *
 * @example
 * ```ts
 * const scheduler = KDPM2DiscreteScheduler.fromConfig({ ...sdConfig, use_karras_sigmas: true });
 * scheduler.setTimesteps(20); // 39 model calls
 * let latents = scale(noise, scheduler.initNoiseSigma);
 * for (const t of scheduler.timesteps) {
 *   const eps = await unet(scheduler.scaleModelInput(latents, t), t);
 *   latents = scheduler.step(eps, t, latents).prevSample;
 * }
 * ```
 */
export class KDPM2DiscreteScheduler extends SigmaScheduler<KDPM2DiscreteSchedulerConfig> {
  /** The classes whose configs this one accepts. */
  static override readonly compatibles: readonly string[] = KARRAS_DIFFUSION_SCHEDULERS;
  /** Two model evaluations per step. */
  override order = 2;
  /**
   * The midpoint σ of the step each schedule index belongs to, aligned with {@link SigmaScheduler.sigmas}: the
   * predictor at index i goes to `sigmasInterpol[i + 1]`, the corrector at index i evaluates the model there.
   */
  sigmasInterpol: Float64Array = new Float64Array(0);

  private readonly sigmaKind: SigmaScheduleKind;
  /** The sample x_i the predictor started from, kept for the corrector; empty between steps. */
  private startSample = new Float32Array(0);
  private inCorrector = false;

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   */
  constructor(config: SchedulerConfigInput<KDPM2DiscreteSchedulerConfig> = {}, options?: SchedulerOptions) {
    super('KDPM2DiscreteScheduler', KDPM2_DISCRETE_CONFIG_SPEC, config, options);
    this.sigmaKind = sigmaScheduleKind('KDPM2DiscreteScheduler', this.config);
  }

  /** Whether the next `step` is a predictor (first-order) half. */
  get stateInFirstOrder(): boolean {
    return !this.inCorrector;
  }

  /**
   * Sets the sampling schedule: n timesteps (spaced or explicit), their sigmas (Karras, exponential or beta when
   * configured), the midpoints `σ_mid = √(σ_{i−1} σ_i)` and their timesteps, interleaved as
   * `[t_0, t_mid1, t_1, t_mid2, t_2, …]`. Resets a half-finished step.
   *
   * @param steps - the number of steps, or `{ numInferenceSteps }` / `{ timesteps }`
   */
  setTimesteps(steps: number | SetTimestepsOptions): void {
    const schedule = this.timestepsAndSigmas(steps, this.sigmaKind);
    const { sigmas } = schedule;
    // diffusers rounds the timesteps of Karras sigmas only.
    const timesteps = this.sigmaKind === 'karras' ? schedule.timesteps.map(roundHalfEven) : schedule.timesteps;
    const n = sigmas.length;
    // [σ_0, σ_1, σ_1, …, σ_{n−1}, σ_{n−1}, 0]; the midpoint of step i → i+1 sits at both indices of σ_{i+1}.
    const doubledSigmas = new Float64Array(2 * n);
    const doubledMidpoints = new Float64Array(2 * n);
    const doubledTimesteps = [timesteps[0]];
    doubledSigmas[0] = sigmas[0];
    doubledMidpoints[0] = Number.NaN; // no step ends at σ_0 (diffusers: NaN there too)
    for (let i = 1; i <= n; i++) {
      const sigma = i < n ? Math.fround(sigmas[i]) : 0;
      // exp(lerp(log σ_i, log σ_{i−1}, ½)), 0 for the final σ = 0.
      const midpoint = sigma === 0 ? 0 : Math.fround(Math.sqrt(sigma * Math.fround(sigmas[i - 1])));
      doubledSigmas[2 * i - 1] = sigma;
      doubledMidpoints[2 * i - 1] = midpoint;
      if (i < n) {
        doubledSigmas[2 * i] = sigma;
        doubledMidpoints[2 * i] = midpoint;
        doubledTimesteps.push(sigmaToTimestep(midpoint, this.trainingLogSigmas), timesteps[i]);
      }
    }
    this.setSchedule(doubledTimesteps, doubledSigmas);
    this.sigmasInterpol = doubledMidpoints;
    this.inCorrector = false;
  }

  /**
   * The σ the model sees next: σ_i for a predictor, σ_mid for a corrector.
   *
   * @param index - the current step index
   */
  protected override modelInputSigma(index: number): number {
    return this.inCorrector ? this.sigmasInterpol[index] : this.sigmas[index];
  }

  /**
   * The predictor half (an Euler step to σ_mid, remembering x_i) or the corrector half (the whole step from x_i
   * with the slope at σ_mid), alternately.
   *
   * @param modelOutput - ε̂, x̂_0 or v̂ (per `prediction_type`) for the scaled model input
   * @param timestep - the current timestep, one of {@link Scheduler.timesteps}
   * @param sample - the current latents (unscaled)
   * @param _options - unused: DPM2 is deterministic
   */
  step(modelOutput: TensorLike, timestep: number, sample: TensorLike, _options: StepOptions = {}): SchedulerOutput {
    assertStepTensors(modelOutput, sample);
    const index = this.cursor.stepIndexFor(timestep);
    const predictor = !this.inCorrector;
    const n = sample.data.length;
    // The predictor sees the model at σ_i and moves to σ_mid; the corrector sees it at σ_mid and moves σ_i → σ_{i+1}.
    const sigma = predictor ? this.sigmas[index] : this.sigmas[index - 1];
    const sigmaModel = predictor ? sigma : this.sigmasInterpol[index];
    const dt = predictor ? this.sigmasInterpol[index + 1] - sigma : this.sigmas[index] - sigma;
    if (predictor && this.startSample.length !== n) this.startSample = new Float32Array(n);
    const x0 = new Float32Array(n);
    const prev = new Float32Array(n);
    const nonFinite = midpointHalfStep({
      x: sample.data,
      m: modelOutput.data,
      start: this.startSample,
      x0,
      prev,
      predictor,
      denoised: denoisedWeights(this.config.prediction_type, sigmaModel),
      move: dt / sigmaModel,
      noise: null,
    });
    assertFiniteStepResult(nonFinite, modelOutput, sample, timestep, this.className);
    this.inCorrector = predictor;
    this.cursor.advance();
    return { prevSample: new Tensor(prev, sample.dims), predOriginalSample: new Tensor(x0, sample.dims) };
  }
}

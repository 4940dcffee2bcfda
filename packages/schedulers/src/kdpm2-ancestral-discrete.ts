import { Tensor, type TensorLike } from '@denoise/core';
import { assertFiniteStepResult, assertStepTensors } from './checks.js';
import { type ConfigSpec, KARRAS_DIFFUSION_SCHEDULERS, type SchedulerConfigInput } from './config.js';
import { sigmaScheduleKind } from './euler-discrete.js';
import { KDPM2_DISCRETE_CONFIG_SPEC, type KDPM2DiscreteSchedulerConfig } from './kdpm2-discrete.js';
import { midpointHalfStep } from './midpoint-step.js';
import { denoisedWeights } from './prediction.js';
import { roundHalfEven } from './schedule.js';
import type { SchedulerOptions, SchedulerOutput, SetTimestepsOptions, StepOptions } from './scheduler.js';
import { type SigmaScheduleKind, SigmaScheduler } from './sigma-scheduler.js';
import { sigmaToTimestep } from './sigmas.js';

/** The config of {@link KDPM2AncestralDiscreteScheduler}: the same keys and defaults as DPM2's. */
export type KDPM2AncestralDiscreteSchedulerConfig = KDPM2DiscreteSchedulerConfig;

/** The keys, defaults and checks of {@link KDPM2AncestralDiscreteSchedulerConfig}. */
export const KDPM2_ANCESTRAL_DISCRETE_CONFIG_SPEC: ConfigSpec<KDPM2AncestralDiscreteSchedulerConfig> =
  KDPM2_DISCRETE_CONFIG_SPEC;

/**
 * Ancestral DPM2 (k-diffusion's `sample_dpm_2_ancestral`, the "DPM2 a" of UIs): the DPM2 step of
 * {@link KDPM2DiscreteScheduler} (DPM-Solver-2, Lu et al. 2022; Karras et al. 2022, Algorithm 2) aimed at
 * `σ_down` instead of σ_{i+1}, followed by fresh noise of standard deviation σ_up, as Euler a does (Song et al.
 * 2021's ancestral split of the step, which keeps the marginal at σ_{i+1}):
 *
 *     σ_up = √(σ_{i+1}² (σ_i² − σ_{i+1}²) / σ_i²),   σ_down = √(σ_{i+1}² − σ_up²),   σ_mid = √(σ_i σ_down),
 *     x_mid = x_i + (σ_mid − σ_i) · d_i,   x_{i+1} = x_i + (σ_down − σ_i) · d_mid + σ_up · z.
 *
 * The last step (to σ = 0) is a plain Euler step without noise. Each other step costs two model evaluations
 * (`order = 2`; the schedule lists `[t_0, t_mid0, t_1, t_mid1, …]`) and draws its noise in the corrector half,
 * from `generator` (one `randn` of the sample's shape, as diffusers' `torch.Generator`) or explicit `noise`.
 *
 * Differences from diffusers: `prediction_type: 'sample'` is accepted (diffusers raises); a step to a larger σ
 * (possible with zero terminal SNR) adds no noise instead of taking the root of a negative number, and σ_down is
 * computed as σ_{i+1}²/σ_i where float32 cancels it to 0 (σ = 4096 at zero terminal SNR; diffusers divides by 0 there); `sigmas` and
 * the other tables omit the trailing zeros diffusers appends and never reads.
 *
 * @example
 * ```ts
 * const scheduler = KDPM2AncestralDiscreteScheduler.fromConfig(sdConfig);
 * scheduler.setTimesteps(20);
 * const generator = new RandomGenerator(42);
 * for (const t of scheduler.timesteps) {
 *   const eps = await unet(scheduler.scaleModelInput(latents, t), t);
 *   latents = scheduler.step(eps, t, latents, { generator }).prevSample;
 * }
 * ```
 */
export class KDPM2AncestralDiscreteScheduler extends SigmaScheduler<KDPM2AncestralDiscreteSchedulerConfig> {
  /** The classes whose configs this one accepts. */
  static override readonly compatibles: readonly string[] = KARRAS_DIFFUSION_SCHEDULERS;
  /** Two model evaluations per step. */
  override order = 2;
  /** σ_mid of the step each schedule index belongs to (aligned with {@link SigmaScheduler.sigmas}). */
  sigmasInterpol: Float64Array = new Float64Array(0);
  /** σ_up of the step each schedule index belongs to. */
  sigmasUp: Float64Array = new Float64Array(0);
  /** σ_down of the step each schedule index belongs to. */
  sigmasDown: Float64Array = new Float64Array(0);

  private readonly sigmaKind: SigmaScheduleKind;
  /** The sample x_i the predictor started from, kept for the corrector. */
  private startSample = new Float32Array(0);
  private inCorrector = false;

  /**
   * @param config - typed keys or a raw `scheduler_config.json`; missing keys take diffusers' defaults
   * @param options - warning handler
   */
  constructor(config: SchedulerConfigInput<KDPM2AncestralDiscreteSchedulerConfig> = {}, options?: SchedulerOptions) {
    super('KDPM2AncestralDiscreteScheduler', KDPM2_ANCESTRAL_DISCRETE_CONFIG_SPEC, config, options);
    this.sigmaKind = sigmaScheduleKind('KDPM2AncestralDiscreteScheduler', this.config);
  }

  /** Whether the next `step` is a predictor (first-order) half. */
  get stateInFirstOrder(): boolean {
    return !this.inCorrector;
  }

  /**
   * Sets the sampling schedule: n timesteps (spaced or explicit) and their sigmas, each step's σ_up, σ_down and
   * σ_mid, and the interleaved timesteps `[t_0, t_mid0, t_1, t_mid1, …, t_{n−1}]`. Resets a half-finished step.
   *
   * @param steps - the number of steps, or `{ numInferenceSteps }` / `{ timesteps }`
   */
  setTimesteps(steps: number | SetTimestepsOptions): void {
    const schedule = this.timestepsAndSigmas(steps, this.sigmaKind);
    const sigmas = schedule.sigmas.map(Math.fround);
    // diffusers rounds the timesteps of Karras sigmas only.
    const timesteps = this.sigmaKind === 'karras' ? schedule.timesteps.map(roundHalfEven) : schedule.timesteps;
    const n = sigmas.length;
    // Per step k (σ_k → σ_{k+1}, σ_n = 0): σ_up, σ_down, σ_mid; the last step has σ_mid = 0 (an Euler step). σ_up
    // and σ_down are rounded after each operation, as diffusers computes them in float32: σ_down² is a difference
    // of near-equal squares, and the loop values of diffusers' tests move by 2e-5 (relative) without it.
    const f32 = Math.fround;
    const up = new Float64Array(n);
    const down = new Float64Array(n);
    const mid = new Float64Array(n);
    for (let k = 0; k < n; k++) {
      const sigma2 = f32(sigmas[k] * sigmas[k]);
      const next2 = k + 1 < n ? f32(sigmas[k + 1] * sigmas[k + 1]) : 0;
      // Math.max: a step to a larger σ (zero terminal SNR) adds no noise.
      up[k] = f32(Math.sqrt(Math.max(0, f32(f32(next2 * f32(sigma2 - next2)) / sigma2))));
      // σ_down² = σ_{k+1}⁴/σ_k² exactly; where float32 cancels it to 0 (σ_k ≫ σ_{k+1}) use that form.
      const downSquared = f32(next2 - f32(up[k] * up[k]));
      down[k] = downSquared > 0 ? f32(Math.sqrt(downSquared)) : f32(next2 / Math.sqrt(sigma2));
      mid[k] = k + 1 < n ? f32(Math.sqrt(sigmas[k] * down[k])) : 0;
    }
    // Index 0 and the pair 2k−1, 2k belong to step k; [σ_0, σ_1, σ_1, …, σ_{n−1}, σ_{n−1}, 0].
    const doubledSigmas = new Float64Array(2 * n);
    this.sigmasUp = new Float64Array(2 * n);
    this.sigmasDown = new Float64Array(2 * n);
    this.sigmasInterpol = new Float64Array(2 * n);
    const doubledTimesteps = [timesteps[0]];
    for (let j = 0; j < 2 * n; j++) {
      const k = Math.ceil(j / 2);
      doubledSigmas[j] = k < n ? sigmas[k] : 0;
      this.sigmasUp[j] = k < n ? up[k] : 0;
      this.sigmasDown[j] = k < n ? down[k] : 0;
      this.sigmasInterpol[j] = k < n ? mid[k] : 0;
    }
    for (let k = 1; k < n; k++)
      doubledTimesteps.push(sigmaToTimestep(mid[k - 1], this.trainingLogSigmas), timesteps[k]);
    this.setSchedule(doubledTimesteps, doubledSigmas);
    this.inCorrector = false;
  }

  /**
   * The σ the model sees next: σ_i for a predictor, σ_mid for a corrector.
   *
   * @param index - the current step index
   */
  protected override modelInputSigma(index: number): number {
    return this.inCorrector ? this.sigmasInterpol[index - 1] : this.sigmas[index];
  }

  /**
   * The predictor half (an Euler step to σ_mid, remembering x_i) or the corrector half (from x_i to σ_down with
   * the slope at σ_mid, plus σ_up · z), alternately.
   *
   * @param modelOutput - ε̂, x̂_0 or v̂ (per `prediction_type`) for the scaled model input
   * @param timestep - the current timestep, one of {@link Scheduler.timesteps}
   * @param sample - the current latents (unscaled)
   * @param options - `generator` or `noise` for the corrector's noise
   */
  step(modelOutput: TensorLike, timestep: number, sample: TensorLike, options: StepOptions = {}): SchedulerOutput {
    assertStepTensors(modelOutput, sample);
    const index = this.cursor.stepIndexFor(timestep);
    const predictor = !this.inCorrector;
    const n = sample.data.length;
    // The predictor's step is the one index belongs to; the corrector finishes the step of index − 1.
    const own = predictor ? index : index - 1;
    const sigma = this.sigmas[own];
    const sigmaMid = this.sigmasInterpol[own];
    const sigmaModel = predictor ? sigma : sigmaMid;
    const dt = predictor ? sigmaMid - sigma : this.sigmasDown[own] - sigma;
    const sigmaUp = predictor ? 0 : this.sigmasUp[own];
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
      noise: predictor ? null : { z: this.stepNoise(options, sample), sigmaUp },
    });
    assertFiniteStepResult(nonFinite, modelOutput, sample, timestep, this.className);
    this.inCorrector = predictor;
    this.cursor.advance();
    return { prevSample: new Tensor(prev, sample.dims), predOriginalSample: new Tensor(x0, sample.dims) };
  }
}

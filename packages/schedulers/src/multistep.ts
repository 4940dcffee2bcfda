/**
 * What the multistep and single-step solvers of the DPM-Solver family share (DPM-Solver, DPM++ 2S, DEIS, UniPC,
 * EDM DPM-Solver++): their σ schedules and timesteps, α/σ/λ at each σ, flow-matching sigmas and shifts, the
 * conversion of a model output to the x̂_0 or ε̂ they integrate, and the set-up of a step (its order, the history
 * ring of converted outputs, the update as one weighted sum).
 */
import { ConfigError, InvalidArgumentError, type TensorLike } from '@denoise/core';
import { assertFiniteStepInputs, assertFiniteStepResult, assertSameDims, assertTensorLike } from './checks.js';
import { linearCombination } from './linear-combination.js';
import { noisePredictionWeights, originalSampleWeights, PREDICTION_TYPES, type PredictionType } from './prediction.js';
import { roundHalfEven, type TimestepSpacing } from './schedule.js';
import type { SetTimestepsOptions } from './scheduler.js';
import {
  betaSigmas,
  exponentialSigmas,
  karrasSigmas,
  logSigmas,
  sigmasFromAlphasCumprod,
  sigmasToTimesteps,
  sigmaToAlphaSigma,
} from './sigmas.js';
import { applyDynamicThresholding, type ThresholdingConfig } from './thresholding.js';

/**
 * What the model predicts: diffusers' `prediction_type` of the multistep solvers, which add `flow_prediction` (the
 * velocity v = ε − x_0 of a rectified-flow model, with `use_flow_sigmas`) to the usual three.
 */
export type MultistepPredictionType = PredictionType | 'flow_prediction';

/** All values `prediction_type` of the multistep solvers accepts. */
export const MULTISTEP_PREDICTION_TYPES: readonly MultistepPredictionType[] = [...PREDICTION_TYPES, 'flow_prediction'];

/** The timesteps and noise levels of one sampling run of a multistep solver. */
export interface MultistepSchedule {
  /** Training timesteps in sampling order (integers). */
  readonly timesteps: number[];
  /** σ at each timestep plus the final σ after the last step (`timesteps.length + 1` values, float32). */
  readonly sigmas: Float64Array;
}

/** Which noise levels a multistep schedule uses, in diffusers' order of precedence. */
export interface MultistepSigmaOptions {
  /** The scheduler's training ᾱ_t, from {@link solverAlphasCumprod}. */
  readonly alphasCumprod: Float64Array;
  /** Karras et al. (2022) spacing. */
  readonly karras: boolean;
  /** Uniform steps in λ (DPM-Solver only). */
  readonly luLambdas: boolean;
  /** Uniform steps in log σ. */
  readonly exponential: boolean;
  /** Beta(0.6, 0.6) quantiles. */
  readonly beta: boolean;
  /** Round the timesteps of Karras/Lu sigmas (diffusers truncates them instead for the cosine schedule). */
  readonly roundTimesteps: boolean;
  /** The final σ: 0, or the smallest σ of the range. */
  readonly finalSigmasType: 'zero' | 'sigma_min';
  /** The smallest σ of Karras/exponential/beta spacing instead of the training one (UniPC's `sigma_min`). */
  readonly sigmaMin?: number | null;
  /** The largest σ of Karras/exponential/beta spacing instead of the training one (UniPC's `sigma_max`). */
  readonly sigmaMax?: number | null;
}

/**
 * ᾱ as the multistep solvers use it. With zero terminal SNR the last ᾱ is 0, which would make σ infinite;
 * diffusers puts 2⁻²⁴ (the smallest float16 subnormal) there instead.
 *
 * @param alphasCumprod - the scheduler's ᾱ_t
 * @param zeroTerminalSnr - whether the schedule was rescaled to zero terminal SNR
 */
export function solverAlphasCumprod(alphasCumprod: Float64Array, zeroTerminalSnr: boolean): Float64Array {
  const out = Float64Array.from(alphasCumprod);
  if (zeroTerminalSnr) out[out.length - 1] = 2 ** -24;
  return out;
}

/**
 * How many training timesteps a λ-clipped schedule spans (diffusers' `lambda_min_clipped`): T less those whose
 * λ = log(√ᾱ/√(1−ᾱ)) is below the clip (λ falls as t grows). Throws when no timestep is left.
 *
 * @param alphasCumprod - ᾱ_t of the training schedule
 * @param lambdaMinClipped - the clip, or `null` for none
 */
export function lambdaClippedLength(alphasCumprod: ArrayLike<number>, lambdaMinClipped: number | null): number {
  const T = alphasCumprod.length;
  if (lambdaMinClipped === null) return T;
  let clipped = 0;
  for (let t = 0; t < T; t++) {
    const a = alphasCumprod[t];
    if (0.5 * Math.log(a / (1 - a)) < lambdaMinClipped) clipped++;
  }
  if (T - clipped < 1) {
    throw new ConfigError(
      `lambda_min_clipped (${lambdaMinClipped}) is above λ of every training timestep, so no step is left; ` +
        'lower it (diffusers uses -5.1 for the cosine schedule) or set it to null.',
    );
  }
  return T - clipped;
}

/**
 * Inference timesteps of diffusers' multistep solvers, which space `n + 1` points and drop the last one (so the
 * schedule never reaches timestep 0 under `linspace`):
 * - `linspace`: `round(linspace(0, last − 1, n + 1))`, reversed, without its final 0;
 * - `leading`: `arange(n + 1) · (last // (n + 1))`, reversed, without its final 0, plus `stepsOffset`;
 * - `trailing`: `round(arange(last, 0, −T/n)) − 1`.
 *
 * @param spacing - the `timestep_spacing` rule
 * @param n - the number of inference steps
 * @param numTrainTimesteps - T
 * @param lastTimestep - one past the largest usable timestep (T unless λ is clipped)
 * @param stepsOffset - diffusers' `steps_offset`
 */
export function multistepTimesteps(
  spacing: TimestepSpacing,
  n: number,
  numTrainTimesteps: number,
  lastTimestep: number,
  stepsOffset: number,
): number[] {
  const timesteps: number[] = [];
  if (spacing === 'linspace') {
    // numpy's linspace: i · step, with the end point exact.
    const step = (lastTimestep - 1) / n;
    for (let i = n; i > 0; i--) timesteps.push(i === n ? lastTimestep - 1 : roundHalfEven(i * step));
  } else if (spacing === 'leading') {
    const ratio = Math.floor(lastTimestep / (n + 1));
    if (ratio === 0) {
      // diffusers would repeat one timestep n times.
      throw new InvalidArgumentError(
        `timestep_spacing "leading" has no room for ${n} steps below timestep ${lastTimestep}; use at most ` +
          `${lastTimestep - 1} steps, or "trailing" or "linspace" spacing.`,
      );
    }
    for (let i = n; i > 0; i--) timesteps.push(i * ratio + stepsOffset);
  } else {
    const ratio = numTrainTimesteps / n;
    const count = Math.ceil(lastTimestep / ratio);
    for (let i = 0; i < count; i++) timesteps.push(roundHalfEven(lastTimestep - i * ratio) - 1);
  }
  return timesteps;
}

/**
 * The noise levels of a multistep run. With no special spacing, σ is read at each timestep; otherwise the
 * levels come from `sigmas.ts` between the training extremes and the timesteps are mapped back from them
 * (log-σ interpolation). Uniform λ = −log σ steps are exponential σ steps.
 *
 * @param timesteps - the spaced timesteps (replaced when a special spacing is on)
 * @param options - which spacing and final sigma
 */
export function multistepSchedule(timesteps: readonly number[], options: MultistepSigmaOptions): MultistepSchedule {
  const table = sigmasFromAlphasCumprod(options.alphasCumprod);
  const logTable = logSigmas(table);
  const sigmaMin = options.sigmaMin ?? table[0];
  const sigmaMax = options.sigmaMax ?? table[table.length - 1];
  const n = timesteps.length;
  const spaced = options.karras
    ? karrasSigmas(sigmaMin, sigmaMax, n)
    : options.luLambdas
      ? exponentialSigmas(sigmaMin, sigmaMax, n)
      : options.exponential
        ? exponentialSigmas(sigmaMin, sigmaMax, n)
        : options.beta
          ? betaSigmas(sigmaMin, sigmaMax, n)
          : null;
  const round = (options.karras || options.luLambdas) && options.roundTimesteps;
  // As np.interp, a timestep past the table (`leading` spacing plus `steps_offset`) reads its last entry.
  const levels = spaced ?? Float64Array.from(timesteps, (t) => table[Math.min(t, table.length - 1)]);
  const sigmas = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) sigmas[i] = Math.fround(levels[i]);
  sigmas[n] = options.finalSigmasType === 'zero' ? 0 : Math.fround(spaced ? sigmaMin : table[0]);
  return {
    timesteps: spaced
      ? Array.from(sigmasToTimesteps(spaced, logTable), round ? roundHalfEven : Math.trunc)
      : [...timesteps],
    sigmas,
  };
}

/** α, σ (of `x_t = α·x_0 + σ·ε`) and λ = log(α/σ) at every sigma of a schedule. */
export interface AlphaSigmaLambda {
  /** α at each schedule index. */
  readonly alpha: Float64Array;
  /** σ_t = σ·α at each schedule index. */
  readonly sigma: Float64Array;
  /** λ = log α − log σ_t (+∞ at σ = 0). */
  readonly lambda: Float64Array;
}

/**
 * α and σ_t of `x_t = α·x_0 + σ_t·ε` at one schedule sigma: variance-preserving (α = 1/√(σ² + 1), σ_t = σ·α), or
 * rectified flow (α = 1 − σ, σ_t = σ).
 *
 * @param sigma - the schedule's σ
 * @param flow - whether the schedule holds flow-matching sigmas
 */
export function solverAlphaSigma(sigma: number, flow: boolean): { alphaT: number; sigmaT: number } {
  return flow ? { alphaT: 1 - sigma, sigmaT: sigma } : sigmaToAlphaSigma(sigma);
}

/**
 * Converts a schedule's sigmas to the α, σ and λ the solvers step with.
 *
 * @param sigmas - the schedule's noise levels
 * @param flow - whether they are flow-matching sigmas (see {@link solverAlphaSigma})
 */
export function alphaSigmaLambda(sigmas: Float64Array, flow = false): AlphaSigmaLambda {
  const alpha = new Float64Array(sigmas.length);
  const sigma = new Float64Array(sigmas.length);
  const lambda = new Float64Array(sigmas.length);
  for (let i = 0; i < sigmas.length; i++) {
    const { alphaT, sigmaT } = solverAlphaSigma(sigmas[i], flow);
    alpha[i] = alphaT;
    sigma[i] = sigmaT;
    lambda[i] = Math.log(alphaT) - Math.log(sigmaT);
  }
  return { alpha, sigma, lambda };
}

/**
 * The flow shift of rectified-flow sampling (Esser et al. 2024, SD3 §5.3.2): σ' = s·σ/(1 + (s − 1)·σ), which keeps
 * 0 and 1 fixed and moves the steps towards high noise for s > 1. With s = e^μ it is diffusers' exponential time
 * shift e^μ/(e^μ + 1/σ − 1); with s = μ its linear one.
 *
 * @param sigma - a flow sigma in [0, 1]
 * @param shift - s
 */
export function shiftFlowSigma(sigma: number, shift: number): number {
  return (shift * sigma) / (1 + (shift - 1) * sigma);
}

/**
 * The `k`-th of `n + 1` points of numpy's `linspace(1, 1/T, n + 1)`, with numpy's rounding (k·step + start, the end
 * point exact), so flow timesteps truncate to the same integers as diffusers'.
 *
 * @param k - the index, 0 … n
 * @param n - the number of intervals
 * @param numTrainTimesteps - T
 */
export function flowLinspace(k: number, n: number, numTrainTimesteps: number): number {
  return k === n ? 1 / numTrainTimesteps : k * ((1 / numTrainTimesteps - 1) / n) + 1;
}

/**
 * Checks that a model output matches the sample, or carries twice its channels when the model also predicts a
 * variance, and returns the distance between consecutive batch items in the output (to read the prediction half).
 *
 * @param modelOutput - the network output
 * @param sample - x_t
 * @param learnedVariance - whether the output may carry variance channels
 * @param remedy - what to tell a caller whose output has variance channels the scheduler is not set up to read
 */
export function predictionStride(
  modelOutput: TensorLike,
  sample: TensorLike,
  learnedVariance: boolean,
  remedy = 'this scheduler does not read them',
): number {
  assertTensorLike(sample, 'sample');
  assertTensorLike(modelOutput, 'modelOutput');
  if (sample.dims.length < 1 || sample.data.length === 0) {
    throw new InvalidArgumentError(`sample must have a batch axis and data, got dims [${sample.dims.join(', ')}].`);
  }
  const itemSize = sample.data.length / sample.dims[0];
  const doubled =
    modelOutput.data.length === 2 * sample.data.length &&
    sample.dims.length >= 2 &&
    modelOutput.dims.length === sample.dims.length &&
    modelOutput.dims.every((d, i) => d === (i === 1 ? 2 : 1) * sample.dims[i]);
  if (doubled && learnedVariance) return 2 * itemSize;
  if (doubled) {
    throw new InvalidArgumentError(
      `modelOutput [${modelOutput.dims.join(', ')}] has twice the channels of sample [${sample.dims.join(', ')}], ` +
        `as a model that also predicts a variance (IDDPM) outputs; ${remedy}.`,
    );
  }
  assertSameDims(modelOutput, sample, 'modelOutput', 'sample');
  return itemSize;
}

/**
 * Converts a model output to the quantity a solver integrates (`docs/math.md` §2 with `x_t = α·x_0 + σ·ε`): the data
 * prediction x̂_0 (`target: 'data'`) or the noise prediction ε̂ (`'noise'`), written into `out`. A flow velocity
 * v̂ = ε̂ − x̂_0 gives x̂_0 = x_t − σ·v̂ (as diffusers, whatever α is). Both are
 * a·x_t + b·m with per-step weights; every element of both inputs is multiplied (a weight of 0 included), so a NaN
 * or ±Infinity in either reaches the result, and the returned Σ 0·value is not 0 exactly then (see
 * `assertFiniteStepResult`).
 *
 * @param output - the model output values
 * @param stride - the distance between batch items in `output` (twice the item size with variance channels)
 * @param x - the sample x_t, batch-major
 * @param batch - the number of batch items
 * @param alpha - α at the current step
 * @param sigma - σ_t at the current step
 * @param predictionType - what the model predicts
 * @param target - what to produce
 * @param out - the destination, the sample's size
 * @returns Σ 0·value over the result: 0, or NaN when a value is not finite
 */
export function convertPrediction(
  output: Float32Array,
  stride: number,
  x: Float32Array,
  batch: number,
  alpha: number,
  sigma: number,
  predictionType: MultistepPredictionType,
  target: 'data' | 'noise',
  out: Float32Array,
): number {
  const [a, b] = predictionWeights(predictionType, target, alpha, sigma);
  const itemSize = x.length / batch;
  let nonFinite = 0;
  for (let item = 0; item < batch; item++) {
    const base = item * itemSize;
    const outputBase = item * stride;
    for (let j = 0; j < itemSize; j++) {
      const value = a * x[base + j] + b * output[outputBase + j];
      out[base + j] = value;
      nonFinite += value * 0;
    }
  }
  return nonFinite;
}

/** The weights (a, b) of x̂_0 or ε̂ = a·x_t + b·m for a model output m at (α, σ_t). */
function predictionWeights(
  predictionType: MultistepPredictionType,
  target: 'data' | 'noise',
  alpha: number,
  sigma: number,
): [sampleWeight: number, outputWeight: number] {
  if (predictionType === 'flow_prediction') {
    // x̂_0 = x_t − σ·v̂, and ε̂ = (x_t − α·x̂_0)/σ.
    return target === 'data' ? [1, -sigma] : [(1 - alpha) / sigma, alpha];
  }
  return target === 'data'
    ? originalSampleWeights(predictionType, alpha, sigma)
    : noisePredictionWeights(predictionType, alpha, sigma);
}

/** `setTimesteps` options of the multistep solvers: diffusers' `mu` on top of the common ones. */
export interface MultistepSetTimestepsOptions extends SetTimestepsOptions {
  /** The dynamic-shifting exponent (with `use_dynamic_shifting`): the flow shift of this schedule is e^μ. */
  mu?: number;
}

/** The flow-matching keys both multistep solvers share. */
interface FlowConfig {
  readonly use_karras_sigmas: boolean;
  readonly use_exponential_sigmas: boolean;
  readonly use_beta_sigmas: boolean;
  readonly use_flow_sigmas: boolean;
  readonly flow_shift: number;
  readonly use_dynamic_shifting: boolean;
  readonly prediction_type: MultistepPredictionType;
}

/**
 * Rejects the flow-matching settings diffusers accepts but computes without meaning: flow sigmas under another
 * spacing (which reads variance-preserving sigmas as flow ones), `flow_prediction` without flow sigmas or with an
 * ε̂ solver, and dynamic shifting without flow sigmas.
 *
 * @param className - for messages
 * @param config - the resolved config
 * @param dataPrediction - whether the solver integrates x̂_0
 * @param otherSpacing - a further spacing key that is on and excludes flow sigmas, if any
 * @param allowKarras - whether Karras sigmas combine with flow sigmas (UniPC maps them to σ/(1 + σ))
 */
export function checkFlowConfig(
  className: string,
  config: FlowConfig,
  dataPrediction: boolean,
  otherSpacing: string | undefined,
  allowKarras = false,
): void {
  if (config.use_flow_sigmas) {
    const spacing =
      otherSpacing ??
      (config.use_karras_sigmas && !allowKarras
        ? 'use_karras_sigmas'
        : config.use_exponential_sigmas
          ? 'use_exponential_sigmas'
          : config.use_beta_sigmas
            ? 'use_beta_sigmas'
            : undefined);
    if (spacing) {
      throw new ConfigError(
        `${className} cannot combine use_flow_sigmas with ${spacing}: that spacing makes variance-preserving sigmas, ` +
          'which are not flow sigmas; turn one of them off.',
      );
    }
  } else if (config.use_dynamic_shifting) {
    throw new ConfigError(`use_dynamic_shifting shifts flow-matching sigmas; set use_flow_sigmas too, or turn it off.`);
  }
  if (config.prediction_type === 'flow_prediction' && !(config.use_flow_sigmas && dataPrediction)) {
    throw new ConfigError(
      `prediction_type "flow_prediction" (a rectified-flow velocity) needs use_flow_sigmas: true and a solver of ` +
        `the data prediction (${className === 'UniPCMultistepScheduler' ? 'predict_x0: true' : 'algorithm_type "dpmsolver++" or "sde-dpmsolver++"'}).`,
    );
  }
}

/**
 * The flow shift of one flow-matching schedule: e^μ (or μ for a linear time shift) when dynamic shifting is on,
 * which then needs μ; `flow_shift` otherwise.
 *
 * @param className - for messages
 * @param config - the resolved config
 * @param mu - `setTimesteps`' μ, if given
 * @param linear - whether μ is a linear rather than exponential time shift
 */
export function flowShift(className: string, config: FlowConfig, mu: number | undefined, linear: boolean): number {
  if (!config.use_dynamic_shifting) {
    if (mu !== undefined) {
      throw new InvalidArgumentError(
        `${className}.setTimesteps got mu, which only dynamic shifting uses; set use_dynamic_shifting: true or drop mu.`,
      );
    }
    return config.flow_shift;
  }
  if (mu === undefined || !Number.isFinite(mu) || (linear && mu <= 0)) {
    throw new InvalidArgumentError(
      `${className} has use_dynamic_shifting: true, so setTimesteps needs a finite mu ` +
        `(${linear ? 'above 0 for a linear time shift' : 'the shift is e^mu'}), got ${mu}.`,
    );
  }
  return linear ? mu : Math.exp(mu);
}

/** The sigma-spacing keys of the variance-preserving solvers. */
interface SigmaSpacingConfig {
  readonly use_karras_sigmas: boolean;
  readonly use_exponential_sigmas: boolean;
  readonly use_beta_sigmas: boolean;
}

/**
 * Rejects a config that turns on more than one of the Karras, exponential and beta spacings.
 *
 * @param config - the resolved config
 */
export function assertOneSigmaSpacing(config: SigmaSpacingConfig): void {
  if (Number(config.use_karras_sigmas) + Number(config.use_exponential_sigmas) + Number(config.use_beta_sigmas) > 1) {
    throw new ConfigError(
      'Only one of use_karras_sigmas, use_exponential_sigmas and use_beta_sigmas can be true; pick one spacing.',
    );
  }
}

/**
 * The order of a multistep step (diffusers' logic): the configured order once the history holds enough earlier
 * outputs, first order on the first step, and 1 or 2 where the end of the run asks for it.
 *
 * @param solverOrder - the configured order, 1 to 3
 * @param warmUp - how many earlier outputs of this run the history holds (diffusers' `lower_order_nums`)
 * @param firstOrderAtEnd - whether this step must be first order
 * @param secondOrderAtEnd - whether this step must be at most second order
 */
export function multistepOrder(
  solverOrder: number,
  warmUp: number,
  firstOrderAtEnd: boolean,
  secondOrderAtEnd: boolean,
): number {
  if (solverOrder === 1 || warmUp < 1 || firstOrderAtEnd) return 1;
  if (solverOrder === 2 || warmUp < 2 || secondOrderAtEnd) return 2;
  return 3;
}

/**
 * The warm-up count after step `i`: one more, up to the order, or 0 after a zero-length step (a level repeated by
 * rounding), where the next divided difference would be 0/0 (diffusers returns NaN there), so the run restarts
 * from order 1.
 *
 * @param levels - λ (or σ) at each schedule index
 * @param i - the step just taken
 * @param warmUp - the count before it
 * @param solverOrder - the configured order
 */
export function nextWarmUp(levels: Float64Array, i: number, warmUp: number, solverOrder: number): number {
  if (levels[i + 1] === levels[i]) return 0;
  return warmUp < solverOrder ? warmUp + 1 : warmUp;
}

/**
 * The history ring of a solver for samples of `size` values: `history` itself when it fits, else `length` new
 * buffers. A new shape in the middle of a run is an error, since the outputs held belong to the old one.
 *
 * @param history - the current ring
 * @param length - how many outputs it holds
 * @param size - the sample's number of values
 * @param midRun - whether this run has already stored outputs
 */
export function solverHistory(history: Float32Array[], length: number, size: number, midRun: boolean): Float32Array[] {
  if (history.length === length && history[0].length === size) return history;
  if (midRun) {
    throw new InvalidArgumentError(
      `The sample size changed in the middle of a run (${history[0].length} → ${size} values); ` +
        'call setTimesteps before sampling a different shape.',
    );
  }
  return Array.from({ length }, () => new Float32Array(size));
}

/**
 * The quantity a solver integrates, written into `out`: x̂_0 (`target: 'data'`) or ε̂ (`'noise'`) by
 * {@link convertPrediction}. With dynamic thresholding on (`docs/math.md` §2), x̂_0 is formed and thresholded
 * first, and ε̂ = (x_t − α·x̂_0)/σ follows from it. Throws a `NumericError` for a non-finite model output or sample:
 * checked on the converted values, which every input element reaches, or before thresholding (which clamps an
 * Infinity) on the inputs.
 *
 * @param modelOutput - the network output
 * @param stride - the distance between batch items in the output (from {@link predictionStride})
 * @param sample - x_t
 * @param timestep - for messages
 * @param className - for messages
 * @param alpha - α at the current step
 * @param sigma - σ_t at the current step
 * @param predictionType - what the model predicts
 * @param target - what the solver integrates
 * @param threshold - the thresholding keys, or `null` where the solver never thresholds
 * @param scratch - a reused buffer for the threshold's selection
 * @param out - the destination, the sample's size
 * @returns `scratch`, or a larger buffer that replaces it
 */
export function solverPrediction(
  modelOutput: TensorLike,
  stride: number,
  sample: TensorLike,
  timestep: number,
  className: string,
  alpha: number,
  sigma: number,
  predictionType: MultistepPredictionType,
  target: 'data' | 'noise',
  threshold: ThresholdingConfig | null,
  scratch: Float32Array,
  out: Float32Array,
): Float32Array {
  const thresholding = threshold?.thresholding === true;
  if (thresholding) assertFiniteStepInputs(modelOutput, sample, timestep, className);
  const x = sample.data;
  const batch = sample.dims[0];
  const formed = thresholding ? 'data' : target;
  const nonFinite = convertPrediction(modelOutput.data, stride, x, batch, alpha, sigma, predictionType, formed, out);
  if (!thresholding) {
    assertFiniteStepResult(nonFinite, modelOutput, sample, timestep, className);
    return scratch;
  }
  const itemSize = x.length / batch;
  const selection = scratch.length < itemSize ? new Float32Array(itemSize) : scratch;
  applyDynamicThresholding(out, batch, threshold.dynamic_thresholding_ratio, threshold.sample_max_value, selection);
  if (target === 'noise') for (let k = 0; k < out.length; k++) out[k] = (x[k] - alpha * out[k]) / sigma;
  return selection;
}

/**
 * out = w_0·start + Σ_{k<order} w_{k+1}·m_k + w_4·z: a solver update from `start` with the newest `order` outputs
 * of the history ring (m_0 the newest) and the noise z, if any, in one pass.
 *
 * @param out - the destination, the sample's size
 * @param weights - [start, m_0, m_1, m_2, z]
 * @param start - the sample the step starts from
 * @param history - the ring of converted outputs
 * @param newest - the ring index of m_0
 * @param order - how many outputs the update reads
 * @param noise - z, or `null` for a deterministic update
 * @param terms - reused scratch for the buffers, at least `order + 2` long
 * @param termWeights - reused scratch for their weights, as long
 */
export function combineHistory(
  out: Float32Array,
  weights: Float64Array,
  start: Float32Array,
  history: readonly Float32Array[],
  newest: number,
  order: number,
  noise: Float32Array | null,
  terms: Float32Array[],
  termWeights: Float64Array,
): void {
  const ring = history.length;
  termWeights[0] = weights[0];
  terms[0] = start;
  for (let k = 0; k < order; k++) {
    termWeights[k + 1] = weights[k + 1];
    terms[k + 1] = history[(newest + ring - k) % ring];
  }
  let count = order + 1;
  if (noise) {
    termWeights[count] = weights[4];
    terms[count++] = noise;
  }
  linearCombination(out, termWeights, terms, count);
}

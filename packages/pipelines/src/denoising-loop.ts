/**
 * The denoising loop every pipeline shares: at each timestep, scale the input, run the model on every branch the
 * guidances ask for (the conditional one and, e.g., the unconditional one, in one batched call), apply the guidances
 * in order, step the scheduler, add any mean shift, and hand the latents to the caller's callback.
 */
import { InvalidArgumentError, Tensor, type TensorLike, throwIfAborted } from '@denoise/core';
import {
  type DDIMStepOptions,
  hasPosteriorVariance,
  hasSigmaSchedule,
  type NoiseGenerator,
  originalSampleWeights,
  type PredictionType,
  type Scheduler,
} from '@denoise/schedulers';
import {
  classifierGuidanceForm,
  type Guidance,
  type GuidanceStep,
  type GuidanceStepPosition,
  type ModelBranch,
} from './guidance/guidance.js';

/** One model evaluation requested by the loop. */
export interface DenoiserRequest {
  /**
   * The model input, `[n·B, C, H, W]`: one block of `B` rows per branch of {@link DenoiserRequest.branches}, in
   * that order, each the step's scaled `x_t`.
   */
  readonly sample: TensorLike;
  /** The scheduler timestep. */
  readonly timestep: number;
  /**
   * The branches to evaluate, the union of those the step's guidances asked for: `'unconditional'` first when
   * asked for (as diffusers batches classifier-free guidance), then `'conditional'`, which always runs, then any
   * other branch in the order the guidances named it. The same array at every step with the same branches.
   */
  readonly branches: readonly ModelBranch[];
  /** The caller's signal. */
  readonly signal: AbortSignal | undefined;
  /** Where in the run this evaluation is (e.g. for a ControlNet active on part of the schedule only). */
  readonly position: GuidanceStepPosition;
}

/**
 * A conditioned model: returns the prediction for each row of `request.sample`, `[n·B, C, H, W]`, one block of `B`
 * rows per branch of `request.branches` in that order. The pipeline binds the conditioning (text embeddings, class
 * labels) to the rows of each branch; a denoiser of your own may serve branches of its own (e.g. a pass with a
 * perturbed model) that a guidance of yours asks for.
 */
export type Denoiser = (request: DenoiserRequest) => Promise<TensorLike>;

/**
 * What a model that also predicts its variance (IDDPM's learned variances, which the DDPM pipeline reads from
 * the model output's second half) gives the loop beyond its predictions.
 */
export interface LearnedVariance {
  /**
   * `Σ` of the step, for `'mean'`-form guidance: per element of the conditional rows when the last evaluation
   * predicted a variance, else the scheduler's fixed variance; `undefined` when the scheduler gives none.
   */
  variance(timestep: number): number | TensorLike | undefined;
  /** What the scheduler steps with: the guided prediction `[B, C, H, W]` with the variance channels it needs. */
  stepInput(prediction: TensorLike): TensorLike;
}

/** What `callbackOnStepEnd` receives after each step. */
export interface StepEndInfo {
  /** The 0-based index of the step that just ended. */
  readonly step: number;
  /** Its timestep. */
  readonly timestep: number;
  /** The latents after the step. */
  readonly latents: Tensor;
  /**
   * The step's prediction of the clean latents $\hat x_0$ (diffusers' `pred_original_sample`): the scheduler's
   * own when its step returns one, else $(x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon)/\sqrt{\bar\alpha_t}$ from the
   * guided prediction (or its `v_prediction` and `sample` forms). Decode it for a live preview in which the image
   * forms from the first steps on. Computed when first read.
   */
  readonly predOriginalSample: Tensor;
}

/** What `callbackOnStepEnd` may return: replacement latents and/or a request to stop after this step. */
export interface StepEndResult {
  /** Latents to continue from instead (same dims). */
  latents?: TensorLike;
  /** Stop the loop now and decode the current latents. */
  stop?: boolean;
}

/** Called after each step; see {@link StepEndResult}. */
export type StepEndCallback = (info: StepEndInfo) => StepEndResult | undefined | Promise<StepEndResult | undefined>;

/**
 * A pipeline's own edit of the latents after each scheduler step, before `callbackOnStepEnd` sees them (e.g.
 * legacy inpainting's blend of the re-noised original outside the mask).
 *
 * @param latents - the latents the step returned (may be modified in place)
 * @param stepIndex - the 0-based index of the step among those that run
 * @returns the latents to continue from
 */
export type LatentsAfterStep = (latents: Tensor, stepIndex: number) => Tensor;

/** Everything one run of the loop needs. */
export interface DenoisingLoopOptions {
  /** A scheduler on which `setTimesteps` was called, used by this run alone. */
  scheduler: Scheduler;
  /**
   * The index in `scheduler.timesteps` to start from (default 0); image-to-image starts part-way through the
   * schedule.
   */
  startIndex?: number;
  /**
   * The index in `scheduler.timesteps` to stop before (default: the end); a base model handing over to a
   * refiner stops part-way (SDXL's `denoisingEnd`).
   */
  endIndex?: number;
  /** The initial latents `[B, C, H, W]` (not modified). */
  latents: TensorLike;
  /** The model. */
  denoiser: Denoiser;
  /** The model's learned variance, when it predicts one. */
  learnedVariance?: LearnedVariance;
  /** The guidances, applied in order at each step. */
  guidances: readonly Guidance[];
  /** What the model predicts. */
  predictionType: PredictionType;
  /** Noise for stochastic schedulers. */
  generator?: NoiseGenerator;
  /** DDIM's η. */
  eta?: number;
  /** The pipeline's edit of the latents after each step, before `callbackOnStepEnd`. */
  afterStep?: LatentsAfterStep;
  /** Called after each step. */
  callbackOnStepEnd?: StepEndCallback;
  /** Cancels the run between model calls. */
  signal?: AbortSignal;
}

/**
 * $\bar\alpha$ of the evaluation at `scheduler.timesteps[scheduleIndex]`: from the step's σ for sigma-based schedulers
 * ($\bar\alpha = 1/(1+\sigma^2)$, since $\sigma = \sqrt{(1-\bar\alpha)/\bar\alpha}$), else from the training schedule at the (integer) timestep.
 *
 * @param scheduler - the scheduler of the run
 * @param timestep - the timestep
 * @param scheduleIndex - its index in `scheduler.timesteps`
 */
export function alphaProdAtStep(scheduler: Scheduler, timestep: number, scheduleIndex: number): number {
  if (hasSigmaSchedule(scheduler) && scheduleIndex < scheduler.sigmas.length) {
    const sigma = scheduler.sigmas[scheduleIndex];
    return 1 / (1 + sigma * sigma);
  }
  const t = Math.min(Math.max(Math.round(timestep), 0), scheduler.alphasCumprod.length - 1);
  return scheduler.alphasCumprod[t];
}

/**
 * $\hat x_0$ from the variance-preserving model input $x_t$ and the model's prediction at $\bar\alpha_t$:
 * $(x_t - \sqrt{1-\bar\alpha_t}\,\epsilon)/\sqrt{\bar\alpha_t}$ for `epsilon`,
 * $\sqrt{\bar\alpha_t}\,x_t - \sqrt{1-\bar\alpha_t}\,v$ for `v_prediction`, the prediction itself for `sample`.
 */
function predictedOriginal(
  modelInput: TensorLike,
  prediction: TensorLike,
  predictionType: PredictionType,
  alphaProd: number,
): Tensor {
  const [a, b] = originalSampleWeights(predictionType, Math.sqrt(alphaProd), Math.sqrt(1 - alphaProd));
  const x = modelInput.data;
  const p = prediction.data;
  const out = new Float32Array(p.length);
  for (let i = 0; i < out.length; i++) out[i] = a * x[i] + b * p[i];
  return new Tensor(out, prediction.dims);
}

/** Only the conditional branch, which every step evaluates. */
const CONDITIONAL_ONLY: readonly ModelBranch[] = Object.freeze(['conditional']);

/**
 * The branches the guidances ask for at `position`, in the order of {@link DenoiserRequest.branches}: `previous`
 * when they are the same (the common case, so that a step allocates nothing), else a new array.
 *
 * @param scratch - reused to collect the branches
 */
function branchesAt(
  guidances: readonly Guidance[],
  position: GuidanceStepPosition,
  previous: readonly ModelBranch[],
  scratch: ModelBranch[],
): readonly ModelBranch[] {
  scratch.length = 0;
  scratch.push('conditional');
  for (const guidance of guidances) {
    for (const branch of guidance.branches(position)) {
      if (scratch.includes(branch)) continue;
      if (branch === 'unconditional') scratch.unshift(branch);
      else scratch.push(branch);
    }
  }
  let same = scratch.length === previous.length;
  for (let i = 0; same && i < scratch.length; i++) same = scratch[i] === previous[i];
  return same ? previous : Object.freeze(scratch.slice());
}

/**
 * Runs the reverse process and returns the final latents. The scheduler is used as is (its multistep history
 * included), so give each concurrent run its own scheduler. Buffers for the batched model input (one per number of
 * branches), the guided prediction and the mean shift are allocated once per run.
 *
 * @param options - scheduler, timesteps, initial latents, model, guidances; see {@link DenoisingLoopOptions}
 */
export async function runDenoisingLoop(options: DenoisingLoopOptions): Promise<Tensor> {
  const { scheduler, denoiser, guidances, predictionType, signal } = options;
  const startIndex = options.startIndex ?? 0;
  const timesteps = scheduler.timesteps.slice(startIndex, options.endIndex);
  const dims = options.latents.dims;
  const batch = dims[0];
  const size = options.latents.data.length;
  const form = classifierGuidanceForm(scheduler);

  const batchedInputs = new Map<number, Float32Array>();
  const predictions = new Map<ModelBranch, TensorLike>();
  const scratch: ModelBranch[] = [];
  let branches = CONDITIONAL_ONLY;
  const prediction = new Tensor(new Float32Array(size), dims);
  const meanShift = new Tensor(new Float32Array(size), dims);
  const { learnedVariance } = options;
  // η goes to every scheduler, as diffusers' `prepare_extra_step_kwargs` passes it; those without one ignore it.
  const stepOptions: DDIMStepOptions = { generator: options.generator, eta: options.eta };

  // The caller's latents are only read (each scheduler step returns a new tensor), so they are not copied.
  let latents: Tensor =
    options.latents instanceof Tensor ? options.latents : new Tensor(options.latents.data, options.latents.dims);
  for (let stepIndex = 0; stepIndex < timesteps.length; stepIndex++) {
    const timestep = timesteps[stepIndex];
    throwIfAborted(signal, `denoising step ${stepIndex}`);
    const position: GuidanceStepPosition = { stepIndex, numInferenceSteps: timesteps.length, timestep };
    const modelInput = scheduler.scaleModelInput(latents, timestep);
    branches = branchesAt(guidances, position, branches, scratch);
    const count = branches.length;

    let sample: TensorLike = modelInput;
    if (count > 1) {
      let batchedInput = batchedInputs.get(count);
      if (batchedInput === undefined) {
        batchedInput = new Float32Array(count * size);
        batchedInputs.set(count, batchedInput);
      }
      for (let b = 0; b < count; b++) batchedInput.set(modelInput.data, b * size);
      sample = { data: batchedInput, dims: [count * batch, ...dims.slice(1)] };
    }
    const output = await denoiser({ sample, timestep, branches, signal, position });
    const rows = count * batch;
    if (output.dims[0] !== rows || output.data.length !== count * size) {
      throw new InvalidArgumentError(
        `The model returned [${output.dims.join(', ')}] for an input of ${rows} × [${dims.slice(1).join(', ')}].`,
      );
    }
    // Each branch's rows are a view of the output.
    predictions.clear();
    for (let b = 0; b < count; b++) {
      predictions.set(branches[b], new Tensor(output.data.subarray(b * size, (b + 1) * size), dims));
    }
    const conditional = predictions.get('conditional') as TensorLike;
    const unconditional = predictions.get('unconditional');
    prediction.data.set(conditional.data);
    if (form === 'mean') meanShift.data.fill(0);

    if (guidances.length > 0) {
      const alphaProd = alphaProdAtStep(scheduler, timestep, startIndex + stepIndex);
      let variance: number | TensorLike | undefined;
      if (form === 'mean') {
        if (learnedVariance) variance = learnedVariance.variance(timestep);
        else if (hasPosteriorVariance(scheduler)) variance = scheduler.posteriorVariance(timestep);
      }
      const step: GuidanceStep = {
        ...position,
        sample: latents,
        modelInput,
        alphaProd,
        variance,
        conditional,
        unconditional,
        predictions,
        prediction,
        get meanShift() {
          if (form !== 'mean') {
            // Dropping the shift would silently sample without the guidance.
            throw new InvalidArgumentError(
              `A guidance wrote a mean shift, which ${scheduler.className} cannot take: it needs the shift in the ` +
                "ε form (step.classifierGuidanceForm is 'epsilon'). Shift step.prediction instead, or use an " +
                'ancestral DDPM scheduler.',
            );
          }
          return meanShift;
        },
        predictionType,
        classifierGuidanceForm: form,
        signal,
      };
      for (const guidance of guidances) await guidance.apply(step);
    }

    const stepInput = learnedVariance ? learnedVariance.stepInput(prediction) : prediction;
    const stepped = scheduler.step(stepInput, timestep, latents, stepOptions);
    const { prevSample } = stepped;
    if (form === 'mean' && guidances.length > 0) {
      const shift = meanShift.data;
      for (let i = 0; i < size; i++) prevSample.data[i] += shift[i];
    }
    latents = options.afterStep ? options.afterStep(prevSample, stepIndex) : prevSample;

    let predOriginalSample = stepped.predOriginalSample;
    const scheduleIndex = startIndex + stepIndex;
    const result = await options.callbackOnStepEnd?.({
      step: stepIndex,
      timestep,
      latents,
      get predOriginalSample() {
        predOriginalSample ??= predictedOriginal(
          modelInput,
          prediction,
          predictionType,
          alphaProdAtStep(scheduler, timestep, scheduleIndex),
        );
        return predOriginalSample;
      },
    });
    if (result?.latents !== undefined) {
      if (result.latents.data.length !== size) {
        throw new InvalidArgumentError(
          `callbackOnStepEnd returned latents of [${result.latents.dims.join(', ')}]; they must be [${dims.join(', ')}].`,
        );
      }
      latents = result.latents instanceof Tensor ? result.latents : new Tensor(result.latents.data, dims);
    }
    if (result?.stop) break;
  }
  return latents;
}

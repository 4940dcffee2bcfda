import { RandomGenerator, type Tensor } from '@denoise/core';
import type { Scheduler } from '@denoise/schedulers';
import * as schedulers from '@denoise/schedulers';
import { countTypedArrayAllocations, retainedMemory } from './allocation.js';
import { type PairedTiming, pairedTimings, type Summary, summarize } from './stats.js';

/** One scheduler of target 1 and the largest step / baseline ratio it may show. */
interface SchedulerCase {
  className: string;
  /**
   * The config the scheduler is built from, when not {@link SD_SCHEDULER_CONFIG}, and how the table names it
   * (after the class name).
   */
  variant?: { label: string; config: Record<string, unknown> };
  /** The brief's bound on step / baseline; `undefined` where the brief sets none (shown for reference). */
  maxRatio: number | undefined;
}

const CASES: readonly SchedulerCase[] = [
  { className: 'DDPMScheduler', maxRatio: 3 },
  { className: 'DDIMScheduler', maxRatio: 3 },
  // diffusers' own defaults (linear β, clip_sample: true), as the original DDPM checkpoints such as
  // google/ddpm-cifar10-32 set them, and Imagen's dynamic thresholding on top.
  { className: 'DDPMScheduler', maxRatio: 3, variant: { label: 'defaults', config: {} } },
  { className: 'DDIMScheduler', maxRatio: 3, variant: { label: 'defaults', config: {} } },
  { className: 'DDPMScheduler', maxRatio: 3, variant: { label: 'thresholding', config: { thresholding: true } } },
  { className: 'DDIMScheduler', maxRatio: 3, variant: { label: 'thresholding', config: { thresholding: true } } },
  // DeepFloyd IF's sample_max_value: 1.5, above 1, so the threshold depends on the 0.995 quantile of |x̂_0| per item
  // (with diffusers' default of 1 it is always 1, a fixed clip). Here x̂_0 of Gaussian inputs puts the quantile
  // above 1.5 at every step, as in a run's noisy early steps: s = 1.5 is proven after part of a read pass.
  {
    className: 'DDPMScheduler',
    maxRatio: 3,
    variant: { label: 'thresholding, max 1.5', config: { thresholding: true, sample_max_value: 1.5 } },
  },
  // A quantile inside (1, sample_max_value) at every step, which the threshold must select exactly: one full read
  // pass before the step's pass, the one extra pass issue #15 allows, so the bound is the single-step 3x plus one.
  {
    className: 'DDPMScheduler',
    maxRatio: 4,
    variant: { label: 'thresholding, exact quantile', config: { thresholding: true, sample_max_value: 1e4 } },
  },
  { className: 'EulerDiscreteScheduler', maxRatio: 3 },
  { className: 'LCMScheduler', maxRatio: 3 },
  { className: 'EulerAncestralDiscreteScheduler', maxRatio: undefined },
  { className: 'HeunDiscreteScheduler', maxRatio: undefined },
  { className: 'LMSDiscreteScheduler', maxRatio: 5 },
  { className: 'PNDMScheduler', maxRatio: 5 },
  { className: 'DPMSolverMultistepScheduler', maxRatio: 5 },
  { className: 'UniPCMultistepScheduler', maxRatio: 5 },
  // The DPM2 / DPM++ 2S / DPM++ SDE family (issue #15): DPM2 and DPM2 a are single-step (two halves, each one
  // model call); DPM++ 2S combines up to three model outputs like the multistep solvers.
  { className: 'KDPM2DiscreteScheduler', maxRatio: 3 },
  { className: 'KDPM2AncestralDiscreteScheduler', maxRatio: 3 },
  { className: 'DPMSolverSinglestepScheduler', maxRatio: 5 },
  { className: 'DPMSolverSDEScheduler', maxRatio: 3 },
  // Issue #15 (zoo, part 2): flow matching, EDM, TCD single-step; DEIS, iPNDM, EDM DPM-Solver multistep.
  { className: 'FlowMatchEulerDiscreteScheduler', maxRatio: 3 },
  { className: 'EDMEulerScheduler', maxRatio: 3 },
  { className: 'TCDScheduler', maxRatio: 3 },
  { className: 'DEISMultistepScheduler', maxRatio: 5 },
  { className: 'IPNDMScheduler', maxRatio: 5 },
  { className: 'EDMDPMSolverMultistepScheduler', maxRatio: 5 },
];

/**
 * Stable Diffusion 1.5's `scheduler/scheduler_config.json` (a PNDM config), which every scheduler loads with its
 * own defaults for the other keys (keys a scheduler does not use are ignored, their warnings silenced here).
 */
const SD_SCHEDULER_CONFIG = {
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  clip_sample: false,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
};
const INFERENCE_STEPS = 20;
const LEAK_CHECK_STEPS = 1000;
/** Untimed steps of every case, interleaved, before any timing. */
const PROCESS_WARMUP_STEPS = 100;

/** The fixed inputs of every step at one sample shape. */
interface StepInputs {
  dims: readonly number[];
  sample: Tensor;
  modelOutput: Tensor;
  noise: Tensor;
  /** The baseline's preallocated output. */
  baselineOut: Float32Array;
}

/** The target-1 figures of one scheduler at one sample shape. */
export interface SchedulerStepResult {
  /** The class name, followed by the variant's label for a case not built from SD 1.5's config. */
  className: string;
  dims: readonly number[];
  timing: PairedTiming;
  /**
   * The baseline pass writing into a newly allocated output, as a step must (it returns new tensors), against the
   * same baseline: the share of the step's cost that allocating its result accounts for.
   */
  allocatingBaseline: PairedTiming;
  /**
   * step / the allocating baseline, per round: the step against the least a function returning a new tensor can
   * do. When the allocator hands out fresh pages (see docs/performance.md), both pay the page faults.
   */
  ratioToAllocatingBaseline: Summary;
  maxRatio: number | undefined;
  /** Typed-array buffers allocated per step over a whole schedule, and the bytes of the tensors a step returns. */
  allocatedPerStep: { count: number; bytes: number; returnedBytes: number };
  /** Heap / ArrayBuffer bytes still held after {@link LEAK_CHECK_STEPS} steps and a full collection. */
  retained?: { heapBytes: number; arrayBufferBytes: number };
}

/** The result for a scheduler class that has not landed in `@denoise/schedulers` yet. */
export interface MissingScheduler {
  className: string;
  missing: true;
}

type SchedulerClass = new (config: Record<string, unknown>, options: { onWarning: () => void }) => Scheduler;

/**
 * Steps a scheduler through its 20-step schedule over and over with fixed inputs (the model output and the noise
 * are explicit, so no step draws random numbers), restarting the schedule outside the timed region.
 */
class Stepper {
  private index = 0;
  private readonly options: { noise: Tensor };

  constructor(
    readonly scheduler: Scheduler,
    private readonly modelOutput: Tensor,
    private readonly sample: Tensor,
    noise: Tensor,
  ) {
    this.options = { noise };
    scheduler.setTimesteps(INFERENCE_STEPS);
  }

  /** Starts the schedule over. */
  restart(): void {
    this.scheduler.setTimesteps(INFERENCE_STEPS);
    this.index = 0;
  }

  /** One step; returns its duration in ms (restarting the schedule is not counted) and the output bytes. */
  step(): { ms: number; returnedBytes: number } {
    if (this.index === this.scheduler.timesteps.length) this.restart();
    const t = this.scheduler.timesteps[this.index++];
    const start = process.hrtime.bigint();
    const out = this.scheduler.step(this.modelOutput, t, this.sample, this.options);
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    return { ms, returnedBytes: out.prevSample.data.byteLength + (out.predOriginalSample?.data.byteLength ?? 0) };
  }
}

/**
 * The baseline of target 1: one fused pass `out[i] = a·x[i] + b·y[i]` over the sample's length, the least work a
 * scheduler step can do (every step reads the sample and the model output and writes a sample).
 */
function axpbyPass(x: Float32Array, y: Float32Array, out: Float32Array | undefined): number {
  const a = 0.9983;
  const b = -0.0417;
  const start = process.hrtime.bigint();
  const target = out ?? new Float32Array(x.length);
  for (let i = 0; i < target.length; i++) target[i] = a * x[i] + b * y[i];
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/**
 * Target 1: every scheduler's `step` against the axpby baseline on [2,4,64,64] and [2,4,128,128] samples. All
 * timings come first; then memory retained over 1,000 steps ([2,4,64,64]); then the typed-array allocations per
 * step, last, because counting them swaps the global typed-array constructors.
 *
 * @param rounds - timed rounds per case (10 calls of each side per round)
 */
export function benchSchedulerSteps(rounds: number): (SchedulerStepResult | MissingScheduler)[] {
  const exports = schedulers as unknown as Record<string, SchedulerClass | undefined>;
  const generator = new RandomGenerator(0);
  const missing: MissingScheduler[] = CASES.filter((c) => !exports[c.className]).map((c) => ({
    className: c.className,
    missing: true,
  }));
  const cases: (SchedulerCase & { stepper: Stepper; inputs: StepInputs })[] = [];
  for (const dims of [
    [2, 4, 64, 64],
    [2, 4, 128, 128],
  ]) {
    const inputs: StepInputs = {
      dims,
      sample: generator.randn(dims),
      modelOutput: generator.randn(dims),
      noise: generator.randn(dims),
      baselineOut: new Float32Array(dims.reduce((a, b) => a * b, 1)),
    };
    for (const { className, maxRatio, variant } of CASES) {
      const SchedulerClass = exports[className];
      if (!SchedulerClass) continue;
      const scheduler = new SchedulerClass({ ...(variant?.config ?? SD_SCHEDULER_CONFIG) }, { onWarning: () => {} });
      cases.push({
        className: variant ? `${className} (${variant.label})` : className,
        maxRatio,
        inputs,
        stepper: new Stepper(scheduler, inputs.modelOutput, inputs.sample, inputs.noise),
      });
    }
  }
  // A process that has been generating for a while: V8 has optimised the shared step code, and glibc's malloc
  // has raised its mmap and trim thresholds (they grow as large blocks are freed). Timing from a fresh process
  // instead made whichever schedulers came first pay page faults on every returned buffer (about 2x their
  // steady-state cost, the allocating baseline 2x too), a property of the process's age rather than of them.
  for (let i = 0; i < PROCESS_WARMUP_STEPS; i++) for (const { stepper } of cases) stepper.step();
  const measured: { result: SchedulerStepResult; stepper: Stepper }[] = [];
  for (const { className, maxRatio, inputs, stepper } of cases) {
    const { sample, modelOutput, baselineOut } = inputs;
    process.stderr.write(`  steps: ${className} ${inputs.dims.join('x')}\n`);
    const [timing, allocatingBaseline] = pairedTimings(
      () => axpbyPass(sample.data, modelOutput.data, baselineOut),
      [() => stepper.step().ms, () => axpbyPass(sample.data, modelOutput.data, undefined)],
      rounds,
      10,
    );
    const result: SchedulerStepResult = {
      className,
      dims: inputs.dims,
      timing,
      allocatingBaseline,
      ratioToAllocatingBaseline: summarize(
        timing.candidateRoundsMs.map((ms, round) => ms / allocatingBaseline.candidateRoundsMs[round]),
      ),
      maxRatio,
      allocatedPerStep: { count: 0, bytes: 0, returnedBytes: 0 },
    };
    measured.push({ result, stepper });
  }
  for (const { result, stepper } of measured) {
    if (result.dims[2] !== 64) continue;
    result.retained = retainedMemory(() => {
      for (let i = 0; i < LEAK_CHECK_STEPS; i++) stepper.step();
    });
  }
  for (const { result, stepper } of measured) {
    // Averaged over one whole schedule (set up outside the window), so state a solver allocates once per
    // schedule shows up amortised.
    stepper.restart();
    const steps = stepper.scheduler.timesteps.length;
    let returnedBytes = 0;
    const allocations = countTypedArrayAllocations(() => {
      for (let i = 0; i < steps; i++) returnedBytes += stepper.step().returnedBytes;
    });
    result.allocatedPerStep = {
      count: allocations.count / steps,
      bytes: allocations.bytes / steps,
      returnedBytes: returnedBytes / steps,
    };
  }
  return [...measured.map((m) => m.result), ...missing];
}

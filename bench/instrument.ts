import type { ModelSession } from '@denoise/core/runtime';
import type { Scheduler } from '@denoise/schedulers';

/** Where the time of one generation went, from timestamps taken around the pipeline's model calls. */
export interface GenerationTimeline {
  /** `performance.now()` when `generate` was called. */
  start: number;
  /** When the first UNet call started (the denoising loop's first model call). */
  firstUnetStart: number;
  /** When the last step's `callbackOnStepEnd` ran (the loop's last scheduler step done). */
  lastStepEnd: number;
  /** When `generate` resolved. */
  end: number;
  /** Milliseconds spent inside the UNet session's `run`. */
  unetMs: number;
  /** UNet calls made. */
  unetCalls: number;
  /** Milliseconds spent inside the scheduler's `step`. */
  schedulerMs: number;
}

/**
 * Wraps a session's `run` (an own property shadowing the class method) to add up the time spent inside it and
 * to report each call's start. Only the benchmark does this; the pipeline cannot tell.
 *
 * @param session - the session to observe
 * @param onCall - receives the start time and duration of each call
 */
export function observeRuns(session: ModelSession, onCall: (start: number, ms: number) => void): void {
  const run = session.run.bind(session);
  session.run = async (feeds) => {
    const start = performance.now();
    const out = await run(feeds);
    onCall(start, performance.now() - start);
    return out;
  };
}

/** What a pipeline must expose for {@link timelineRecorder}. */
export interface ObservablePipeline {
  unet: ModelSession;
  scheduler: Scheduler;
}

/**
 * Wraps `step` on the prototype of `scheduler`'s class, since each `generate` steps its own copy of the
 * pipeline's scheduler. Returns the function that puts the original back.
 *
 * @param scheduler - an instance of the class to observe
 * @param onStep - receives each step's duration
 */
function observeSteps(scheduler: Scheduler, onStep: (ms: number) => void): () => void {
  const prototype = Object.getPrototypeOf(scheduler) as Scheduler;
  const step = prototype.step;
  prototype.step = function (this: Scheduler, ...args: Parameters<Scheduler['step']>) {
    const start = performance.now();
    const out = step.apply(this, args);
    onStep(performance.now() - start);
    return out;
  };
  return () => {
    prototype.step = step;
  };
}

/**
 * Instruments `pipeline.unet` and the scheduler class's `step` once (swapping a prototype method between runs
 * would make V8 drop optimised code on every run) and returns a function that times one `generate` call into a
 * {@link GenerationTimeline}, and one that removes the scheduler instrumentation. The step callback it passes is
 * the only change to the call.
 *
 * @param pipeline - a loaded Stable Diffusion pipeline
 * @param generate - calls `pipeline.generate` with the given step callback
 */
export function timelineRecorder(
  pipeline: ObservablePipeline,
  generate: (callbackOnStepEnd: () => undefined) => Promise<unknown>,
): { record: () => Promise<GenerationTimeline>; dispose: () => void } {
  let current: GenerationTimeline | undefined;
  const dispose = observeSteps(pipeline.scheduler, (ms) => {
    if (current) current.schedulerMs += ms;
  });
  observeRuns(pipeline.unet, (start, ms) => {
    if (!current) return;
    if (current.unetCalls === 0) current.firstUnetStart = start;
    current.unetCalls++;
    current.unetMs += ms;
  });
  const onStepEnd = () => {
    if (current) current.lastStepEnd = performance.now();
    return undefined;
  };
  const record = async () => {
    const timeline: GenerationTimeline = {
      start: performance.now(),
      firstUnetStart: 0,
      lastStepEnd: 0,
      end: 0,
      unetMs: 0,
      unetCalls: 0,
      schedulerMs: 0,
    };
    current = timeline;
    await generate(onStepEnd);
    timeline.end = performance.now();
    current = undefined;
    return timeline;
  };
  return { record, dispose };
}

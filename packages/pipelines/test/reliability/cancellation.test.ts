/**
 * Cancellation at every phase of a generation on the reference world (issue #9): an abort rejects with an
 * `AbortError` promptly (the phase in flight is the last one that runs) and the pipeline stays usable: the next
 * call with the same seed gives the same image as a call that was never interrupted.
 */
import { AbortError, RandomGenerator } from '@denoise/core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DiffusionPipeline, type StableDiffusionOptions, type StableDiffusionPipeline } from '../../src/index.js';
import { REFERENCE_WORLD, rejection } from './helpers.js';

const STEPS = 4;
let pipe: StableDiffusionPipeline;
let reference: Uint8ClampedArray;

const options = (signal?: AbortSignal): StableDiffusionOptions => ({
  prompt: 'a blue square',
  numInferenceSteps: STEPS,
  generator: new RandomGenerator(11),
  signal,
});

beforeAll(async () => {
  pipe = (await DiffusionPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu' })) as StableDiffusionPipeline;
  reference = (await pipe.generate(options())).images[0].data;
});
afterAll(() => pipe.release());

type SessionKey = 'textEncoder' | 'unet' | 'vaeDecoder';

/**
 * Counts the runs of each session and, when asked, aborts `controller` from inside the `n`-th run of one of them,
 * i.e. while that phase is in flight.
 */
function instrument(abortAt?: { session: SessionKey; n: number; controller: AbortController }) {
  const runs: Record<SessionKey, number> = { textEncoder: 0, unet: 0, vaeDecoder: 0 };
  const spies = (Object.keys(runs) as SessionKey[]).map((key) => {
    const session = pipe[key];
    const run = session.run.bind(session);
    return vi.spyOn(session, 'run').mockImplementation((feeds) => {
      runs[key]++;
      if (abortAt?.session === key && runs[key] === abortAt.n) abortAt.controller.abort();
      return run(feeds);
    });
  });
  return {
    runs,
    restore: () => {
      for (const spy of spies) spy.mockRestore();
    },
  };
}

async function expectUsableAfter() {
  const { images } = await pipe.generate(options());
  expect(images[0].data).toEqual(reference);
}

describe('aborting a generation', () => {
  it('before it starts: rejects at once, before any model runs', async () => {
    const { runs, restore } = instrument();
    try {
      const error = await rejection(pipe.generate(options(AbortSignal.abort())));
      expect(error).toBeInstanceOf(AbortError);
      expect(error.name).toBe('AbortError');
      expect(runs).toEqual({ textEncoder: 0, unet: 0, vaeDecoder: 0 });
    } finally {
      restore();
    }
    await expectUsableAfter();
  });

  it('during text encoding: no UNet step runs', async () => {
    const controller = new AbortController();
    const { runs, restore } = instrument({ session: 'textEncoder', n: 1, controller });
    try {
      const error = await rejection(pipe.generate(options(controller.signal)));
      expect(error).toBeInstanceOf(AbortError);
      expect(runs.unet).toBe(0);
    } finally {
      restore();
    }
    await expectUsableAfter();
  });

  it.each(Array.from({ length: STEPS }, (_, k) => k))('during denoising step %i: no later step runs', async (k) => {
    const controller = new AbortController();
    const { runs, restore } = instrument({ session: 'unet', n: k + 1, controller });
    try {
      const error = await rejection(pipe.generate(options(controller.signal)));
      expect(error).toBeInstanceOf(AbortError);
      expect(runs.unet).toBe(k + 1);
      expect(runs.vaeDecoder).toBe(0);
    } finally {
      restore();
    }
    await expectUsableAfter();
  });

  it('from callbackOnStepEnd after each step', async () => {
    for (let k = 0; k < STEPS; k++) {
      const controller = new AbortController();
      const error = await rejection(
        pipe.generate({
          ...options(controller.signal),
          callbackOnStepEnd: ({ step }) => {
            if (step === k) controller.abort();
            return undefined;
          },
        }),
      );
      expect(error).toBeInstanceOf(AbortError);
    }
    await expectUsableAfter();
  });
});

describe('aborting a load', () => {
  it('before the files are read: rejects with AbortError', async () => {
    const error = await rejection(
      DiffusionPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu', signal: AbortSignal.abort() }),
    );
    expect(error).toBeInstanceOf(AbortError);
  });
});

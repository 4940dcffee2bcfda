/**
 * Cancellation at every phase of a generation on the reference world (issue #9): an abort rejects with an
 * `AbortError` promptly (the phase in flight is the last one that runs) and the pipeline stays usable: the next
 * call with the same seed gives the same image as a call that was never interrupted.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { AbortError, RandomGenerator } from '@denoise/core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DiffusionPipeline, type StableDiffusionOptions, StableDiffusionPipeline } from '../../src/index.js';
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
  pipe = await StableDiffusionPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu' });
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

  it('during decoding: rejects instead of returning the images', async () => {
    const controller = new AbortController();
    const { restore } = instrument({ session: 'vaeDecoder', n: 1, controller });
    try {
      const error = await rejection(pipe.generate(options(controller.signal)));
      expect(error).toBeInstanceOf(AbortError);
    } finally {
      restore();
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

  it('during session creation (after the files are ready): rejects with AbortError', async () => {
    const controller = new AbortController();
    const error = await rejection(
      DiffusionPipeline.fromPretrained(REFERENCE_WORLD, {
        device: 'cpu',
        signal: controller.signal,
        progressCallback: (event) => {
          if (event.status === 'ready') controller.abort();
        },
      }),
    );
    expect(error).toBeInstanceOf(AbortError);
  });
});

describe('aborting a download through fromPretrained', () => {
  /** Every file of a directory, path → bytes, for the local Hub. */
  async function filesOf(root: string, dir = root): Promise<Record<string, Uint8Array>> {
    const out: Record<string, Uint8Array> = {};
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) Object.assign(out, await filesOf(root, path));
      else out[relative(root, path)] = new Uint8Array(await readFile(path));
    }
    return out;
  }

  it('in the middle of the UNet download: AbortError; the next load generates the same image as the local copy', async () => {
    const { HubServer } = await import('../../../core/test/helpers/hub-server.js');
    const hub = await HubServer.start();
    const cacheDir = await mkdtemp(join(tmpdir(), 'denoise-abort-hub-'));
    try {
      hub.addRepo('org/reference-world', await filesOf(REFERENCE_WORLD));
      // The server sends half of the UNet and then nothing: only the abort can end that request.
      hub.fault = (r) =>
        r.kind === 'resolve' && r.path === 'unet/model.onnx' ? { stallAfterBytes: 100_000 } : undefined;
      const controller = new AbortController();
      const error = await rejection(
        DiffusionPipeline.fromPretrained('org/reference-world', {
          hubUrl: hub.url,
          cacheDir,
          device: 'cpu',
          signal: controller.signal,
          progressCallback: (event) => {
            if (event.status === 'progress' && event.file === 'unet/model.onnx' && event.loaded >= 100_000) {
              controller.abort();
            }
          },
        }),
      );
      expect(error).toBeInstanceOf(AbortError);

      hub.fault = undefined;
      const downloaded = await StableDiffusionPipeline.fromPretrained('org/reference-world', {
        hubUrl: hub.url,
        cacheDir,
        device: 'cpu',
      });
      expect((await downloaded.generate(options())).images[0].data).toEqual(reference);
      await downloaded.release();
    } finally {
      await hub.close();
      await rm(cacheDir, { recursive: true, force: true });
    }
  });
});

/**
 * Aborting a model download (issue #9): before it starts, while the Hub resolves the revision, and in the middle
 * of a file at several offsets (the server stalls there, so only the abort can end the request). Each rejects with
 * an `AbortError` promptly, leaves no partial file in the cache, and the next load succeeds.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AbortError } from '../../src/index.js';
import { loadRepository, repoCacheFolder } from '../../src/runtime/index.node.js';
import { HubServer } from '../helpers/hub-server.js';
import { tinyPipelineFiles } from '../runtime/fixtures.js';

const REPO = 'org/abortable';
const BIG = 'unet/model.onnx_data';
const SIZE = 400_000;
let hub: HubServer;
let cacheDir: string;

beforeAll(async () => {
  hub = await HubServer.start();
  hub.addRepo(REPO, { ...tinyPipelineFiles(), [BIG]: new Uint8Array(SIZE).fill(7) });
});
afterAll(() => hub.close());
beforeEach(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), 'denoise-abort-'));
});
afterEach(async () => {
  hub.fault = undefined;
  await rm(cacheDir, { recursive: true, force: true });
});

async function blobNames(): Promise<string[]> {
  return readdir(join(repoCacheFolder(cacheDir, REPO), 'blobs')).catch(() => []);
}

describe('aborting a download', () => {
  it('an already aborted signal rejects before any request', async () => {
    const before = hub.requests.length;
    const error = await loadRepository(REPO, { hubUrl: hub.url, cacheDir, signal: AbortSignal.abort() }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(AbortError);
    expect(hub.requests.length).toBe(before);
  });

  it('while the revision is being resolved (an API request that never answers)', async () => {
    // A fetch that hangs on API calls until its signal aborts, like a Hub that accepted the connection and went quiet.
    const hanging: typeof fetch = (input, init) =>
      String(input).includes('/api/models/')
        ? new Promise((_, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal?.reason)))
        : fetch(input, init);
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(), 100);
    const error = await loadRepository(REPO, {
      hubUrl: hub.url,
      cacheDir,
      fetch: hanging,
      signal: controller.signal,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AbortError);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await blobNames()).toEqual([]);
  });

  it.each([0, 0.25, 0.5, 0.99])('in the middle of a file, at %f of its bytes', async (fraction) => {
    const offset = Math.floor(fraction * SIZE);
    hub.fault = (r) => (r.kind === 'resolve' && r.path === BIG ? { stallAfterBytes: offset } : undefined);
    const controller = new AbortController();
    let abortedAt = 0;
    const error = await loadRepository(REPO, {
      hubUrl: hub.url,
      cacheDir,
      signal: controller.signal,
      stallTimeoutMs: 60_000,
      progressCallback: (event) => {
        // Abort once the download of the big file has begun (and, past offset 0, once its bytes arrive).
        const started = event.status === 'download' && event.file === BIG && offset === 0;
        const midway = event.status === 'progress' && event.file === BIG && event.loaded >= offset && offset > 0;
        if ((started || midway) && !abortedAt) {
          abortedAt = Date.now();
          setTimeout(() => controller.abort(), 50);
        }
      },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AbortError);
    expect((error as AbortError).message).toMatch(/unet\/model\.onnx_data of org\/abortable was aborted/);
    // Prompt: the stalled request ends with the abort, not with the 60 s stall timeout.
    expect(Date.now() - abortedAt).toBeLessThan(5_000);
    const blobs = await blobNames();
    expect(blobs.filter((b) => b.includes('.incomplete'))).toEqual([]);

    hub.fault = undefined;
    const repo = await loadRepository(REPO, { hubUrl: hub.url, cacheDir });
    expect(repo.localPath(BIG)).toBeDefined();
    expect((await blobNames()).length).toBeGreaterThan(blobs.length);
  });
});

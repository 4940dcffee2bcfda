/**
 * The browser path (Cache Storage) exercised in Node: a Map-backed stand-in for `caches`, the local Hub, and
 * onnxruntime-node opening graphs from bytes with their external data, as onnxruntime-web does.
 */
import * as ort from 'onnxruntime-node';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { ModelLoadError, Tensor } from '../../src/index.js';
import { openBrowserCacheSnapshot } from '../../src/runtime/browser-hub-cache.js';
import { nodeRuntime } from '../../src/runtime/index.node.js';
import { loadFromSnapshot } from '../../src/runtime/repository.js';
import { HubServer } from '../helpers/hub-server.js';
import { tinyPipelineFiles, unetExpected } from './fixtures.js';

/** The part of the Cache Storage API the loader uses, in memory. */
class MemoryCache {
  readonly entries = new Map<string, { body: Uint8Array; headers: [string, string][] }>();
  async match(url: string): Promise<Response | undefined> {
    const entry = this.entries.get(url);
    return entry && new Response(entry.body.slice(), { headers: entry.headers });
  }
  async put(url: string, response: Response): Promise<void> {
    this.entries.set(url, { body: new Uint8Array(await response.arrayBuffer()), headers: [...response.headers] });
  }
}

let hub: HubServer;
let cache: MemoryCache;
const REPO = 'org/browser';
let commit: string;
const runtime = { ort, environment: nodeRuntime };

beforeAll(async () => {
  hub = await HubServer.start();
  commit = hub.addRepo(REPO, tinyPipelineFiles());
});
afterAll(() => hub.close());
beforeEach(() => {
  cache = new MemoryCache();
  hub.requests.length = 0;
  hub.fault = undefined;
  vi.stubGlobal('caches', { open: async (name: string) => (name === 'denoise-models' ? cache : new MemoryCache()) });
});
afterEach(() => {
  vi.unstubAllGlobals();
});

describe('Cache Storage repositories', () => {
  it('downloads into Cache Storage under resolve URLs at the commit and runs the UNet from bytes', async () => {
    const snapshot = await openBrowserCacheSnapshot(REPO, { hubUrl: hub.url });
    const repo = await loadFromSnapshot(snapshot, { device: 'cpu' }, runtime);
    expect(repo.commit).toBe(commit);
    expect(repo.localPath('unet/model.onnx')).toBeUndefined();
    const keys = [...cache.entries.keys()].map((k) => k.slice(hub.url.length));
    expect(keys).toContain(`/${REPO}/resolve/${commit}/unet/model.onnx_data`);
    expect(keys).toContain(`/.denoise/manifests/${REPO}/main.json`);
    expect(keys).not.toContain(`/${REPO}/resolve/${commit}/unet/diffusion_pytorch_model.safetensors`);
    const unet = await repo.createSession('unet');
    const { out_sample } = await unet.run({
      sample: new Tensor(Float32Array.from([2, 4]), [1, 2, 1, 1]),
      timestep: 5,
      encoder_hidden_states: new Tensor(Float32Array.from([1, 1, 1]), [1, 1, 3]),
    });
    expect(Array.from(out_sample.data)).toEqual([unetExpected(2, 5, 1), unetExpected(4, 5, 1)]);
  });

  it('reuses the cache, and works offline with localFilesOnly', async () => {
    await loadFromSnapshot(await openBrowserCacheSnapshot(REPO, { hubUrl: hub.url }), {}, runtime);
    hub.requests.length = 0;
    await loadFromSnapshot(await openBrowserCacheSnapshot(REPO, { hubUrl: hub.url }), {}, runtime);
    expect(hub.requests.map((r) => r.kind)).toEqual(['info', 'tree']);
    hub.requests.length = 0;
    const offline = await loadFromSnapshot(
      await openBrowserCacheSnapshot(REPO, { hubUrl: hub.url, localFilesOnly: true }),
      {},
      runtime,
    );
    expect(offline.commit).toBe(commit);
    expect(await offline.readJson('unet/config.json')).toEqual({ in_channels: 2 });
    expect(hub.requests).toEqual([]);
  });

  it('stores nothing for a corrupted or broken download', async () => {
    const onnxData = 'unet/model.onnx_data';
    const good = hub.file(REPO, onnxData);
    const corrupt = good.slice();
    corrupt[0] ^= 1;
    hub.fault = (r) => (r.path === onnxData ? { body: corrupt } : undefined);
    const error = await loadFromSnapshot(await openBrowserCacheSnapshot(REPO, { hubUrl: hub.url }), {}, runtime).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ModelLoadError);
    expect((error as ModelLoadError).message).toMatch(/unet\/model\.onnx_data of org\/browser arrived corrupted/);
    expect([...cache.entries.keys()].some((k) => k.endsWith(onnxData))).toBe(false);
  });

  it('localFilesOnly before any download says what to do', async () => {
    const error = await openBrowserCacheSnapshot(REPO, { hubUrl: hub.url, localFilesOnly: true }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ModelLoadError);
    expect((error as ModelLoadError).code).toBe('MODEL_NOT_FOUND');
    expect((error as Error).message).toMatch(/not in this browser's cache/);
  });
});

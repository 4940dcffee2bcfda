import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AbortError, ModelLoadError, Tensor } from '../../src/index.js';
import { loadRepository, type ProgressInfo, repoCacheFolder } from '../../src/runtime/index.node.js';
import { gitBlobId, HubServer, sha256Hex } from '../helpers/hub-server.js';
import { modelIndexJson, tinyPipelineFiles, unetExpected, unetGraph } from './fixtures.js';

let hub: HubServer;
let cacheDir: string;
const REPO = 'org/tiny-sd';
let commit: string;

beforeAll(async () => {
  hub = await HubServer.start();
  commit = hub.addRepo(REPO, tinyPipelineFiles());
});
afterAll(() => hub.close());
beforeEach(async () => {
  cacheDir = await mkdtemp(join(tmpdir(), 'denoise-hub-'));
  hub.requests.length = 0;
  hub.fault = undefined;
});
afterEach(() => rm(cacheDir, { recursive: true, force: true }));

async function loadError(promise: Promise<unknown>): Promise<ModelLoadError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ModelLoadError);
  return error as ModelLoadError;
}

/** Every file under the repository's cache folder, with `->` and the link target for symlinks. */
async function cacheListing(folder: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(join(folder, prefix), { withFileTypes: true })) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await cacheListing(folder, path)));
    else if (entry.isSymbolicLink()) out.push(`${path} -> ${await readlink(join(folder, path))}`);
    else out.push(path);
  }
  return out.sort();
}

describe('Hugging Face cache layout', () => {
  it('writes blobs, refs and relative snapshot symlinks exactly as huggingface_hub does', async () => {
    const repo = await loadRepository(REPO, { hubUrl: hub.url, cacheDir });
    expect(repo.commit).toBe(commit);
    const folder = repoCacheFolder(cacheDir, REPO);
    expect(folder).toBe(join(cacheDir, 'models--org--tiny-sd'));
    expect(await readFile(join(folder, 'refs', 'main'), 'utf8')).toBe(commit);

    const files = tinyPipelineFiles();
    const blobOf = (path: string) => {
      const bytes = hub.file(REPO, path);
      return /\.onnx(_data)?$/.test(path) ? sha256Hex(bytes) : gitBlobId(bytes);
    };
    const fetched = [
      'model_index.json',
      'scheduler/scheduler_config.json',
      'text_encoder/model.onnx',
      'unet/config.json',
      'unet/model.onnx',
      'unet/model.onnx_data',
      'vae_decoder/model.onnx',
    ];
    const expected = [
      ...fetched.map((p) => `blobs/${blobOf(p)}`),
      'refs/main',
      ...fetched.map((p) => `snapshots/${commit}/${p} -> ${'../'.repeat(p.split('/').length + 1)}blobs/${blobOf(p)}`),
    ].sort();
    expect(await cacheListing(folder)).toEqual(expected);
    // README.md and PyTorch weights were not needed, so never requested.
    expect(Object.keys(files)).toContain('unet/diffusion_pytorch_model.safetensors');
    expect(
      hub.requests
        .filter((r) => r.kind === 'resolve')
        .map((r) => r.path)
        .sort(),
    ).toEqual(fetched);
    for (const p of fetched) {
      expect(new Uint8Array(await readFile(join(folder, 'snapshots', commit, p)))).toEqual(hub.file(REPO, p));
    }
  });

  it('loads the components and runs the UNet with its external data from the cache', async () => {
    const repo = await loadRepository(REPO, { hubUrl: hub.url, cacheDir, device: 'cpu' });
    expect(repo.modelIndex.className).toBe('OnnxStableDiffusionPipeline');
    expect(Object.keys(repo.components)).toEqual(['unet', 'text_encoder', 'vae_decoder', 'scheduler']);
    expect(repo.components.unet.model).toEqual({
      file: 'unet/model.onnx',
      externalData: ['unet/model.onnx_data'],
      dtype: 'fp32',
    });
    expect(repo.components.scheduler.model).toBeUndefined();
    expect(await repo.readJson('scheduler/scheduler_config.json')).toEqual({
      _class_name: 'PNDMScheduler',
      num_train_timesteps: 1000,
    });
    const unet = await repo.createSession('unet');
    const { out_sample } = await unet.run({
      sample: new Tensor(Float32Array.from([2, 4]), [1, 2, 1, 1]),
      timestep: 7,
      encoder_hidden_states: new Tensor(Float32Array.from([3, 3, 3]), [1, 1, 3]),
    });
    expect(Array.from(out_sample.data)).toEqual([unetExpected(2, 7, 3), unetExpected(4, 7, 3)]);
    await unet.release();
  });

  it('reuses the cache: a second load downloads nothing, and localFilesOnly makes no request at all', async () => {
    await loadRepository(REPO, { hubUrl: hub.url, cacheDir });
    hub.requests.length = 0;
    await loadRepository(REPO, { hubUrl: hub.url, cacheDir });
    expect(hub.requests.map((r) => r.kind)).toEqual(['info', 'tree']);
    hub.requests.length = 0;
    const offline = await loadRepository(REPO, { hubUrl: hub.url, cacheDir, localFilesOnly: true });
    expect(offline.commit).toBe(commit);
    expect(hub.requests).toEqual([]);
    const decoder = await offline.createSession('vae_decoder', { device: 'cpu' });
    expect(decoder.inputs.map((i) => i.name)).toEqual(['latent_sample']);
  });

  it('falls back to the cached revision when the Hub cannot be reached, like huggingface_hub', async () => {
    await loadRepository(REPO, { hubUrl: hub.url, cacheDir });
    const unreachable = 'http://127.0.0.1:9';
    const repo = await loadRepository(REPO, { hubUrl: unreachable, cacheDir });
    expect(repo.commit).toBe(commit);
  });

  it('a snapshot folder of the cache loads as a local directory (its links into blobs are allowed)', async () => {
    const fromHub = await loadRepository(REPO, { hubUrl: hub.url, cacheDir });
    const snapshotDir = join(repoCacheFolder(cacheDir, REPO), 'snapshots', commit);
    const local = await loadRepository(snapshotDir);
    expect(Object.keys(local.components)).toEqual(Object.keys(fromHub.components));
    expect(local.components.unet.model).toEqual(fromHub.components.unet.model);
  });

  it('downloads an empty file (git blob id of zero bytes)', async () => {
    hub.addRepo('org/empty-file', { ...tinyPipelineFiles(), 'unet/empty.txt': '' });
    const repo = await loadRepository('org/empty-file', { hubUrl: hub.url, cacheDir });
    expect(repo.components.unet.files).toContain('unet/empty.txt');
    expect(await readlink(repo.localPath('unet/empty.txt')!)).toBe(
      '../../../blobs/e69de29bb2d1d6434b8b29ae775ad8c2e48c5391',
    );
    expect(await readFile(repo.localPath('unet/empty.txt')!, 'utf8')).toBe('');
  });

  it('sends every request through a custom fetch, and accepts a hubUrl with a trailing slash', async () => {
    const seen: string[] = [];
    const proxy: typeof fetch = (input, init) => {
      seen.push(String(input).slice(hub.url.length));
      return fetch(input, init);
    };
    await loadRepository(REPO, { hubUrl: `${hub.url}/`, cacheDir, fetch: proxy, components: ['scheduler'] });
    expect(seen.map((u) => u.split('?')[0])).toEqual([
      `/api/models/${REPO}/revision/main`,
      `/api/models/${REPO}/tree/${commit}`,
      `/${REPO}/resolve/${commit}/model_index.json`,
      `/${REPO}/resolve/${commit}/scheduler/scheduler_config.json`,
    ]);
  });

  it('two concurrent loads of one repository into one cache both succeed', async () => {
    const [a, b] = await Promise.all([
      loadRepository(REPO, { hubUrl: hub.url, cacheDir }),
      loadRepository(REPO, { hubUrl: hub.url, cacheDir }),
    ]);
    for (const repo of [a, b]) {
      expect(new Uint8Array(await readFile(repo.localPath('unet/model.onnx')!))).toEqual(
        hub.file(REPO, 'unet/model.onnx'),
      );
    }
    expect((await blobs()).filter((name) => name.endsWith('.incomplete'))).toEqual([]);
  });

  it('localFilesOnly without a cached copy says what to do', async () => {
    const error = await loadError(loadRepository(REPO, { hubUrl: hub.url, cacheDir, localFilesOnly: true }));
    expect(error.code).toBe('MODEL_NOT_FOUND');
    expect(error.repo).toBe(REPO);
    expect(error.message).toMatch(/localFilesOnly.*Load it once online/);
    expect(hub.requests).toEqual([]);
  });
});

describe('caches written by Python', () => {
  it('reads a snapshot huggingface_hub wrote (symlinks, or plain copies where symlinks are unavailable) offline', async () => {
    const pythonCommit = 'a'.repeat(40);
    const folder = join(cacheDir, 'models--org--from-python');
    const files = tinyPipelineFiles();
    await mkdir(join(folder, 'refs'), { recursive: true });
    await writeFile(join(folder, 'refs', 'main'), pythonCommit);
    for (const [path, content] of Object.entries(files)) {
      const bytes = typeof content === 'string' ? new TextEncoder().encode(content) : content;
      const target = join(folder, 'snapshots', pythonCommit, path);
      await mkdir(dirname(target), { recursive: true });
      if (path.startsWith('unet/')) {
        // As on Windows without developer mode: the file itself sits in the snapshot.
        await writeFile(target, bytes);
      } else {
        const blob = join(folder, 'blobs', gitBlobId(bytes));
        await mkdir(dirname(blob), { recursive: true });
        await writeFile(blob, bytes);
        await symlink(relative(dirname(target), blob), target);
      }
    }
    const repo = await loadRepository('org/from-python', { cacheDir, localFilesOnly: true, device: 'cpu' });
    expect(repo.commit).toBe(pythonCommit);
    const unet = await repo.createSession('unet');
    const { out_sample } = await unet.run({
      sample: new Tensor(Float32Array.from([2, 4]), [1, 2, 1, 1]),
      timestep: 1,
      encoder_hidden_states: new Tensor(Float32Array.from([0, 0, 0]), [1, 1, 3]),
    });
    expect(Array.from(out_sample.data)).toEqual([unetExpected(2, 1, 0), unetExpected(4, 1, 0)]);
  });

  it('reads HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE as huggingface_hub does', async () => {
    const names = ['HF_HUB_CACHE', 'HF_ENDPOINT', 'HF_TOKEN', 'HF_HUB_OFFLINE'] as const;
    const saved = names.map((n) => process.env[n]);
    hub.addRepo('org/env-gated', tinyPipelineFiles(), { token: 'hf_env' });
    Object.assign(process.env, { HF_HUB_CACHE: cacheDir, HF_ENDPOINT: hub.url, HF_TOKEN: 'hf_env' });
    try {
      const online = await loadRepository('org/env-gated');
      const folder = join(cacheDir, 'models--org--env-gated');
      expect(await readFile(join(folder, 'refs', 'main'), 'utf8')).toBe(online.commit);
      hub.requests.length = 0;
      process.env.HF_HUB_OFFLINE = '1';
      const offline = await loadRepository('org/env-gated');
      expect(offline.commit).toBe(online.commit);
      expect(hub.requests).toEqual([]);
    } finally {
      names.forEach((n, i) => {
        if (saved[i] === undefined) delete process.env[n];
        else process.env[n] = saved[i];
      });
    }
  });
});

describe('revisions', () => {
  it('resolves branches to commits, records refs per branch and none for a commit hash', async () => {
    const other = { ...tinyPipelineFiles(), 'unet/config.json': JSON.stringify({ in_channels: 9 }) };
    const v2 = hub.addRepo('org/revisions', other, { revision: 'v2' });
    const main = hub.addRepo('org/revisions', tinyPipelineFiles());
    const atV2 = await loadRepository('org/revisions', { hubUrl: hub.url, cacheDir, revision: 'v2' });
    expect(atV2.commit).toBe(v2);
    expect(await atV2.readJson('unet/config.json')).toEqual({ in_channels: 9 });
    const atMain = await loadRepository('org/revisions', { hubUrl: hub.url, cacheDir });
    expect(atMain.commit).toBe(main);
    expect(await atMain.readJson('unet/config.json')).toEqual({ in_channels: 2 });
    const byHash = await loadRepository('org/revisions', { hubUrl: hub.url, cacheDir, revision: v2 });
    expect(byHash.commit).toBe(v2);
    const folder = repoCacheFolder(cacheDir, 'org/revisions');
    expect((await readdir(join(folder, 'refs'))).sort()).toEqual(['main', 'v2']);
    expect(await readFile(join(folder, 'refs', 'v2'), 'utf8')).toBe(v2);
    expect((await readdir(join(folder, 'snapshots'))).sort()).toEqual([main, v2].sort());
    // Identical files are stored once: both snapshots link the same UNet blob.
    const unetBlob = sha256Hex(hub.file('org/revisions', 'unet/model.onnx'));
    for (const c of [main, v2]) {
      expect(await readlink(join(folder, 'snapshots', c, 'unet/model.onnx'))).toBe(`../../../blobs/${unetBlob}`);
    }
    const offline = await loadRepository('org/revisions', { cacheDir, revision: 'v2', localFilesOnly: true });
    expect(offline.commit).toBe(v2);
  });
});

describe('progress', () => {
  it('reports initiate/download/progress/done per file, an overall total and ready', async () => {
    const events: ProgressInfo[] = [];
    await loadRepository(REPO, { hubUrl: hub.url, cacheDir, progressCallback: (e) => events.push(e) });
    const unet = events.filter((e) => 'file' in e && e.file === 'unet/model.onnx_data');
    const size = hub.file(REPO, 'unet/model.onnx_data').length;
    expect(unet[0]).toEqual({ status: 'initiate', name: REPO, file: 'unet/model.onnx_data' });
    expect(unet[1]).toEqual({ status: 'download', name: REPO, file: 'unet/model.onnx_data' });
    expect(unet.at(-2)).toEqual({
      status: 'progress',
      name: REPO,
      file: 'unet/model.onnx_data',
      loaded: size,
      total: size,
      progress: 100,
    });
    expect(unet.at(-1)).toEqual({ status: 'done', name: REPO, file: 'unet/model.onnx_data' });
    const totals = events.filter((e) => e.status === 'progress_total');
    const allBytes = [
      'model_index.json',
      'scheduler/scheduler_config.json',
      'text_encoder/model.onnx',
      'unet/config.json',
      'unet/model.onnx',
      'unet/model.onnx_data',
      'vae_decoder/model.onnx',
    ].reduce((sum, p) => sum + hub.file(REPO, p).length, 0);
    expect(totals.at(-1)).toMatchObject({ loaded: allBytes, total: allBytes, progress: 100 });
    for (let i = 1; i < totals.length; i++) {
      expect((totals[i] as { loaded: number }).loaded).toBeGreaterThanOrEqual(
        (totals[i - 1] as { loaded: number }).loaded,
      );
    }
    expect(events.at(-1)).toEqual({ status: 'ready', name: REPO, model: REPO });
  });

  it('a load from the cache sends no download events and counts cached bytes in the total', async () => {
    await loadRepository(REPO, { hubUrl: hub.url, cacheDir });
    const events: ProgressInfo[] = [];
    await loadRepository(REPO, { hubUrl: hub.url, cacheDir, progressCallback: (e) => events.push(e) });
    expect(events.filter((e) => e.status === 'download' || e.status === 'progress')).toEqual([]);
    expect(events.filter((e) => e.status === 'done')).toHaveLength(7);
    expect(events.filter((e) => e.status === 'progress_total').at(-1)).toMatchObject({ progress: 100 });
  });
});

/** Blob files in the cache; `.incomplete` temporaries included, to prove none is left. */
async function blobs(repo = REPO): Promise<string[]> {
  return readdir(join(repoCacheFolder(cacheDir, repo), 'blobs')).catch(() => []);
}

describe('failures leave nothing the cache would treat as complete', () => {
  const big = new Float32Array(200_000).map((_, i) => Math.sin(i));
  const BIG_REPO = 'org/big';
  beforeAll(() => {
    hub.addRepo(BIG_REPO, { ...tinyPipelineFiles(), 'unet/model.onnx_data': new Uint8Array(big.buffer) });
  });
  const isBigFile = (r: { kind: string; path?: string }) => r.kind === 'resolve' && r.path === 'unet/model.onnx_data';
  const bigBlob = () => sha256Hex(new Uint8Array(big.buffer));

  it('aborts mid-download with AbortError and keeps no partial file', async () => {
    hub.fault = (r) => (isBigFile(r) ? { stallAfterBytes: 100_000 } : undefined);
    const controller = new AbortController();
    const error = await loadRepository(BIG_REPO, {
      hubUrl: hub.url,
      cacheDir,
      signal: controller.signal,
      progressCallback: (e) => {
        if (e.status === 'progress' && e.file === 'unet/model.onnx_data' && e.loaded > 0) controller.abort();
      },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AbortError);
    expect((error as AbortError).code).toBe('ABORTED');
    const left = await blobs(BIG_REPO);
    expect(left.some((b) => b.startsWith(bigBlob()))).toBe(false);
    const pointer = join(repoCacheFolder(cacheDir, BIG_REPO), 'snapshots');
    const linked = await cacheListing(pointer);
    expect(linked.some((l) => l.includes('model.onnx_data'))).toBe(false);

    hub.fault = undefined;
    const repo = await loadRepository(BIG_REPO, { hubUrl: hub.url, cacheDir });
    expect((await readFile(repo.localPath('unet/model.onnx_data')!)).length).toBe(big.byteLength);
  });

  it('a connection dropped halfway gives DOWNLOAD_FAILED and a retry succeeds', async () => {
    hub.fault = (r) => (isBigFile(r) ? { dropAfterBytes: big.byteLength / 2 } : undefined);
    const error = await loadError(loadRepository(BIG_REPO, { hubUrl: hub.url, cacheDir }));
    expect(error.code).toBe('DOWNLOAD_FAILED');
    expect(error.file).toBe('unet/model.onnx_data');
    expect(error.message).toMatch(
      /unet\/model\.onnx_data of org\/big failed.*broke after \d+ of 800000 bytes.*run the load again/,
    );
    expect(await blobs(BIG_REPO)).not.toContain(bigBlob());
    expect((await blobs(BIG_REPO)).filter((b) => b.endsWith('.incomplete'))).toEqual([]);
    hub.fault = undefined;
    await loadRepository(BIG_REPO, { hubUrl: hub.url, cacheDir });
    expect(await blobs(BIG_REPO)).toContain(bigBlob());
  });

  it('a stalled server fails after stallTimeoutMs instead of hanging', async () => {
    hub.fault = (r) => (isBigFile(r) ? { stallAfterBytes: 1000 } : undefined);
    const error = await loadError(loadRepository(BIG_REPO, { hubUrl: hub.url, cacheDir, stallTimeoutMs: 300 }));
    expect(error.code).toBe('DOWNLOAD_FAILED');
    expect(error.message).toMatch(/no data arrived for 300 ms/);
    expect(await blobs(BIG_REPO)).not.toContain(bigBlob());
  });

  it('wrong bytes (right size, wrong hash) and a short body are rejected', async () => {
    const corrupt = new Uint8Array(big.buffer.slice(0));
    corrupt[1234] ^= 0xff;
    hub.fault = (r) => (isBigFile(r) ? { body: corrupt } : undefined);
    const hashError = await loadError(loadRepository(BIG_REPO, { hubUrl: hub.url, cacheDir }));
    expect(hashError.code).toBe('DOWNLOAD_FAILED');
    expect(hashError.message).toMatch(new RegExp(`arrived corrupted.*the Hub lists ${bigBlob()}`));
    hub.fault = (r) => (isBigFile(r) ? { body: corrupt.subarray(0, 1000) } : undefined);
    const sizeError = await loadError(loadRepository(BIG_REPO, { hubUrl: hub.url, cacheDir }));
    expect(sizeError.message).toMatch(/closed after 1000 of 800000 bytes/);
    expect(await blobs(BIG_REPO)).not.toContain(bigBlob());
    expect((await blobs(BIG_REPO)).filter((b) => b.endsWith('.incomplete'))).toEqual([]);
  });
});

describe('errors name the repository, the file and what to do', () => {
  it('404 for an unknown repository', async () => {
    const error = await loadError(loadRepository('org/nope', { hubUrl: hub.url, cacheDir }));
    expect(error.code).toBe('MODEL_NOT_FOUND');
    expect(error.repo).toBe('org/nope');
    expect(error.message).toMatch(/org\/nope \(revision main\) was not found.*Check the repository id/);
  });

  it('404 for an unknown revision', async () => {
    const error = await loadError(loadRepository(REPO, { hubUrl: hub.url, cacheDir, revision: 'v9' }));
    expect(error.code).toBe('MODEL_NOT_FOUND');
    expect(error.message).toMatch(/revision v9/);
  });

  it('401 without the token of a gated repository, success with it', async () => {
    hub.addRepo('org/gated', tinyPipelineFiles(), { token: 'hf_secret' });
    const error = await loadError(loadRepository('org/gated', { hubUrl: hub.url, cacheDir }));
    expect(error.code).toBe('UNAUTHORIZED');
    expect(error.message).toMatch(/accessToken/);
    const repo = await loadRepository('org/gated', { hubUrl: hub.url, cacheDir, accessToken: 'hf_secret' });
    expect(Object.keys(repo.components)).toHaveLength(4);
    expect(hub.requests.filter((r) => r.kind === 'resolve').every((r) => r.authorization === 'Bearer hf_secret')).toBe(
      true,
    );
  });

  it('a 500 or 404 on one file names that file', async () => {
    hub.fault = (r) => (r.kind === 'resolve' && r.path === 'text_encoder/model.onnx' ? { status: 500 } : undefined);
    const error = await loadError(loadRepository(REPO, { hubUrl: hub.url, cacheDir }));
    expect(error.code).toBe('DOWNLOAD_FAILED');
    expect(error.file).toBe('text_encoder/model.onnx');
    hub.fault = (r) => (r.kind === 'resolve' && r.path === 'text_encoder/model.onnx' ? { status: 404 } : undefined);
    const missing = await loadError(loadRepository(REPO, { hubUrl: hub.url, cacheDir }));
    expect(missing.code).toBe('FILE_NOT_FOUND');
    expect(missing.message).toMatch(/text_encoder\/model\.onnx of org\/tiny-sd was not found/);
  });

  it('a bad model_index.json', async () => {
    hub.addRepo('org/bad-index', { ...tinyPipelineFiles(), 'model_index.json': '{"unet": ["diffusers"' });
    const error = await loadError(loadRepository('org/bad-index', { hubUrl: hub.url, cacheDir }));
    expect(error.code).toBe('INVALID_MODEL');
    expect(error.file).toBe('model_index.json');
    expect(error.message).toMatch(/model_index.json of org\/bad-index is invalid: it is not valid JSON/);
  });

  it('a repository without model_index.json', async () => {
    hub.addRepo('org/no-index', { 'model.onnx': unetGraph({ type: 'int64', shape: [1] }) });
    const error = await loadError(loadRepository('org/no-index', { hubUrl: hub.url, cacheDir }));
    expect(error.code).toBe('INVALID_MODEL');
    expect(error.message).toMatch(/has no model_index.json/);
  });

  it('a truncated ONNX file fails at session creation, naming it', async () => {
    const files = tinyPipelineFiles();
    const truncated = (files['vae_decoder/model.onnx'] as Uint8Array).subarray(0, 40);
    hub.addRepo('org/truncated', { ...files, 'vae_decoder/model.onnx': truncated });
    const repo = await loadRepository('org/truncated', { hubUrl: hub.url, cacheDir });
    const error = await loadError(repo.createSession('vae_decoder', { device: 'cpu' }));
    expect(error.code).toBe('INVALID_MODEL');
    expect(error.file).toBe('vae_decoder/model.onnx');
    expect(error.message).toMatch(/could not load vae_decoder\/model.onnx of org\/truncated.*truncated/);
  });

  it('file names that escape the cache directory are refused before anything is written', async () => {
    hub.addRepo('org/escape', { 'model_index.json': modelIndexJson(['unet']), 'unet/../../../evil.json': '{}' });
    const error = await loadError(loadRepository('org/escape', { hubUrl: hub.url, cacheDir }));
    expect(error.code).toBe('INVALID_MODEL');
    expect(error.message).toMatch(/"unet\/\.\.\/\.\.\/\.\.\/evil\.json", whose name would escape/);
    expect(await lstat(join(cacheDir, '..', 'evil.json')).catch(() => undefined)).toBeUndefined();
    expect(hub.requests.some((r) => r.kind === 'resolve')).toBe(false);
  });
});

/** The test Hub answers @huggingface/hub's own functions the way the real Hub does. */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { downloadFile, fileDownloadInfo, listFiles, modelInfo, pathsInfo } from '@huggingface/hub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gitBlobId, HubServer, sha256Hex } from '../helpers/hub-server.js';

let hub: HubServer;
let commit: string;
const weights = new Uint8Array(20_000).map((_, i) => i % 251);

beforeAll(async () => {
  hub = await HubServer.start();
  commit = hub.addRepo('org/repo', { 'config.json': '{"a":1}', 'unet/model.onnx': weights });
});
afterAll(() => hub.close());

describe('HubServer', () => {
  it('answers modelInfo, listFiles and pathsInfo', async () => {
    const info = await modelInfo({ name: 'org/repo', hubUrl: hub.url, additionalFields: ['sha'] });
    expect(info.sha).toBe(commit);
    const entries = [];
    for await (const entry of listFiles({ repo: 'org/repo', hubUrl: hub.url, recursive: true })) entries.push(entry);
    expect(entries).toEqual([
      { type: 'directory', path: 'unet', size: 0, oid: expect.any(String) },
      { type: 'file', path: 'config.json', size: 7, oid: gitBlobId(new TextEncoder().encode('{"a":1}')) },
      {
        type: 'file',
        path: 'unet/model.onnx',
        size: 20_000,
        oid: gitBlobId(weights),
        lfs: { oid: sha256Hex(weights), size: 20_000, pointerSize: 134 },
      },
    ]);
    const [paths] = await pathsInfo({ repo: 'org/repo', hubUrl: hub.url, paths: ['unet/model.onnx'], expand: true });
    expect(paths.lfs?.oid).toBe(sha256Hex(weights));
    expect(paths.lastCommit?.id).toBe(commit);
  });

  it('serves resolve with the Hub headers and byte ranges', async () => {
    const info = await fileDownloadInfo({ repo: 'org/repo', path: 'unet/model.onnx', hubUrl: hub.url });
    expect(info).toMatchObject({ size: 20_000, etag: `"${sha256Hex(weights)}"` });
    const response = await fetch(`${hub.url}/org/repo/resolve/main/unet/model.onnx`, {
      headers: { Range: 'bytes=10-19' },
    });
    expect(response.status).toBe(206);
    expect(response.headers.get('content-range')).toBe('bytes 10-19/20000');
    expect(response.headers.get('x-repo-commit')).toBe(commit);
    expect(response.headers.get('x-linked-size')).toBe('20000');
    expect(new Uint8Array(await response.arrayBuffer())).toEqual(weights.subarray(10, 20));
    const blob = await downloadFile({ repo: 'org/repo', path: 'config.json', hubUrl: hub.url });
    expect(await blob?.text()).toBe('{"a":1}');
  });

  it('records requests and injects faults', async () => {
    hub.requests.length = 0;
    hub.fault = (r) => (r.path === 'config.json' ? { status: 503 } : undefined);
    const failed = await fetch(`${hub.url}/org/repo/resolve/main/config.json`);
    expect(failed.status).toBe(503);
    hub.fault = (r) => (r.path === 'unet/model.onnx' ? { dropAfterBytes: 5000 } : undefined);
    const dropped = await fetch(`${hub.url}/org/repo/resolve/main/unet/model.onnx`);
    await expect(dropped.arrayBuffer()).rejects.toThrow();
    hub.fault = undefined;
    expect(hub.requests.map((r) => [r.kind, r.path])).toEqual([
      ['resolve', 'config.json'],
      ['resolve', 'unet/model.onnx'],
    ]);
    const missing = await fetch(`${hub.url}/org/repo/resolve/main/nope.json`);
    expect([missing.status, missing.headers.get('x-error-code')]).toEqual([404, 'EntryNotFound']);
  });

  it('works as the Hub of @huggingface/hub downloadFileToCacheDir', async () => {
    const { downloadFileToCacheDir } = await import('@huggingface/hub');
    const cacheDir = await mkdtemp(join(tmpdir(), 'denoise-hubjs-'));
    try {
      const path = await downloadFileToCacheDir({
        repo: 'org/repo',
        path: 'unet/model.onnx',
        hubUrl: hub.url,
        cacheDir,
      });
      expect(new Uint8Array(await readFile(path))).toEqual(weights);
    } finally {
      await rm(cacheDir, { recursive: true, force: true });
    }
  });
});

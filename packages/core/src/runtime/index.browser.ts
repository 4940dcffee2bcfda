/**
 * Model loading and ONNX sessions for browsers, over `onnxruntime-web` and Cache Storage.
 *
 * @packageDocumentation
 */
import * as ort from 'onnxruntime-web';
import { InvalidArgumentError, ModelLoadError } from '../errors.js';
import { type BrowserCacheOptions, openBrowserCacheSnapshot } from './browser-hub-cache.js';
import type { DeviceSupport, RuntimeEnvironment } from './device.js';
import { deviceInstallHint } from './device.js';
import { webGpuUpload } from './device-tensor.js';
import { loadFromSnapshot, type ModelRepository, type RepositoryOptions } from './repository.js';
import {
  createSession,
  type LogSeverityLevel,
  type ModelSession,
  ORT_LOG_LEVEL_NAMES,
  type SessionOptions,
} from './session.js';

export type { BrowserCacheOptions } from './browser-hub-cache.js';
export * from './exports.js';

/** Options of {@link loadRepository} in browsers. */
export interface LoadOptions extends RepositoryOptions, BrowserCacheOptions {}

/** The execution providers of `onnxruntime-web` in this browser. `'auto'` is WebGPU when present, else wasm. */
export const browserRuntime: RuntimeEnvironment = (() => {
  const webgpu = typeof navigator !== 'undefined' && 'gpu' in navigator;
  const available = new Set(webgpu ? ['webgpu', 'wasm'] : ['wasm']);
  return { name: 'onnxruntime-web', available, autoDevices: webgpu ? ['webgpu', 'wasm'] : ['wasm'] };
})();

/**
 * Which execution providers `onnxruntime-web` can use in this browser: WebGPU when the browser gives a GPU
 * adapter, and WASM (the CPU) always; the Node-only providers are listed as such.
 */
export async function getDeviceSupport(): Promise<DeviceSupport> {
  const gpu = typeof navigator !== 'undefined' && 'gpu' in navigator ? (navigator as { gpu: GpuLike }).gpu : undefined;
  const adapter = gpu ? await gpu.requestAdapter().catch(() => null) : null;
  const nodeOnly = (device: 'cuda' | 'dml' | 'coreml') => ({
    device,
    usable: false,
    detail: 'not in browsers',
    enable: 'Run in Node.js with onnxruntime-node for this provider.',
  });
  return {
    runtime: `onnxruntime-web ${ort.env.versions.web ?? ''}`.trim(),
    platform: typeof navigator !== 'undefined' ? navigator.userAgent : 'unknown',
    providers: [
      adapter
        ? { device: 'webgpu', usable: true, detail: 'navigator.gpu gave an adapter' }
        : {
            device: 'webgpu',
            usable: false,
            detail: gpu ? 'navigator.gpu gave no adapter' : 'no navigator.gpu',
            enable: deviceInstallHint('webgpu', 'onnxruntime-web'),
          },
      nodeOnly('cuda'),
      nodeOnly('dml'),
      nodeOnly('coreml'),
      { device: 'wasm', usable: true, detail: 'WebAssembly' },
    ],
    autoDevices: browserRuntime.autoDevices,
  };
}

/** `onnxruntime-web` as the session layer uses it, with uploads to the WebGPU device. */
const webOrt = { InferenceSession: ort.InferenceSession, Tensor: ort.Tensor, webGpuUpload: webGpuUpload(ort) };

/** The part of the WebGPU API this file reads (the DOM typings of TypeScript 5.9 have no `navigator.gpu`). */
interface GpuLike {
  requestAdapter(): Promise<unknown>;
}

/**
 * Loads a diffusers-layout ONNX model from the Hub (`'org/name'`) through Cache Storage.
 *
 * @param repo - a Hub repository id
 */
export async function loadRepository(repo: string, options: LoadOptions = {}): Promise<ModelRepository> {
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) {
    throw new ModelLoadError('MODEL_NOT_FOUND', `"${repo}" is not a Hub repository id ("org/name").`, { repo });
  }
  const snapshot = await openBrowserCacheSnapshot(repo, options);
  return loadFromSnapshot(snapshot, options, { ort: webOrt, environment: browserRuntime });
}

/**
 * Opens a single ONNX graph from its bytes or URL.
 *
 * @param file - the `.onnx` bytes, or a URL onnxruntime-web can fetch
 */
export function openSession(file: string | Uint8Array, options: SessionOptions = {}): Promise<ModelSession> {
  const name = typeof file === 'string' ? file : 'model.onnx';
  return createSession(
    webOrt,
    browserRuntime,
    { model: file, externalData: [] },
    { ...options, name, repo: name, file: name },
  );
}

/**
 * Sets the level of ONNX Runtime's process-wide logger, which prints what happens outside any one session, such
 * as an execution provider's library failing to load (the load still fails with a `DeviceUnavailableError` that
 * says why). ONNX Runtime reads it once, when the first session is created; each session's own messages follow
 * {@link SessionOptions.logSeverityLevel}.
 *
 * @param level - 0 verbose, 1 info, 2 warning (ONNX Runtime's default), 3 error, 4 fatal
 */
export function setRuntimeLogLevel(level: LogSeverityLevel): void {
  const name = ORT_LOG_LEVEL_NAMES[level];
  if (name === undefined) {
    throw new InvalidArgumentError(`level must be 0, 1, 2, 3 or 4 (verbose to fatal), got ${level}.`);
  }
  ort.env.logLevel = name;
}

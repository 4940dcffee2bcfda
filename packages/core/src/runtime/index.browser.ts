/**
 * Model loading and ONNX sessions for browsers, over `onnxruntime-web` and Cache Storage.
 *
 * @packageDocumentation
 */
import * as ort from 'onnxruntime-web';
import { InvalidArgumentError, ModelLoadError } from '../errors.js';
import { type BrowserCacheOptions, openBrowserCacheSnapshot } from './browser-hub-cache.js';
import type { RuntimeEnvironment } from './device.js';
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
 * Loads a diffusers-layout ONNX model from the Hub (`'org/name'`) through Cache Storage.
 *
 * @param repo - a Hub repository id
 */
export async function loadRepository(repo: string, options: LoadOptions = {}): Promise<ModelRepository> {
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) {
    throw new ModelLoadError('MODEL_NOT_FOUND', `"${repo}" is not a Hub repository id ("org/name").`, { repo });
  }
  const snapshot = await openBrowserCacheSnapshot(repo, options);
  return loadFromSnapshot(snapshot, options, { ort, environment: browserRuntime });
}

/**
 * Opens a single ONNX graph from its bytes or URL.
 *
 * @param file - the `.onnx` bytes, or a URL onnxruntime-web can fetch
 */
export function openSession(file: string | Uint8Array, options: SessionOptions = {}): Promise<ModelSession> {
  const name = typeof file === 'string' ? file : 'model.onnx';
  return createSession(
    ort,
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

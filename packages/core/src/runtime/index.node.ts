/**
 * Model loading and ONNX sessions for Node, over `onnxruntime-node` and the Hugging Face cache on disk.
 *
 * @module @denoise/core/runtime
 */
import { stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { InvalidArgumentError, ModelLoadError } from '../errors.js';
import type { DeviceSupport, RuntimeEnvironment } from './device.js';
import { nodeDeviceSupport, probeNode } from './node-device-support.js';
import { type HubCacheOptions, openHubCacheSnapshot } from './node-hub-cache.js';
import { openLocalDirectory } from './node-local-directory.js';
import { loadFromSnapshot, type ModelRepository, type RepositoryOptions } from './repository.js';
import {
  createSession,
  type LogSeverityLevel,
  type ModelSession,
  ORT_LOG_LEVEL_NAMES,
  type SessionOptions,
} from './session.js';

export * from './exports.js';
export type { HubCacheOptions } from './node-hub-cache.js';
export { repoCacheFolder } from './node-hub-cache.js';

/** Options of {@link loadRepository} in Node. */
export interface LoadOptions extends RepositoryOptions, HubCacheOptions {}

const PLATFORM_GPU: Readonly<Record<string, string>> = { win32: 'dml', darwin: 'coreml' };

/** The execution providers of the installed `onnxruntime-node`. `'auto'` is DirectML on Windows, CoreML on macOS, else CPU. */
export const nodeRuntime: RuntimeEnvironment = (() => {
  const available = new Set(ort.listSupportedBackends().map((b) => b.name));
  const gpu = PLATFORM_GPU[process.platform];
  return {
    name: 'onnxruntime-node',
    available,
    autoDevices: gpu && available.has(gpu) ? [gpu, 'cpu'] : ['cpu'],
  };
})();

/**
 * Which execution providers this machine's `onnxruntime-node` can use (CPU, CUDA with the driver's CUDA version,
 * DirectML, CoreML, WebGPU) and how to enable each missing one; `denoise doctor` prints it.
 *
 * @example
 * ```ts
 * const { providers } = await getDeviceSupport();
 * for (const p of providers) console.log(p.device, p.usable ? 'yes' : `no: ${p.enable}`);
 * ```
 */
export async function getDeviceSupport(): Promise<DeviceSupport> {
  const packageJson = createRequire(import.meta.url).resolve('onnxruntime-node/package.json');
  const binding = join(
    dirname(packageJson),
    'bin',
    'napi-v6',
    process.platform,
    process.arch,
    'onnxruntime_binding.node',
  );
  return nodeDeviceSupport(await probeNode(ort, binding, nodeRuntime.autoDevices));
}

const REPO_ID = /^[\w.-]+\/[\w.-]+$/;

/**
 * Loads a diffusers-layout ONNX model: a Hub repository (`'org/name'`, through the Hugging Face cache) or a local
 * directory. Only `model_index.json`, the components' configs and tokenizer files and the chosen ONNX variant
 * with its external data are fetched. As in huggingface_hub, `HF_ENDPOINT`, `HF_TOKEN` and `HF_HUB_OFFLINE=1`
 * provide defaults for `hubUrl`, `accessToken` and `localFilesOnly`.
 *
 * @param source - a Hub repository id or a directory holding `model_index.json`
 * @example
 * ```ts
 * const repo = await loadRepository('org/tiny-sd-onnx', { revision: 'main', dtype: 'fp16', device: 'cpu' });
 * const unet = await repo.createSession('unet');
 * ```
 */
export async function loadRepository(source: string, options: LoadOptions = {}): Promise<ModelRepository> {
  const runtime = { ort, environment: nodeRuntime };
  // The environment variables huggingface_hub reads, so that one setting serves Python and denoise.
  const env = process.env;
  const withEnvironment: LoadOptions = {
    ...options,
    hubUrl: options.hubUrl ?? env.HF_ENDPOINT,
    accessToken: options.accessToken ?? env.HF_TOKEN,
    localFilesOnly: options.localFilesOnly ?? /^(1|on|yes|true)$/i.test(env.HF_HUB_OFFLINE ?? ''),
  };
  const local = await stat(source).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (local) return loadFromSnapshot(await openLocalDirectory(source), options, runtime);
  if (!REPO_ID.test(source)) {
    throw new ModelLoadError(
      'MODEL_NOT_FOUND',
      `"${source}" is neither a directory nor a Hub repository id ("org/name"). Check the path or the id.`,
      { repo: source },
    );
  }
  return loadFromSnapshot(await openHubCacheSnapshot(source, withEnvironment), withEnvironment, runtime);
}

/**
 * Opens a single ONNX file that is not part of a diffusers repository (external data next to it is found by
 * onnxruntime).
 *
 * @param file - the `.onnx` path, or its bytes
 */
export function openSession(file: string | Uint8Array, options: SessionOptions = {}): Promise<ModelSession> {
  const name = typeof file === 'string' ? file : 'model.onnx';
  return createSession(
    ort,
    nodeRuntime,
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

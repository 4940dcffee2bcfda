import { DeviceUnavailableError, InvalidArgumentError } from '../errors.js';

/**
 * Where a model runs. `'auto'` picks the best device this runtime has (see {@link RuntimeEnvironment.autoDevices});
 * the others name one ONNX Runtime execution provider.
 */
export type Device = 'auto' | 'cpu' | 'cuda' | 'dml' | 'coreml' | 'webgpu' | 'wasm';

const DEVICES: readonly Device[] = ['auto', 'cpu', 'cuda', 'dml', 'coreml', 'webgpu', 'wasm'];

/** What the Node or browser entry tells the shared code about its ONNX Runtime. */
export interface RuntimeEnvironment {
  /** The runtime package, for messages. */
  name: 'onnxruntime-node' | 'onnxruntime-web';
  /** Execution providers this runtime can use. */
  available: ReadonlySet<string>;
  /** The providers `'auto'` tries, best first; ONNX Runtime falls back along the list. */
  autoDevices: readonly string[];
}

/** What to install or choose when `device` is missing from `runtime`. */
export function deviceInstallHint(device: Device, runtime: RuntimeEnvironment['name']): string {
  if (runtime === 'onnxruntime-web') {
    if (device === 'webgpu')
      return 'This browser has no WebGPU (navigator.gpu); use a recent Chrome or Edge, or device "wasm".';
    return `Browsers have no ${device} execution provider; use device "webgpu" or "wasm".`;
  }
  switch (device) {
    case 'cuda':
      return (
        'onnxruntime-node runs CUDA on Linux x64 once its CUDA 12 binaries are installed: ' +
        '`ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install` ' +
        '(and the CUDA 12 / cuDNN 9 libraries).'
      );
    case 'dml':
      return 'DirectML is available in onnxruntime-node on Windows only; use "cpu" (or "cuda") elsewhere.';
    case 'coreml':
      return 'CoreML is available in onnxruntime-node on macOS only; use "cpu" elsewhere.';
    case 'wasm':
      return 'The wasm device belongs to onnxruntime-web (browsers); in Node use "cpu".';
    case 'webgpu':
      return (
        'onnxruntime-node runs WebGPU through Dawn, which needs a GPU adapter (Vulkan drivers on Linux, ' +
        'Direct3D 12 on Windows, Metal on macOS); without one, use "cpu".'
      );
    default:
      return `This onnxruntime-node build has no ${device} provider; use "cpu".`;
  }
}

/**
 * The ONNX Runtime execution providers for `device`.
 *
 * @throws `DeviceUnavailableError` when this runtime cannot provide the device, saying what to install
 */
export function executionProviders(device: Device, runtime: RuntimeEnvironment): string[] {
  if (!DEVICES.includes(device)) {
    throw new InvalidArgumentError(`Unknown device "${device}". Use one of: ${DEVICES.join(', ')}.`);
  }
  if (device === 'auto') return [...runtime.autoDevices];
  if (device === 'cpu' && runtime.name === 'onnxruntime-web') return ['wasm'];
  if (!runtime.available.has(device)) {
    throw new DeviceUnavailableError(
      `Device "${device}" is not available in ${runtime.name} here (it has: ${[...runtime.available].join(', ')}). ` +
        deviceInstallHint(device, runtime.name),
    );
  }
  return [device];
}

/** Whether this machine's ONNX Runtime can use one execution provider, and what to do when it cannot. */
export interface ProviderStatus {
  /** The `device` option that selects the provider. */
  device: Exclude<Device, 'auto'>;
  /** True when a session on this device can be created here. */
  usable: boolean;
  /** What was found: the runtime build, the GPU and driver, the CUDA version. */
  detail: string;
  /** How to enable the provider when it is not usable (absent when it is, or when nothing can). */
  enable?: string;
}

/** What {@link getDeviceSupport} reports: the runtime, every provider denoise knows, and what `'auto'` picks. */
export interface DeviceSupport {
  /** The ONNX Runtime package and its version, e.g. `onnxruntime-node 1.30.0`. */
  runtime: string;
  /** `process.platform`-`process.arch` in Node, the user agent in browsers. */
  platform: string;
  /** One entry per provider, in the order `'auto'` would prefer them. */
  providers: ProviderStatus[];
  /** The providers `device: 'auto'` tries, best first. */
  autoDevices: readonly string[];
}

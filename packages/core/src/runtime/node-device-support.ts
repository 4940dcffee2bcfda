/**
 * Which execution providers `onnxruntime-node` can use on this machine. The binding lists the providers it was
 * compiled with; CUDA also needs the provider library that the `cuda12` install step downloads next to it, a
 * driver and the CUDA 12 runtime, so those are looked for as well.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type DeviceSupport, deviceInstallHint, type ProviderStatus } from './device.js';

/** ONNX Runtime 1.30's CUDA build is made against CUDA 12 and cuDNN 9. */
const CUDA_MAJOR = 12;

/** What the report is made of, gathered from the machine by {@link probeNode}; tests pass their own. */
export interface NodeProbe {
  /** `ort.env.versions.node`. */
  version: string;
  platform: NodeJS.Platform;
  arch: string;
  /** `ort.listSupportedBackends()`. */
  backends: readonly { name: string; bundled: boolean }[];
  /** Whether `libonnxruntime_providers_cuda` sits next to the binding. */
  cudaProviderLibrary: boolean;
  /** `nvidia-smi`'s output (its header names the driver's CUDA version), or undefined without a driver. */
  nvidiaSmi: string | undefined;
  /** The providers `'auto'` tries. */
  autoDevices: readonly string[];
}

function run(command: string, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: 10_000 }, (error, stdout) => resolve(error ? undefined : stdout));
  });
}

/**
 * Gathers the facts of {@link NodeProbe} from this machine.
 *
 * @param ort - the loaded `onnxruntime-node`
 * @param bindingPath - where its native binding lives (the CUDA provider library is installed beside it)
 */
export async function probeNode(
  ort: { env: { versions: { node?: string } }; listSupportedBackends(): { name: string; bundled: boolean }[] },
  bindingPath: string | undefined,
  autoDevices: readonly string[],
): Promise<NodeProbe> {
  const library = process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so';
  return {
    version: ort.env.versions.node ?? 'unknown',
    platform: process.platform,
    arch: process.arch,
    backends: ort.listSupportedBackends(),
    cudaProviderLibrary: bindingPath !== undefined && existsSync(join(dirname(bindingPath), library)),
    nvidiaSmi: await run('nvidia-smi', []),
    autoDevices,
  };
}

function cudaStatus(probe: NodeProbe): ProviderStatus {
  const compiled = probe.backends.some((b) => b.name === 'cuda');
  const installHint = deviceInstallHint('cuda', 'onnxruntime-node');
  if (!compiled) {
    return {
      device: 'cuda',
      usable: false,
      detail: `not in onnxruntime-node's ${probe.platform}-${probe.arch} build`,
      enable: 'CUDA builds of onnxruntime-node exist for Linux x64 only; on Windows use "dml".',
    };
  }
  const cudaVersion = probe.nvidiaSmi?.match(/CUDA Version:\s*([\d.]+)/)?.[1];
  const gpu = probe.nvidiaSmi?.match(/^\|\s+\d+\s+(.+?)\s{2,}/m)?.[1]?.replace(/\s+(On|Off)$/, '');
  const driver = probe.nvidiaSmi?.match(/Driver Version:\s*([\d.]+)/)?.[1];
  const found = cudaVersion
    ? `${gpu ? `${gpu}, ` : ''}driver ${driver ?? '?'}, CUDA ${cudaVersion}`
    : 'no NVIDIA driver (nvidia-smi not found)';
  if (!probe.cudaProviderLibrary) {
    return {
      device: 'cuda',
      usable: false,
      detail: `${found}; the CUDA provider library of onnxruntime-node is not installed`,
      enable: installHint,
    };
  }
  if (!cudaVersion) {
    return {
      device: 'cuda',
      usable: false,
      detail: `provider library installed; ${found}`,
      enable: 'Install the NVIDIA driver with CUDA 12 and cuDNN 9 (nvidia-smi should then list the GPU).',
    };
  }
  if (Number.parseInt(cudaVersion, 10) < CUDA_MAJOR) {
    return {
      device: 'cuda',
      usable: false,
      detail: `provider library installed; ${found}`,
      enable: `onnxruntime-node ${probe.version} needs CUDA ${CUDA_MAJOR}: update the NVIDIA driver.`,
    };
  }
  return { device: 'cuda', usable: true, detail: `provider library installed; ${found}` };
}

/**
 * The report of {@link NodeProbe}'s facts: CPU, CUDA, DirectML, CoreML and WebGPU, with the way to enable each
 * missing one.
 */
export function nodeDeviceSupport(probe: NodeProbe): DeviceSupport {
  const has = (name: string) => probe.backends.some((b) => b.name === name);
  const build = `onnxruntime-node's ${probe.platform}-${probe.arch} build`;
  const listed = (device: 'dml' | 'coreml'): ProviderStatus =>
    has(device)
      ? { device, usable: true, detail: `in ${build}` }
      : { device, usable: false, detail: `not in ${build}`, enable: deviceInstallHint(device, 'onnxruntime-node') };
  const providers: ProviderStatus[] = [
    cudaStatus(probe),
    listed('dml'),
    listed('coreml'),
    has('webgpu')
      ? { device: 'webgpu', usable: true, detail: `in ${build} (Dawn; needs a Vulkan, D3D12 or Metal GPU adapter)` }
      : {
          device: 'webgpu',
          usable: false,
          detail: `not in ${build}`,
          enable: 'onnxruntime-node has WebGPU on Windows, macOS and Linux x64; use "cpu" here.',
        },
    { device: 'cpu', usable: has('cpu'), detail: `in ${build}` },
  ];
  return {
    runtime: `onnxruntime-node ${probe.version}`,
    platform: `${probe.platform}-${probe.arch}`,
    providers,
    autoDevices: probe.autoDevices,
  };
}

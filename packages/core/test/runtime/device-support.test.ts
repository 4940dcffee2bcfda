import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { getDeviceSupport } from '../../src/runtime/index.node.js';
import { type NodeProbe, nodeDeviceSupport } from '../../src/runtime/node-device-support.js';

const NVIDIA_SMI = `Wed Dec  2 12:00:00 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.14              Driver Version: 550.54.14      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
|=========================================+========================+======================|
|   0  NVIDIA GeForce RTX 4090        Off |   00000000:01:00.0 Off |                  Off |
+-----------------------------------------+------------------------+----------------------+
`;

const linux: NodeProbe = {
  version: '1.30.0',
  platform: 'linux',
  arch: 'x64',
  backends: [
    { name: 'cpu', bundled: true },
    { name: 'webgpu', bundled: true },
    { name: 'cuda', bundled: false },
    { name: 'tensorrt', bundled: false },
  ],
  cudaProviderLibrary: false,
  nvidiaSmi: undefined,
  autoDevices: ['cpu'],
};

const status = (probe: NodeProbe, device: string) =>
  nodeDeviceSupport(probe).providers.find((p) => p.device === device);

describe('nodeDeviceSupport', () => {
  it('Linux x64 with the CUDA provider library and a CUDA 12.4 driver: CUDA usable, with GPU, driver and version', () => {
    expect(status({ ...linux, cudaProviderLibrary: true, nvidiaSmi: NVIDIA_SMI }, 'cuda')).toEqual({
      device: 'cuda',
      usable: true,
      detail: 'provider library installed; NVIDIA GeForce RTX 4090, driver 550.54.14, CUDA 12.4',
    });
  });

  it('a GPU but no provider library (the default npm install) says how to install the cuda12 build', () => {
    const cuda = status({ ...linux, nvidiaSmi: NVIDIA_SMI }, 'cuda');
    expect(cuda?.usable).toBe(false);
    expect(cuda?.detail).toBe(
      'NVIDIA GeForce RTX 4090, driver 550.54.14, CUDA 12.4; the CUDA provider library of onnxruntime-node is not installed',
    );
    expect(cuda?.enable).toContain('ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install');
  });

  it('the provider library without a driver, or with a CUDA 11 driver, is not usable and says why', () => {
    expect(status({ ...linux, cudaProviderLibrary: true }, 'cuda')).toMatchObject({
      usable: false,
      detail: 'provider library installed; no NVIDIA driver (nvidia-smi not found)',
    });
    const old = status(
      {
        ...linux,
        cudaProviderLibrary: true,
        nvidiaSmi: NVIDIA_SMI.replace('CUDA Version: 12.4', 'CUDA Version: 11.8'),
      },
      'cuda',
    );
    expect(old).toMatchObject({
      usable: false,
      enable: 'onnxruntime-node 1.30.0 needs CUDA 12: update the NVIDIA driver.',
    });
  });

  it('Windows has DirectML, macOS CoreML; each names the platform of the other', () => {
    const windows: NodeProbe = {
      ...linux,
      platform: 'win32',
      backends: [
        { name: 'cpu', bundled: true },
        { name: 'dml', bundled: true },
        { name: 'webgpu', bundled: true },
      ],
      autoDevices: ['dml', 'cpu'],
    };
    const mac: NodeProbe = {
      ...linux,
      platform: 'darwin',
      arch: 'arm64',
      backends: [
        { name: 'cpu', bundled: true },
        { name: 'coreml', bundled: true },
        { name: 'webgpu', bundled: true },
      ],
      autoDevices: ['coreml', 'cpu'],
    };
    expect(status(windows, 'dml')).toEqual({
      device: 'dml',
      usable: true,
      detail: "in onnxruntime-node's win32-x64 build",
    });
    expect(status(windows, 'coreml')?.enable).toMatch(/macOS only/);
    expect(status(windows, 'cuda')?.enable).toMatch(/Linux x64 only; on Windows use "dml"/);
    expect(status(mac, 'coreml')?.usable).toBe(true);
    expect(status(mac, 'dml')?.enable).toMatch(/Windows only/);
    expect(nodeDeviceSupport(mac).autoDevices).toEqual(['coreml', 'cpu']);
  });

  it('lists CUDA, DirectML, CoreML, WebGPU and CPU, the runtime version and platform', () => {
    const report = nodeDeviceSupport(linux);
    expect(report.providers.map((p) => p.device)).toEqual(['cuda', 'dml', 'coreml', 'webgpu', 'cpu']);
    expect(report.runtime).toBe('onnxruntime-node 1.30.0');
    expect(report.platform).toBe('linux-x64');
    expect(report.providers.filter((p) => p.usable).map((p) => p.device)).toEqual(['webgpu', 'cpu']);
    expect(report.providers.filter((p) => !p.usable).every((p) => p.enable)).toBe(true);
  });
});

describe('getDeviceSupport on this machine', () => {
  it("reports the installed onnxruntime-node, its CPU provider and 'auto'", async () => {
    const report = await getDeviceSupport();
    expect(report.runtime).toBe(`onnxruntime-node ${ort.env.versions.node}`);
    expect(report.platform).toBe(`${process.platform}-${process.arch}`);
    expect(report.providers.find((p) => p.device === 'cpu')?.usable).toBe(true);
    expect(report.autoDevices).toContain('cpu');
  });
});

import type { Tensor as OrtTensor } from 'onnxruntime-common';
import type { Tensor } from '../tensor.js';
import { toFloat32 } from './tensor-adapter.js';

/**
 * A model output left on the GPU (session option `preferredOutputLocation: 'gpu-buffer'`). Feed it straight
 * into the next `run` to skip the round trip through CPU memory, read it with {@link DeviceTensor.toTensor},
 * and {@link DeviceTensor.dispose} it when done.
 */
export class DeviceTensor {
  /** The runtime's tensor; an input of another `run` as is. */
  readonly value: OrtTensor;

  /** @param value - an ONNX Runtime tensor whose data lives on a device */
  constructor(value: OrtTensor) {
    this.value = value;
  }

  /** The shape. */
  get dims(): readonly number[] {
    return this.value.dims;
  }

  /** Copies the data to the CPU as float32. */
  async toTensor(): Promise<Tensor> {
    const data = await this.value.getData();
    return toFloat32(this.value.type, data as OrtTensor['data'], this.value.dims);
  }

  /** Frees the device memory. */
  dispose(): void {
    this.value.dispose();
  }
}

/** Copies float data to the GPU as a {@link DeviceTensor} of the given element type. */
export type DeviceUpload = (
  type: 'float32' | 'float16',
  data: Float32Array | Uint16Array,
  dims: readonly number[],
) => Promise<DeviceTensor>;

/** The parts of WebGPU an upload uses (TypeScript's DOM typings have no WebGPU). */
interface GpuDeviceLike {
  createBuffer(descriptor: { size: number; usage: number }): GpuBufferLike;
  readonly queue: { writeBuffer(buffer: GpuBufferLike, offset: number, data: ArrayBufferView): void };
}
interface GpuBufferLike {
  destroy(): void;
}

/** `GPUBufferUsage.STORAGE | COPY_SRC | COPY_DST`: what ONNX Runtime's WebGPU kernels need of an input buffer. */
const INPUT_BUFFER_USAGE = 0x80 | 0x04 | 0x08;

/**
 * Uploads to the GPU device that `onnxruntime-web`'s WebGPU sessions run on (`env.webgpu.device`), so the tensor
 * is an input of any of them without a copy per run.
 *
 * @param ort - the `onnxruntime-web` module, after a WebGPU session was created
 */
export function webGpuUpload(ort: {
  env: { webgpu: { device: Promise<unknown> } };
  Tensor: Pick<typeof import('onnxruntime-common').Tensor, 'fromGpuBuffer'>;
}): DeviceUpload {
  return async (type, data, dims) => {
    const device = (await ort.env.webgpu.device) as GpuDeviceLike;
    // writeBuffer copies whole 4-byte words; an odd count of float16 values gets one zero of padding.
    const size = Math.ceil(data.byteLength / 4) * 4;
    const buffer = device.createBuffer({ size, usage: INPUT_BUFFER_USAGE });
    let words: ArrayBufferView = data;
    if (size !== data.byteLength) {
      const padded = new Uint8Array(size);
      padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      words = padded;
    }
    device.queue.writeBuffer(buffer, 0, words);
    const tensor = ort.Tensor.fromGpuBuffer(buffer as never, { dataType: type, dims, dispose: () => buffer.destroy() });
    return new DeviceTensor(tensor);
  };
}

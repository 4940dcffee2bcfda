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

import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-common';
import { describe, expect, it } from 'vitest';
import { float16ToFloat32, float32ToFloat16 } from '../../src/float16.js';
import { DeviceUnavailableError, InvalidArgumentError, ModelLoadError, Tensor } from '../../src/index.js';
import { DeviceTensor } from '../../src/runtime/device-tensor.js';
import { openSession } from '../../src/runtime/index.node.js';
import { createSession, DEFAULT_LOG_SEVERITY_LEVEL, type OrtModule } from '../../src/runtime/session.js';
import { type TimestepVariant, textEncoderGraph, unetExpected, unetGraph, vaeDecoderGraph } from './fixtures.js';

const sample = new Tensor(Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]), [2, 2, 1, 2]);
// Hidden-state means 1 (first batch item) and 10 (second).
const hidden = new Tensor(Float32Array.from([1, 1, 1, 10, 10, 10]), [2, 1, 3]);

function expectedFor(timesteps: readonly [number, number]): number[] {
  const means = [1, 10];
  return Array.from(sample.data, (v, i) => unetExpected(v, timesteps[i < 4 ? 0 : 1], means[i < 4 ? 0 : 1]));
}

describe('timestep adaptation', () => {
  const variants: TimestepVariant[] = [];
  for (const type of ['int64', 'float32', 'float16'] as const) {
    for (const shape of [[], [1], ['batch']] as const) variants.push({ type, shape });
  }

  it.each(variants)('feeds a number to a $type timestep of shape [$shape]', async (variant) => {
    const session = await openSession(unetGraph(variant), { device: 'cpu' });
    expect(session.inputs.find((i) => i.name === 'timestep')).toEqual({ name: 'timestep', ...variant });
    const { out_sample } = await session.run({ sample, timestep: 981, encoder_hidden_states: hidden });
    expect(out_sample.dims).toEqual([2, 2, 1, 2]);
    expect(Array.from(out_sample.data)).toEqual(expectedFor([981, 981]));
    await session.release();
  });

  it('truncates a fractional timestep for an int64 graph, as numpy astype does', async () => {
    const session = await openSession(unetGraph({ type: 'int64', shape: [1] }), { device: 'cpu' });
    const { out_sample } = await session.run({ sample, timestep: 980.75, encoder_hidden_states: hidden });
    expect(Array.from(out_sample.data)).toEqual(expectedFor([980, 980]));
  });

  it('repeats a one-element timestep tensor to [batch]', async () => {
    const session = await openSession(unetGraph({ type: 'int64', shape: ['batch'] }), { device: 'cpu' });
    const timestep = new Tensor<'int64'>(BigInt64Array.of(999n), [1]);
    const { out_sample } = await session.run({ sample, timestep, encoder_hidden_states: hidden });
    expect(Array.from(out_sample.data)).toEqual(expectedFor([999, 999]));
  });

  it('passes a per-item [batch] timestep tensor through', async () => {
    const session = await openSession(unetGraph({ type: 'float32', shape: ['batch'] }), { device: 'cpu' });
    const timestep = new Tensor(Float32Array.from([10.5, 20.25]), [2]);
    const { out_sample } = await session.run({ sample, timestep, encoder_hidden_states: hidden });
    expect(Array.from(out_sample.data)).toEqual(expectedFor([10.5, 20.25]));
  });
});

describe('float16 graphs', () => {
  it('converts float32 inputs to float16 and float16 outputs back', async () => {
    const session = await openSession(unetGraph({ type: 'float16', shape: [1] }, 'float16'), { device: 'cpu' });
    expect(session.outputs[0].type).toBe('float16');
    const first = await session.run({ sample, timestep: 3, encoder_hidden_states: hidden });
    // The graph computes in float32 from float16-rounded inputs, then rounds the result to float16.
    const roundTrip = (x: Float32Array) => float16ToFloat32(float32ToFloat16(x));
    const expected = roundTrip(Float32Array.from(expectedFor([3, 3])));
    expect(first.out_sample.data).toBeInstanceOf(Float32Array);
    expect(Array.from(first.out_sample.data)).toEqual(Array.from(expected));
    // A second run reuses the conversion buffers and must not disturb the first result.
    const second = await session.run({ sample, timestep: 5, encoder_hidden_states: hidden });
    expect(Array.from(first.out_sample.data)).toEqual(Array.from(expected));
    expect(Array.from(second.out_sample.data)).toEqual(Array.from(roundTrip(Float32Array.from(expectedFor([5, 5])))));
  });

  it('accepts a float16 tensor for a float32 input', async () => {
    const session = await openSession(unetGraph({ type: 'float32', shape: [] }), { device: 'cpu' });
    const half = new Tensor(float32ToFloat16(sample.data), sample.dims, 'float16');
    const { out_sample } = await session.run({ sample: half, timestep: 0, encoder_hidden_states: hidden });
    expect(Array.from(out_sample.data)).toEqual(expectedFor([0, 0]));
  });
});

describe('input_ids', () => {
  const ids = [49406, 320, 1125, 49407];
  it.each(['int32', 'int64'] as const)('feeds int32 and int64 ids to an %s graph', async (graphType) => {
    const session = await openSession(textEncoderGraph(graphType), { device: 'cpu' });
    expect(session.inputs[0].type).toBe(graphType);
    const asInt32 = new Tensor<'int32'>(Int32Array.from(ids), [1, 4]);
    const asInt64 = new Tensor<'int64'>(BigInt64Array.from(ids, BigInt), [1, 4]);
    for (const input_ids of [asInt32, asInt64]) {
      const { last_hidden_state } = await session.run({ input_ids });
      expect(last_hidden_state.dims).toEqual([1, 4, 3]);
      expect(Array.from(last_hidden_state.data)).toEqual(ids.flatMap((id) => [id, 2 * id, 3 * id]));
    }
  });
});

describe('mismatches', () => {
  it('names the expected and actual inputs when one is missing or unknown', async () => {
    const session = await openSession(unetGraph({ type: 'int64', shape: [1] }), { device: 'cpu' });
    const missing = session.run({ sample, timestep: 1 });
    await expect(missing).rejects.toThrow(InvalidArgumentError);
    await expect(missing).rejects.toThrow(
      /missing input\(s\) encoder_hidden_states.*expects \{sample: float32\[batch, 2, height, width\]; timestep: int64\[1\]; encoder_hidden_states: float32\[batch, sequence, 3\]\}, got \{sample: float32\[2, 2, 1, 2\]; timestep: number\}/,
    );
    await expect(session.run({ sample, timestep: 1, encoder_hidden_states: hidden, latents: sample })).rejects.toThrow(
      /unknown input\(s\) latents/,
    );
  });

  it('rejects a tensor whose rank or fixed dims differ from the declaration', async () => {
    const session = await openSession(unetGraph({ type: 'int64', shape: [1] }), { device: 'cpu' });
    const wrongChannels = new Tensor(new Float32Array(12), [2, 3, 1, 2]);
    await expect(session.run({ sample: wrongChannels, timestep: 1, encoder_hidden_states: hidden })).rejects.toThrow(
      /input sample has shape \[2, 3, 1, 2\]/,
    );
  });

  it('runOnDevice returns CPU outputs as float32 tensors when nothing is kept on a GPU', async () => {
    const session = await openSession(vaeDecoderGraph(), { device: 'cpu', preferredOutputLocation: 'cpu' });
    const { sample: image } = await session.runOnDevice({
      latent_sample: new Tensor(Float32Array.from([5, 6]), [1, 2, 1, 1]),
    });
    expect(image).toBeInstanceOf(Tensor);
    expect(Array.from((image as Tensor).data)).toEqual([10, 10, 10, 10, 12, 12, 12, 12]);
  });

  it('fails on use after release', async () => {
    const session = await openSession(vaeDecoderGraph(), { device: 'cpu' });
    await session.release();
    await session.release();
    await expect(session.run({ latent_sample: Tensor.zeros([1, 2, 1, 1]) })).rejects.toThrow(/released/);
  });

  it('reports a truncated graph as INVALID_MODEL naming the file', async () => {
    const bytes = vaeDecoderGraph();
    const error = await openSession(bytes.subarray(0, bytes.length - 7), { device: 'cpu' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelLoadError);
    expect((error as ModelLoadError).code).toBe('INVALID_MODEL');
  });
});

describe('devices', () => {
  it('runs the VAE fixture on cpu and auto', async () => {
    for (const device of ['cpu', 'auto'] as const) {
      const session = await openSession(vaeDecoderGraph(), { device });
      expect(session.executionProviders).toContain('cpu');
      const { sample: image } = await session.run({
        latent_sample: new Tensor(Float32Array.from([1, 2, 3, 4]), [1, 2, 1, 2]),
      });
      expect(image.dims).toEqual([1, 2, 2, 4]);
      expect(Array.from(image.data)).toEqual([2, 2, 4, 4, 2, 2, 4, 4, 6, 6, 8, 8, 6, 6, 8, 8]);
    }
  });

  it('explains how to get a device this runtime lacks', async () => {
    const wasm = await openSession(vaeDecoderGraph(), { device: 'wasm' }).catch((e: unknown) => e);
    expect(wasm).toBeInstanceOf(DeviceUnavailableError);
    expect((wasm as Error).message).toMatch(/onnxruntime-web.*use "cpu"/);
    if (process.platform === 'linux') {
      const dml = await openSession(vaeDecoderGraph(), { device: 'dml' }).catch((e: unknown) => e);
      expect(dml).toBeInstanceOf(DeviceUnavailableError);
      expect((dml as Error).message).toMatch(/Windows only/);
    }
    await expect(openSession(vaeDecoderGraph(), { device: 'tpu' as 'cpu' })).rejects.toThrow(/Unknown device "tpu"/);
  });
});

describe('logSeverityLevel', () => {
  // A stand-in for onnxruntime that records the session options it is given.
  function recordingOrt() {
    const received: InferenceSession.SessionOptions[] = [];
    const ort = {
      InferenceSession: {
        async create(_model: string | Uint8Array, options: InferenceSession.SessionOptions = {}) {
          received.push(options);
          return { inputMetadata: [], outputMetadata: [] } as unknown as InferenceSession;
        },
      },
      Tensor: class {} as unknown as OrtModule['Tensor'],
    };
    return { ort, received };
  }
  const runtime = { name: 'onnxruntime-node', available: new Set(['cpu']), autoDevices: ['cpu'] } as const;
  const where = { name: 'unet', repo: 'org/model', file: 'unet/model.onnx' };
  const source = { model: new Uint8Array(1), externalData: [] };

  it('reaches ONNX Runtime, errors only (3) by default so graph-cleanup warnings stay quiet', async () => {
    const { ort, received } = recordingOrt();
    await createSession(ort, runtime, source, where);
    await createSession(ort, runtime, source, { ...where, logSeverityLevel: 1 });
    expect(received.map((o) => o.logSeverityLevel)).toEqual([DEFAULT_LOG_SEVERITY_LEVEL, 1]);
    expect(DEFAULT_LOG_SEVERITY_LEVEL).toBe(3);
  });

  it('rejects a level ONNX Runtime does not have, naming the five it has', async () => {
    const { ort, received } = recordingOrt();
    const error = await createSession(ort, runtime, source, { ...where, logSeverityLevel: 5 as 4 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toBe(
      'logSeverityLevel must be 0 (verbose), 1 (info), 2 (warning), 3 (error) or 4 (fatal), got 5.',
    );
    expect(received).toEqual([]);
  });
});

describe('upload', () => {
  // onnxruntime-web with a WebGPU upload that records what it is asked to copy.
  function uploadingOrt() {
    const uploads: { type: string; data: Float32Array | Uint16Array; dims: readonly number[] }[] = [];
    const metadata = [
      { name: 'encoder_hidden_states', isTensor: true, type: 'float16', shape: ['batch', 2, 3] },
      { name: 'text_embeds', isTensor: true, type: 'float32', shape: ['batch', 2] },
      { name: 'input_ids', isTensor: true, type: 'int64', shape: ['batch', 2] },
    ];
    const ort: OrtModule = {
      InferenceSession: {
        async create() {
          return { inputMetadata: metadata, outputMetadata: [] } as unknown as InferenceSession;
        },
      },
      Tensor: class {} as unknown as OrtModule['Tensor'],
      async webGpuUpload(type, data, dims) {
        uploads.push({ type, data: data.slice(), dims });
        return new DeviceTensor({ type, dims, location: 'gpu-buffer' } as unknown as OrtTensor);
      },
    };
    return { ort, uploads };
  }
  const runtime = {
    name: 'onnxruntime-web',
    available: new Set(['webgpu', 'wasm']),
    autoDevices: ['webgpu', 'wasm'],
  } as const;
  const where = { name: 'unet', repo: 'org/model', file: 'unet/model.onnx' };
  const source = { model: new Uint8Array(1), externalData: [] };
  const values = new Tensor(Float32Array.from([0.1, -2.5, 3, 1e-3, 65504, 0.3333]), [1, 2, 3]);

  it('copies a float32 tensor to a WebGPU session in the element type the graph declares', async () => {
    const { ort, uploads } = uploadingOrt();
    const session = await createSession(ort, runtime, source, { ...where, device: 'webgpu' });
    expect(session.canUpload).toBe(true);
    const hidden = await session.upload('encoder_hidden_states', values);
    const pooled = await session.upload('text_embeds', new Tensor(Float32Array.from([4, 5]), [1, 2]));
    expect(hidden.dims).toEqual([1, 2, 3]);
    expect(uploads.map((u) => u.type)).toEqual(['float16', 'float32']);
    expect(Array.from(uploads[0].data)).toEqual(Array.from(float32ToFloat16(values.data)));
    expect(uploads[0].dims).toEqual([1, 2, 3]);
    expect(Array.from(uploads[1].data)).toEqual([4, 5]);
    expect(pooled.value.location).toBe('gpu-buffer');
  });

  it('refuses sessions off WebGPU and inputs that are not float', async () => {
    const { ort, uploads } = uploadingOrt();
    const wasm = await createSession(ort, runtime, source, { ...where, device: 'wasm' });
    expect(wasm.canUpload).toBe(false);
    await expect(wasm.upload('text_embeds', values)).rejects.toThrow(
      'Session unet does not run on WebGPU in a browser, so it has no device to upload text_embeds to; feed the tensor as is.',
    );
    const webgpu = await createSession(ort, runtime, source, { ...where, device: 'webgpu' });
    await expect(webgpu.upload('input_ids', values)).rejects.toThrow(InvalidArgumentError);
    await expect(webgpu.upload('nothing', values)).rejects.toThrow(/no float input nothing.*input_ids: int64/);
    expect(uploads).toEqual([]);
  });
});

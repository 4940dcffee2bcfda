/**
 * The text embeddings kept on the UNet's device (`keepTextEmbeddingsOnDevice`), in Node: the tiny repository's
 * real ONNX graphs behind sessions that pretend their `last_hidden_state` lives in a GPU buffer. The fake buffer
 * counts reads and frees, and the UNet records where each `encoder_hidden_states` feed came from, so these tests
 * pin the plumbing (one encoder run, device feeds on every step, read-backs once, frees on every exit) and that
 * the images equal the CPU path's byte for byte.
 */
import { rmSync } from 'node:fs';
import { AbortError, RandomGenerator } from '@denoise/core';
import { type Device, loadRepository, ModelSession, type PerComponent } from '@denoise/core/runtime';
import type { InferenceSession } from 'onnxruntime-common';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { type PipelineOutput, type StableDiffusionOptions, StableDiffusionPipeline } from '../src/index.js';
import { HIDDEN, SEQUENCE, type TinySdVariant, writeTinySd } from './helpers/tiny-sd.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** An ONNX Runtime tensor as a WebGPU session hands it out: `location: 'gpu-buffer'`, data only through `getData`. */
class FakeGpuTensor {
  readonly location = 'gpu-buffer';
  readonly type: ort.Tensor['type'];
  readonly dims: readonly number[];
  readonly #data: ort.Tensor['data'];
  reads = 0;
  disposed = false;

  constructor(cpu: ort.Tensor) {
    this.type = cpu.type;
    this.dims = cpu.dims;
    this.#data = cpu.data;
  }

  /** The data, as a real `getData` reads it back. */
  async getData(): Promise<ort.Tensor['data']> {
    if (this.disposed) throw new Error('read after dispose');
    this.reads++;
    return this.#data;
  }

  dispose(): void {
    this.disposed = true;
  }

  /** What the UNet computes on (a CPU copy); throws once freed, as a destroyed GPU buffer would. */
  asCpu(): ort.Tensor {
    if (this.disposed) throw new Error('fed after dispose');
    return new ort.Tensor(this.type, this.#data, this.dims);
  }
}

/** One UNet call: where each `encoder_hidden_states` feed was, and its batch. */
interface UnetCall {
  location: string;
  rows: number;
}

/** The tiny repository with its text encoder and UNet behind sessions that claim WebGPU. */
async function devicePipeline(variant: TinySdVariant = {}) {
  const dir = writeTinySd(variant);
  dirs.push(dir);
  const repository = await loadRepository(dir, { device: 'cpu' });
  const cpu = await StableDiffusionPipeline.fromRepository(repository);
  const buffers: FakeGpuTensor[] = [];
  const unetCalls: UnetCall[] = [];
  let encoderRuns = 0;
  let failAtUnetCall = -1;

  // Errors only, as the SDK's own sessions: the tiny graphs' unused initializers would each print a warning.
  const quiet = { logSeverityLevel: 3 } as const;
  const textEncoder = await ort.InferenceSession.create(`${dir}/text_encoder/model.onnx`, quiet);
  const fakeTextEncoder = {
    inputMetadata: textEncoder.inputMetadata,
    outputMetadata: textEncoder.outputMetadata,
    async run(feeds: InferenceSession.FeedsType) {
      encoderRuns++;
      const out = await textEncoder.run(feeds);
      const onDevice = new FakeGpuTensor(out.last_hidden_state);
      buffers.push(onDevice);
      return { ...out, last_hidden_state: onDevice };
    },
    release: () => textEncoder.release(),
  };
  const unet = await ort.InferenceSession.create(`${dir}/unet/model.onnx`, quiet);
  const fakeUnet = {
    inputMetadata: unet.inputMetadata,
    outputMetadata: unet.outputMetadata,
    async run(feeds: InferenceSession.FeedsType) {
      if (unetCalls.length === failAtUnetCall) throw new Error('the GPU device was lost');
      const hidden = feeds.encoder_hidden_states as unknown as ort.Tensor | FakeGpuTensor;
      unetCalls.push({ location: hidden.location, rows: hidden.dims[0] });
      const cpuHidden = hidden instanceof FakeGpuTensor ? hidden.asCpu() : hidden;
      return unet.run({ ...feeds, encoder_hidden_states: cpuHidden });
    },
    release: () => unet.release(),
  };
  const session = (name: string, fake: object) =>
    new ModelSession(name, fake as unknown as InferenceSession, ort.Tensor, ['webgpu']);
  const pipe = new StableDiffusionPipeline(repository, cpu.scheduler, {
    tokenizer: cpu.tokenizer,
    textEncoder: session('text_encoder', fakeTextEncoder),
    unet: session('unet', fakeUnet),
    vaeDecoder: cpu.vaeDecoder,
    vae: cpu.vae,
    sampleSize: cpu.sampleSize,
    keepTextEmbeddingsOnDevice: true,
  });
  return {
    pipe,
    cpu,
    buffers,
    unetCalls,
    encoderRuns: () => encoderRuns,
    failAtUnetCall: (call: number) => {
      failAtUnetCall = call;
    },
  };
}

const base: StableDiffusionOptions = { prompt: 'a cat', numInferenceSteps: 4, guidanceScale: 5 };

/** The pixels a pipeline generates with seed 11. */
async function pixels<O extends StableDiffusionOptions>(
  pipe: { generate(options: O): Promise<PipelineOutput> },
  options: O,
): Promise<number[][]> {
  const { images } = await pipe.generate({ ...options, generator: new RandomGenerator(11) });
  return images.map((image) => [...image.data]);
}

describe('text embeddings kept on the UNet device', () => {
  it('one text-encoder run gives [negatives; prompts] on the device, fed as is by every batched step', async () => {
    const t = await devicePipeline();
    const options = { ...base, prompt: ['a cat', 'a dog'], negativePrompt: 'a dog', numImagesPerPrompt: 2 };
    const onDevice = await pixels(t.pipe, options);
    expect(onDevice).toEqual(await pixels(t.cpu, options));
    expect(t.encoderRuns()).toBe(1);
    // 2 prompts × 2 images, doubled for classifier-free guidance: one [8, S, D] buffer for all four steps.
    expect(t.buffers.map((b) => b.dims)).toEqual([[8, SEQUENCE, HIDDEN]]);
    expect(t.unetCalls).toEqual(Array(4).fill({ location: 'gpu-buffer', rows: 8 }));
    expect(t.buffers.map((b) => [b.reads, b.disposed])).toEqual([[0, true]]);
  });

  it('a fixed-batch UNet (two calls per step) gets one device tensor per half', async () => {
    const t = await devicePipeline({ unetBatch: 1 });
    const onDevice = await pixels(t.pipe, base);
    expect(onDevice).toEqual(await pixels(t.cpu, base));
    expect(t.encoderRuns()).toBe(2);
    expect(t.unetCalls).toEqual(Array(8).fill({ location: 'gpu-buffer', rows: 1 }));
    expect(t.buffers.map((b) => [b.reads, b.disposed])).toEqual([
      [0, true],
      [0, true],
    ]);
  });

  it('steps outside guidanceInterval read the prompts half back once and feed it from the CPU', async () => {
    const t = await devicePipeline();
    const options = { ...base, guidanceInterval: { start: 0.5, end: 1 } };
    const onDevice = await pixels(t.pipe, options);
    expect(onDevice).toEqual(await pixels(t.cpu, options));
    expect(t.unetCalls).toEqual([
      { location: 'cpu', rows: 1 },
      { location: 'cpu', rows: 1 },
      { location: 'gpu-buffer', rows: 2 },
      { location: 'gpu-buffer', rows: 2 },
    ]);
    expect(t.buffers.map((b) => [b.reads, b.disposed])).toEqual([[1, true]]);
  });

  it('without classifier-free guidance (guidance 1, LCM) only the prompts are encoded, on the device', async () => {
    const plain = await devicePipeline();
    const options = { ...base, guidanceScale: 1, numImagesPerPrompt: 3 };
    expect(await pixels(plain.pipe, options)).toEqual(await pixels(plain.cpu, options));
    expect(plain.unetCalls).toEqual(Array(4).fill({ location: 'gpu-buffer', rows: 3 }));

    const lcm = await devicePipeline({ className: 'LatentConsistencyModelPipeline', timestepCond: 8 });
    const lcmOptions = { ...base, guidanceScale: 8, numInferenceSteps: 2 };
    expect(await pixels(lcm.pipe, lcmOptions)).toEqual(await pixels(lcm.cpu, lcmOptions));
    expect(lcm.unetCalls).toEqual(Array(2).fill({ location: 'gpu-buffer', rows: 1 }));
    for (const t of [plain, lcm]) expect(t.buffers.map((b) => [b.reads, b.disposed])).toEqual([[0, true]]);
  });

  it('an embedding of another element type than the UNet takes (fp16 UNet) is read back once', async () => {
    const t = await devicePipeline({ fp16: true });
    expect(await pixels(t.pipe, base)).toEqual(await pixels(t.cpu, base));
    expect(t.unetCalls).toEqual(Array(4).fill({ location: 'cpu', rows: 2 }));
    expect(t.buffers.map((b) => [b.reads, b.disposed])).toEqual([[1, true]]);
  });

  it('frees the device embeddings when the run is aborted or a UNet call fails', async () => {
    const t = await devicePipeline();
    const controller = new AbortController();
    const aborted = t.pipe.generate({
      ...base,
      signal: controller.signal,
      callbackOnStepEnd: ({ step }) => {
        if (step === 1) controller.abort();
        return undefined;
      },
    });
    await expect(aborted).rejects.toBeInstanceOf(AbortError);
    t.failAtUnetCall(t.unetCalls.length + 1);
    await expect(t.pipe.generate(base)).rejects.toThrow('the GPU device was lost');
    await expect(t.pipe.generate({ ...base, latents: { data: new Float32Array(3), dims: [3] } })).rejects.toThrow(
      'latents must have dims',
    );
    expect(t.buffers).toHaveLength(3);
    expect(t.buffers.every((b) => b.disposed)).toBe(true);
  });

  it('image-to-image keeps them on the device too and frees them', async () => {
    const t = await devicePipeline();
    const { StableDiffusionImg2ImgPipeline } = await import('../src/index.js');
    const img2img = new StableDiffusionImg2ImgPipeline(t.pipe.repository, t.pipe.scheduler, {
      ...t.pipe,
      vaeEncoder: t.cpu.vaeEncoder,
    });
    const image = (await t.cpu.generate({ ...base, generator: new RandomGenerator(1) })).images[0];
    const options = { ...base, image, strength: 0.5 };
    const reference = new StableDiffusionImg2ImgPipeline(t.cpu.repository, t.cpu.scheduler, t.cpu);
    expect(await pixels(img2img, options)).toEqual(await pixels(reference, options));
    expect(t.unetCalls).toEqual(Array(2).fill({ location: 'gpu-buffer', rows: 2 }));
    expect(t.buffers.map((b) => [b.reads, b.disposed])).toEqual([[0, true]]);
  });
});

describe('loadComponents: which text encoder keeps its output on the GPU', () => {
  async function optionsPassed(loadOptions: { device?: PerComponent<Device> }) {
    const dir = writeTinySd();
    dirs.push(dir);
    const repository = await loadRepository(dir, loadOptions);
    const createSession = repository.createSession.bind(repository);
    const passed: Record<string, unknown> = {};
    // Node has no WebGPU: record what the pipeline asks for and open the session on the CPU.
    vi.spyOn(repository, 'createSession').mockImplementation((component, options) => {
      passed[component] = options;
      return createSession(component, { device: 'cpu' });
    });
    const components = await StableDiffusionPipeline.loadComponents(repository);
    await Promise.all([components.textEncoder, components.unet, components.vaeDecoder].map((s) => s.release()));
    await components.vaeEncoder?.release();
    return { keep: components.keepTextEmbeddingsOnDevice, textEncoder: passed.text_encoder, unet: passed.unet };
  }

  it('asks for a gpu-buffer last_hidden_state only when the text encoder and the UNet are both on WebGPU', async () => {
    const gpuBuffer = { preferredOutputLocation: { last_hidden_state: 'gpu-buffer' } };
    expect(await optionsPassed({ device: 'webgpu' })).toEqual({ keep: true, textEncoder: gpuBuffer, unet: undefined });
    expect(await optionsPassed({ device: { unet: 'webgpu', text_encoder: 'webgpu', default: 'wasm' } })).toEqual({
      keep: true,
      textEncoder: gpuBuffer,
      unet: undefined,
    });
    expect(await optionsPassed({ device: { unet: 'webgpu', default: 'wasm' } })).toEqual({
      keep: false,
      textEncoder: {},
      unet: undefined,
    });
    expect(await optionsPassed({ device: 'auto' })).toEqual({ keep: false, textEncoder: {}, unet: undefined });
    expect(await optionsPassed({})).toEqual({ keep: false, textEncoder: {}, unet: undefined });
  });
});

/**
 * The runtime check page, for `@denoise/core/runtime`'s browser build. `window.runtimeCheck` opens
 * `/fixtures/check-graph.onnx` on one device, runs it and reports the largest difference from
 * {@link checkGraphReference}; `window.decodeWithEmbeddedModel` loads the embedded model through the Hub path
 * (the demo server's `/hub`, Cache Storage) and runs its VAE decoder; `window.inpaintWithEmbeddedModel` inpaints
 * with it. The browser test calls all three.
 */
import { RandomGenerator, Tensor } from '@denoise/core';
import { loadRepository, openSession } from '@denoise/core/runtime';
import { StableDiffusionInpaintPipeline } from '@denoise/pipelines';
import * as ort from 'onnxruntime-web';
import { CHECK_GRAPH_INPUT, CHECK_GRAPH_SHAPE, checkGraphReference } from './check-graph.js';

/** What one run of the check graph on one device gave. */
export interface RuntimeCheckResult {
  device: 'webgpu' | 'wasm';
  executionProviders: readonly string[];
  hidden: number[];
  probabilities: number[];
  maxAbsError: number;
}

// onnxruntime-web fetches its WASM binaries from this origin, never from a CDN.
ort.env.wasm.wasmPaths = new URL('/ort/', location.href).href;

async function runtimeCheck(device: 'webgpu' | 'wasm'): Promise<RuntimeCheckResult> {
  const session = await openSession(new URL('/fixtures/check-graph.onnx', location.href).href, { device });
  try {
    const { batch, inFeatures } = CHECK_GRAPH_SHAPE;
    const outputs = await session.run({ x: new Tensor(Float32Array.from(CHECK_GRAPH_INPUT), [batch, inFeatures]) });
    const hidden = Array.from(outputs.hidden.data);
    const probabilities = Array.from(outputs.probabilities.data);
    const expected = checkGraphReference(CHECK_GRAPH_INPUT);
    const expectedAll = [...expected.hidden, ...expected.probabilities];
    const maxAbsError = Math.max(...[...hidden, ...probabilities].map((v, i) => Math.abs(v - expectedAll[i])));
    const result = { device, executionProviders: session.executionProviders, hidden, probabilities, maxAbsError };
    log(JSON.stringify(result));
    return result;
  } finally {
    await session.release();
  }
}

/** Decodes an unscaled latent `[4, 16, 16]` with the embedded model's `vae_decoder` on `device`. */
async function decodeWithEmbeddedModel(device: 'webgpu' | 'wasm', latent: number[]) {
  const events: string[] = [];
  const repository = await loadRepository('denoise/reference-world', {
    hubUrl: new URL('/hub', location.href).href,
    components: ['vae_decoder'],
    device,
    progressCallback: (event) => events.push(event.status),
  });
  const decoder = await repository.createSession('vae_decoder');
  try {
    const { sample } = await decoder.run({ latent_sample: new Tensor(Float32Array.from(latent), [1, 4, 16, 16]) });
    return {
      executionProviders: decoder.executionProviders,
      events,
      dims: sample.dims,
      pixels: Array.from(sample.data),
    };
  } finally {
    await decoder.release();
  }
}

/** What one inpainting run of {@link inpaintWithEmbeddedModel} asks for. */
interface InpaintRun {
  device: 'webgpu' | 'wasm';
  prompt: string;
  /** RGBA bytes of a 128 × 128 image. */
  image: number[];
  /** One byte per pixel, 255 = repaint. */
  mask: number[];
  steps: number;
  seed: number;
}

/** Inpaints with the embedded model (its 4-channel UNet, through the legacy blend) on `run.device`. */
async function inpaintWithEmbeddedModel(run: InpaintRun) {
  const repository = await loadRepository('denoise/reference-world', {
    hubUrl: new URL('/hub', location.href).href,
    device: run.device,
  });
  const pipe = await StableDiffusionInpaintPipeline.fromRepository(repository);
  try {
    const size = { width: 128, height: 128 };
    const { images } = await pipe.generate({
      prompt: run.prompt,
      image: { ...size, data: Uint8ClampedArray.from(run.image) },
      maskImage: { ...size, data: Uint8Array.from(run.mask) },
      numInferenceSteps: run.steps,
      generator: new RandomGenerator(run.seed),
    });
    return {
      executionProviders: pipe.unet.executionProviders,
      unetChannels: pipe.unetChannels,
      rgba: Array.from(images[0].data),
    };
  } finally {
    await pipe.release();
  }
}

function log(line: string): void {
  document.querySelector('#log')!.textContent += `${line}\n`;
}

declare global {
  interface Window {
    runtimeCheck: typeof runtimeCheck;
    decodeWithEmbeddedModel: typeof decodeWithEmbeddedModel;
    inpaintWithEmbeddedModel: typeof inpaintWithEmbeddedModel;
  }
}
window.runtimeCheck = runtimeCheck;
window.decodeWithEmbeddedModel = decodeWithEmbeddedModel;
window.inpaintWithEmbeddedModel = inpaintWithEmbeddedModel;

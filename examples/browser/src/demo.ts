/**
 * The demo page: text to image with the embedded reference world through the same `@denoise/pipelines` API as in
 * Node, on onnxruntime-web. Each denoising step paints a preview of the latents; Cancel aborts the run between
 * model calls. The status caption carries `data-state` (idle, loading, running, done, cancelled, error) so the
 * browser test can follow a run.
 */
import { AbortError, RandomGenerator } from '@denoise/core';
import { DiffusionPipeline, StableDiffusionPipeline } from '@denoise/pipelines';
import { getScheduler, listSchedulers } from '@denoise/schedulers';
import * as ort from 'onnxruntime-web';
import { paintLatentPreview } from './latent-preview.js';

type DemoDevice = 'auto' | 'webgpu' | 'wasm';
type Loaded = { pipe: StableDiffusionPipeline; defaultScheduler: StableDiffusionPipeline['scheduler'] };

/** The embedded model, which the demo's Vite server serves as a Hub repository on the page's own origin. */
const MODEL_ID = 'denoise/reference-world';
const HUB_URL = new URL('/hub', location.href).href;

// onnxruntime-web fetches its WASM binaries from this origin, never from a CDN.
ort.env.wasm.wasmPaths = new URL('/ort/', location.href).href;

const $ = <T extends HTMLElement>(selector: string) => document.querySelector<T>(selector)!;
const form = $<HTMLFormElement>('#controls');
const schedulerPicker = $<HTMLSelectElement>('#scheduler');
const generateButton = $<HTMLButtonElement>('#generate');
const cancelButton = $<HTMLButtonElement>('#cancel');
const canvas = $<HTMLCanvasElement>('#preview');
const status = $<HTMLElement>('#status');

/** One pipeline per device, loaded on first use and kept: switching back is instant. */
const pipelines = new Map<DemoDevice, Promise<Loaded>>();
let running: AbortController | undefined;

function setStatus(state: string, text: string): void {
  status.dataset.state = state;
  status.textContent = text;
}

/** Loads (once) the pipeline of `device`; Cancel during the load aborts it through `signal`. */
function loadPipeline(device: DemoDevice, signal: AbortSignal) {
  let loading = pipelines.get(device);
  if (!loading) {
    const load = DiffusionPipeline.fromPretrained(MODEL_ID, {
      hubUrl: HUB_URL,
      device,
      signal,
      progressCallback: (event) => {
        if (event.status === 'progress_total') setStatus('loading', `Loading model… ${Math.round(event.progress)} %`);
      },
    });
    loading = load.then((pipe) => {
      if (!(pipe instanceof StableDiffusionPipeline)) throw new Error(`${MODEL_ID} is not a text-to-image model.`);
      return { pipe, defaultScheduler: pipe.scheduler };
    });
    // A failed or cancelled load is not kept: the next click tries again.
    loading.catch(() => pipelines.delete(device));
    pipelines.set(device, loading);
  }
  return loading;
}

async function generate(): Promise<void> {
  const fields = new FormData(form);
  const device = fields.get('device') as DemoDevice;
  const steps = Number(fields.get('steps'));
  const seed = Number(fields.get('seed'));
  const schedulerName = String(fields.get('scheduler'));
  running = new AbortController();
  generateButton.disabled = true;
  cancelButton.disabled = false;
  const started = performance.now();
  try {
    setStatus('loading', 'Loading model…');
    const { pipe, defaultScheduler } = await loadPipeline(device, running.signal);
    pipe.scheduler = schedulerName === '' ? defaultScheduler : getScheduler(schedulerName, defaultScheduler.config);
    setStatus('running', `Step 0/${steps}`);
    const denoiseStart = performance.now();
    const { images } = await pipe.generate({
      prompt: String(fields.get('prompt')),
      negativePrompt: String(fields.get('negativePrompt')),
      numInferenceSteps: steps,
      guidanceScale: Number(fields.get('guidance')),
      generator: new RandomGenerator(seed),
      signal: running.signal,
      callbackOnStepEnd: ({ step, latents }) => {
        paintLatentPreview(canvas, latents);
        setStatus('running', `Step ${step + 1}/${steps}`);
        // Wait for a frame so the preview shows and a click on Cancel lands before the next model call.
        return new Promise<undefined>((resume) => requestAnimationFrame(() => resume(undefined)));
      },
    });
    const image = images[0];
    canvas.width = image.width;
    canvas.height = image.height;
    canvas.getContext('2d')!.putImageData(image.toImageData(), 0, 0);
    const seconds = (performance.now() - denoiseStart) / 1000;
    const providers = pipe.unet.executionProviders.join(', ');
    setStatus(
      'done',
      `Done: seed ${seed}, ${steps} steps in ${seconds.toFixed(2)} s on ${providers} ` +
        `(total ${((performance.now() - started) / 1000).toFixed(2)} s).`,
    );
  } catch (error) {
    if (error instanceof AbortError) setStatus('cancelled', 'Cancelled.');
    else setStatus('error', error instanceof Error ? error.message : String(error));
  } finally {
    running = undefined;
    generateButton.disabled = false;
    cancelButton.disabled = true;
  }
}

for (const { name } of listSchedulers()) schedulerPicker.add(new Option(name, name));
schedulerPicker.add(new Option("the model's own", ''), 0);
schedulerPicker.value = '';
form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (!running) void generate();
});
cancelButton.addEventListener('click', () => running?.abort());
setStatus('idle', 'gpu' in navigator ? 'Ready (WebGPU available).' : 'Ready (no WebGPU here: WASM).');

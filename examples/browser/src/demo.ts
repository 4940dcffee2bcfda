/**
 * The demo page: text to image with the embedded reference world through the same `@denoise/pipelines` API as in
 * Node, on onnxruntime-web. Each denoising step decodes its prediction of the clean image (x̂₀) for the preview,
 * so the picture forms from the first steps on; Cancel aborts the run between model calls. The status caption carries `data-state` (idle, loading, running, done, cancelled, error) so the
 * browser test can follow a run.
 */
import { AbortError, RandomGenerator } from '@denoise/core';
import { DiffusionPipeline, decodeLatents, imagesFromTensor, StableDiffusionPipeline } from '@denoise/pipelines';
import { getScheduler, listSchedulers } from '@denoise/schedulers';
import * as ort from 'onnxruntime-web';

type DemoDevice = 'webgpu' | 'wasm';
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

/**
 * The device "auto" stands for here: WebGPU when the browser gives an adapter, else WASM. Deciding it before loading
 * lets the page say which one runs, where ONNX Runtime's own fallback would leave that unknown.
 */
async function autoDevice(): Promise<DemoDevice> {
  const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  const adapter = await gpu?.requestAdapter().catch(() => null);
  return adapter ? 'webgpu' : 'wasm';
}

/** Paints `image` on the preview canvas at its size. */
function paint(image: { width: number; height: number; toImageData(): ImageData }): void {
  canvas.width = image.width;
  canvas.height = image.height;
  canvas.getContext('2d')!.putImageData(image.toImageData(), 0, 0);
}

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
  const picked = String(fields.get('device'));
  const device = picked === 'auto' ? await autoDevice() : (picked as DemoDevice);
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
      callbackOnStepEnd: async ({ step, predOriginalSample }) => {
        // The first image of the batch, as diffusers users preview callback_on_step_end: decode x̂₀, not x_t.
        const [, ...itemDims] = predOriginalSample.dims;
        const itemSize = predOriginalSample.data.length / predOriginalSample.dims[0];
        const firstItem = { data: predOriginalSample.data.subarray(0, itemSize), dims: [1, ...itemDims] };
        const [first] = imagesFromTensor(await decodeLatents(pipe.vaeDecoder, firstItem, pipe.vae.scalingFactor));
        paint(first);
        setStatus('running', `Step ${step + 1}/${steps}`);
        // Wait for a frame so the preview shows and a click on Cancel lands before the next model call.
        return new Promise<undefined>((resume) => requestAnimationFrame(() => resume(undefined)));
      },
    });
    paint(images[0]);
    const seconds = (performance.now() - denoiseStart) / 1000;
    const where = picked === 'auto' ? `${device} (auto)` : device;
    setStatus(
      'done',
      `Done: seed ${seed}, ${steps} steps in ${seconds.toFixed(2)} s on ${where} ` +
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

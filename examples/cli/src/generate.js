/**
 * `denoise generate`: load a pipeline, optionally swap its scheduler, denoise with a seed, write a PNG, then print
 * the seed and where the time went.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { RandomGenerator } from '@denoise/core';
import { DiffusionPipeline } from '@denoise/pipelines';
import { getScheduler } from '@denoise/schedulers';
import { EMBEDDED_MODEL_DIR } from './embedded-model.js';

/**
 * Runs one generation.
 *
 * @param {import('./flags.js').GenerateFlags} flags
 * @param {object} io
 * @param {import('./progress.js').ProgressBar} io.progress - draws the download and denoising bars
 * @param {AbortSignal} io.signal - Ctrl-C
 * @param {NodeJS.WritableStream} io.stdout - the summary
 * @param {NodeJS.WritableStream} io.stderr - warnings
 */
export async function generate(flags, { progress, signal, stdout, stderr }) {
  const seed = flags.seed ?? Math.floor(Math.random() * 2 ** 32);
  const model = flags.model ?? EMBEDDED_MODEL_DIR;
  // An unknown --scheduler fails here, before the model loads; the real one is built from the model's config below.
  if (flags.scheduler !== undefined) getScheduler(flags.scheduler);

  const loadStart = performance.now();
  const pipe = await DiffusionPipeline.fromPretrained(model, {
    device: flags.device,
    signal,
    progressCallback: downloadReporter(progress),
  });
  progress.stop();
  try {
    if (flags.scheduler !== undefined) {
      // Keys of the model's scheduler that the new class does not use are dropped on purpose: that is the swap.
      pipe.scheduler = getScheduler(flags.scheduler, pipe.scheduler.config, { onWarning: () => {} });
    }
    const loadSeconds = seconds(loadStart);

    const denoiseStart = performance.now();
    progress.start('denoising', flags.steps);
    const { images } = await pipe.generate({
      prompt: flags.prompt,
      negativePrompt: flags.negativePrompt,
      numInferenceSteps: flags.steps,
      guidanceScale: flags.guidance,
      width: flags.width,
      height: flags.height,
      generator: new RandomGenerator(seed),
      signal,
      callbackOnStepEnd: ({ step }) => progress.update(step + 1, Math.max(step + 1, flags.steps)),
      onWarning: (message) => stderr.write(`denoise: warning: ${message}\n`),
    });
    progress.stop();
    const denoiseSeconds = seconds(denoiseStart);

    const saveStart = performance.now();
    const out = resolve(flags.out);
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, await images[0].toPNG());
    const saveSeconds = seconds(saveStart);

    const className = pipe.scheduler.constructor.name;
    const schedulerName = flags.scheduler === undefined ? className : `${flags.scheduler} (${className})`;
    stdout.write(
      `wrote ${flags.out} (${images[0].width}x${images[0].height})\n` +
        `seed ${seed} | scheduler ${schedulerName} | ${flags.steps} steps | guidance ${flags.guidance}\n` +
        `load ${loadSeconds.toFixed(2)} s | denoise ${denoiseSeconds.toFixed(2)} s ` +
        `(${((denoiseSeconds * 1000) / flags.steps).toFixed(1)} ms/step) | encode+write ${saveSeconds.toFixed(2)} s\n`,
    );
  } finally {
    await pipe.release();
  }
}

/**
 * One bar over all the files a load downloads, fed by the runtime's overall `progress_total` events; a model that
 * is already cached or local shows no bar.
 */
function downloadReporter(progress) {
  let downloading = false;
  return (event) => {
    if (event.status === 'download' && !downloading) {
      downloading = true;
      progress.start('download', 0);
    } else if (event.status === 'progress_total' && downloading) {
      progress.update(event.loaded, event.total);
    } else if (event.status === 'ready' && downloading) {
      progress.stop();
    }
  };
}

function seconds(since) {
  return (performance.now() - since) / 1000;
}

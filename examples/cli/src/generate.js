/**
 * `denoise generate` (with a ControlNet when given `--control-image`), `denoise img2img` and `denoise inpaint`: load a
 * pipeline, optionally swap its scheduler, denoise with a seed,
 * write the PNGs, then print the seed and where the time went.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { InvalidArgumentError, RandomGenerator } from '@denoise/core';
import { loadRepository, setRuntimeLogLevel } from '@denoise/core/runtime';
import {
  DiffusionPipeline,
  imageFromPNG,
  StableDiffusionControlNetPipeline,
  StableDiffusionImg2ImgPipeline,
  StableDiffusionInpaintPipeline,
} from '@denoise/pipelines';
import { getScheduler } from '@denoise/schedulers';
import { EMBEDDED_MODEL_DIR } from './embedded-model.js';

/**
 * Runs one generation: inpainting when `flags.mask` is set, else image-to-image when `flags.image` is.
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

  const image = flags.image === undefined ? undefined : await readImage(flags.image, '--image');
  const mask = flags.mask === undefined ? undefined : await readImage(flags.mask, '--mask');
  const controlImage =
    flags.controlImage === undefined ? undefined : await readImage(flags.controlImage, '--control-image');
  // Whatever ONNX Runtime's own logger would print about a failure also reaches the user as the error's one line.
  setRuntimeLogLevel(4);

  const loadStart = performance.now();
  const loadOptions = {
    device: flags.device,
    localFilesOnly: flags.localFilesOnly || undefined,
    signal,
    progressCallback: downloadReporter(progress),
  };
  const pipe =
    image !== undefined
      ? mask === undefined
        ? await StableDiffusionImg2ImgPipeline.fromRepository(await loadRepository(model, loadOptions))
        : await StableDiffusionInpaintPipeline.fromRepository(await loadRepository(model, loadOptions))
      : controlImage !== undefined
        ? await StableDiffusionControlNetPipeline.fromPretrained(model, loadOptions)
        : await DiffusionPipeline.fromPretrained(model, loadOptions);
  progress.stop();
  try {
    if (flags.scheduler !== undefined) {
      // Keys of the model's scheduler that the new class does not use are dropped on purpose: that is the swap.
      pipe.scheduler = getScheduler(flags.scheduler, pipe.scheduler.config, { onWarning: () => {} });
    }
    const loadSeconds = seconds(loadStart);

    const denoiseStart = performance.now();
    // Image-to-image and inpainting run the last ⌊steps · strength⌋ steps of the schedule.
    const runSteps = image === undefined ? flags.steps : Math.max(1, Math.floor(flags.steps * flags.strength));
    progress.start('denoising', runSteps);
    const { images } = await pipe.generate({
      prompt: flags.prompt,
      negativePrompt: flags.negativePrompt,
      numInferenceSteps: flags.steps,
      numImagesPerPrompt: flags.numImages,
      guidanceScale: flags.guidance,
      ...(image === undefined ? { width: flags.width, height: flags.height } : { image, strength: flags.strength }),
      ...(mask === undefined ? {} : { maskImage: mask, paddingMaskCrop: flags.paddingMaskCrop }),
      ...(controlImage === undefined
        ? {}
        : {
            image: controlImage,
            controlnetConditioningScale: flags.controlScale,
            controlGuidanceStart: flags.controlStart,
            controlGuidanceEnd: flags.controlEnd,
            guessMode: flags.guessMode || undefined,
          }),
      generator: new RandomGenerator(seed),
      signal,
      callbackOnStepEnd: ({ step }) => progress.update(step + 1, Math.max(step + 1, runSteps)),
      onWarning: (message) => stderr.write(`denoise: warning: ${message}\n`),
    });
    progress.stop();
    const denoiseSeconds = seconds(denoiseStart);

    const saveStart = performance.now();
    const written = [];
    for (const [index, picture] of images.entries()) {
      const name = images.length === 1 ? flags.out : flags.out.replace(/(\.png)$/i, `-${index + 1}$1`);
      const out = resolve(name);
      const png = await picture.toPNG();
      await mkdir(dirname(out), { recursive: true })
        .then(() => writeFile(out, png))
        .catch((cause) => {
          throw new InvalidArgumentError(
            `Cannot write ${name} (${cause.code ?? cause.message}). Pass an --out path in a folder you can write to.`,
            { cause },
          );
        });
      written.push(`wrote ${name} (${picture.width}x${picture.height})\n`);
    }
    const saveSeconds = seconds(saveStart);

    const className = pipe.scheduler.constructor.name;
    const schedulerName = flags.scheduler === undefined ? className : `${flags.scheduler} (${className})`;
    const steps = `${flags.steps} step${flags.steps === 1 ? '' : 's'}`;
    const strength = image === undefined ? '' : ` | strength ${flags.strength}`;
    const control = controlImage === undefined ? '' : ` | control scale ${flags.controlScale ?? 1}`;
    stdout.write(
      written.join('') +
        `seed ${seed} | scheduler ${schedulerName} | ${steps}${strength}${control} | guidance ${flags.guidance}\n` +
        `load ${loadSeconds.toFixed(2)} s | denoise ${denoiseSeconds.toFixed(2)} s ` +
        `(${((denoiseSeconds * 1000) / runSteps).toFixed(1)} ms/step) | encode+write ${saveSeconds.toFixed(2)} s\n`,
    );
  } finally {
    await pipe.release();
  }
}

/** The RGBA pixels of the PNG at `path`, with a one-line error naming `flag` when it cannot be read. */
async function readImage(path, flag) {
  const bytes = await readFile(path).catch((cause) => {
    throw new InvalidArgumentError(`${flag} "${path}" cannot be read (${cause.code ?? cause.message}).`, { cause });
  });
  return imageFromPNG(bytes);
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

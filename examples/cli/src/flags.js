/**
 * Command-line flags of `denoise generate`, `denoise img2img` and `denoise inpaint`, checked up front so that a typo fails in milliseconds with a message
 * saying what to type instead, before any model is loaded.
 */
import { parseArgs } from 'node:util';
import { InvalidArgumentError } from '@denoise/core';

/** Execution providers a user can ask for from Node (onnxruntime-node), plus the runtime's own choice. */
export const DEVICES = ['auto', 'cpu', 'cuda', 'dml', 'coreml', 'webgpu'];

/** Denoising steps when --steps is not given: diffusers' default, which the API's `numInferenceSteps` shares. */
export const DEFAULT_STEPS = 50;

/** How much img2img changes the image when --strength is not given: diffusers' and the API's default. */
export const DEFAULT_STRENGTH = 0.8;

/** How much inpaint changes the masked region when --strength is not given: diffusers' default, 1 (from noise). */
export const DEFAULT_INPAINT_STRENGTH = 1;

const GENERATE_FLAGS = {
  prompt: { type: 'string', short: 'p' },
  'negative-prompt': { type: 'string' },
  model: { type: 'string', short: 'm' },
  scheduler: { type: 'string', short: 's' },
  steps: { type: 'string', short: 'n' },
  guidance: { type: 'string', short: 'g' },
  seed: { type: 'string' },
  width: { type: 'string' },
  height: { type: 'string' },
  device: { type: 'string' },
  'num-images': { type: 'string' },
  'local-files-only': { type: 'boolean' },
  'control-image': { type: 'string' },
  'control-scale': { type: 'string' },
  'control-start': { type: 'string' },
  'control-end': { type: 'string' },
  'guess-mode': { type: 'boolean' },
  out: { type: 'string', short: 'o' },
  help: { type: 'boolean', short: 'h' },
};

/** The flags that configure a ControlNet, which only `generate --control-image` reads. */
const CONTROL_FLAGS = ['control-scale', 'control-start', 'control-end', 'guess-mode'];

const IMG2IMG_FLAGS = (() => {
  const {
    width,
    height,
    'control-image': controlImage,
    'control-scale': controlScale,
    'control-start': controlStart,
    'control-end': controlEnd,
    'guess-mode': guessMode,
    ...shared
  } = GENERATE_FLAGS;
  return { image: { type: 'string' }, strength: { type: 'string' }, ...shared };
})();

const INPAINT_FLAGS = { ...IMG2IMG_FLAGS, mask: { type: 'string' }, 'padding-mask-crop': { type: 'string' } };

const FLAGS_OF = { generate: GENERATE_FLAGS, img2img: IMG2IMG_FLAGS, inpaint: INPAINT_FLAGS };

/**
 * @typedef {object} GenerateFlags
 * @property {string} prompt
 * @property {string | undefined} negativePrompt
 * @property {string | undefined} model - a Hub id or a directory; undefined means the embedded reference world
 * @property {string | undefined} scheduler - a UI alias such as "DPM++ 2M Karras"; undefined keeps the model's own
 * @property {number} steps
 * @property {number} guidance
 * @property {number | undefined} seed - undefined means "draw one and print it"
 * @property {number | undefined} width
 * @property {number | undefined} height
 * @property {string | undefined} device
 * @property {number} numImages - images to generate; more than one are written as name-1.png, name-2.png, ...
 * @property {boolean} localFilesOnly - use the Hugging Face cache only, never the network
 * @property {string | undefined} image - img2img and inpaint: the PNG to start from
 * @property {number | undefined} strength - img2img and inpaint: how much to change it, in [0, 1]
 * @property {string | undefined} mask - inpaint: the PNG whose white part is repainted
 * @property {number | undefined} paddingMaskCrop - inpaint: work on the mask's box grown by this many pixels
 * @property {string | undefined} controlImage - generate with a ControlNet: the PNG of the control image
 * @property {number | undefined} controlScale - the ControlNet's conditioning scale (default 1)
 * @property {number | undefined} controlStart - the fraction of the steps where the control starts (default 0)
 * @property {number | undefined} controlEnd - the fraction of the steps where it ends (default 1)
 * @property {boolean} guessMode - diffusers' guess mode
 * @property {string} out
 * @property {boolean} help
 */

/**
 * Parses the arguments that follow `denoise generate`, `denoise img2img` or `denoise inpaint`.
 *
 * @param {string[]} args
 * @param {'generate' | 'img2img' | 'inpaint'} [command]
 * @returns {GenerateFlags}
 */
export function parseGenerateFlags(args, command = 'generate') {
  const options = FLAGS_OF[command];
  const { values, positionals } = parseStrict(negativeNumbersInline(args, options), options);
  if (positionals.length > 0) {
    throw new InvalidArgumentError(
      `Unexpected argument "${positionals[0]}". Quote the prompt and pass it with --prompt "...".`,
    );
  }
  const flags = {
    prompt: values.prompt,
    negativePrompt: values['negative-prompt'],
    model: values.model,
    scheduler: values.scheduler,
    steps: values.steps === undefined ? DEFAULT_STEPS : wholeNumber('--steps', values.steps, 1),
    guidance: values.guidance === undefined ? 7.5 : finiteNumber('--guidance', values.guidance, 0),
    seed: values.seed === undefined ? undefined : wholeNumber('--seed', values.seed, 0),
    width: values.width === undefined ? undefined : wholeNumber('--width', values.width, 1),
    height: values.height === undefined ? undefined : wholeNumber('--height', values.height, 1),
    device: values.device,
    numImages: values['num-images'] === undefined ? 1 : wholeNumber('--num-images', values['num-images'], 1),
    localFilesOnly: values['local-files-only'] ?? false,
    image: values.image,
    strength: values.strength === undefined ? undefined : fraction('--strength', values.strength),
    mask: values.mask,
    paddingMaskCrop:
      values['padding-mask-crop'] === undefined
        ? undefined
        : wholeNumber('--padding-mask-crop', values['padding-mask-crop'], 0),
    controlImage: values['control-image'],
    controlScale:
      values['control-scale'] === undefined ? undefined : finiteNumber('--control-scale', values['control-scale'], 0),
    controlStart:
      values['control-start'] === undefined ? undefined : fraction('--control-start', values['control-start']),
    controlEnd: values['control-end'] === undefined ? undefined : fraction('--control-end', values['control-end']),
    guessMode: values['guess-mode'] ?? false,
    out: values.out ?? 'out.png',
    help: values.help ?? false,
  };
  if (flags.help) return flags;
  if (flags.prompt === undefined) {
    throw new InvalidArgumentError(`--prompt is required, e.g. denoise ${command} --prompt "a red circle".`);
  }
  if (command !== 'generate' && flags.image === undefined) {
    const example = command === 'inpaint' ? '--image circle.png --mask mask.png' : '--image circle.png';
    throw new InvalidArgumentError(`--image is required, e.g. denoise ${command} ${example} --prompt "...".`);
  }
  if (command === 'inpaint' && flags.mask === undefined) {
    throw new InvalidArgumentError(
      "--mask is required: a PNG of the image's size, white where to repaint, e.g. denoise inpaint --image circle.png " +
        '--mask mask.png --prompt "...".',
    );
  }
  if (command === 'img2img') flags.strength ??= DEFAULT_STRENGTH;
  if (command === 'inpaint') flags.strength ??= DEFAULT_INPAINT_STRENGTH;
  const controlOnly = CONTROL_FLAGS.filter((name) => values[name] !== undefined);
  if (flags.controlImage === undefined && controlOnly.length > 0) {
    throw new InvalidArgumentError(
      `--${controlOnly[0]} configures the ControlNet: pass the control image too, e.g. --control-image edges.png.`,
    );
  }
  if (flags.device !== undefined && !DEVICES.includes(flags.device)) {
    throw new InvalidArgumentError(`--device "${flags.device}" is not one of ${DEVICES.join(', ')}.`);
  }
  if (!flags.out.toLowerCase().endsWith('.png')) {
    throw new InvalidArgumentError(`--out "${flags.out}" must name a .png file: denoise writes PNG images.`);
  }
  return flags;
}

/**
 * Parses flags of a command that takes none but `--help`.
 *
 * @param {string} command
 * @param {string[]} args
 * @returns {{ help: boolean }}
 */
export function parseNoFlags(command, args) {
  const { values, positionals } = parseStrict(args, { help: { type: 'boolean', short: 'h' } });
  if (positionals.length > 0) {
    throw new InvalidArgumentError(`denoise ${command} takes no arguments; got "${positionals[0]}".`);
  }
  return { help: values.help ?? false };
}

function parseStrict(args, options) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (error) {
    // node:util reports unknown or valueless flags as TypeErrors worded for programmers; reword them for users.
    const known = Object.keys(options)
      .map((name) => `--${name}`)
      .join(', ');
    const flag = /'(?:-\w, )?(--?[\w-]+)/.exec(error.message)?.[1] ?? args.join(' ');
    let message = `Unknown flag ${flag}. Known flags: ${known}.`;
    if (error.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      message = error.message.includes('does not take')
        ? `${flag} takes no value.`
        : `${flag} needs a value, e.g. ${flag} "...".`;
    }
    throw new InvalidArgumentError(message, { cause: error });
  }
}

/**
 * `--steps -3` as `--steps=-3`: node:util reads a value that starts with "-" as the next flag, which would turn a
 * negative number into "--steps needs a value" instead of the range error it deserves.
 */
function negativeNumbersInline(args, options) {
  const takesValue = new Map();
  for (const [name, option] of Object.entries(options)) {
    if (option.type !== 'string') continue;
    takesValue.set(`--${name}`, name);
    if (option.short) takesValue.set(`-${option.short}`, name);
  }
  const out = [];
  for (let i = 0; i < args.length; i++) {
    const name = takesValue.get(args[i]);
    if (name !== undefined && /^-(\d|\.\d)/.test(args[i + 1] ?? '')) {
      out.push(`--${name}=${args[i + 1]}`);
      i++;
    } else {
      out.push(args[i]);
    }
  }
  return out;
}

function wholeNumber(flag, text, min) {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min) {
    throw new InvalidArgumentError(`${flag} must be a whole number >= ${min}, got "${text}".`);
  }
  return value;
}

function finiteNumber(flag, text, min) {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value < min) {
    throw new InvalidArgumentError(`${flag} must be a number >= ${min}, got "${text}".`);
  }
  return value;
}

function fraction(flag, text) {
  const value = Number(text);
  if (text.trim() === '' || !(value >= 0 && value <= 1)) {
    throw new InvalidArgumentError(`${flag} must be a number from 0 to 1, got "${text}".`);
  }
  return value;
}

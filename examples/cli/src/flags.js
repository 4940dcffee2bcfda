/**
 * Command-line flags of `denoise generate`, checked up front so that a typo fails in milliseconds with a message
 * saying what to type instead, before any model is loaded.
 */
import { parseArgs } from 'node:util';
import { InvalidArgumentError } from '@denoise/core';

/** Execution providers a user can ask for from Node (onnxruntime-node), plus the runtime's own choice. */
export const DEVICES = ['auto', 'cpu', 'cuda', 'dml', 'coreml', 'webgpu'];

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
  out: { type: 'string', short: 'o' },
  help: { type: 'boolean', short: 'h' },
};

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
 * @property {string} out
 * @property {boolean} help
 */

/**
 * Parses the arguments that follow `denoise generate`.
 *
 * @param {string[]} args
 * @returns {GenerateFlags}
 */
export function parseGenerateFlags(args) {
  const { values, positionals } = parseStrict(args, GENERATE_FLAGS);
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
    steps: values.steps === undefined ? 25 : wholeNumber('--steps', values.steps, 1),
    guidance: values.guidance === undefined ? 7.5 : finiteNumber('--guidance', values.guidance, 0),
    seed: values.seed === undefined ? undefined : wholeNumber('--seed', values.seed, 0),
    width: values.width === undefined ? undefined : wholeNumber('--width', values.width, 1),
    height: values.height === undefined ? undefined : wholeNumber('--height', values.height, 1),
    device: values.device,
    out: values.out ?? 'out.png',
    help: values.help ?? false,
  };
  if (flags.help) return flags;
  if (flags.prompt === undefined) {
    throw new InvalidArgumentError('--prompt is required, e.g. denoise generate --prompt "a red circle".');
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

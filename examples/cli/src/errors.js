/**
 * How the CLI reports a failure. A `DenoiseError` is the SDK saying what was wrong and what to do: it is printed
 * as one line, with the API options its advice names replaced by the flags and environment variables that set
 * them here. Anything else is a bug, printed with its stack and a request to report it.
 */
import { AbortError, DenoiseError } from '@denoise/core';

/** API option names in SDK messages, and what a CLI user types instead. */
const API_TO_CLI = [
  [/`localFilesOnly: true`|`localFilesOnly`/g, '--local-files-only'],
  [/`cacheDir` \(or HF_HUB_CACHE\)/g, 'HF_HUB_CACHE'],
  [/`hubUrl`/g, 'HF_ENDPOINT'],
  [/`accessToken`/g, 'HF_TOKEN'],
  [/\bnumInferenceSteps\b/g, '--steps'],
  [/\bnumImagesPerPrompt\b/g, '--num-images'],
  [/\bguidanceScale\b/g, '--guidance'],
  [/\bLeave width and height out\b/g, 'Leave out --width and --height'],
];

/**
 * The one line a CLI user sees for an SDK error.
 *
 * @param {DenoiseError} error
 * @returns {string}
 */
export function cliMessage(error) {
  let message = error.message.replace(/\s+/g, ' ').trim();
  for (const [api, cli] of API_TO_CLI) message = message.replace(api, cli);
  return `denoise: ${message}`;
}

/**
 * Writes `error` to `stderr` and returns the exit code: 1 for SDK errors and bugs, 130 for Ctrl-C.
 *
 * @param {unknown} error
 * @param {NodeJS.WritableStream} stderr
 * @returns {number}
 */
export function reportError(error, stderr) {
  if (error instanceof DenoiseError) {
    stderr.write(`${cliMessage(error)}\n`);
    return error instanceof AbortError ? 130 : 1;
  }
  const details = error instanceof Error ? (error.stack ?? String(error)) : String(error);
  stderr.write(
    'denoise: unexpected error. This is a bug in denoise: please report it with the command you ran and this ' +
      `output.\n${details}\n`,
  );
  return 1;
}

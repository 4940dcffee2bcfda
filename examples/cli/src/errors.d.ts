/** Types of errors.js, for the TypeScript tests. */
import type { DenoiseError } from '@denoise/core';

/** The one line a CLI user sees for an SDK error. */
export function cliMessage(error: DenoiseError): string;

/** Writes `error` to `stderr` and returns the exit code: 1 for SDK errors and bugs, 130 for Ctrl-C. */
export function reportError(error: unknown, stderr: NodeJS.WritableStream): number;

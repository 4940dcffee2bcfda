/**
 * Where the embedded default model lives: the reference world committed at the repository's root, so
 * `denoise generate` works offline right after cloning and building.
 */
import { fileURLToPath } from 'node:url';

/** Absolute path of `models/reference-world`, resolved from this file (examples/cli/src). */
export const EMBEDDED_MODEL_DIR = fileURLToPath(new URL('../../../models/reference-world', import.meta.url));

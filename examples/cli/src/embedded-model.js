/**
 * Where the embedded default model lives: inside the published package (`models/reference-world`, copied there
 * when it is packed), else the reference world committed at the repository's root, so `denoise generate` works
 * offline both after `npx @denoise/cli` and right after cloning and building.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const packaged = fileURLToPath(new URL('../models/reference-world', import.meta.url));

/** Absolute path of the reference world: the package's own copy, or the repository's `models/reference-world`. */
export const EMBEDDED_MODEL_DIR = existsSync(packaged)
  ? packaged
  : fileURLToPath(new URL('../../../models/reference-world', import.meta.url));

#!/usr/bin/env node
/**
 * `npm pack` / `npm publish` of @denoise/cli (prepack): copies the reference world (models/reference-world at the
 * repository's root, ~570 kB) into the package, so `npx @denoise/cli generate` works offline from any directory.
 * With `--remove` (postpack) it deletes the copy again; in the repository the CLI reads the root folder itself.
 */
import { cpSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const source = fileURLToPath(new URL('../../../models/reference-world', import.meta.url));
const packaged = fileURLToPath(new URL('../models', import.meta.url));

rmSync(packaged, { recursive: true, force: true });
if (!process.argv.includes('--remove')) cpSync(source, `${packaged}/reference-world`, { recursive: true });

/**
 * `denoise schedulers`: the names `--scheduler` accepts, with the diffusers class each one builds.
 */
import { listSchedulers } from '@denoise/schedulers';

/**
 * Prints one line per alias.
 *
 * @param {{ stdout: NodeJS.WritableStream }} io
 */
export function printSchedulers({ stdout }) {
  const entries = listSchedulers();
  const width = Math.max(...entries.map((entry) => entry.alias.length));
  for (const entry of entries) stdout.write(`${entry.alias.padEnd(width)}  ${entry.className}\n`);
}

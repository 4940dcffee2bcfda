/**
 * `denoise schedulers`: the names `--scheduler` accepts (UI names, then diffusers class names), each with the
 * class it builds and the config keys it sets on top of the model's own scheduler config.
 */
import { listSchedulers } from '@denoise/schedulers';

/**
 * Prints one line per name.
 *
 * @param {{ stdout: NodeJS.WritableStream }} io
 */
export function printSchedulers({ stdout }) {
  const entries = listSchedulers();
  const nameWidth = Math.max(...entries.map((entry) => entry.name.length));
  const classWidth = Math.max(...entries.map((entry) => entry.className.length));
  for (const { name, className, overrides } of entries) {
    const settings = Object.entries(overrides).map(([key, value]) => `${key}=${value}`);
    const line = `${name.padEnd(nameWidth)}  ${className.padEnd(classWidth)}  ${settings.join(' ')}`;
    stdout.write(`${line.trimEnd()}\n`);
  }
}

/**
 * The `denoise` command: dispatches to a subcommand and turns every SDK error into one line on stderr and exit
 * code 1, so a bad flag reads as advice rather than a stack trace.
 */
import { AbortError, DenoiseError, InvalidArgumentError } from '@denoise/core';
import { parseGenerateFlags, parseNoFlags } from './flags.js';
import { createProgressBar } from './progress.js';

const USAGE = `Usage:
  denoise generate --prompt "..." [options]   generate one image and write it as a PNG
  denoise schedulers                           list the names --scheduler accepts
  denoise doctor                               which devices (CPU, CUDA, DirectML, CoreML, WebGPU) work here

Options of generate:
  -p, --prompt <text>          what to draw (required)
      --negative-prompt <text> what to steer away from
  -m, --model <id or dir>      a Hub id (org/name) or a local diffusers-layout ONNX folder;
                               default: the embedded reference world (models/reference-world)
  -s, --scheduler <name>       e.g. "DPM++ 2M Karras" (see denoise schedulers); default: the model's own
  -n, --steps <N>              denoising steps (default 25)
  -g, --guidance <W>           classifier-free guidance scale (default 7.5; <= 1 turns it off)
      --seed <S>               seed of the initial noise (default: a random one, printed at the end)
      --width <px>, --height <px>  image size (default: the model's)
      --device <name>          auto | cpu | cuda | dml | coreml | webgpu
  -o, --out <file.png>         where to write the image (default out.png)
`;

/**
 * Runs the CLI on `argv` (the arguments after `denoise`) and resolves to the process exit code.
 *
 * @param {string[]} argv
 * @returns {Promise<number>}
 */
export async function main(argv) {
  const { stdout, stderr } = process;
  const controller = new AbortController();
  const onInterrupt = () => controller.abort(new AbortError('Interrupted (Ctrl-C).'));
  process.once('SIGINT', onInterrupt);
  let progress;
  try {
    const [command, ...args] = argv;
    if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
      stdout.write(USAGE);
      return 0;
    }
    if (command === 'generate') {
      const flags = parseGenerateFlags(args);
      if (flags.help) {
        stdout.write(USAGE);
        return 0;
      }
      progress = await createProgressBar({ stream: stderr });
      // Loaded on demand so that `--help` and bad flags answer at once, without starting ONNX Runtime.
      const { generate } = await import('./generate.js');
      await generate(flags, { progress, signal: controller.signal, stdout, stderr });
      return 0;
    }
    if (command === 'doctor') {
      if (parseNoFlags(command, args).help) stdout.write(USAGE);
      else await (await import('./doctor.js')).printDoctor({ stdout });
      return 0;
    }
    if (command === 'schedulers') {
      if (parseNoFlags(command, args).help) stdout.write(USAGE);
      else (await import('./schedulers.js')).printSchedulers({ stdout });
      return 0;
    }
    throw new InvalidArgumentError(`Unknown command "${command}". Commands: generate, schedulers (denoise --help).`);
  } catch (error) {
    progress?.stop();
    if (error instanceof DenoiseError) {
      stderr.write(`denoise: ${error.message}\n`);
      return error instanceof AbortError ? 130 : 1;
    }
    throw error;
  } finally {
    process.off('SIGINT', onInterrupt);
  }
}

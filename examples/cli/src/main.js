/**
 * The `denoise` command: dispatches to a subcommand and turns every SDK error into one line on stderr and exit
 * code 1, so a bad flag reads as advice rather than a stack trace.
 */
import { AbortError, InvalidArgumentError } from '@denoise/core';
import { reportError } from './errors.js';
import {
  DEFAULT_INPAINT_STRENGTH,
  DEFAULT_STEPS,
  DEFAULT_STRENGTH,
  parseGenerateFlags,
  parseNoFlags,
} from './flags.js';
import { createProgressBar } from './progress.js';

const USAGE = `Usage:
  denoise generate --prompt "..." [options]   generate an image and write it as a PNG
  denoise img2img --image <file.png> --prompt "..." [options]
                                               repaint a PNG towards the prompt (SDEdit)
  denoise inpaint --image <file.png> --mask <mask.png> --prompt "..." [options]
                                               repaint the white part of the mask, keep the rest
  denoise schedulers                           list the names --scheduler accepts
  denoise doctor                               which devices (CPU, CUDA, DirectML, CoreML, WebGPU) work here

Options of generate:
  -p, --prompt <text>          what to draw (required)
      --negative-prompt <text> what to steer away from
  -m, --model <id or dir>      a Hub id (org/name) or a local diffusers-layout ONNX folder;
                               default: the embedded reference world (models/reference-world)
  -s, --scheduler <name>       e.g. "DPM++ 2M Karras" (see denoise schedulers); default: the model's own
  -n, --steps <N>              denoising steps (default ${DEFAULT_STEPS}, as diffusers and the API)
  -g, --guidance <W>           classifier-free guidance scale (default 7.5; <= 1 turns it off)
      --seed <S>               seed of the initial noise (default: a random one, printed at the end)
      --width <px>, --height <px>  image size (default: the model's)
      --device <name>          auto | cpu | cuda | dml | coreml | webgpu
      --num-images <N>         images to generate (default 1); several are written as out-1.png, out-2.png, ...
      --local-files-only       use the Hugging Face cache only, never the network (as HF_HUB_OFFLINE=1)
  -o, --out <file.png>         where to write the image (default out.png)
      --control-image <file.png>  generate with the model's ControlNet, following this image (edges, depth,
                               a pose...); the image sets the size unless --width/--height do
      --control-scale <s>      the ControlNet's conditioning scale (default 1; 0 turns it off)
      --control-start <f>, --control-end <f>  the fraction of the steps where the control applies (default 0, 1)
      --guess-mode             diffusers' guess mode: the ControlNet sees the conditional pass only

Options of img2img: those of generate except --width, --height and the --control flags (the image sets the size), plus
      --image <file.png>       the picture to start from (required)
      --strength <s>           how much to change it, from 0 to 1 (default ${DEFAULT_STRENGTH})

Options of inpaint: those of img2img, with --strength defaulting to ${DEFAULT_INPAINT_STRENGTH} (repaint from noise), plus
      --mask <mask.png>        white (>= 50% gray) is repainted, black kept; resized to the image (required)
      --padding-mask-crop <px> generate only the mask's bounding box grown by px, at the model's size, and paste it back
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
    if (command === 'generate' || command === 'img2img' || command === 'inpaint') {
      const flags = parseGenerateFlags(args, command);
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
    throw new InvalidArgumentError(
      `Unknown command "${command}". Commands: generate, img2img, inpaint, schedulers, doctor (denoise --help).`,
    );
  } catch (error) {
    progress?.stop();
    return reportError(error, stderr);
  } finally {
    process.off('SIGINT', onInterrupt);
  }
}

/**
 * The real `denoise` bin, run with node in a child process. It resolves the workspace packages through the
 * `source` condition (tsx loads their TypeScript), so these tests need no build; after `npm run build` the same
 * bin runs on the built packages.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { InvalidArgumentError } from '@denoise/core';
import { imagesFromTensor } from '@denoise/pipelines';
import { decode, encode } from 'fast-png';
import { afterAll, describe, expect, it } from 'vitest';
import { HubServer } from '../../../packages/core/test/helpers/hub-server.js';
import { buildControlNetWorld, silhouette } from '../../../tools/reference-world/controlnet.js';
import { closestLabelsDistance, nearestLabels } from '../../../tools/reference-world/pictures.js';
import { paintLatent, worldPoints } from '../../../tools/reference-world/world.js';
import { reportError } from '../src/errors.js';
import { createProgressBar } from '../src/progress.js';

const bin = resolve(import.meta.dirname, '..', 'bin', 'denoise.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

const repoRoot = resolve(import.meta.dirname, '..', '..', '..');
/** The embedded model, as src/embedded-model.js resolves it. */
const EMBEDDED_MODEL_DIR = join(repoRoot, 'models', 'reference-world');

function denoise(...args: string[]): Promise<Run> {
  return denoiseWithEnv({}, ...args);
}

function denoiseWithEnv(env: Record<string, string>, ...args: string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      ['--conditions=source', '--import', 'tsx', bin, ...args],
      { cwd: repoRoot, timeout: 60_000, env: { ...process.env, ...env } },
      (error, stdout, stderr) => done({ code: error ? Number(error.code) : 0, stdout, stderr }),
    );
  });
}

describe('denoise generate on the embedded model', () => {
  const outDir = mkdtempSync(join(tmpdir(), 'denoise-cli-'));
  afterAll(() => rmSync(outDir, { recursive: true, force: true }));

  it.each([
    ['a red circle on a white background', [], 3],
    ['a yellow cross on a gray background', ['--scheduler', 'DPM++ 2M Karras'], 11],
  ])('"%s" %j writes a PNG of that picture, then prints the seed and timings', async (prompt, extra, seed) => {
    const out = join(outDir, `${seed}.png`);
    const run = await denoise(
      'generate',
      '--prompt',
      prompt,
      '--steps',
      '12',
      '--seed',
      String(seed),
      '--out',
      out,
      ...extra,
    );
    expect(run.stderr).not.toMatch(/error|at .*\.js:\d+/i);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`wrote ${out} (128x128)`);
    expect(run.stdout).toMatch(new RegExp(`^seed ${seed} \\| scheduler .+ \\| 12 steps \\| guidance 7\\.5$`, 'm'));
    expect(run.stdout).toMatch(/^load \d+\.\d\d s \| denoise \d+\.\d\d s \(\d+\.\d ms\/step\) \| encode\+write/m);
    const png = decode(readFileSync(out));
    expect([png.width, png.height, png.channels, png.depth]).toEqual([128, 128, 4, 8]);
    const [nearest] = nearestLabels(png.data);
    expect(nearest.label).toBe(prompt);
    // Closer than half the smallest distance between two labels' pictures: no other label could be this near.
    expect(nearest.error).toBeLessThan(closestLabelsDistance() / 2);
  });

  it('downloads a Hub model (--model org/name) into the Hugging Face cache, then runs offline from it', async () => {
    const hub = await HubServer.start();
    const cache = join(outDir, 'hf-cache');
    try {
      const modelDir = join(repoRoot, 'models', 'reference-world');
      const files = Object.fromEntries(
        readdirSync(modelDir, { recursive: true, withFileTypes: true })
          .filter((entry) => entry.isFile())
          .map((entry) => {
            const path = join(entry.parentPath, entry.name);
            return [path.slice(modelDir.length + 1), new Uint8Array(readFileSync(path))];
          }),
      );
      hub.addRepo('someone/reference-world', files);
      const args = [
        'generate',
        '--model',
        'someone/reference-world',
        '--prompt',
        'a green square on a white background',
      ];
      const online = await denoiseWithEnv(
        { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache },
        ...args,
        '--steps',
        '8',
        '--seed',
        '1',
        '--out',
        join(outDir, 'hub.png'),
      );
      expect(online.stderr).toBe('');
      expect(online.code).toBe(0);
      expect(existsSync(join(cache, 'models--someone--reference-world', 'refs', 'main'))).toBe(true);
      expect(nearestLabels(decode(readFileSync(join(outDir, 'hub.png'))).data)[0].label).toBe(args.at(-1));

      const requestsBefore = hub.requests.length;
      const offline = await denoiseWithEnv(
        { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '1' },
        ...args,
        '--steps',
        '8',
        '--seed',
        '1',
        '--out',
        join(outDir, 'offline.png'),
      );
      expect(offline.code).toBe(0);
      expect(hub.requests.length).toBe(requestsBefore);
      expect(readFileSync(join(outDir, 'offline.png'))).toEqual(readFileSync(join(outDir, 'hub.png')));
    } finally {
      await hub.close();
    }
  });

  it('names the known schedulers when --scheduler is unknown', async () => {
    const run = await denoise('generate', '--prompt', 'a red circle', '--scheduler', 'DPM++ 9M', '--steps', '2');
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^denoise: .*DPM\+\+ 9M.*DPM\+\+ 2M Karras.*\n$/s);
    expect(run.stderr).not.toMatch(/\n\s+at /);
  });
});

/** One line on stderr, exit code 1, nothing on stdout and no stack. */
function expectOneLineError(run: Run, message: string) {
  expect(run.stderr).toBe(`${message}\n`);
  expect(run.code).toBe(1);
  expect(run.stdout).toBe('');
}

describe.concurrent('denoise generate: SDK errors print as one line of advice', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'denoise-cli-errors-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));
  const quick = ['generate', '--prompt', 'a red circle', '--steps', '2', '--out', join(scratch, 'out.png')];
  // Nothing listens on port 9 (discard): the Hub is unreachable, at once.
  const offline = { HF_ENDPOINT: 'http://127.0.0.1:9', HF_HUB_CACHE: join(scratch, 'empty-cache') };

  it('--model naming neither a folder nor a Hub id', async () => {
    expectOneLineError(
      await denoise(...quick, '--model', './no/such/dir'),
      'denoise: "./no/such/dir" is neither a directory nor a Hub repository id ("org/name"). Check the path or the id.',
    );
  });

  it('--model naming a folder that is not a diffusers repository', async () => {
    expectOneLineError(
      await denoise(...quick, '--model', 'docs'),
      'denoise: docs has no model_index.json, so it is not a diffusers pipeline repository. Point at the folder ' +
        '(or repository) that holds model_index.json, or export the model with diffusers or Optimum.',
    );
  });

  it('a Hub id without network names the CLI flag --local-files-only, which then names the cache', async () => {
    expectOneLineError(
      await denoiseWithEnv(offline, ...quick, '--model', 'someone/model'),
      'denoise: Could not fetch someone/model (revision main): fetch failed. Check the network (or HF_ENDPOINT) ' +
        'and retry, or pass --local-files-only to use files already in the cache.',
    );
    expectOneLineError(
      await denoiseWithEnv(offline, ...quick, '--model', 'someone/model', '--local-files-only'),
      `denoise: someone/model (revision main) is not in the cache at ${offline.HF_HUB_CACHE} and ` +
        '--local-files-only forbids downloading it. Load it once online, or point HF_HUB_CACHE at the cache that has it.',
    );
  });

  it("--device cuda without onnxruntime-node's CUDA binaries says how to install them", async () => {
    // package.json's allowScripts keeps onnxruntime-node's CUDA download out of installs, so they are absent here.
    const ortBin = join(dirname(createRequire(import.meta.url).resolve('onnxruntime-node')), '..', 'bin', 'napi-v6');
    expect(existsSync(join(ortBin, 'linux', 'x64', 'libonnxruntime_providers_cuda.so'))).toBe(false);
    const hint =
      process.platform === 'linux' && process.arch === 'x64'
        ? 'OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library. onnxruntime-node runs CUDA ' +
          'on Linux x64 once its CUDA 12 binaries are installed: `ONNXRUNTIME_NODE_INSTALL=cuda12 node ' +
          'node_modules/onnxruntime-node/script/install` (and the CUDA 12 / cuDNN 9 libraries).'
        : undefined;
    const run = await denoise(...quick, '--device', 'cuda');
    expect(run.code).toBe(1);
    expect(run.stderr).not.toMatch(/\n\s+at |onnxruntime_src/);
    if (hint) {
      expectOneLineError(
        run,
        `denoise: Could not start text_encoder/model.onnx of ${EMBEDDED_MODEL_DIR} on device "cuda": ${hint}`,
      );
    } else {
      expect(run.stderr).toMatch(/^denoise: Device "cuda" is not available in onnxruntime-node here .*\n$/);
    }
  });

  it('--device webgpu without a GPU adapter says what Dawn needs', async () => {
    const run = await denoise(...quick, '--device', 'webgpu');
    // Dawn (onnxruntime-node's WebGPU) prints its own native warnings, e.g. "Warning: Couldn't load Vulkan: ...
    // at operator() (.../BackendVk.cpp:368)", straight to the process's stderr; those lines are not denoise's.
    const ours = run.stderr.split('\n').filter((line) => line.startsWith('denoise'));
    if (run.code === 0) {
      expect(ours).toEqual([]);
      return;
    }
    expect(ours).toEqual([
      `denoise: Could not start text_encoder/model.onnx of ${EMBEDDED_MODEL_DIR} on device "webgpu": Failed to get ` +
        'a WebGPU adapter: No supported adapters. onnxruntime-node runs WebGPU through Dawn, which needs a GPU ' +
        'adapter (Vulkan drivers on Linux, Direct3D 12 on Windows, Metal on macOS); without one, use "cpu".',
    ]);
    expect(run.stderr).not.toMatch(/\n\s+at .*\.js:\d+|onnxruntime_src/);
    expect(run.code).toBe(1);
  });

  it('--width 256 on the 128×128 embedded model names the size it takes', async () => {
    expectOneLineError(
      await denoise(...quick, '--width', '256'),
      `denoise: The UNet of ${EMBEDDED_MODEL_DIR} was exported for width 128 and height 128 only; got width 256 ` +
        'and height 128. Leave out --width and --height to get that size.',
    );
  });

  it('--out in a folder that cannot be created', async () => {
    const file = join(scratch, 'a-file');
    writeFileSync(file, '');
    expectOneLineError(
      await denoise('generate', '--prompt', 'a red circle', '--steps', '1', '--out', join(file, 'x.png')),
      `denoise: Cannot write ${join(file, 'x.png')} (EEXIST). Pass an --out path in a folder you can write to.`,
    );
  });

  it('img2img with an --image that is missing or not a PNG', async () => {
    const notPng = join(scratch, 'not.png');
    writeFileSync(notPng, 'GIF89a');
    const img2img = ['img2img', '--prompt', 'a red circle', '--steps', '2', '--out', join(scratch, 'i.png')];
    expectOneLineError(
      await denoise(...img2img, '--image', join(scratch, 'missing.png')),
      `denoise: --image "${join(scratch, 'missing.png')}" cannot be read (ENOENT).`,
    );
    const run = await denoise(...img2img, '--image', notPng);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^denoise: These bytes are not a PNG image \(.*\)\. Pass a \.png file\.\n$/);
  });
});

describe('denoise: what a run says besides the picture', () => {
  const outDir = mkdtempSync(join(tmpdir(), 'denoise-cli-runs-'));
  afterAll(() => rmSync(outDir, { recursive: true, force: true }));

  it('warns of a prompt the model does not know, and stays silent for a known one', async () => {
    const unknown = await denoise(
      ...['generate', '--prompt', 'a purple dragon riding a bicycle', '--steps', '3', '--seed', '1'],
      ...['--out', join(outDir, 'dragon.png')],
    );
    expect(unknown.code).toBe(0);
    expect(unknown.stderr).toBe(
      'denoise: warning: The model cannot tell the prompt "a purple dragon riding a bicycle" from the empty prompt ' +
        '(it predicts the same noise for both), so the image is an unconditional sample: the model knows none of ' +
        'its words. Use words it was trained on.\n',
    );
    const known = await denoise(
      ...['generate', '--prompt', 'a red circle on a white background', '--steps', '3', '--seed', '1'],
      ...['--out', join(outDir, 'circle.png')],
    );
    expect(known.code).toBe(0);
    expect(known.stderr).toBe('');
  });

  it('--steps 1 with a multistep scheduler runs and says nothing wrong', async () => {
    const run = await denoise(
      ...['generate', '--prompt', 'a blue square on a black background', '--steps', '1', '--seed', '4'],
      ...['--scheduler', 'DPM++ 2M Karras', '--out', join(outDir, 'one-step.png')],
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^seed 4 \| scheduler DPM\+\+ 2M Karras \(DPMSolverMultistepScheduler\) \| 1 step \| /m);
  });

  it('--num-images 2 writes name-1.png and name-2.png, two pictures of the prompt', async () => {
    const prompt = 'a green triangle on a white background';
    const out = join(outDir, 'two.png');
    const run = await denoise(
      'generate',
      '--prompt',
      prompt,
      '--steps',
      '12',
      '--seed',
      '5',
      '--num-images',
      '2',
      '--out',
      out,
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const names = [join(outDir, 'two-1.png'), join(outDir, 'two-2.png')];
    expect(run.stdout).toContain(`wrote ${names[0]} (128x128)\nwrote ${names[1]} (128x128)\n`);
    const pictures = names.map((name) => decode(readFileSync(name)).data);
    for (const data of pictures) expect(nearestLabels(data)[0].label).toBe(prompt);
    expect(pictures[0]).not.toEqual(pictures[1]);
  });

  it('img2img --image --strength keeps the shape and repaints what the prompt changes', async () => {
    const source = join(outDir, 'source.png');
    const first = await denoise(
      ...['generate', '--prompt', 'a red circle on a white background', '--steps', '12', '--seed', '3'],
      ...['--out', source],
    );
    expect(first.code).toBe(0);
    const prompt = 'a red circle on a black background';
    const out = join(outDir, 'repainted.png');
    const run = await denoise(
      ...['img2img', '--image', source, '--strength', '0.6', '--prompt', prompt, '--steps', '20', '--seed', '7'],
      ...['--out', out],
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^seed 7 \| scheduler DDIMScheduler \| 20 steps \| strength 0\.6 \| guidance 7\.5$/m);
    const [nearest] = nearestLabels(decode(readFileSync(out)).data);
    expect(nearest.label).toBe(prompt);
    expect(nearest.error).toBeLessThan(closestLabelsDistance() / 2);
  });

  it('inpaint --image --mask repaints the white part of the mask and keeps the rest', async () => {
    // The source is the world's picture itself, so that no clamped pixel makes the VAE round trip inexact.
    const source = join(outDir, 'inpaint-source.png');
    const picture = worldPoints.find((p) => p.label === 'a red circle on a white background');
    const [rgb] = imagesFromTensor({ data: paintLatent(picture!.latent), dims: [1, 3, 128, 128] });
    writeFileSync(source, await rgb.toPNG());
    // Gray + alpha PNG, white over the shape's cells (pixels 16 to 111).
    const maskFile = join(outDir, 'mask.png');
    const mask = new Uint8Array(128 * 128 * 2).fill(255);
    for (let p = 0; p < 128 * 128; p++) {
      const [y, x] = [Math.floor(p / 128), p % 128];
      mask[2 * p] = y >= 16 && y < 112 && x >= 16 && x < 112 ? 255 : 0;
    }
    writeFileSync(maskFile, encode({ width: 128, height: 128, channels: 2, depth: 8, data: mask }));
    const out = join(outDir, 'inpainted.png');
    const run = await denoise(
      ...['inpaint', '--image', source, '--mask', maskFile, '--prompt', 'a blue square', '--steps', '20'],
      ...['--seed', '7', '--out', out],
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^seed 7 \| scheduler DDIMScheduler \| 20 steps \| strength 1 \| guidance 7\.5$/m);
    const result = decode(readFileSync(out)).data;
    const [nearest] = nearestLabels(result);
    expect(nearest.label).toBe('a blue square on a white background');
    expect(nearest.error).toBeLessThan(closestLabelsDistance() / 2);
    // Outside the mask the pixels are the source's through the VAE: the source is block art, so its re-encoding
    // differs only by the PNG's 8-bit rounding, and the pixels by at most one level.
    const original = decode(readFileSync(source)).data;
    let largest = 0;
    for (let p = 0; p < 128 * 128; p++) {
      if (mask[2 * p] !== 0) continue;
      for (let c = 0; c < 3; c++) largest = Math.max(largest, Math.abs(result[4 * p + c] - original[4 * p + c]));
    }
    expect(largest).toBeLessThanOrEqual(1);
  });

  it('img2img of an image the model was not exported for names the size it takes', async () => {
    const big = join(outDir, 'big.png');
    writeFileSync(big, encode({ width: 256, height: 256, channels: 3, depth: 8, data: new Uint8Array(256 * 256 * 3) }));
    expectOneLineError(
      await denoise(
        'img2img',
        '--image',
        big,
        '--prompt',
        'a red circle',
        '--steps',
        '2',
        '--out',
        join(outDir, 'b.png'),
      ),
      `denoise: The UNet of ${EMBEDDED_MODEL_DIR} was exported for width 128 and height 128 only; got a 256×256 ` +
        'image. Resize the image to that size.',
    );
  });
});

describe("errors that are not the SDK's", () => {
  function sinkStream() {
    const chunks: string[] = [];
    return { chunks, stream: { write: (chunk: string) => chunks.push(chunk) } as unknown as NodeJS.WritableStream };
  }

  it('print their stack and ask to report the bug; SDK errors print one line', () => {
    const bug = sinkStream();
    const error = new TypeError('Cannot read properties of undefined');
    expect(reportError(error, bug.stream)).toBe(1);
    expect(bug.chunks.join('')).toBe(
      'denoise: unexpected error. This is a bug in denoise: please report it with the command you ran and this ' +
        `output.\n${error.stack}\n`,
    );
    const advice = sinkStream();
    expect(reportError(new InvalidArgumentError('numInferenceSteps must be\na positive integer.'), advice.stream)).toBe(
      1,
    );
    expect(advice.chunks).toEqual(['denoise: --steps must be a positive integer.\n']);
  });
});

describe('denoise schedulers', () => {
  it('lists every alias with its diffusers class', async () => {
    const run = await denoise('schedulers');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(
      /^DPM\+\+ 2M Karras +DPMSolverMultistepScheduler +algorithm_type=dpmsolver\+\+ solver_order=2 solver_type=midpoint use_karras_sigmas=true$/m,
    );
    expect(run.stdout).toMatch(/^DPM\+\+ 2M SDE Heun +DPMSolverMultistepScheduler +.*solver_type=heun/m);
    expect(run.stdout).toMatch(/^Euler a +EulerAncestralDiscreteScheduler$/m);
    expect(run.stdout).toMatch(/^DDIM +DDIMScheduler$/m);
    expect(run.stdout).toMatch(/^UniPCMultistepScheduler +UniPCMultistepScheduler$/m);
    // The DPM2 / DPM++ 2S / DPM++ SDE family (issue #15).
    expect(run.stdout).toMatch(/^DPM2 +KDPM2DiscreteScheduler +use_karras_sigmas=false$/m);
    expect(run.stdout).toMatch(/^DPM2 a Karras +KDPM2AncestralDiscreteScheduler +use_karras_sigmas=true$/m);
    expect(run.stdout).toMatch(/^DPM\+\+ 2S +DPMSolverSinglestepScheduler +algorithm_type=dpmsolver\+\+/m);
    expect(run.stdout).toMatch(/^DPM\+\+ SDE Karras +DPMSolverSDEScheduler +use_karras_sigmas=true$/m);
  });
});

describe.concurrent('denoise flags', () => {
  it.each([
    [
      ['generate', '--prompt', 'a red circle', '--steps', '0'],
      'denoise: --steps must be a whole number >= 1, got "0".',
    ],
    [['generate', '--prompt', 'x', '--guidance', 'lots'], 'denoise: --guidance must be a number >= 0, got "lots".'],
    [
      ['generate', '--prompt', 'x', '--device', 'tpu'],
      'denoise: --device "tpu" is not one of auto, cpu, cuda, dml, coreml, webgpu.',
    ],
    [['generate', '--steps', '4'], 'denoise: --prompt is required, e.g. denoise generate --prompt "a red circle".'],
    [['generate', '--prompt'], 'denoise: --prompt needs a value, e.g. --prompt "...".'],
    [
      ['generate', '--prompt', 'x', '--out', 'picture.jpg'],
      'denoise: --out "picture.jpg" must name a .png file: denoise writes PNG images.',
    ],
    [
      ['generate', 'a', 'red', 'circle'],
      'denoise: Unexpected argument "a". Quote the prompt and pass it with --prompt "...".',
    ],
    [
      ['paint'],
      'denoise: Unknown command "paint". Commands: generate, img2img, inpaint, schedulers, doctor (denoise --help).',
    ],
    [['generate', '--prompt', 'x', '--steps', '-3'], 'denoise: --steps must be a whole number >= 1, got "-3".'],
    [['generate', '--prompt', 'x', '-g', '-2'], 'denoise: --guidance must be a number >= 0, got "-2".'],
    [['generate', '--prompt', 'x', '--num-images', '0'], 'denoise: --num-images must be a whole number >= 1, got "0".'],
    [
      ['img2img', '--prompt', 'x'],
      'denoise: --image is required, e.g. denoise img2img --image circle.png --prompt "...".',
    ],
    [
      ['img2img', '--prompt', 'x', '--image', 'in.png', '--strength', '1.5'],
      'denoise: --strength must be a number from 0 to 1, got "1.5".',
    ],
    [
      ['inpaint', '--prompt', 'x', '--mask', 'm.png'],
      'denoise: --image is required, e.g. denoise inpaint --image circle.png --mask mask.png --prompt "...".',
    ],
    [
      ['inpaint', '--prompt', 'x', '--image', 'in.png'],
      "denoise: --mask is required: a PNG of the image's size, white where to repaint, e.g. denoise inpaint " +
        '--image circle.png --mask mask.png --prompt "...".',
    ],
    [
      ['inpaint', '--prompt', 'x', '--image', 'in.png', '--mask', 'm.png', '--padding-mask-crop', '-4'],
      'denoise: --padding-mask-crop must be a whole number >= 0, got "-4".',
    ],
  ])('%j fails with exit code 1 and one line of advice, no stack', async (args, message) => {
    const run = await denoise(...args);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`${message}\n`);
    expect(run.stdout).toBe('');
  });

  it('names the unknown flag and lists the known ones', async () => {
    const run = await denoise('generate', '--prompt', 'x', '--stesp', '3');
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      /^denoise: Unknown flag --stesp\. Known flags: --prompt, .*--steps, .*--out, --help\.\n$/,
    );
  });

  it('prints usage on --help with exit code 0', async () => {
    const run = await denoise('--help');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('denoise generate --prompt "..." [options]');
    expect(run.stdout).toContain('--scheduler <name>');
  });
});

describe('denoise generate --control-image', () => {
  const dir = mkdtempSync(join(tmpdir(), 'denoise-cli-controlnet-'));
  const model = join(dir, 'model');
  buildControlNetWorld(model);
  const square = join(dir, 'square.png');
  const { width, height, data } = silhouette('square');
  writeFileSync(square, encode({ width, height, channels: 4, depth: 8, data }));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('draws the silhouette’s shape in the prompt’s colours, and the prompt’s shape at --control-scale 0', async () => {
    const common = ['--model', model, '--control-image', square, '--steps', '20', '--guidance', '1.5', '--seed', '3'];
    const prompt = 'a red circle on a white background';
    const out = join(dir, 'controlled.png');
    const run = await denoise('generate', '--prompt', prompt, ...common, '--out', out);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^seed 3 \| scheduler DDIMScheduler \| 20 steps \| control scale 1 \| guidance 1\.5$/m);
    expect(nearestLabels(decode(readFileSync(out)).data)[0].label).toBe('a red square on a white background');
    const off = join(dir, 'off.png');
    const offRun = await denoise('generate', '--prompt', prompt, ...common, '--control-scale', '0', '--out', off);
    expect(offRun.code).toBe(0);
    expect(nearestLabels(decode(readFileSync(off)).data)[0].label).toBe(prompt);
  });

  it('ControlNet flags without --control-image, and a model without a ControlNet, are one-line errors', async () => {
    const flagOnly = await denoise('generate', '--prompt', 'x', '--control-scale', '0.5');
    expect(flagOnly.code).toBe(1);
    expect(flagOnly.stderr).toBe(
      'denoise: --control-scale configures the ControlNet: pass the control image too, e.g. --control-image edges.png.\n',
    );
    const plain = await denoise(
      'generate',
      '--prompt',
      'x',
      '--control-image',
      square,
      '--steps',
      '2',
      '--out',
      join(dir, 'x.png'),
    );
    expect(plain.code).toBe(1);
    expect(plain.stderr).toMatch(/^denoise: The UNet of .* takes no ControlNet residuals/);
    expect(plain.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('progress bar', () => {
  function sink(isTTY: boolean) {
    const chunks: string[] = [];
    return { chunks, stream: { isTTY, write: (chunk: string) => chunks.push(chunk) } as unknown as NodeJS.WriteStream };
  }

  it('falls back to one plain line per phase when cli-progress cannot be imported', async () => {
    const { chunks, stream } = sink(false);
    const bar = await createProgressBar({ stream, loadCliProgress: () => Promise.reject(new Error('not installed')) });
    bar.start('denoising', 4);
    for (let step = 1; step <= 5; step++) bar.update(step, Math.max(step, 4));
    bar.stop();
    bar.stop();
    expect(chunks).toEqual(['denoising 5/5\n']);
  });

  it('drives cli-progress when it is there, counting downloads in KiB', async () => {
    const calls: unknown[][] = [];
    class SingleBar {
      constructor(options: { stream: unknown }) {
        calls.push(['new', options.stream === stream]);
      }
      start(total: number, value: number, payload: object) {
        calls.push(['start', total, value, payload]);
      }
      setTotal(total: number) {
        calls.push(['setTotal', total]);
      }
      update(value: number) {
        calls.push(['update', value]);
      }
      stop() {
        calls.push(['stop']);
      }
    }
    const { stream } = sink(true);
    const bar = await createProgressBar({ stream, loadCliProgress: async () => ({ SingleBar }) });
    bar.start('download', 0);
    bar.update(3072, 10_240);
    bar.start('denoising', 2);
    bar.update(2);
    bar.stop();
    expect(calls).toEqual([
      ['new', true],
      ['start', 0, 0, { label: 'download', unit: 'KiB' }],
      ['setTotal', 10],
      ['update', 3],
      ['stop'],
      ['start', 2, 0, { label: 'denoising', unit: '' }],
      ['update', 2],
      ['stop'],
    ]);
  });
});

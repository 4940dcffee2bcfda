/**
 * The real `denoise` bin, run with node in a child process. It resolves the workspace packages through the
 * `source` condition (tsx loads their TypeScript), so these tests need no build; after `npm run build` the same
 * bin runs on the built packages.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { decode } from 'fast-png';
import { afterAll, describe, expect, it } from 'vitest';
import { HubServer } from '../../../packages/core/test/helpers/hub-server.js';
import { closestLabelsDistance, nearestLabels } from '../../../tools/reference-world/pictures.js';
import { createProgressBar } from '../src/progress.js';

const bin = resolve(import.meta.dirname, '..', 'bin', 'denoise.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

const repoRoot = resolve(import.meta.dirname, '..', '..', '..');

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
    [['paint'], 'denoise: Unknown command "paint". Commands: generate, schedulers (denoise --help).'],
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

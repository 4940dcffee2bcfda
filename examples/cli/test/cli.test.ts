/**
 * The real `denoise` bin, run with node in a child process. It resolves the workspace packages through the
 * `source` condition (tsx loads their TypeScript), so these tests need no build; after `npm run build` the same
 * bin runs on the built packages.
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createProgressBar } from '../src/progress.js';

const bin = resolve(import.meta.dirname, '..', 'bin', 'denoise.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function denoise(...args: string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      ['--conditions=source', '--import', 'tsx', bin, ...args],
      { cwd: resolve(import.meta.dirname, '..', '..', '..'), timeout: 60_000 },
      (error, stdout, stderr) => done({ code: error ? Number(error.code) : 0, stdout, stderr }),
    );
  });
}

describe('denoise flags', () => {
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

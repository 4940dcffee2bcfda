/** `denoise doctor`, run as the real bin on the TypeScript sources (like cli.test.ts). */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';

const bin = resolve(import.meta.dirname, '..', 'bin', 'denoise.js');

function doctor(...args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      ['--conditions=source', '--import', 'tsx', bin, 'doctor', ...args],
      { timeout: 60_000 },
      (error, stdout) => done({ code: error ? Number(error.code) : 0, stdout }),
    );
  });
}

describe('denoise doctor', () => {
  it('prints the runtime, one line per execution provider and what --device auto uses', async () => {
    const { code, stdout } = await doctor();
    expect(code).toBe(0);
    const lines = stdout.split('\n');
    expect(lines[0]).toBe(
      `node ${process.version}, onnxruntime-node ${ort.env.versions.node}, ${process.platform}-${process.arch}`,
    );
    const providers = lines.filter((l) => /^ {2}\w+ +(yes|no) /.test(l)).map((l) => l.trim().split(/ +/)[0]);
    expect(providers).toEqual(['cuda', 'dml', 'coreml', 'webgpu', 'cpu']);
    expect(stdout).toMatch(/^ {2}cpu +yes {2}in onnxruntime-node's /m);
    // every provider marked "no" is followed by its fix
    for (const [i, line] of lines.entries()) {
      if (/^ {2}\w+ +no /.test(line)) expect(lines[i + 1]).toMatch(/^ +to enable: \S/);
    }
    expect(stdout).toMatch(/\n--device auto uses: .*cpu\n$/);
  });

  it('rejects flags it does not take', async () => {
    const { code } = await doctor('--verbose');
    expect(code).toBe(1);
  });
});

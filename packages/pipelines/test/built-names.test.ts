/**
 * The built bundles (`npm run build`) keep class names: logs and errors name `pipe.constructor.name`, which esbuild
 * would otherwise rename (`_StableDiffusionPipeline`) where names clash. Run in plain Node on dist, ESM and CJS.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..', '..', '..');
const dist = resolve(root, 'packages', 'pipelines', 'dist');

function node(code: string): Promise<string> {
  return new Promise((done, fail) => {
    execFile(process.execPath, ['--input-type=module', '-e', code], { cwd: root, timeout: 60_000 }, (error, stdout) =>
      error ? fail(error) : done(stdout.trim()),
    );
  });
}

describe('class names in the built bundles', () => {
  it('dist exists (run npm run build first)', () => {
    expect(existsSync(resolve(dist, 'index.js')), `${dist}/index.js is missing: npm run build`).toBe(true);
  });

  it('pipe.constructor.name is StableDiffusionPipeline in the ESM and CJS builds', async () => {
    const out = await node(`
      import { createRequire } from 'node:module';
      const esm = await import(${JSON.stringify(resolve(dist, 'index.js'))});
      const cjs = createRequire(import.meta.url)(${JSON.stringify(resolve(dist, 'index.cjs'))});
      for (const { DiffusionPipeline } of [esm, cjs]) {
        const pipe = await DiffusionPipeline.fromPretrained('models/reference-world', { device: 'cpu' });
        console.log(pipe.constructor.name, pipe.scheduler.constructor.name);
        await pipe.release();
      }
      console.log(esm.DDPMPipeline.name, cjs.StableDiffusionImg2ImgPipeline.name);
    `);
    expect(out.split('\n')).toEqual([
      'StableDiffusionPipeline DDIMScheduler',
      'StableDiffusionPipeline DDIMScheduler',
      'DDPMPipeline StableDiffusionImg2ImgPipeline',
    ]);
  });
});

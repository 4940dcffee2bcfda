#!/usr/bin/env node
/**
 * `npm run test:pack`: the packages as a user gets them. Packs every workspace package, installs the tarballs
 * into a fresh project in the system's temporary folder (outside the workspace: no workspace links, no tsx, no
 * `source` condition; dependencies from the npm registry only) and there:
 *
 * 1. imports every entry as ESM and as CJS;
 * 2. type-checks a small TypeScript program against the published `.d.ts`, with tsc from the registry, as ESM
 *    (`.mts`) and as CJS (`.cts`);
 * 3. runs `npx denoise generate` on the CLI's embedded model, and `denoise doctor`; then, from an empty
 *    directory, `npx --package <each tarball> denoise generate`, as `npx @denoise/cli` runs once published;
 * 4. runs the README's app script (`StableDiffusionPipeline.fromPretrained`, one generation, `constructor.name`);
 * 5. bundles a minimal browser app with Vite and checks that onnxruntime-node stays out of it, printing the
 *    bundle sizes (docs/performance.md quotes them).
 *
 * Needs `npm run build` first (`npm ci` runs it). `--keep` leaves the temporary project for a look.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';

const root = resolve(import.meta.dirname, '..');
const keep = process.argv.includes('--keep');
const env = { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', npm_config_update_notifier: 'false' };
// Nothing of the workspace may leak into the project: no tsx loader, no extra resolve conditions.
delete env.NODE_OPTIONS;

const started = Date.now();
function step(title) {
  console.log(`\n--- ${title} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}

function run(command, args, cwd, options = {}) {
  const output = execFileSync(command, args, {
    cwd,
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    ...options,
  });
  return (output ?? '').trim();
}

function fail(message) {
  throw new Error(`pack test: ${message}`);
}

/** The version of a devDependency this workspace has installed, so the project tests with the same tools. */
function installedVersion(name) {
  return JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version;
}

function pngSize(file) {
  const png = readFileSync(file);
  if (png.toString('latin1', 1, 4) !== 'PNG') fail(`${file} is not a PNG`);
  return [png.readUInt32BE(16), png.readUInt32BE(20)];
}

const project = mkdtempSync(join(tmpdir(), 'denoise-pack-test-'));
if (project.startsWith(root)) fail(`the temporary folder ${project} is inside the workspace`);
try {
  step('npm pack every workspace package');
  const tarballs = join(project, 'tarballs');
  mkdirSync(tarballs);
  const packed = JSON.parse(run('npm', ['pack', '--workspaces', '--json', '--pack-destination', tarballs], root));
  const packages = Object.fromEntries(packed.map((p) => [p.name, join(tarballs, p.filename)]));
  for (const p of packed) {
    console.log(`${p.name}@${p.version}  ${(p.size / 1024).toFixed(0)} kB packed, ${p.entryCount} files`);
  }
  const expected = ['@denoise/cli', '@denoise/core', '@denoise/pipelines', '@denoise/schedulers'];
  if (Object.keys(packages).sort().join() !== expected.join()) fail(`packed ${Object.keys(packages)}`);
  const cli = packed.find((p) => p.name === '@denoise/cli');
  if (!cli.files.some((f) => f.path === 'models/reference-world/unet/model.onnx')) {
    fail('@denoise/cli does not carry models/reference-world');
  }

  step('install the tarballs into a fresh project');
  // The tarballs satisfy the packages' dependencies on each other (overrides), so nothing named @denoise/* is
  // fetched from the registry.
  const tarballSpecs = Object.fromEntries(Object.entries(packages).map(([name, file]) => [name, `file:${file}`]));
  writeFileSync(
    join(project, 'package.json'),
    `${JSON.stringify(
      {
        name: 'denoise-pack-test',
        private: true,
        dependencies: tarballSpecs,
        devDependencies: {
          typescript: installedVersion('typescript'),
          vite: installedVersion('vite'),
          '@types/node': installedVersion('@types/node'),
        },
        overrides: tarballSpecs,
      },
      null,
      2,
    )}\n`,
  );
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline'], project, { stdio: 'inherit' });

  const entries = ['@denoise/core', '@denoise/core/runtime', '@denoise/schedulers', '@denoise/pipelines'];
  step('import every entry as ESM and as CJS');
  for (const [format, load] of [
    ['ESM', (name) => `await import('${name}')`],
    ['CJS', (name) => `require('${name}')`],
  ]) {
    const code = entries.map((name) => `console.log('${name}', Object.keys(${load(name)}).length);`).join('\n');
    const flag = format === 'ESM' ? '--input-type=module' : '--input-type=commonjs';
    const out = run(process.execPath, [flag, '-e', code], project);
    for (const line of out.split('\n')) {
      const [name, count] = line.split(' ');
      if (!(Number(count) > 0)) fail(`${format} ${name} exports nothing`);
    }
    console.log(`${format}: ${out.replaceAll('\n', ', ')} exports`);
  }

  step('type-check against the published .d.ts (ESM and CJS)');
  const program = `
    import { RandomGenerator, Tensor } from '@denoise/core';
    import { type DeviceSupport, getDeviceSupport, loadRepository } from '@denoise/core/runtime';
    import { DiffusionPipeline, isPipeline, type PipelineOutput, StableDiffusionPipeline } from '@denoise/pipelines';
    import { DDIMScheduler, getScheduler } from '@denoise/schedulers';

    export async function check(): Promise<number> {
      const support: DeviceSupport = await getDeviceSupport();
      const loaded = await DiffusionPipeline.fromPretrained('model', { device: 'cpu' });
      if (!isPipeline(loaded, 'StableDiffusionPipeline')) throw new Error(loaded.kind);
      const pipe: StableDiffusionPipeline = await StableDiffusionPipeline.fromPretrained('model');
      pipe.scheduler = getScheduler('Euler a', pipe.scheduler.config);
      const out: PipelineOutput = await loaded.generate({ prompt: 'a cat', generator: new RandomGenerator(1) });
      const scheduler = DDIMScheduler.fromConfig({ num_train_timesteps: 1000 });
      scheduler.setTimesteps(10);
      const repo = await loadRepository('model');
      const noise: Tensor = new RandomGenerator(0).randn([1, 4, 8, 8]);
      return support.providers.length + out.images[0].width + scheduler.timesteps.length + noise.dims.length +
        Object.keys(repo.components).length;
    }
  `;
  const check = join(project, 'check');
  mkdirSync(check);
  writeFileSync(join(check, 'esm.mts'), program);
  writeFileSync(join(check, 'cjs.cts'), program);
  writeFileSync(
    join(check, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        module: 'nodenext',
        moduleResolution: 'nodenext',
        target: 'es2022',
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        types: ['node'],
        lib: ['es2022', 'dom'],
      },
      include: ['*.mts', '*.cts'],
    }),
  );
  run(join(project, 'node_modules', '.bin', 'tsc'), ['-p', check], project);
  console.log('tsc: esm.mts and cjs.cts type-check (skipLibCheck off)');

  step('npx denoise generate (the embedded model) and denoise doctor');
  const generated = run(
    'npx',
    ['--no-install', 'denoise', 'generate', '--prompt', 'a red circle on a white background', '--steps', '8'],
    project,
  );
  console.log(generated);
  const cliPng = join(project, 'out.png');
  if (pngSize(cliPng).join('x') !== '128x128') fail(`denoise generate wrote ${pngSize(cliPng)}`);
  console.log(run('npx', ['--no-install', 'denoise', 'doctor'], project));

  step('npx @denoise/cli generate from an empty directory (the tarballs standing in for the registry)');
  const empty = join(project, 'empty');
  mkdirSync(empty);
  const fromTarballs = Object.values(packages).flatMap((file) => ['--package', file]);
  const npxOut = run('npx', ['--yes', ...fromTarballs, 'denoise', 'generate', '-p', 'a blue square', '-n', '8'], empty);
  console.log(npxOut.split('\n')[0]);
  if (pngSize(join(empty, 'out.png')).join('x') !== '128x128') fail('npx @denoise/cli wrote no 128x128 PNG');

  step("the README's app script: StableDiffusionPipeline.fromPretrained and one generation");
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const app = readme.match(/<!-- app script -->\s*```ts\n([\s\S]*?)```/)?.[1];
  if (!app) fail('README.md has no block after <!-- app script -->');
  writeFileSync(join(project, 'generate.mjs'), app);
  const model = join(project, 'node_modules', '@denoise', 'cli', 'models', 'reference-world');
  const appOut = run(process.execPath, ['generate.mjs', model], project);
  console.log(appOut);
  if (!appOut.includes('StableDiffusionPipeline')) fail(`the app script printed "${appOut}"`);
  if (pngSize(join(project, 'blue-square.png')).join('x') !== '128x128') fail('the app script wrote no 128x128 PNG');

  step('bundle a minimal browser app with Vite');
  const web = join(project, 'web');
  mkdirSync(web);
  writeFileSync(
    join(web, 'index.html'),
    '<!doctype html><title>denoise</title><img id="out"><script type="module" src="./main.js"></script>\n',
  );
  writeFileSync(
    join(web, 'main.js'),
    `import { RandomGenerator } from '@denoise/core';
import { StableDiffusionPipeline } from '@denoise/pipelines';

const pipe = await StableDiffusionPipeline.fromPretrained('org/some-sd-onnx-export', { device: 'auto' });
const { images } = await pipe.generate({ prompt: 'a lighthouse', generator: new RandomGenerator(1) });
const blob = new Blob([await images[0].toPNG()], { type: 'image/png' });
document.querySelector('#out').src = URL.createObjectURL(blob);
`,
  );
  run(join(project, 'node_modules', '.bin', 'vite'), ['build', '--logLevel', 'warn', web], project);
  const assets = join(web, 'dist', 'assets');
  let js = 0;
  let jsGzip = 0;
  let wasm = 0;
  for (const file of readdirSync(assets)) {
    const path = join(assets, file);
    const content = readFileSync(path);
    if (file.endsWith('.js') || file.endsWith('.mjs')) {
      // onnxruntime-node as a module (an import of it, or its native binding), not the messages naming it
      if (/["'`]onnxruntime-node["'`]|onnxruntime_binding|napi-v6/.test(content.toString('utf8'))) {
        fail(`the browser bundle ${file} contains onnxruntime-node`);
      }
      js += content.length;
      jsGzip += gzipSync(content, { level: 9 }).length;
    } else if (file.endsWith('.wasm')) wasm += statSync(path).size;
  }
  if (wasm === 0) fail('the browser bundle has no onnxruntime-web WASM binary');
  const kB = (n) => `${(n / 1024).toFixed(0)} kB`;
  console.log(`no onnxruntime-node in the bundle; JavaScript ${kB(js)} (${kB(jsGzip)} gzip -9), WASM ${kB(wasm)}`);

  step(`passed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
} finally {
  if (keep) console.log(`kept ${project}`);
  else rmSync(project, { recursive: true, force: true });
}

/**
 * The benchmark page's server: Vite builds `bench/browser/index.html` (the workspace packages from their
 * sources) and its preview server serves it on 127.0.0.1 with cross-origin isolation (so onnxruntime-web may use
 * threads), onnxruntime-web's WASM binaries under `/ort/`, and each model folder as a repository of a local Hub
 * under `/hub` (the demo's {@link modelHub}), so the page loads them with `fromPretrained` as it would any Hub
 * model.
 */

import { mkdir, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { resolve } from 'node:path';
import { build, type InlineConfig, type Plugin, preview } from 'vite';
import { copyOrtBinaries } from '../../examples/browser/assets.js';
import { modelHub } from '../../examples/browser/model-hub.js';
import { CROSS_ORIGIN_ISOLATION, PAGE_CONDITIONS } from '../../examples/browser/vite.config.js';

const benchDir = import.meta.dirname;

/** A running server. */
export interface BenchServer {
  /** `http://127.0.0.1:<port>`. */
  origin: string;
  /** Stops it. */
  close(): Promise<void>;
}

/** One Hub middleware per repository; a request goes to the one whose id its path names. */
function hubOf(models: Readonly<Record<string, string>>): Plugin {
  const hubs = Object.entries(models).map(([repo, folder]) => ({ repo, serve: modelHub(repo, folder) }));
  const middleware = (request: IncomingMessage, response: ServerResponse, next: () => void) => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://hub').pathname);
    const hub = hubs.find(
      ({ repo }) => path.startsWith(`/hub/api/models/${repo}/`) || path.startsWith(`/hub/${repo}/`),
    );
    if (hub) hub.serve(request, response, next);
    else next();
  };
  return {
    name: 'denoise-bench-model-hub',
    configureServer: (server) => void server.middlewares.use(middleware),
    configurePreviewServer: (server) => void server.middlewares.use(middleware),
  };
}

/**
 * Builds the page into `bench/browser/.cache/<name>/` and serves it with `models` as Hub repositories.
 *
 * @param models - Hub id (e.g. `bench/heavy-wasm`) → model folder on disk
 * @param name - a folder name of its own per caller, so that the benchmark and the browser test can build at once
 * @param files - more files to serve under `/fixtures/`, by name
 */
export async function startBenchServer(
  models: Readonly<Record<string, string>>,
  name: string,
  files: Readonly<Record<string, Uint8Array>> = {},
): Promise<BenchServer> {
  const cacheDir = resolve(benchDir, '.cache', name);
  const publicDir = resolve(cacheDir, 'public');
  await rm(cacheDir, { recursive: true, force: true });
  await copyOrtBinaries(publicDir);
  await mkdir(resolve(publicDir, 'fixtures'));
  for (const [file, bytes] of Object.entries(files)) await writeFile(resolve(publicDir, 'fixtures', file), bytes);
  const config: InlineConfig = {
    configFile: false,
    root: benchDir,
    publicDir,
    logLevel: 'warn',
    plugins: [hubOf(models)],
    resolve: { conditions: PAGE_CONDITIONS },
    build: { outDir: resolve(cacheDir, 'dist'), emptyOutDir: true, target: 'es2022', chunkSizeWarningLimit: 4096 },
    preview: { host: '127.0.0.1', port: 0, strictPort: false, headers: CROSS_ORIGIN_ISOLATION },
  };
  await build(config);
  const server = await preview(config);
  const origin = (server.resolvedUrls?.local[0] ?? '').replace(/\/$/, '');
  return { origin, close: () => server.close() };
}

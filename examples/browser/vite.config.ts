/**
 * The demo's Vite config: two pages (the demo and the runtime check), the embedded model served as a local Hub
 * repository, the public folder filled by {@link writePublicAssets}, and cross-origin isolation so onnxruntime-web may use threads (SharedArrayBuffer).
 */
import { resolve } from 'node:path';
import { defaultClientConditions, defineConfig, type Plugin } from 'vite';
import { PUBLIC_DIR, writePublicAssets } from './assets.js';
import { modelHub } from './model-hub.js';

/** The Hub id under which the page finds the embedded model on this server. */
const EMBEDDED_REPO = 'denoise/reference-world';
const EMBEDDED_MODEL_DIR = resolve(import.meta.dirname, '..', '..', 'models', 'reference-world');

/** Cross-origin isolation, so that onnxruntime-web may use threads (SharedArrayBuffer). */
export const CROSS_ORIGIN_ISOLATION = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

/**
 * `source`: the workspace packages' TypeScript, so a page always runs the code in this checkout.
 * onnxruntime-web's build without an embedded WASM URL: it loads its binaries from /ort/ (see the pages).
 */
export const PAGE_CONDITIONS = ['source', 'onnxruntime-web-use-extern-wasm', ...defaultClientConditions];

function publicAssets(): Plugin {
  return {
    name: 'denoise-public-assets',
    async config() {
      await writePublicAssets();
    },
  };
}

function embeddedModelHub(): Plugin {
  return {
    name: 'denoise-embedded-model-hub',
    configureServer(server) {
      server.middlewares.use(modelHub(EMBEDDED_REPO, EMBEDDED_MODEL_DIR));
    },
    configurePreviewServer(server) {
      server.middlewares.use(modelHub(EMBEDDED_REPO, EMBEDDED_MODEL_DIR));
    },
  };
}

export default defineConfig({
  root: import.meta.dirname,
  publicDir: PUBLIC_DIR,
  plugins: [publicAssets(), embeddedModelHub()],
  resolve: { conditions: PAGE_CONDITIONS },
  server: { host: '127.0.0.1', headers: CROSS_ORIGIN_ISOLATION },
  preview: { host: '127.0.0.1', headers: CROSS_ORIGIN_ISOLATION },
  build: {
    outDir: resolve(import.meta.dirname, '.cache', 'dist'),
    emptyOutDir: true,
    target: 'es2022',
    rollupOptions: {
      input: {
        demo: resolve(import.meta.dirname, 'index.html'),
        runtimeCheck: resolve(import.meta.dirname, 'runtime-check.html'),
      },
    },
  },
});

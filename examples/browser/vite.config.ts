/**
 * The demo's Vite config: two pages (the demo and the runtime check), the public folder filled by
 * {@link writePublicAssets}, and cross-origin isolation so onnxruntime-web may use threads (SharedArrayBuffer).
 */
import { resolve } from 'node:path';
import { defaultClientConditions, defineConfig, type Plugin } from 'vite';
import { PUBLIC_DIR, writePublicAssets } from './assets.js';

const crossOriginIsolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

function publicAssets(): Plugin {
  return {
    name: 'denoise-public-assets',
    async config() {
      await writePublicAssets();
    },
  };
}

export default defineConfig({
  root: import.meta.dirname,
  publicDir: PUBLIC_DIR,
  plugins: [publicAssets()],
  // onnxruntime-web's build without an embedded WASM URL: it loads its binaries from /ort/ (see the pages).
  resolve: { conditions: ['onnxruntime-web-use-extern-wasm', ...defaultClientConditions] },
  server: { host: '127.0.0.1', headers: crossOriginIsolation },
  preview: { host: '127.0.0.1', headers: crossOriginIsolation },
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

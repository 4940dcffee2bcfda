import { defineConfig, type Options } from 'tsup';

/** Everything a package imports from npm or from a sibling package stays an import in its build. */
const external = [/^@denoise\//, /^onnxruntime-/, /^@huggingface\//, 'fast-png', /^node:/];

function packageBuild(name: string, entry: Record<string, string>): Options {
  return {
    name,
    entry: Object.fromEntries(Object.entries(entry).map(([out, src]) => [out, `packages/${name}/src/${src}`])),
    outDir: `packages/${name}/dist`,
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    clean: true,
    splitting: true,
    treeshake: true,
    target: 'es2022',
    platform: 'neutral',
    // Class names reach logs and errors (pipe.constructor.name): esbuild would otherwise rename clashing ones.
    keepNames: true,
    // import.meta.url in the CJS build (getDeviceSupport resolves onnxruntime-node's folder with it).
    shims: true,
    external,
    esbuildOptions(options) {
      options.conditions = ['source'];
    },
    tsconfig: 'tsconfig.build.json',
  };
}

export default defineConfig([
  packageBuild('core', {
    index: 'index.ts',
    'runtime/index.node': 'runtime/index.node.ts',
    'runtime/index.browser': 'runtime/index.browser.ts',
  }),
  packageBuild('schedulers', { index: 'index.ts' }),
  packageBuild('pipelines', { index: 'index.ts' }),
]);

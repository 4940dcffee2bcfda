import { defineConfig } from 'vitest/config';

// Packages resolve to each other's TypeScript sources through the `source` export condition. Vitest runs tests in
// Vite's SSR environment, so the condition is set there as well as for plain resolution.
const conditions = ['source', 'node', 'import', 'default'];
const resolve = { conditions };
const ssr = { resolve: { conditions, externalConditions: conditions } };

export default defineConfig({
  test: {
    projects: [
      {
        resolve,
        ssr,
        test: {
          name: 'unit',
          include: ['packages/*/test/**/*.test.ts', 'examples/*/test/**/*.test.ts', 'test/docs/**/*.test.ts'],
          exclude: ['**/node_modules/**', 'packages/*/test/compat/**', 'test/docs/compat/**'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        resolve,
        ssr,
        test: {
          name: 'compat',
          include: ['packages/*/test/compat/**/*.test.ts', 'test/docs/compat/**/*.test.ts'],
          globalSetup: ['test/compat-setup.ts'],
          testTimeout: 300_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});

import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// The unit tests that cover the mutated code (`stryker.config.mjs`): the schedulers' tests and the guidance tests.
// Stryker runs them in a copy of the repository whose node_modules is a link back to the original, so
// `@denoise/schedulers` and `@denoise/pipelines` would resolve to the unmutated sources; the aliases point them at
// this copy's sources instead. `@denoise/core` is not mutated and resolves as usual.
const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const conditions = ['source', 'node', 'import', 'default'];

export default defineConfig({
  resolve: {
    conditions,
    alias: [
      { find: /^@denoise\/schedulers$/, replacement: here('./packages/schedulers/src/index.ts') },
      { find: /^@denoise\/pipelines$/, replacement: here('./packages/pipelines/src/index.ts') },
    ],
  },
  ssr: { resolve: { conditions, externalConditions: conditions } },
  test: {
    // The tests of the mutated files (stryker.config.mjs) that check step values: diffusers' loop values, the
    // closed-form and invariant tests. Left out are tests that cost seconds per run and check other things: the
    // reference-world pipeline runs (guidance-exact, guidance-composition), the mixture accuracy table's own test,
    // fuzzing and bad-input checks; they still run in `npm test`.
    include: [
      'packages/schedulers/test/ddim.test.ts',
      'packages/schedulers/test/prediction.test.ts',
      'packages/schedulers/test/schedule-cursor.test.ts',
      'packages/schedulers/test/sigmas.test.ts',
      'packages/schedulers/test/ddpm.test.ts',
      'packages/schedulers/test/euler-discrete.test.ts',
      'packages/schedulers/test/euler-ancestral-discrete.test.ts',
      'packages/schedulers/test/point-mass-steps.test.ts',
      'packages/schedulers/test/prediction-equivalence.test.ts',
      'packages/schedulers/test/step-math*.test.ts',
      'packages/pipelines/test/guidance.test.ts',
      'packages/pipelines/test/guidance-math*.test.ts',
    ],
    exclude: ['**/node_modules/**'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});

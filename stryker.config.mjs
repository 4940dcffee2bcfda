// @ts-check
/**
 * Mutation testing of the step math: `npm run test:mutation`. StrykerJS changes one operator, condition or
 * statement at a time in the files below and runs the unit tests that cover it (`vitest.mutation.config.ts`); a
 * mutant no test fails on is a change to the math the tests cannot see.
 *
 * Budget (CI on 2 cores, ≤ ~20 min): `perTest` coverage runs only the tests that reach each mutant, two workers,
 * and the mutators that only touch messages or logging (string literals, which are error texts here) are left out.
 *
 * @type {import('@stryker-mutator/api/core').PartialStrykerOptions}
 */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutation.config.ts', related: false },
  plugins: ['@stryker-mutator/vitest-runner'],
  mutate: [
    'packages/schedulers/src/euler-discrete.ts',
    'packages/schedulers/src/euler-ancestral-discrete.ts',
    'packages/schedulers/src/linear-combination.ts',
    'packages/pipelines/src/guidance/classifier-free.ts',
    'packages/pipelines/src/guidance/classifier.ts',
    'packages/pipelines/src/guidance/guidance.ts',
  ],
  mutator: {
    // Error texts, config-spec objects and defaults, not step math; their checks are tested by the config tests.
    excludedMutations: ['StringLiteral', 'ObjectLiteral', 'ArrayDeclaration', 'Regex', 'OptionalChaining'],
  },
  // Module-level code (config specs, tables) runs once at import: every test covers it, so each such mutant would
  // rerun the whole suite. Its values are checked by config-parity and the diffusers loop tests.
  ignoreStatic: true,
  coverageAnalysis: 'perTest',
  concurrency: 2,
  timeoutMS: 10_000,
  timeoutFactor: 2,
  dryRunTimeoutMinutes: 10,
  reporters: ['clear-text', 'progress-append-only', 'json', 'html'],
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  htmlReporter: { fileName: 'reports/mutation/index.html' },
  thresholds: { high: 90, low: 80, break: 80 },
  tempDirName: '.stryker-tmp',
  cleanTempDir: true,
};

// @ts-check
/**
 * Mutation testing of the step math: `npm run test:mutation`. StrykerJS changes one operator, condition or
 * statement at a time in the files below and runs the unit tests that cover it (`vitest.mutation.config.ts`); a
 * mutant no test fails on is a change to the math the tests cannot see. The run fails (`thresholds.break`) when
 * fewer than 90 % of the mutants are killed.
 *
 * Budget: CI on 2 cores in about 10 minutes (1,115 mutants in 7 min on a shared machine). Under Stryker the tests run
 * instrumented in one thread per worker, about 4× slower than `npm test`: the whole package (7690 mutants, every
 * scheduler test) does not finish its initial run in 5 minutes. So the run is bounded by
 * - files: DDPM and DDIM, the Euler steps (the default sampler of the pipelines), the prediction-type weights, the
 *   schedule cursor and the σ helpers every σ scheduler builds on, the linear combination every multistep solver's
 *   update goes through, and the guidance formulas; add a scheduler with the tests that cover it;
 * - tests: only those that check these files' values (`vitest.mutation.config.ts`), not the pipeline runs;
 * - mutators: those that change arithmetic, comparisons, conditions and statements; string literals (error texts),
 *   object and array literals (config specs) and optional chaining are left out;
 * - `perTest` coverage (a mutant runs only the tests that reach it), two workers, a 10 s + 2× timeout per mutant.
 *
 * @type {import('@stryker-mutator/api/core').PartialStrykerOptions}
 */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutation.config.ts', related: false },
  plugins: ['@stryker-mutator/vitest-runner'],
  mutate: [
    'packages/schedulers/src/ddpm.ts',
    'packages/schedulers/src/ddim.ts',
    'packages/schedulers/src/prediction.ts',
    'packages/schedulers/src/schedule-cursor.ts',
    'packages/schedulers/src/sigmas.ts',
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
  thresholds: { high: 95, low: 90, break: 90 },
  tempDirName: '.stryker-tmp',
  cleanTempDir: true,
};

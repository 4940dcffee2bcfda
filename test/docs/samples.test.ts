/**
 * Runs every TypeScript sample of the guides (README.md, docs/*.md) and checks its documented output; the rules
 * a guide follows are in ./samples.ts. Guides marked `sample: compat` run in test/docs/compat instead.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { listDocs, makeScratch, parseDoc, problemsOf, removeScratch, runDocs, typecheckPrograms } from './samples.js';

const docs = listDocs().map(parseDoc);
const unitDocs = docs.filter((doc) => !doc.compat);
const scratch = await makeScratch();
const runs = runDocs(unitDocs, scratch, { concurrency: 2 });
afterAll(() => removeScratch(scratch));

it('every sample of every guide type-checks', async () => {
  const { code, output } = await typecheckPrograms(
    docs.flatMap((doc) => doc.programs),
    scratch,
  );
  expect(output).toBe('');
  expect(code).toBe(0);
});

describe.each(unitDocs.filter((doc) => doc.programs.length > 0))('$doc', ({ programs }) => {
  it.each(programs.map((program) => [program.name, program] as const))('%s', async (_name, program) => {
    const run = await runs.get(program.name)!;
    expect(problemsOf(program, run), program.code).toEqual([]);
  });
});

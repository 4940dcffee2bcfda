/**
 * Runs every TypeScript sample of the guides (README.md, docs/*.md) and checks its documented output; the rules
 * a guide follows are in ./samples.ts. Guides marked `sample: compat` run in test/docs/compat instead. The
 * pictures the samples save are checked against what the guides say they show.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nearestWorldPicture } from './pictures.js';
import { listDocs, makeScratch, parseDoc, problemsOf, removeScratch, runDocs, typecheckPrograms } from './samples.js';

/**
 * What the guides say each saved picture shows, as a reference-world label, and how close to that exact picture
 * it must be (RMS over RGB in 8-bit levels). A sampler that ends at σ = 0 lands on the picture; DDIM with
 * `set_alpha_to_one: false` stops within its last step's small noise; classifier-free guidance at 7.5 with a
 * negative prompt overshoots the colours (RMS 37.05 from the red circle for text-to-image.md's seed; 2.28 without
 * the negative prompt), so its bound sits just above that.
 */
const PICTURES: Record<string, Record<string, { label: string; maxRms: number }>> = {
  'README.md': { 'blue-square.png': { label: 'a blue square on a black background', maxRms: 4 } },
  'docs/quickstart.md': { 'blue-square.png': { label: 'a blue square on a black background', maxRms: 4 } },
  'docs/text-to-image.md': {
    'circle.png': { label: 'a red circle on a white background', maxRms: 40 },
  },
  'docs/image-to-image.md': { 'circle-black.png': { label: 'a red circle on a black background', maxRms: 4 } },
  'docs/sdxl.md': {
    'sdxl-circle.png': { label: 'a red circle on a white background', maxRms: 4 },
    'sdxl-experts.png': { label: 'a blue square on a black background', maxRms: 4 },
  },
  'docs/inpainting.md': { 'circle-to-square.png': { label: 'a blue square on a white background', maxRms: 4 } },
  'docs/controlnet.md': { 'square.png': { label: 'a red square on a white background', maxRms: 4 } },
  'docs/guidance.md': {
    'green-square.png': { label: 'a green square on a gray background', maxRms: 4 },
    'composed.png': { label: 'a green square on a gray background', maxRms: 4 },
    'yellow-cross.png': { label: 'a yellow cross on a black background', maxRms: 4 },
  },
};

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
  // One tsc program over every guide's samples, run while the samples themselves run: minutes on a loaded 2-core machine.
}, 300_000);

describe.each(unitDocs.filter((doc) => doc.programs.length > 0))('$doc', ({ doc, programs }) => {
  it.each(programs.map((program) => [program.name, program] as const))('%s', async (_name, program) => {
    const run = await runs.get(program.name)!;
    expect(problemsOf(program, run), program.code).toEqual([]);
    for (const file of program.saves) {
      const claim = PICTURES[doc]?.[file];
      expect(claim, `${doc} saves ${file}: add what it shows to PICTURES`).toBeDefined();
      const nearest = await nearestWorldPicture(join(run.cwd, file));
      expect(nearest.label, file).toBe(claim!.label);
      expect(nearest.rms, file).toBeLessThan(claim!.maxRms);
    }
  });
});

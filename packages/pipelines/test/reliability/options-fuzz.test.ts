/**
 * Property-based fuzz of `StableDiffusionPipeline.generate` options on the reference world (issue #9): any mix of
 * valid and invalid values either gives the requested number of images of the requested size or rejects with a
 * `DenoiseError` — never a `TypeError`, a `RangeError` or a hang — and the pipeline keeps working afterwards.
 * Bounded (`FUZZ_RUNS`, default 100) with a fixed seed (`FUZZ_SEED`).
 */
import { DenoiseError, RandomGenerator } from '@denoise/core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type StableDiffusionOptions, StableDiffusionPipeline } from '../../src/index.js';
import { REFERENCE_WORLD } from './helpers.js';

let pipe: StableDiffusionPipeline;
beforeAll(async () => {
  pipe = await StableDiffusionPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu' });
});
afterAll(() => pipe.release());

const oddNumber = fc.constantFrom(0, -1, 0.5, Number.NaN, Number.POSITIVE_INFINITY, 1e9, '3', null);

/** Each option: mostly valid values, sometimes one of the odd ones. */
const optionsArbitrary = fc.record(
  {
    prompt: fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom('a red circle', 'blue square on a gray background', '', 'grey cross') },
      fc.array(fc.constantFrom('a red circle', 'yellow triangle'), { minLength: 1, maxLength: 2 }),
      fc.string({ maxLength: 300 }),
      fc.constantFrom([] as string[], 42, null, undefined),
    ),
    negativePrompt: fc.oneof(fc.constantFrom('green', ['red'], ['a', 'b', 'c'], 7), fc.string({ maxLength: 20 })),
    numImagesPerPrompt: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 2 }) }, oddNumber),
    height: fc.oneof({ weight: 4, arbitrary: fc.constant(128) }, fc.integer({ min: -16, max: 200 }), oddNumber),
    width: fc.oneof({ weight: 4, arbitrary: fc.constant(128) }, fc.integer({ min: -16, max: 200 }), oddNumber),
    numInferenceSteps: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 4 }) }, oddNumber),
    guidanceScale: fc.oneof({ weight: 4, arbitrary: fc.double({ min: 0, max: 12, noNaN: true }) }, oddNumber),
    guidanceRescale: fc.oneof({ weight: 4, arbitrary: fc.double({ min: 0, max: 1, noNaN: true }) }, oddNumber),
    eta: fc.oneof({ weight: 4, arbitrary: fc.double({ min: 0, max: 1, noNaN: true }) }, oddNumber),
    guidanceInterval: fc.oneof(
      fc.constantFrom({ start: 0, end: 1 }, { start: 0.2, end: 0.8 }),
      fc.record({ start: fc.double({ noNaN: false }), end: fc.double({ noNaN: false }) }),
    ),
  },
  { requiredKeys: ['prompt'] },
);

describe('generate options fuzz (fast-check)', () => {
  it('resolves with the requested images or rejects with a DenoiseError; never anything else', async () => {
    const outcomes = { images: 0, rejected: 0 };
    await fc.assert(
      fc.asyncProperty(optionsArbitrary, fc.nat(1000), async (raw, seed) => {
        const generator = seed % 10 === 0 ? (['seed', 42, {}][seed % 3] as unknown) : new RandomGenerator(seed);
        const options = { ...raw, generator, onWarning: () => {} } as StableDiffusionOptions;
        const result = await pipe.generate(options).then(
          (output) => ({ output }),
          (error: unknown) => ({ error }),
        );
        if ('error' in result) {
          expect(result.error, String(result.error)).toBeInstanceOf(DenoiseError);
          outcomes.rejected++;
          return;
        }
        const prompts = typeof options.prompt === 'string' ? 1 : (options.prompt ?? []).length;
        expect(result.output.images).toHaveLength(prompts * (options.numImagesPerPrompt ?? 1));
        for (const image of result.output.images) {
          expect([image.width, image.height]).toEqual([options.width ?? 128, options.height ?? 128]);
        }
        outcomes.images++;
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 100), seed: Number(process.env.FUZZ_SEED ?? 4242) },
    );
    console.info(`generate options fuzz: ${JSON.stringify(outcomes)}`);
    expect(outcomes.images).toBeGreaterThan(0);
    expect(outcomes.rejected).toBeGreaterThan(0);
    // Still usable after every rejection.
    const { images } = await pipe.generate({ prompt: 'a red circle', numInferenceSteps: 2 });
    expect(images).toHaveLength(1);
  });
});

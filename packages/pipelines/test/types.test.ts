/**
 * The typed entry points. `npm run typecheck` compiles this file: each `@ts-expect-error` line must fail to compile
 * (a misspelt option, a call on an unnarrowed pipeline), and each `expectTypeOf` must hold. The tests then check at
 * run time that the narrowing the types promise matches what loading returns.
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  DDPMPipeline,
  DiffusionPipeline,
  isPipeline,
  type LatentOutput,
  type LoadedPipeline,
  type PipelineKind,
  type PipelineOutput,
  type StableDiffusionControlNetOptions,
  type StableDiffusionControlNetPipeline,
  type StableDiffusionImg2ImgOptions,
  StableDiffusionImg2ImgPipeline,
  type StableDiffusionInpaintOptions,
  type StableDiffusionInpaintPipeline,
  type StableDiffusionOptions,
  StableDiffusionPipeline,
  type StableDiffusionXLImg2ImgOptions,
  type StableDiffusionXLImg2ImgPipeline,
  type StableDiffusionXLInpaintPipeline,
  type StableDiffusionXLOptions,
  type StableDiffusionXLPipeline,
  type TensorOutput,
} from '../src/index.js';
import { REFERENCE_WORLD } from './reliability/helpers.js';

/** Type-level only: compiled by `npm run typecheck`, never called. */
export async function compileTimeChecks(): Promise<void> {
  const sd = await StableDiffusionPipeline.fromPretrained(REFERENCE_WORLD);
  expectTypeOf(sd).toEqualTypeOf<StableDiffusionPipeline>();
  expectTypeOf(
    await StableDiffusionImg2ImgPipeline.fromPretrained(REFERENCE_WORLD),
  ).toEqualTypeOf<StableDiffusionImg2ImgPipeline>();
  expectTypeOf(await DDPMPipeline.fromPretrained(REFERENCE_WORLD)).toEqualTypeOf<DDPMPipeline>();
  // The output type picks what generate resolves to.
  expectTypeOf(await sd.generate({ prompt: 'a red circle' })).toEqualTypeOf<PipelineOutput>();
  expectTypeOf(await sd.generate({ prompt: 'a red circle', outputType: 'latent' })).toEqualTypeOf<LatentOutput>();
  expectTypeOf(await sd.generate({ prompt: 'a red circle', outputType: 'tensor' })).toEqualTypeOf<TensorOutput>();
  const options: StableDiffusionOptions = { prompt: 'a red circle' };
  expectTypeOf(await sd.generate(options)).toEqualTypeOf<PipelineOutput>();
  // @ts-expect-error an output type that does not exist
  await sd.generate({ prompt: 'a red circle', outputType: 'pil' });

  // Custom sigmas: a list of numbers, on every latent pipeline's options.
  expectTypeOf<StableDiffusionOptions['sigmas']>().toEqualTypeOf<readonly number[] | undefined>();
  expectTypeOf<StableDiffusionImg2ImgOptions['sigmas']>().toEqualTypeOf<readonly number[] | undefined>();
  expectTypeOf<StableDiffusionInpaintOptions['sigmas']>().toEqualTypeOf<readonly number[] | undefined>();
  expectTypeOf<StableDiffusionControlNetOptions['sigmas']>().toEqualTypeOf<readonly number[] | undefined>();
  expectTypeOf<StableDiffusionXLOptions['sigmas']>().toEqualTypeOf<readonly number[] | undefined>();
  expectTypeOf<StableDiffusionXLImg2ImgOptions['sigmas']>().toEqualTypeOf<readonly number[] | undefined>();
  // @ts-expect-error sigmas are noise levels, not a schedule name
  await sd.generate({ prompt: 'a red circle', sigmas: 'karras' });

  // @ts-expect-error a misspelt option does not compile
  await sd.generate({ promt: 'typo' });
  // @ts-expect-error nor does a misspelt optional one next to a right one
  await sd.generate({ prompt: 'a red circle', numInferenceSteeps: 3 });
  // @ts-expect-error image-to-image needs its image
  await (await StableDiffusionImg2ImgPipeline.fromPretrained(REFERENCE_WORLD)).generate({ prompt: 'a red circle' });

  const any = await DiffusionPipeline.fromPretrained(REFERENCE_WORLD);
  expectTypeOf(any).toEqualTypeOf<LoadedPipeline>();
  expectTypeOf<PipelineKind>().toEqualTypeOf<
    | 'StableDiffusionPipeline'
    | 'StableDiffusionImg2ImgPipeline'
    | 'StableDiffusionInpaintPipeline'
    | 'StableDiffusionControlNetPipeline'
    | 'StableDiffusionXLPipeline'
    | 'StableDiffusionXLImg2ImgPipeline'
    | 'StableDiffusionXLInpaintPipeline'
    | 'DDPMPipeline'
  >();
  // @ts-expect-error a pipeline of unknown class has no single generate signature
  await any.generate({ prompt: 'a red circle' });
  if (isPipeline(any, 'StableDiffusionInpaintPipeline')) {
    const image = { width: 8, height: 8, data: new Uint8ClampedArray(256) };
    const maskImage = { width: 8, height: 8, data: new Uint8ClampedArray(64) };
    const inpaintOptions: StableDiffusionInpaintOptions = { prompt: 'a red circle', image, maskImage };
    expectTypeOf(await any.generate(inpaintOptions)).toEqualTypeOf<PipelineOutput>();
    // @ts-expect-error inpainting needs its mask
    await any.generate({ prompt: 'a red circle', image });
  }
  if (isPipeline(any, 'StableDiffusionImg2ImgPipeline')) {
    const image = { width: 8, height: 8, data: new Uint8ClampedArray(256) };
    const img2imgOptions: StableDiffusionImg2ImgOptions = { prompt: 'a red circle', image };
    expectTypeOf(await any.generate(img2imgOptions)).toEqualTypeOf<PipelineOutput>();
  }
  switch (any.kind) {
    case 'StableDiffusionPipeline':
      expectTypeOf(any).toEqualTypeOf<StableDiffusionPipeline>();
      break;
    case 'DDPMPipeline':
      expectTypeOf(any).toEqualTypeOf<DDPMPipeline>();
      break;
    case 'StableDiffusionControlNetPipeline':
      expectTypeOf(any).toEqualTypeOf<StableDiffusionControlNetPipeline>();
      break;
    case 'StableDiffusionInpaintPipeline':
      expectTypeOf(any).toEqualTypeOf<StableDiffusionInpaintPipeline>();
      break;
    case 'StableDiffusionXLPipeline':
      expectTypeOf(any).toEqualTypeOf<StableDiffusionXLPipeline>();
      break;
    case 'StableDiffusionXLImg2ImgPipeline':
      expectTypeOf(any).toEqualTypeOf<StableDiffusionXLImg2ImgPipeline>();
      break;
    case 'StableDiffusionXLInpaintPipeline':
      expectTypeOf(any).toEqualTypeOf<StableDiffusionXLInpaintPipeline>();
      break;
    default:
      expectTypeOf(any).toEqualTypeOf<StableDiffusionImg2ImgPipeline>();
  }
}

describe('typed entry points', () => {
  it('DiffusionPipeline.fromPretrained returns the class model_index.json names, with its kind', async () => {
    const pipe = await DiffusionPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu' });
    try {
      expect(pipe).toBeInstanceOf(StableDiffusionPipeline);
      expect(pipe.kind).toBe('StableDiffusionPipeline');
      expect(isPipeline(pipe, 'StableDiffusionPipeline')).toBe(true);
      expect(isPipeline(pipe, 'StableDiffusionImg2ImgPipeline')).toBe(false);
      expect(isPipeline(pipe, 'DDPMPipeline')).toBe(false);
    } finally {
      await pipe.release();
    }
  });

  it('a pipeline class loads a repository as itself, as diffusers does for img2img on a text-to-image repo', async () => {
    const pipe = await StableDiffusionImg2ImgPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu' });
    try {
      expect(pipe).toBeInstanceOf(StableDiffusionImg2ImgPipeline);
      expect(pipe).not.toBeInstanceOf(StableDiffusionPipeline);
      expect(pipe.kind).toBe('StableDiffusionImg2ImgPipeline');
    } finally {
      await pipe.release();
    }
  });
});

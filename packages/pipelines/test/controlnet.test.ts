/**
 * StableDiffusionControlNetPipeline on tiny generated repositories, one per exporter layout of docs/controlnet.md:
 * how residuals pair with UNet inputs, the call structure (one ControlNet and one UNet call per batched CFG step),
 * the scale and its start/end window, guess mode, control-image preprocessing, abort and bad input. Every UNet
 * feed is checked against the tiny ControlNet's closed form.
 */
import { rmSync } from 'node:fs';
import { AbortError, ConfigError, InvalidArgumentError, RandomGenerator, type TensorLike } from '@denoise/core';
import type { FeedValue, ModelSession } from '@denoise/core/runtime';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { DiffusionPipeline, StableDiffusionControlNetPipeline } from '../src/index.js';
import {
  type ControlNetFixtureLayout,
  controlNetOutputs,
  type TinyControlNetVariant,
  unetResidualInputs,
  writeTinyControlNet,
} from './helpers/tiny-controlnet.js';
import { writeTinySd } from './helpers/tiny-sd.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function load(variant: TinyControlNetVariant): Promise<StableDiffusionControlNetPipeline> {
  const dir = writeTinyControlNet(variant);
  dirs.push(dir);
  return StableDiffusionControlNetPipeline.fromPretrained(dir, { device: 'cpu' });
}

type Feeds = Record<string, { data: Float32Array; dims: number[] } | number>;

/** Records a copy of every feed of every run of `session` (the pipeline reuses its buffers). */
function record(session: ModelSession): Feeds[] {
  const calls: Feeds[] = [];
  const run = session.run.bind(session);
  vi.spyOn(session, 'run').mockImplementation(async (feeds: Readonly<Record<string, FeedValue>>) => {
    const copy: Feeds = {};
    for (const [name, value] of Object.entries(feeds)) {
      copy[name] =
        typeof value === 'number'
          ? value
          : { data: Float32Array.from((value as TensorLike).data), dims: [...(value as TensorLike).dims] };
    }
    calls.push(copy);
    return run(feeds);
  });
  return calls;
}

/** An 8 × 8 control image of one colour: mean 0.4 over its RGB planes. */
const controlImage = () => {
  const data = new Uint8ClampedArray(8 * 8 * 4);
  for (let p = 0; p < 64; p++) data.set([51, 102, 153, 255], p * 4);
  return { width: 8, height: 8, data };
};

const tensorOf = (value: Feeds[string]) => value as { data: Float32Array; dims: number[] };

function rowMean(value: Feeds[string], row: number): number {
  const { data, dims } = tensorOf(value);
  const size = data.length / dims[0];
  let sum = 0;
  for (let i = row * size; i < (row + 1) * size; i++) sum += data[i];
  return sum / size;
}

/** Every element of `row` of `value` equals `expected` (to float32 rounding). */
function expectRow(value: Feeds[string], row: number, expected: number): void {
  const { data, dims } = tensorOf(value);
  const size = data.length / dims[0];
  for (let i = row * size; i < (row + 1) * size; i++) expect(data[i]).toBeCloseTo(expected, 5);
}

/**
 * Checks one UNet call's residual feeds against the ControlNet's closed form `(k+1)·(mean(cond) + mean(text))`
 * at `weight(k)`, for the rows the ControlNet saw (`offset` rows into the UNet's batch); other rows must be 0.
 */
function expectResiduals(
  layout: ControlNetFixtureLayout,
  unetCall: Feeds,
  controlCall: Feeds,
  weight: (k: number) => number,
  offset = 0,
): void {
  const inputs = unetResidualInputs(layout);
  const rows = tensorOf(controlCall.sample).dims[0];
  const unetRows = tensorOf(unetCall.sample).dims[0];
  for (let r = 0; r < unetRows; r++) {
    const seen = r - offset;
    const value =
      seen >= 0 && seen < rows
        ? rowMean(controlCall.controlnet_cond, seen) + rowMean(controlCall.encoder_hidden_states, seen)
        : 0;
    inputs.forEach((name, k) => {
      expectRow(unetCall[name], r, (k + 1) * value * weight(k));
    });
  }
}

const base = { prompt: 'a cat', numInferenceSteps: 3, guidanceScale: 2, generator: new RandomGenerator(0) };

describe('exporter layouts', () => {
  const separate: ControlNetFixtureLayout[] = ['amblyopius', 'onnxstack', 'additional-residuals', 'named-with-scale'];

  it.each(separate)(
    '%s: residuals pair with the UNet inputs; one ControlNet and one UNet call per CFG step',
    async (layout) => {
      const pipe = await load({ layout });
      try {
        expect(pipe.controlLayout).toEqual({
          kind: 'separate',
          outputs: controlNetOutputs(layout),
          unetInputs: unetResidualInputs(layout),
          scaleInput: layout === 'named-with-scale' ? 'conditioning_scale' : undefined,
        });
        const unetCalls = record(pipe.unet);
        const controlCalls = record(pipe.controlnet as ModelSession);
        await pipe.generate({ ...base, image: controlImage(), controlnetConditioningScale: 0.7, outputType: 'latent' });
        expect(unetCalls).toHaveLength(3);
        expect(controlCalls).toHaveLength(3);
        for (let step = 0; step < 3; step++) {
          const control = controlCalls[step];
          // The ControlNet sees the UNet's rows: the same doubled sample, timestep and [negative; prompt] embeddings.
          expect(control.sample).toEqual(unetCalls[step].sample);
          expect(control.timestep).toBe(unetCalls[step].timestep);
          expect(control.encoder_hidden_states).toEqual(unetCalls[step].encoder_hidden_states);
          expect(tensorOf(control.controlnet_cond).dims).toEqual([2, 3, 8, 8]);
          expect(rowMean(control.controlnet_cond, 0)).toBeCloseTo(0.4, 6);
          expect(rowMean(control.controlnet_cond, 1)).toBeCloseTo(0.4, 6);
          if (layout === 'named-with-scale') expect(control.conditioning_scale).toBeCloseTo(0.7, 6);
          expectResiduals(layout, unetCalls[step], control, () => 0.7);
        }
      } finally {
        await pipe.release();
      }
    },
  );

  it.each([
    ['fused-diffusers', 'controlnet_conds', 'conditioning_scales', [1, 1]],
    ['fused-onnxruntime', 'controlnet_images', 'controlnet_scales', [1]],
  ] as const)(
    '%s: the UNet takes the control images of its rows and the scale, one call per step',
    async (layout, imageInput, scaleInput, scaleDims) => {
      const pipe = await load({ layout });
      try {
        expect(pipe.controlnet).toBeUndefined();
        expect(pipe.controlLayout).toEqual({ kind: 'fused', imageInput, scaleInput });
        const unetCalls = record(pipe.unet);
        await pipe.generate({ ...base, image: controlImage(), controlnetConditioningScale: 0.5, outputType: 'latent' });
        expect(unetCalls).toHaveLength(3);
        for (const call of unetCalls) {
          expect(tensorOf(call[imageInput]).dims).toEqual([1, 2, 3, 8, 8]);
          expect(tensorOf(call[imageInput]).data[0]).toBeCloseTo(0.2, 6);
          expect(rowMean(call[imageInput], 0)).toBeCloseTo(0.4, 6);
          expect(tensorOf(call[scaleInput]).dims).toEqual(scaleDims);
          expect(tensorOf(call[scaleInput]).data[0]).toBeCloseTo(0.5, 6);
        }
        await expect(pipe.generate({ ...base, image: controlImage(), guessMode: true })).rejects.toThrow(
          /built in.*guessMode needs a separate controlnet/,
        );
      } finally {
        await pipe.release();
      }
    },
  );

  it('an fp16 export (float16 graph inputs and outputs) gets its residuals converted both ways', async () => {
    const pipe = await load({ layout: 'amblyopius', fp16: true });
    try {
      expect(pipe.controlnet?.outputs[0].type).toBe('float16');
      expect(pipe.unet.inputs.find((i) => i.name === 'down_block_0')?.type).toBe('float16');
      const unetCalls = record(pipe.unet);
      const controlCalls = record(pipe.controlnet as ModelSession);
      await pipe.generate({ ...base, image: controlImage(), outputType: 'latent' });
      expect(controlCalls).toHaveLength(3);
      // float16 keeps 11 bits: the residuals match the closed form to about 1e-3.
      const inputs = unetResidualInputs('amblyopius');
      const value = rowMean(controlCalls[0].controlnet_cond, 1) + rowMean(controlCalls[0].encoder_hidden_states, 1);
      inputs.forEach((name, k) => {
        expect(tensorOf(unetCalls[0][name]).data.at(-1)).toBeCloseTo((k + 1) * value, 2);
      });
    } finally {
      await pipe.release();
    }
  });

  it('DiffusionPipeline.fromPretrained loads a text-to-image repository with a controlnet component as ControlNet', async () => {
    const dir = writeTinyControlNet({ layout: 'amblyopius' });
    dirs.push(dir);
    const pipe = await DiffusionPipeline.fromPretrained(dir, { device: 'cpu' });
    try {
      expect(pipe.kind).toBe('StableDiffusionControlNetPipeline');
    } finally {
      await pipe.release();
    }
    const named = writeTinyControlNet({ layout: 'onnxstack', className: 'OnnxStableDiffusionControlNetPipeline' });
    dirs.push(named);
    const other = await DiffusionPipeline.fromPretrained(named, { device: 'cpu' });
    expect(other).toBeInstanceOf(StableDiffusionControlNetPipeline);
    await other.release();
  });

  it('a fixed-batch UNet gets two calls per CFG step, each with a ControlNet run on its own rows', async () => {
    const pipe = await load({ layout: 'amblyopius', unetBatch: 1 });
    try {
      const unetCalls = record(pipe.unet);
      const controlCalls = record(pipe.controlnet as ModelSession);
      await pipe.generate({ ...base, image: controlImage(), outputType: 'latent' });
      expect(unetCalls).toHaveLength(6);
      expect(controlCalls).toHaveLength(6);
      unetCalls.forEach((call, i) => {
        expect(tensorOf(controlCalls[i].sample).dims[0]).toBe(1);
        expect(controlCalls[i].encoder_hidden_states).toEqual(call.encoder_hidden_states);
        expectResiduals('amblyopius', call, controlCalls[i], () => 1);
      });
    } finally {
      await pipe.release();
    }
  });
});

describe('options', () => {
  it.each([
    [0.5, 1, [0, 0, 1, 1]],
    [0, 0.5, [1, 1, 0, 0]],
    [0.25, 0.75, [0, 1, 1, 0]],
  ])(
    'controlGuidanceStart %s, controlGuidanceEnd %s apply the residuals on steps %j of 4',
    async (start, end, keep) => {
      const pipe = await load({ layout: 'additional-residuals' });
      try {
        const unetCalls = record(pipe.unet);
        const controlCalls = record(pipe.controlnet as ModelSession);
        await pipe.generate({
          ...base,
          numInferenceSteps: 4,
          image: controlImage(),
          controlGuidanceStart: start,
          controlGuidanceEnd: end,
          outputType: 'latent',
        });
        keep.forEach((on, step) => {
          expectResiduals('additional-residuals', unetCalls[step], controlCalls[step], () => on);
        });
      } finally {
        await pipe.release();
      }
    },
  );

  it('guess mode runs the ControlNet on the conditional rows only, weighted 0.1 … 1, zero for the unconditional', async () => {
    const pipe = await load({ layout: 'amblyopius' });
    try {
      const unetCalls = record(pipe.unet);
      const controlCalls = record(pipe.controlnet as ModelSession);
      await pipe.generate({ ...base, image: controlImage(), guessMode: true, controlnetConditioningScale: 0.8 });
      expect(controlCalls).toHaveLength(3);
      for (let step = 0; step < 3; step++) {
        const control = controlCalls[step];
        expect(tensorOf(control.sample).dims[0]).toBe(1);
        // The prompt's embeddings: the second half of the UNet's [negative; prompt] rows.
        const hidden = tensorOf(unetCalls[step].encoder_hidden_states);
        expect(tensorOf(control.encoder_hidden_states).data).toEqual(hidden.data.subarray(hidden.data.length / 2));
        expectResiduals('amblyopius', unetCalls[step], control, (k) => 0.8 * 10 ** (-1 + k / 12), 1);
      }
    } finally {
      await pipe.release();
    }
  });

  it('a ControlNet with global_pool_conditions forces guess mode, without the block weights', async () => {
    const pipe = await load({ layout: 'amblyopius', globalPoolConditions: true });
    try {
      expect(pipe.globalPoolConditions).toBe(true);
      const unetCalls = record(pipe.unet);
      const controlCalls = record(pipe.controlnet as ModelSession);
      await pipe.generate({ ...base, image: controlImage(), outputType: 'latent' });
      expect(tensorOf(controlCalls[0].sample).dims[0]).toBe(1);
      expectResiduals('amblyopius', unetCalls[0], controlCalls[0], () => 1, 1);
    } finally {
      await pipe.release();
    }
  });

  it('without CFG the ControlNet runs once per step on the conditional rows', async () => {
    const pipe = await load({ layout: 'onnxstack' });
    try {
      const unetCalls = record(pipe.unet);
      const controlCalls = record(pipe.controlnet as ModelSession);
      await pipe.generate({
        ...base,
        guidanceScale: 1,
        numImagesPerPrompt: 2,
        image: controlImage(),
        outputType: 'latent',
      });
      expect(controlCalls).toHaveLength(3);
      expect(tensorOf(controlCalls[0].controlnet_cond).dims).toEqual([2, 3, 8, 8]);
      expectResiduals('onnxstack', unetCalls[0], controlCalls[0], () => 1);
    } finally {
      await pipe.release();
    }
  });

  it('the output size defaults to the control image’s; another size is resized (bilinear for images)', async () => {
    const pipe = await load({ layout: 'amblyopius' });
    try {
      const controlCalls = record(pipe.controlnet as ModelSession);
      // 16 × 16, left half white, right half black: halves survive a 2× bilinear downscale exactly.
      const data = new Uint8ClampedArray(16 * 16 * 4);
      for (let p = 0; p < 256; p++) data.set(p % 16 < 8 ? [255, 255, 255, 255] : [0, 0, 0, 255], p * 4);
      const image = { width: 16, height: 16, data };
      const { images } = await pipe.generate({ ...base, guidanceScale: 1, image });
      expect([images[0].width, images[0].height]).toEqual([16, 16]);
      await pipe.generate({ ...base, guidanceScale: 1, image, width: 8, height: 8 });
      const resized = tensorOf(controlCalls.at(-1)?.controlnet_cond as Feeds[string]);
      expect(resized.dims).toEqual([1, 3, 8, 8]);
      expect(Array.from(resized.data.subarray(0, 8))).toEqual([1, 1, 1, 1, 0, 0, 0, 0]);
      // A [1, 3, H, W] tensor in [0, 1] is taken as is, and resized nearest.
      const tensor = { data: new Float32Array(3 * 16 * 16).fill(0.25), dims: [1, 3, 16, 16] };
      await pipe.generate({ ...base, guidanceScale: 1, image: tensor, width: 8, height: 8 });
      expectRow(controlCalls.at(-1)?.controlnet_cond as Feeds[string], 0, 0.25);
    } finally {
      await pipe.release();
    }
  });

  it('one control image per prompt goes to that prompt’s images', async () => {
    const pipe = await load({ layout: 'amblyopius' });
    try {
      const controlCalls = record(pipe.controlnet as ModelSession);
      const data = new Float32Array(2 * 3 * 64);
      data.fill(0.1, 0, 192);
      data.fill(0.9, 192);
      await pipe.generate({
        ...base,
        prompt: ['a cat', 'a dog'],
        numImagesPerPrompt: 2,
        guidanceScale: 1,
        image: { data, dims: [2, 3, 8, 8] },
        outputType: 'latent',
      });
      const cond = controlCalls[0].controlnet_cond;
      for (const [row, value] of [0.1, 0.1, 0.9, 0.9].entries()) expectRow(cond, row, value);
    } finally {
      await pipe.release();
    }
  });

  it('an abort between model calls stops the run with an AbortError', async () => {
    const pipe = await load({ layout: 'amblyopius' });
    try {
      const controlCalls = record(pipe.controlnet as ModelSession);
      const controller = new AbortController();
      const run = pipe.generate({
        ...base,
        image: controlImage(),
        signal: controller.signal,
        callbackOnStepEnd: () => {
          controller.abort();
          return undefined;
        },
      });
      await expect(run).rejects.toBeInstanceOf(AbortError);
      expect(controlCalls).toHaveLength(1);
    } finally {
      await pipe.release();
    }
  });
});

describe('bad input', () => {
  it('rejects a control image of the wrong type or shape, and bad scales and windows, naming the fix', async () => {
    const pipe = await load({ layout: 'amblyopius' });
    try {
      const bad = (options: object) => pipe.generate({ ...base, image: controlImage(), ...options } as never);
      await expect(bad({ image: 'edges.png' })).rejects.toThrow(InvalidArgumentError);
      await expect(bad({ image: 'edges.png' })).rejects.toThrow(/imageFromPNG/);
      await expect(bad({ image: undefined })).rejects.toThrow(InvalidArgumentError);
      await expect(bad({ image: { data: new Float32Array(64), dims: [1, 1, 8, 8] } })).rejects.toThrow(
        /\[images, 3, height, width\]/,
      );
      await expect(bad({ image: { width: 8, height: 8, data: new Uint8ClampedArray(10) } })).rejects.toThrow(
        /RGBA bytes/,
      );
      await expect(bad({ controlnetConditioningScale: Number.NaN })).rejects.toThrow(/finite number/);
      await expect(bad({ controlGuidanceStart: 0.8, controlGuidanceEnd: 0.2 })).rejects.toThrow(/start < end/);
      await expect(bad({ controlGuidanceEnd: 1.5 })).rejects.toThrow(InvalidArgumentError);
      await expect(
        bad({ prompt: ['a', 'b', 'c'], image: { data: new Float32Array(2 * 192), dims: [2, 3, 8, 8] } }),
      ).rejects.toThrow(/2 control images for 3 prompts/);
    } finally {
      await pipe.release();
    }
  });

  it('a repository whose UNet takes no residuals is a ConfigError that names the inputs it needs', async () => {
    const dir = writeTinySd();
    dirs.push(dir);
    await expect(StableDiffusionControlNetPipeline.fromPretrained(dir, { device: 'cpu' })).rejects.toThrow(ConfigError);
    await expect(StableDiffusionControlNetPipeline.fromPretrained(dir, { device: 'cpu' })).rejects.toThrow(
      /takes no ControlNet residuals.*mid_block_additional_residual/,
    );
  });
});

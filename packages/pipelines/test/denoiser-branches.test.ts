/**
 * The branches a denoiser request names: a guidance of one's own asks for a branch of its own, a denoiser of one's
 * own serves it in the same request as classifier-free guidance's, and the loop hands each guidance its
 * predictions. Also the feeds {@link UnetConditioning} answers for each call's rows.
 */
import { InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import { DDIMScheduler } from '@denoise/schedulers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ClassifierFreeGuidance,
  type Denoiser,
  DiffusionPipeline,
  type Guidance,
  type GuidanceStep,
  intervalContains,
  type ModelBranch,
  NO_EXTRA_BRANCHES,
  runDenoisingLoop,
  type StableDiffusionPipeline,
  UnetConditioning,
} from '../src/index.js';
import { REFERENCE_WORLD } from './reliability/helpers.js';

/** What the denoiser predicts on every row of a branch: exact in float32, so the guided values are exact too. */
const BRANCH_VALUE: Readonly<Record<string, number>> = { conditional: 1, unconditional: 0.25, perturbed: 0.5 };

const PERTURBED: readonly ModelBranch[] = Object.freeze(['perturbed']);

/** A PAG-shaped guidance, `ε̂ ← ε̂ + s·(ε̂_c − ε̂_p)`, on the first half of the schedule, from a branch of its own. */
class PerturbedGuidance implements Guidance {
  constructor(readonly scale: number) {}

  branches(position: Parameters<Guidance['branches']>[0]): readonly ModelBranch[] {
    return intervalContains({ start: 0, end: 0.5 }, position) ? PERTURBED : NO_EXTRA_BRANCHES;
  }

  apply(step: GuidanceStep): void {
    const perturbed = step.predictions.get('perturbed');
    if (perturbed === undefined) return;
    const guided = step.prediction.data;
    for (let i = 0; i < guided.length; i++) guided[i] += this.scale * (step.conditional.data[i] - perturbed.data[i]);
  }
}

describe('a custom branch served by a custom denoiser', () => {
  const batch = 2;
  const dims = [batch, 1, 2, 2];
  const size = 8;
  const steps = 4;

  async function run() {
    const scheduler = new DDIMScheduler({}, { onWarning: () => {} });
    scheduler.setTimesteps(steps);
    const requests: { branches: readonly ModelBranch[]; rows: number }[] = [];
    const denoiser: Denoiser = async ({ sample, branches }) => {
      requests.push({ branches, rows: sample.dims[0] });
      const out = new Float32Array(branches.length * size);
      branches.forEach((branch, b) => {
        out.fill(BRANCH_VALUE[branch], b * size, (b + 1) * size);
      });
      return { data: out, dims: [branches.length * batch, ...dims.slice(1)] };
    };
    const guided: number[][] = [];
    const record: Guidance = {
      branches: () => NO_EXTRA_BRANCHES,
      apply: (step) => {
        guided.push([...new Set(step.prediction.data)]);
      },
    };
    await runDenoisingLoop({
      scheduler,
      latents: new Tensor(new Float32Array(size).fill(1), dims),
      denoiser,
      guidances: [new ClassifierFreeGuidance({ guidanceScale: 3 }), new PerturbedGuidance(2), record],
      predictionType: 'epsilon',
    });
    return { requests, guided };
  }

  it('evaluates it in the same request as the unconditional branch, one call per step', async () => {
    const { requests } = await run();
    expect(requests.map((r) => [...r.branches])).toEqual([
      ['unconditional', 'conditional', 'perturbed'],
      ['unconditional', 'conditional', 'perturbed'],
      ['unconditional', 'conditional'],
      ['unconditional', 'conditional'],
    ]);
    expect(requests.map((r) => r.rows)).toEqual([6, 6, 4, 4]);
    // The same array while the branches do not change: a step allocates no new one.
    expect(requests[1].branches).toBe(requests[0].branches);
    expect(requests[3].branches).toBe(requests[2].branches);
  });

  it('combines it with classifier-free guidance: u + w(c − u) + s(c − p)', async () => {
    const { guided } = await run();
    // w = 3, s = 2: 0.25 + 3·0.75 + 2·0.5 = 3.5 where the perturbed branch runs, 0.25 + 3·0.75 = 2.5 after.
    expect(guided).toEqual([[3.5], [3.5], [2.5], [2.5]]);
  });
});

describe('the UNet denoiser', () => {
  let pipe: StableDiffusionPipeline;
  beforeAll(async () => {
    pipe = (await DiffusionPipeline.fromPretrained(REFERENCE_WORLD, { device: 'cpu' })) as StableDiffusionPipeline;
  });
  afterAll(() => pipe.release());

  it('refuses a branch it does not serve, naming it', async () => {
    const error = await pipe
      .generate({ prompt: 'a red circle', numInferenceSteps: 2, guidances: [new PerturbedGuidance(1)] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(String(error)).toContain('[conditional, perturbed]');
  });
});

describe('UnetConditioning', () => {
  const rows = (values: number[]) => new Tensor(Float32Array.from(values), [values.length, 1]);
  const values = async (feeds: Promise<Readonly<Record<string, unknown>>>, name: string) => [
    ...((await feeds)[name] as TensorLike).data,
  ];

  it('stacks the halves [unconditional; conditional] once for the calls of both rows', async () => {
    const conditioning = new UnetConditioning({
      conditional: { encoder_hidden_states: rows([1, 2]) },
      unconditional: { encoder_hidden_states: rows([-1, -2]) },
    });
    expect(await values(conditioning.feeds('both'), 'encoder_hidden_states')).toEqual([-1, -2, 1, 2]);
    expect(await conditioning.feeds('both')).toBe(await conditioning.feeds('both'));
    expect(await values(conditioning.feeds('unconditional'), 'encoder_hidden_states')).toEqual([-1, -2]);
  });

  it('splits a stacked batch for the calls of one half, keeping the inputs a half has of its own', async () => {
    const conditioning = new UnetConditioning({
      stacked: { encoder_hidden_states: rows([-1, -2, 1, 2]) },
    }).withConditional({ timestep_cond: rows([7, 7]) });
    expect(await values(conditioning.feeds('conditional'), 'encoder_hidden_states')).toEqual([1, 2]);
    expect(await values(conditioning.feeds('conditional'), 'timestep_cond')).toEqual([7, 7]);
    expect(await values(conditioning.feeds('unconditional'), 'encoder_hidden_states')).toEqual([-1, -2]);
    expect(await values(conditioning.feeds('both'), 'encoder_hidden_states')).toEqual([-1, -2, 1, 2]);
  });

  it('says so when the unconditional rows were never prepared', async () => {
    const conditioning = new UnetConditioning({ conditional: { class_labels: rows([3]) } });
    await expect(conditioning.feeds('unconditional')).rejects.toThrow(InvalidArgumentError);
    await expect(conditioning.feeds('both')).rejects.toThrow(/no unconditional input was prepared/);
  });
});

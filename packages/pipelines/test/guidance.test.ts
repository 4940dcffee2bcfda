import { Tensor, type TensorLike } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import { ClassifierGuidance } from '../src/guidance/classifier.js';
import { ClassifierFreeGuidance, classifierFreeGuidances, GuidanceRescale } from '../src/guidance/classifier-free.js';
import type { GuidanceStep } from '../src/guidance/guidance.js';

function tensor(values: number[], dims = [values.length / 2, 2]): Tensor {
  return new Tensor(Float32Array.from(values), dims);
}

function applyAll(guidances: readonly { apply(step: GuidanceStep): unknown }[], step: GuidanceStep): void {
  for (const guidance of guidances) guidance.apply(step);
}

function step(overrides: Partial<GuidanceStep> & { conditional: TensorLike }): GuidanceStep {
  const { conditional, unconditional } = overrides;
  const predictions = new Map([['conditional', conditional]]);
  if (unconditional !== undefined) predictions.set('unconditional', unconditional);
  return {
    stepIndex: 0,
    numInferenceSteps: 10,
    timestep: 500,
    sample: conditional,
    modelInput: conditional,
    alphaProd: 0.36,
    variance: undefined,
    unconditional: undefined,
    predictions,
    prediction: Tensor.from(conditional),
    meanShift: Tensor.zeros(conditional.dims),
    predictionType: 'epsilon',
    classifierGuidanceForm: 'epsilon',
    signal: undefined,
    ...overrides,
  };
}

describe('ClassifierFreeGuidance', () => {
  it('computes u + w(c − u)', () => {
    const s = step({ conditional: tensor([1, 2, 3, 4]), unconditional: tensor([0, 1, 1, 5]) });
    new ClassifierFreeGuidance({ guidanceScale: 3 }).apply(s);
    expect([...s.prediction.data]).toEqual([3, 4, 7, 2]);
  });

  it('needs no unconditional pass at w ≤ 1 and leaves the prediction alone', () => {
    const cfg = new ClassifierFreeGuidance({ guidanceScale: 1 });
    const s = step({ conditional: tensor([1, 2]) });
    expect(cfg.branches(s)).toEqual([]);
    cfg.apply(s);
    expect([...s.prediction.data]).toEqual([1, 2]);
  });

  it('rescale acts only where the unconditional prediction was made, as diffusers rescales only under CFG', () => {
    const cond = tensor([1, -1, 2, 0, 5, -3], [2, 3]);
    const shifted = step({ conditional: cond, prediction: tensor([2, -3, 9, 1, 1, 0], [2, 3]) });
    new GuidanceRescale(1).apply(shifted);
    expect([...shifted.prediction.data]).toEqual([2, -3, 9, 1, 1, 0]);
    const guided = step({ conditional: cond, unconditional: tensor([0, 0, 0, 0, 0, 0], [2, 3]) });
    guided.prediction.data.set([2, -3, 9, 1, 1, 0]);
    new GuidanceRescale(1).apply(guided);
    expect([...guided.prediction.data]).not.toEqual([2, -3, 9, 1, 1, 0]);
  });

  it('rescale 0 changes nothing; rescale 1 matches the conditional std per sample', () => {
    const cond = tensor([1, -1, 2, 0, 5, -3], [2, 3]);
    const uncond = tensor([0, 0, 1, 1, 1, 1], [2, 3]);
    const plain = step({ conditional: cond, unconditional: uncond });
    new ClassifierFreeGuidance({ guidanceScale: 7.5 }).apply(plain);
    const zero = step({ conditional: cond, unconditional: uncond });
    applyAll(classifierFreeGuidances({ guidanceScale: 7.5, guidanceRescale: 0 }), zero);
    expect([...zero.prediction.data]).toEqual([...plain.prediction.data]);

    const full = step({ conditional: cond, unconditional: uncond });
    applyAll(classifierFreeGuidances({ guidanceScale: 7.5, guidanceRescale: 1 }), full);
    // Per sample, the rescaled prediction is plain · std(cond)/std(plain): the stds must now agree.
    const sd = (v: number[]) => {
      const m = v.reduce((a, b) => a + b, 0) / v.length;
      return Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / v.length);
    };
    for (const b of [0, 1]) {
      const out = [...full.prediction.data.slice(3 * b, 3 * b + 3)];
      expect(sd(out)).toBeCloseTo(sd([...cond.data.slice(3 * b, 3 * b + 3)]), 5);
      const ratio = out[0] / plain.prediction.data[3 * b];
      for (const [i, v] of out.entries()) expect(v).toBeCloseTo(ratio * plain.prediction.data[3 * b + i], 5);
    }
    // φ = 0.5 is the midpoint of the two.
    const half = step({ conditional: cond, unconditional: uncond });
    applyAll(classifierFreeGuidances({ guidanceScale: 7.5, guidanceRescale: 0.5 }), half);
    for (const [i, v] of half.prediction.data.entries()) {
      expect(v).toBeCloseTo((full.prediction.data[i] + plain.prediction.data[i]) / 2, 5);
    }
  });

  it('applies only inside its interval', () => {
    const cfg = new ClassifierFreeGuidance({ guidanceScale: 2, interval: { start: 0.2, end: 0.5 } });
    const active = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].filter((i) =>
      cfg.branches({ stepIndex: i, numInferenceSteps: 10, timestep: 0 }).includes('unconditional'),
    );
    expect(active).toEqual([2, 3, 4]);
    const outside = step({ stepIndex: 6, conditional: tensor([1, 2]), unconditional: tensor([5, 5]) });
    cfg.apply(outside);
    expect([...outside.prediction.data]).toEqual([1, 2]);
  });

  it('rejects bad options with InvalidArgumentError', () => {
    expect(() => new ClassifierFreeGuidance({ guidanceScale: Number.NaN })).toThrow(/finite/);
    expect(() => new GuidanceRescale(2)).toThrow(/\[0, 1\]/);
    expect(() => classifierFreeGuidances({ guidanceScale: 2, guidanceRescale: Number.NaN })).toThrow(/\[0, 1\]/);
    expect(() => new ClassifierFreeGuidance({ guidanceScale: 2, interval: { start: 0.6, end: 0.5 } })).toThrow(
      /start <= end/,
    );
  });
});

describe('ClassifierGuidance', () => {
  const g = [0.5, -2];
  const gradient = () => tensor(g, [1, 2]);
  const a = 0.36; // √ᾱ = 0.6, √(1−ᾱ) = 0.8

  it('shifts ε by −√(1−ᾱ)·s·g', async () => {
    const s = step({ conditional: tensor([1, 1], [1, 2]), alphaProd: a });
    await new ClassifierGuidance({ gradient, classLabels: 3, classifierScale: 2 }).apply(s);
    expect(s.prediction.data[0]).toBeCloseTo(1 - 0.8 * 2 * 0.5, 6);
    expect(s.prediction.data[1]).toBeCloseTo(1 + 0.8 * 2 * 2, 6);
  });

  it('converts the ε shift to v and x₀ predictions at fixed x_t', async () => {
    const x = tensor([0.3, -0.7], [1, 2]);
    const eps = [0.2, 0.4];
    const toV = (e: number, xt: number) => e / 0.6 - (0.8 * xt) / 0.6; // v = ε/√ᾱ − √(1−ᾱ)x_t/√ᾱ
    const toX0 = (e: number, xt: number) => (xt - 0.8 * e) / 0.6;
    const guidedEps = eps.map((e, i) => e - 0.8 * 1.5 * g[i]);
    for (const [predictionType, convert] of [
      ['v_prediction', toV],
      ['sample', toX0],
    ] as const) {
      const s = step({
        conditional: tensor(
          eps.map((e, i) => convert(e, x.data[i])),
          [1, 2],
        ),
        modelInput: x,
        alphaProd: a,
        predictionType,
      });
      await new ClassifierGuidance({ gradient, classLabels: [1], classifierScale: 1.5 }).apply(s);
      for (const [i, v] of s.prediction.data.entries()) expect(v).toBeCloseTo(convert(guidedEps[i], x.data[i]), 5);
    }
  });

  it("adds s·Σ·g to the mean in the 'mean' form and leaves the prediction alone", async () => {
    const s = step({ conditional: tensor([1, 1], [1, 2]), classifierGuidanceForm: 'mean', variance: 0.25 });
    await new ClassifierGuidance({ gradient, classLabels: 0, classifierScale: 2 }).apply(s);
    expect([...s.meanShift.data]).toEqual([0.25, -1]);
    expect([...s.prediction.data]).toEqual([1, 1]);
    const perElement = step({
      conditional: tensor([1, 1], [1, 2]),
      classifierGuidanceForm: 'mean',
      variance: tensor([1, 0.5], [1, 2]),
    });
    await new ClassifierGuidance({ gradient, classLabels: 0, classifierScale: 1 }).apply(perElement);
    expect([...perElement.meanShift.data]).toEqual([0.5, -1]);
  });

  it('passes the VP x_t, timestep and one label per batch item to the gradient', async () => {
    const seen: unknown[] = [];
    const x = tensor([1, 2, 3, 4], [2, 2]);
    const s = step({ conditional: tensor([0, 0, 0, 0], [2, 2]), modelInput: x, timestep: 321.5 });
    await new ClassifierGuidance({
      gradient: (input) => {
        seen.push(input.sample, input.timestep, input.classLabels);
        return Tensor.zeros(input.sample.dims);
      },
      classLabels: 7,
      classifierScale: 1,
    }).apply(s);
    expect(seen).toEqual([x, 321.5, [7, 7]]);
  });

  it('rejects a gradient of the wrong size and labels that do not match the batch', async () => {
    const s = step({ conditional: tensor([0, 0, 0, 0], [2, 2]) });
    await expect(new ClassifierGuidance({ gradient, classLabels: 1, classifierScale: 1 }).apply(s)).rejects.toThrow(
      /one value per element/,
    );
    await expect(
      new ClassifierGuidance({ gradient, classLabels: [1, 2, 3], classifierScale: 1 }).apply(s),
    ).rejects.toThrow(/3 class labels for a batch of 2/);
    expect(() => new ClassifierGuidance({ gradient, classLabels: -1, classifierScale: 1 })).toThrow(/non-negative/);
  });
});

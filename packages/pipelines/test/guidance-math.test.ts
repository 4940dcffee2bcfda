import { InvalidArgumentError, Tensor, type TensorLike } from '@denoise/core';
import {
  ClassifierFreeGuidance,
  ClassifierGuidance,
  checkInterval,
  classifierFreeGuidances,
  GuidanceRescale,
  type GuidanceStep,
  intervalContains,
} from '@denoise/pipelines';
import { describe, expect, it } from 'vitest';

/**
 * The guidance formulas (`docs/math.md` §7) on hand-sized tensors, through the public API: each expectation is the
 * formula evaluated by hand, and each branch (no unconditional prediction, a flat prediction, labels per item) is
 * one the pipelines reach.
 */

const t = (values: number[], dims: readonly number[]) => new Tensor(Float32Array.from(values), dims);

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

/** Population standard deviation. */
const std = (v: number[]) => {
  const m = v.reduce((a, b) => a + b, 0) / v.length;
  return Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / v.length);
};

describe('classifier-free guidance', () => {
  it('ε̂ = u + w(c − u) at every element of every batch item', () => {
    const c = [0.5, -1, 2, 0.25, 3, -2];
    const u = [0.1, 0.2, -0.3, 0.4, 1, 1];
    const s = step({ conditional: t(c, [2, 3]), unconditional: t(u, [2, 3]) });
    new ClassifierFreeGuidance({ guidanceScale: 7.5 }).apply(s);
    c.forEach((ci, i) => {
      expect(s.prediction.data[i]).toBeCloseTo(u[i] + 7.5 * (ci - u[i]), 5);
    });
  });

  it('throws, saying what is missing, when a guided step has no unconditional prediction', () => {
    const s = step({ conditional: t([1, 2], [1, 2]) });
    expect(() => new ClassifierFreeGuidance({ guidanceScale: 3 }).apply(s)).toThrow(InvalidArgumentError);
    expect(() => new ClassifierFreeGuidance({ guidanceScale: 3 }).apply(s)).toThrow(/unconditional/);
  });

  it('the default list is classifier-free guidance alone unless guidanceRescale > 0', () => {
    expect(classifierFreeGuidances({ guidanceScale: 5 })).toHaveLength(1);
    expect(classifierFreeGuidances({ guidanceScale: 5, guidanceRescale: 0 })).toHaveLength(1);
    const withRescale = classifierFreeGuidances({ guidanceScale: 5, guidanceRescale: 0.7 });
    expect(withRescale).toHaveLength(2);
    expect(withRescale[1]).toBeInstanceOf(GuidanceRescale);
    expect((withRescale[1] as GuidanceRescale).guidanceRescale).toBe(0.7);
  });
});

describe('guidance rescale', () => {
  it('ε̂ ← φ·ε̂·std(c)/std(ε̂) + (1 − φ)·ε̂, per batch item', () => {
    const guided = [2, -2, 4, 0, 1, 1.5, 0.5, 1];
    const c = [1, 0, 0.5, 0, 0, 3, -1, 2];
    const s = step({ conditional: t(c, [2, 4]), unconditional: t(c, [2, 4]), prediction: t(guided, [2, 4]) });
    const phi = 0.7;
    new GuidanceRescale(phi).apply(s);
    for (const b of [0, 1]) {
      const g = guided.slice(4 * b, 4 * b + 4);
      const factor = phi * (std(c.slice(4 * b, 4 * b + 4)) / std(g)) + (1 - phi);
      g.forEach((v, i) => {
        expect(s.prediction.data[4 * b + i]).toBeCloseTo(v * factor, 5);
      });
    }
  });

  it('accepts φ = 0 and φ = 1 and asks for no unconditional pass of its own', () => {
    expect(new GuidanceRescale(0).guidanceRescale).toBe(0);
    expect(new GuidanceRescale(1).guidanceRescale).toBe(1);
    expect(() => new GuidanceRescale(-0.1)).toThrow(InvalidArgumentError);
    expect(new GuidanceRescale(0.5).branches()).toEqual([]);
  });

  it('leaves the prediction alone where there was no unconditional prediction', () => {
    const s = step({ conditional: t([1, 0, 0.5, 0], [1, 4]), prediction: t([2, -2, 4, 0], [1, 4]) });
    new GuidanceRescale(1).apply(s);
    expect([...s.prediction.data]).toEqual([2, -2, 4, 0]);
  });

  it('leaves a flat prediction (std 0) as it is instead of dividing by 0', () => {
    const c = [1, 0, 0.5, 0];
    const s = step({ conditional: t(c, [1, 4]), unconditional: t(c, [1, 4]), prediction: t([3, 3, 3, 3], [1, 4]) });
    new GuidanceRescale(0.7).apply(s);
    expect([...s.prediction.data]).toEqual([3, 3, 3, 3]);
  });
});

describe('classifier guidance', () => {
  const gradient = (input: { sample: TensorLike }) =>
    new Tensor(
      Float32Array.from(input.sample.data, (_, i) => 0.5 - i),
      input.sample.dims,
    );

  it('does not apply, nor evaluate the classifier, outside its interval or at scale 0', async () => {
    let calls = 0;
    const counting = (input: { sample: TensorLike }) => {
      calls++;
      return gradient(input);
    };
    const guidance = new ClassifierGuidance({
      gradient: counting,
      classLabels: 1,
      classifierScale: 2,
      interval: { start: 0, end: 0.5 },
    });
    const late = step({ conditional: t([1, 1], [1, 2]), stepIndex: 5 });
    await guidance.apply(late);
    expect([...late.prediction.data]).toEqual([1, 1]);
    const early = step({ conditional: t([1, 1], [1, 2]), stepIndex: 4 });
    await guidance.apply(early);
    // Δε = −√(1 − ᾱ)·s·g with ᾱ = 0.36.
    expect(early.prediction.data[0]).toBeCloseTo(1 - 0.8 * 2 * 0.5, 5);
    expect(early.prediction.data[1]).toBeCloseTo(1 - 0.8 * 2 * -0.5, 5);
    expect(calls).toBe(1);
    const none = step({ conditional: t([1, 1], [1, 2]) });
    await new ClassifierGuidance({ gradient: counting, classLabels: 1, classifierScale: 0 }).apply(none);
    expect(calls).toBe(1);
    expect(guidance.branches(early)).toEqual([]);
  });

  it('passes one label per batch item: a list as given, a single label repeated', async () => {
    const seen: (readonly number[])[] = [];
    const recording = (input: { sample: TensorLike; classLabels: readonly number[] }) => {
      seen.push(input.classLabels);
      return Tensor.zeros(input.sample.dims);
    };
    const batch = () => step({ conditional: t([0, 0, 0, 0, 0, 0], [3, 2]) });
    await new ClassifierGuidance({ gradient: recording, classLabels: [4, 0, 2], classifierScale: 1 }).apply(batch());
    await new ClassifierGuidance({ gradient: recording, classLabels: [5], classifierScale: 1 }).apply(batch());
    expect(seen).toEqual([
      [4, 0, 2],
      [5, 5, 5],
    ]);
  });

  it("needs the step's variance in the 'mean' form", async () => {
    const s = step({ conditional: t([1, 1], [1, 2]), classifierGuidanceForm: 'mean' });
    await expect(new ClassifierGuidance({ gradient, classLabels: 0, classifierScale: 1 }).apply(s)).rejects.toThrow(
      /variance/,
    );
  });

  it('rejects a missing gradient, a non-finite scale and non-integer labels', () => {
    const bad = (options: object) => () =>
      new ClassifierGuidance({ gradient, classLabels: 1, classifierScale: 1, ...options });
    expect(bad({ gradient: undefined })).toThrow(/gradient function/);
    expect(bad({ classifierScale: Number.POSITIVE_INFINITY })).toThrow(/finite/);
    expect(bad({ classLabels: [1, 2.5] })).toThrow(/non-negative integers/);
    expect(bad({ classLabels: [] })).toThrow(/non-negative integers/);
    expect(bad({ classLabels: [0, 3] })).not.toThrow();
  });
});

describe('guidance intervals', () => {
  it('a step is inside when start ≤ index/steps < end', () => {
    const at = (stepIndex: number) => ({ stepIndex, numInferenceSteps: 10, timestep: 0 });
    const interval = { start: 0.2, end: 0.5 };
    expect([1, 2, 3, 4, 5].map((i) => intervalContains(interval, at(i)))).toEqual([false, true, true, true, false]);
  });

  it('accepts 0 ≤ start ≤ end ≤ 1 (an empty interval too) and rejects the rest', () => {
    for (const ok of [
      { start: 0, end: 1 },
      { start: 0.5, end: 0.5 },
      { start: 1, end: 1 },
    ]) {
      expect(checkInterval(ok, 'x')).toBe(ok);
    }
    for (const bad of [
      { start: -0.1, end: 0.5 },
      { start: 0.2, end: 1.1 },
      { start: 0.6, end: 0.5 },
      { start: Number.NaN, end: 1 },
    ]) {
      expect(() => checkInterval(bad, 'The interval')).toThrow(InvalidArgumentError);
    }
  });
});

import { ConfigError, InvalidArgumentError, RandomGenerator } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import {
  betasFromConfig,
  DDIMScheduler,
  DDPMScheduler,
  EDMEulerScheduler,
  EulerDiscreteScheduler,
  FlowMatchEulerDiscreteScheduler,
  HeunDiscreteScheduler,
  hasPosteriorVariance,
  hasSigmaSchedule,
  IPNDMScheduler,
  SCHEDULER_CLASSES,
  ScheduleCursor,
} from '../src/index.js';
import { dummyModel, dummySampleDeter } from './helpers/diffusers-fixtures.js';

const quiet = { onWarning: () => {} };

describe('ScheduleCursor: one rule for finding a timestep', () => {
  const schedule = { className: 'Test', timesteps: [9, 7, 7, 5, 3], numInferenceSteps: 4 as number | undefined };

  it('a timestep is at its first occurrence, or its second when it repeats; an absent one throws', () => {
    const cursor = new ScheduleCursor(schedule);
    expect(cursor.indexOf(9)).toBe(0);
    expect(cursor.indexOf(7)).toBe(2);
    expect(cursor.indexOf(3)).toBe(4);
    expect(() => cursor.indexOf(8)).toThrow(/Timestep 8 is not in the current schedule of Test/);
  });

  it('the first step is at the begin index, at 0 for the first timestep, else at its position; steps advance', () => {
    const cursor = new ScheduleCursor(schedule);
    expect(cursor.current(7)).toBe(2);
    cursor.advance();
    expect(cursor.stepIndexFor(5)).toBe(3);
    cursor.reset();
    expect(cursor.stepIndex).toBeUndefined();
    cursor.setBeginIndex(1);
    expect(cursor.beginIndex).toBe(1);
    expect(cursor.current(3)).toBe(1);
    expect(cursor.noiseIndex(3)).toBe(1);
    cursor.reset();
    expect(cursor.beginIndex).toBeUndefined();
    expect(cursor.noiseIndex(5)).toBe(3);
    expect(() => cursor.setBeginIndex(5)).toThrow(InvalidArgumentError);
    expect(() => cursor.setBeginIndex(-1)).toThrow(InvalidArgumentError);
    cursor.setBeginIndex(0);
    expect(cursor.current(7)).toBe(0);
    // A first timestep that rounding repeated still starts the run at 0, not at its second occurrence.
    const repeatedFirst = new ScheduleCursor({ ...schedule, timesteps: [9, 9, 7] });
    expect(repeatedFirst.current(9)).toBe(0);
    expect(repeatedFirst.indexOf(9)).toBe(1);
    expect(() => cursor.setBeginIndex(1.5)).toThrow(/integer in \[0, 5\)/);
  });

  it('a step needs a schedule and a step left', () => {
    const unset = new ScheduleCursor({ ...schedule, numInferenceSteps: undefined });
    expect(() => unset.stepIndexFor(9)).toThrow(/call setTimesteps\(n\) first/);
    const cursor = new ScheduleCursor(schedule);
    cursor.setBeginIndex(4);
    expect(cursor.stepIndexFor(3)).toBe(4);
    cursor.advance();
    expect(() => cursor.stepIndexFor(3)).toThrow(/already taken every step/);
  });

  it('Heun (every timestep but the first repeated) entering mid-schedule matches setBeginIndex at the same place', () => {
    const run = (useBeginIndex: boolean) => {
      const heun = new HeunDiscreteScheduler({ beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012 });
      heun.setTimesteps(10);
      const start = heun.indexForTimestep(heun.timesteps[7]);
      if (useBeginIndex) heun.setBeginIndex(start);
      let sample = dummySampleDeter();
      for (const t of heun.timesteps.slice(start)) {
        sample = heun.step(dummyModel(heun.scaleModelInput(sample, t), t), t, sample).prevSample;
      }
      return sample.data;
    };
    const located = run(false);
    expect(Array.from(run(true))).toEqual(Array.from(located));
    expect(located.some((v) => v !== 0)).toBe(true);
  });
});

describe('capabilities', () => {
  it('only DDPM takes mean-form guidance; the σ-based schedulers declare their sigmas', () => {
    const mean = Object.entries(SCHEDULER_CLASSES)
      .filter(([, Class]) => hasPosteriorVariance(new Class({}, quiet)))
      .map(([name]) => name);
    expect(mean).toEqual(['DDPMScheduler']);
    const ddpm = new DDPMScheduler({ variance_type: 'fixed_small' });
    ddpm.setTimesteps(10);
    expect(ddpm.posteriorVariance(ddpm.timesteps[3])).toBe(ddpm.getVariance(ddpm.timesteps[3]));
    expect(hasSigmaSchedule(new EulerDiscreteScheduler())).toBe(true);
    expect(hasSigmaSchedule(new DDIMScheduler())).toBe(false);
  });

  it('every scheduler can be told where a run starts', () => {
    for (const Class of Object.values(SCHEDULER_CLASSES)) {
      const scheduler = new Class({}, quiet);
      scheduler.setTimesteps(4);
      expect(() => scheduler.setBeginIndex(scheduler.timesteps.length - 1)).not.toThrow();
      expect(() => scheduler.setBeginIndex(scheduler.timesteps.length)).toThrow(InvalidArgumentError);
    }
  });
});

describe('addNoise into a buffer the caller reuses', () => {
  it('every scheduler writes the same x_t into `out` as into a new tensor, and refuses a buffer of another length', () => {
    const x = dummySampleDeter();
    const noise = new RandomGenerator(0).randn(x.dims);
    // iPNDM has no forward process to noise with (its addNoise throws, as tested below).
    for (const Class of Object.values(SCHEDULER_CLASSES).filter((Class) => Class !== IPNDMScheduler)) {
      const scheduler = new Class({}, quiet);
      scheduler.setTimesteps(4);
      const t = scheduler.timesteps[1];
      const fresh = scheduler.addNoise(x, noise, t);
      const out = new Float32Array(x.data.length);
      const written = scheduler.addNoise(x, noise, t, out);
      expect(written.data).toBe(out);
      expect(out).toEqual(fresh.data);
      expect(() => scheduler.addNoise(x, noise, t, new Float32Array(3))).toThrow(InvalidArgumentError);
    }
  });
});

describe('σ-defined schedulers have no β table', () => {
  it.each([
    ['FlowMatchEulerDiscreteScheduler', () => new FlowMatchEulerDiscreteScheduler()],
    ['EDMEulerScheduler', () => new EDMEulerScheduler()],
    ['IPNDMScheduler', () => new IPNDMScheduler()],
  ])('%s: empty betas and ᾱ, and a clear error where a timestep would need ᾱ', (name, make) => {
    const scheduler = make();
    expect(scheduler.betas).toHaveLength(0);
    expect(scheduler.alphasCumprod).toHaveLength(0);
    expect(hasSigmaSchedule(scheduler)).toBe(true);
    if (name === 'IPNDMScheduler') {
      const x = dummySampleDeter();
      expect(() => scheduler.addNoise(x, x, 0.5)).toThrow(/defines its noise levels by σ/);
    }
  });

  it('betasFromConfig refuses a config without a β schedule instead of computing a cosine one', () => {
    const config = { num_train_timesteps: 10, beta_start: 0.1, beta_end: 0.2, trained_betas: null };
    expect(() => betasFromConfig(config as never)).toThrow(ConfigError);
    expect(() => betasFromConfig(config as never)).toThrow(/beta_schedule must be one of "linear"/);
  });
});

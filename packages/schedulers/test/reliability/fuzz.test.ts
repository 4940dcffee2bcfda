/**
 * Property-based fuzz of scheduler configs and step inputs (issue #9). Configs mix valid values of every key the
 * schedulers know with values of the wrong type or out of range; a run then samples with finite model outputs.
 * The properties: construction and `setTimesteps` either succeed or throw a documented `DenoiseError`; a full
 * sampling run over `scheduler.timesteps` from finite inputs then never throws and never produces NaN or Infinity;
 * a NaN or an Infinity put into one input of one step is a `NumericError` naming that step.
 *
 * Bounded in count (`FUZZ_RUNS`, default 1000) and time (`interruptAfterTimeLimit`); the seed is fixed so the suite
 * is reproducible, and `FUZZ_SEED` explores others.
 */
import { DenoiseError, NumericError, RandomGenerator, Tensor } from '@denoise/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { DDIMStepOptions } from '../../src/ddim.js';
import { SCHEDULER_CLASSES } from '../../src/registry.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 1000);
const SEED = Number(process.env.FUZZ_SEED ?? 20261122);
const TIME_LIMIT_MS = 30_000;
/** Stands for `num_train_timesteps + 1` steps. */
const TOO_MANY = -1;

/** Anything a hand-edited or corrupted JSON file could hold. */
const wildValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.string({ maxLength: 6 }),
  fc.constantFrom(-1, 0, 1e30, -1e-9, 0.5, 2.5, Number.NaN, Number.POSITIVE_INFINITY, null, true, false),
  fc.array(fc.double(), { maxLength: 3 }),
  fc.object({ maxDepth: 1, maxKeys: 2 }),
);

const unit = fc.double({ min: 0, max: 1, noNaN: true });

/** Mostly valid values per config key (every enum value, edges of every range), sometimes a wild one. */
const validValues: Record<string, fc.Arbitrary<unknown>> = {
  beta_start: fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(0.0001, 0.00085) },
    { weight: 3, arbitrary: fc.double({ min: 0, max: 0.01, noNaN: true }) },
    unit,
  ),
  beta_end: fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(0.02, 0.012) },
    { weight: 3, arbitrary: fc.double({ min: 0, max: 0.05, noNaN: true }) },
    unit,
  ),
  beta_schedule: fc.constantFrom('linear', 'scaled_linear', 'squaredcos_cap_v2', 'sigmoid'),
  rescale_betas_zero_snr: fc.boolean(),
  clip_sample: fc.boolean(),
  clip_sample_range: fc.double({ min: 1e-3, max: 10, noNaN: true }),
  set_alpha_to_one: fc.boolean(),
  steps_offset: fc.integer({ min: 0, max: 3 }),
  prediction_type: fc.constantFrom('epsilon', 'sample', 'v_prediction'),
  thresholding: fc.boolean(),
  dynamic_thresholding_ratio: fc.double({ min: 0.01, max: 1, noNaN: true }),
  sample_max_value: fc.double({ min: 1, max: 10, noNaN: true }),
  timestep_spacing: fc.constantFrom('leading', 'linspace', 'trailing'),
  variance_type: fc.constantFrom('fixed_small', 'fixed_small_log', 'fixed_large', 'fixed_large_log', null),
  solver_order: fc.integer({ min: 1, max: 3 }),
  algorithm_type: fc.constantFrom('dpmsolver', 'dpmsolver++', 'sde-dpmsolver', 'sde-dpmsolver++'),
  solver_type: fc.constantFrom('midpoint', 'heun', 'bh1', 'bh2'),
  lower_order_final: fc.boolean(),
  euler_at_final: fc.boolean(),
  use_karras_sigmas: fc.boolean(),
  use_exponential_sigmas: fc.boolean(),
  use_beta_sigmas: fc.boolean(),
  use_lu_lambdas: fc.boolean(),
  final_sigmas_type: fc.constantFrom('zero', 'sigma_min'),
  lambda_min_clipped: fc.constantFrom(null, -5.1, Number.NEGATIVE_INFINITY),
  interpolation_type: fc.constantFrom('linear', 'log_linear'),
  sigma_min: fc.constantFrom(null, 0.002, 0.1),
  sigma_max: fc.constantFrom(null, 80, 14.6),
  timestep_type: fc.constantFrom('discrete', 'continuous'),
  original_inference_steps: fc.integer({ min: 1, max: 60 }),
  timestep_scaling: fc.double({ min: 0, max: 20, noNaN: true }),
  skip_prk_steps: fc.boolean(),
  predict_x0: fc.boolean(),
  disable_corrector: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 2 }),
  noise_sampler_seed: fc.constantFrom(null, 0, 42),
};

interface FuzzCase {
  className: string;
  config: Record<string, unknown>;
  /** A step count, or 0 / T + 1 (`'too many'`), which `setTimesteps` must reject. */
  steps: number;
  eta: number;
  seed: number;
  scale: number;
}

const configKeys = Object.keys(validValues);

/** Valid values for up to six keys, and in half the cases one key set to a wild value. */
const fuzzConfig: fc.Arbitrary<Record<string, unknown>> = fc
  .tuple(
    fc.integer({ min: 1, max: 120 }),
    fc
      .shuffledSubarray(configKeys, { maxLength: 6 })
      .chain((keys) => fc.record(Object.fromEntries(keys.map((key) => [key, validValues[key]])))),
    fc.option(fc.tuple(fc.constantFrom('num_train_timesteps', ...configKeys), wildValue)),
  )
  .map(([T, valid, wild]) => ({
    num_train_timesteps: T,
    ...valid,
    ...(wild ? { [wild[0]]: wild[1] } : {}),
    unknown_key: 1,
  }));

const fuzzCase: fc.Arbitrary<FuzzCase> = fc.record({
  className: fc.constantFrom(...Object.keys(SCHEDULER_CLASSES)),
  config: fuzzConfig,
  steps: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 60 }) }, fc.constantFrom(TOO_MANY, 0)),
  eta: unit,
  seed: fc.nat(),
  scale: fc.constantFrom(0.01, 1, 10, 1000),
});

/** A non-finite value put into one input of one step. */
interface Poison {
  /** Which step, as a fraction of the schedule. */
  at: number;
  target: 'modelOutput' | 'sample';
  index: number;
  value: number;
}

/**
 * Runs one case; returns the error a documented path threw, or the final sample. With `poison`, one input of one
 * step gets a NaN or an Infinity, and `poisonedTimestep` says which step that was.
 */
function run(
  c: FuzzCase,
  poison?: Poison,
): { error?: unknown; final?: Float32Array; stage: string; steps?: number; poisonedTimestep?: number } {
  let poisonedTimestep: number | undefined;
  const Class = SCHEDULER_CLASSES[c.className];
  let stage = 'construct';
  try {
    const scheduler = new Class(c.config, { onWarning: () => {} });
    stage = 'setTimesteps';
    const T = scheduler.config.num_train_timesteps;
    scheduler.setTimesteps(c.steps === TOO_MANY ? T + 1 : Math.min(c.steps, T));
    stage = 'sampling';
    const dims = [1, 2, 3, 3];
    const random = new RandomGenerator(c.seed);
    const generator = new RandomGenerator(c.seed + 1);
    let sample = new Tensor(random.randnInto(new Float32Array(18)), dims);
    for (let i = 0; i < sample.data.length; i++) sample.data[i] *= scheduler.initNoiseSigma;
    const output = new Tensor(new Float32Array(18), dims);
    const poisonStep = poison ? Math.floor(poison.at * scheduler.timesteps.length) : -1;
    for (const [k, t] of scheduler.timesteps.entries()) {
      const input = scheduler.scaleModelInput(sample, t);
      random.randnInto(output.data);
      // A finite stand-in for a network: noise plus a bounded multiple of its input.
      for (let i = 0; i < output.data.length; i++) {
        output.data[i] = c.scale * output.data[i] + Math.tanh(input.data[i]);
      }
      if (poison && k === poisonStep) {
        poisonedTimestep = t;
        (poison.target === 'sample' ? sample : output).data[poison.index] = poison.value;
      }
      sample = scheduler.step(output, t, sample, { generator, eta: c.eta } as DDIMStepOptions).prevSample;
    }
    return { final: sample.data, stage, steps: scheduler.timesteps.length, poisonedTimestep };
  } catch (error) {
    return { error, stage, poisonedTimestep };
  }
}

describe('scheduler fuzz (fast-check)', () => {
  it(`never throws an undocumented error and never turns finite inputs into NaN (${RUNS} runs)`, () => {
    const counts = { constructed: 0, sampled: 0, configErrors: 0, argumentErrors: 0 };
    fc.assert(
      fc.property(fuzzCase, (c) => {
        const { error, final, stage, steps } = run(c);
        if (stage !== 'construct') counts.constructed++;
        if (error !== undefined) {
          expect(error, `${stage}: ${String(error)}`).toBeInstanceOf(DenoiseError);
          // Once config and step count are accepted, a loop over scheduler.timesteps with finite inputs must run
          // to the end: any error there (a NumericError above all) is the scheduler's own fault.
          expect(stage, String(error)).not.toBe('sampling');
          expect((error as Error).message.length).toBeGreaterThan(20);
          if ((error as DenoiseError).code === 'INVALID_CONFIG') counts.configErrors++;
          else counts.argumentErrors++;
          return;
        }
        counts.sampled++;
        expect(steps, 'an accepted step count gave an empty schedule').toBeGreaterThan(0);
        const bad = (final as Float32Array).findIndex((v) => !Number.isFinite(v));
        expect(bad, `non-finite value at ${bad}`).toBe(-1);
      }),
      { numRuns: RUNS, seed: SEED, interruptAfterTimeLimit: TIME_LIMIT_MS },
    );
    // The generator must exercise both sides: real sampling runs and rejected configs.
    expect(counts.sampled).toBeGreaterThan(RUNS / 5);
    expect(counts.configErrors).toBeGreaterThan(RUNS / 20);
    console.info(`scheduler fuzz: ${JSON.stringify(counts)}`);
  });

  it('detects a NaN or an Infinity put into the model output or the sample of any step, naming that step', () => {
    const poison: fc.Arbitrary<Poison> = fc.record({
      at: fc.integer({ min: 0, max: 99 }).map((percent) => percent / 100),
      target: fc.constantFrom<Poison['target']>('modelOutput', 'sample'),
      index: fc.integer({ min: 0, max: 17 }),
      value: fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY),
    });
    let detected = 0;
    fc.assert(
      fc.property(fuzzCase, poison, (c, p) => {
        const { error, stage, poisonedTimestep } = run(c, p);
        if (stage !== 'sampling') return; // the config or the step count was rejected before any step
        expect(error, `a ${p.value} in ${p.target} went through`).toBeInstanceOf(DenoiseError);
        if (poisonedTimestep === undefined) return; // a documented error before the poisoned step
        expect(error).toBeInstanceOf(NumericError);
        expect((error as Error).message).toContain(`at timestep ${poisonedTimestep}: ${p.target} holds ${p.value}`);
        detected++;
      }),
      { numRuns: RUNS, seed: SEED + 1, interruptAfterTimeLimit: TIME_LIMIT_MS },
    );
    expect(detected).toBeGreaterThan(RUNS / 5);
  });
});

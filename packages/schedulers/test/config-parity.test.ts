import { ConfigError, RandomGenerator } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import {
  DDIMInverseScheduler,
  DDIMScheduler,
  DDPMScheduler,
  DIFFUSERS_CONFIG_KEYS,
  EulerDiscreteScheduler,
  HeunDiscreteScheduler,
  KARRAS_DIFFUSION_SCHEDULERS,
  LCMScheduler,
  LMSDiscreteScheduler,
  PNDMScheduler,
  resolveConfig,
  SCHEDULER_CLASSES,
} from '../src/index.js';
import { dummyModel } from './helpers/diffusers-fixtures.js';

/** Stable Diffusion 1.5's `scheduler/scheduler_config.json`. */
const SD15_SCHEDULER: Record<string, unknown> = {
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.6.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
  clip_sample: false,
};

/** The classes of this file's issue (#18) whose keys must be exactly their diffusers namesake's. */
const OWN_CLASSES = [
  'DDPMScheduler',
  'DDIMScheduler',
  'DDIMInverseScheduler',
  'PNDMScheduler',
  'LMSDiscreteScheduler',
  'HeunDiscreteScheduler',
  'EulerDiscreteScheduler',
];

function collect() {
  const warnings: string[] = [];
  return { warnings, onWarning: (m: string) => warnings.push(m) };
}

describe('config keys: each class reads exactly the parameters of its diffusers namesake', () => {
  it.each(OWN_CLASSES)('%s', (className) => {
    const keys = Object.keys(new SCHEDULER_CLASSES[className]().config).sort();
    expect(keys).toEqual([...DIFFUSERS_CONFIG_KEYS[className]].sort());
  });

  it('no registered class reads a key its diffusers namesake lacks', () => {
    for (const [className, Class] of Object.entries(SCHEDULER_CLASSES)) {
      const extra = Object.keys(new Class().config).filter((key) => !DIFFUSERS_CONFIG_KEYS[className].includes(key));
      expect(extra, className).toEqual([]);
    }
  });
});

describe('rescale_betas_zero_snr only where diffusers has it (LMS, Heun and PNDM drop it)', () => {
  it('LMS with linear betas keeps σ_max = √((1 − ᾱ_999)/ᾱ_999) = 157.40727, not the rescaled 4096', () => {
    const { warnings, onWarning } = collect();
    const lms = new LMSDiscreteScheduler({ rescale_betas_zero_snr: true }, { onWarning });
    expect(lms.initNoiseSigma).toBeCloseTo(157.40727, 3);
    expect(Array.from(lms.alphasCumprod)).toEqual(Array.from(new LMSDiscreteScheduler().alphasCumprod));
    expect(lms.toJSON()).not.toHaveProperty('rescale_betas_zero_snr');
    // diffusers drops the key silently: Euler, DDIM and others take it.
    expect(warnings).toEqual([]);
  });

  it("Heun with SD 1.5's betas keeps σ_max = 14.614649", () => {
    const heun = new HeunDiscreteScheduler({ ...SD15_SCHEDULER, rescale_betas_zero_snr: true });
    expect(heun.initNoiseSigma).toBeCloseTo(14.614649, 4);
    expect(heun.sigmas[0]).toBeCloseTo(14.614649, 4);
  });

  it('PNDM builds the plain schedule (ᾱ_999 of linear betas = 4.0358e-5) instead of refusing the key', () => {
    const pndm = new PNDMScheduler({ rescale_betas_zero_snr: true });
    expect(Array.from(pndm.alphasCumprod)).toEqual(Array.from(new PNDMScheduler().alphasCumprod));
    expect(pndm.alphasCumprod[999]).toBeCloseTo(4.0358e-5, 8);
  });

  it('the classes that have it still rescale to ᾱ_{T−1} = 0', () => {
    const ddim = new DDIMScheduler({ rescale_betas_zero_snr: true, prediction_type: 'v_prediction' });
    expect(ddim.alphasCumprod[999]).toBe(0);
    const euler = new EulerDiscreteScheduler({ rescale_betas_zero_snr: true });
    expect(euler.sigmas[0]).toBeCloseTo(4096, 0);
  });
});

/** The classes whose diffusers namesakes take a β schedule (the σ-defined EDM and flow-matching ones do not). */
const BETA_SCHEDULE_CLASSES = Object.entries(SCHEDULER_CLASSES)
  .filter(([className]) => DIFFUSERS_CONFIG_KEYS[className].includes('beta_schedule'))
  .map(([, Class]) => Class);

describe('β schedules per class, as diffusers implements them', () => {
  it('DDPM takes laplace and sigmoid; Heun takes exp; every class takes the three common ones', () => {
    expect(new DDPMScheduler({ beta_schedule: 'laplace' }).config.beta_schedule).toBe('laplace');
    expect(new DDPMScheduler({ beta_schedule: 'sigmoid' }).config.beta_schedule).toBe('sigmoid');
    expect(new HeunDiscreteScheduler({ beta_schedule: 'exp' }).config.beta_schedule).toBe('exp');
    for (const Class of BETA_SCHEDULE_CLASSES) {
      for (const beta_schedule of ['linear', 'scaled_linear', 'squaredcos_cap_v2']) {
        const { config } = new Class({ beta_schedule, prediction_type: 'v_prediction' });
        expect((config as { beta_schedule?: string }).beta_schedule).toBe(beta_schedule);
      }
    }
  });

  it('the other classes refuse them with a ConfigError listing what they take', () => {
    for (const Class of BETA_SCHEDULE_CLASSES) {
      const className = Class.name;
      for (const beta_schedule of ['laplace', 'sigmoid', 'exp']) {
        const accepted =
          (className === 'DDPMScheduler' && beta_schedule !== 'exp') ||
          (className === 'HeunDiscreteScheduler' && beta_schedule === 'exp');
        if (accepted) continue;
        expect(() => new Class({ beta_schedule }), `${className} ${beta_schedule}`).toThrow(ConfigError);
        expect(() => new Class({ beta_schedule })).toThrow(/"squaredcos_cap_v2"/);
      }
    }
  });
});

describe('fromConfig warnings, as diffusers: one warning per call, silent for keys of compatible classes', () => {
  it("swapping any Karras class onto SD 1.5's PNDM config says nothing", () => {
    for (const [className, Class] of Object.entries(SCHEDULER_CLASSES)) {
      if (!Class.compatibles.includes('PNDMScheduler')) continue;
      const { warnings, onWarning } = collect();
      const scheduler = new Class(SD15_SCHEDULER, { onWarning });
      expect(warnings, className).toEqual([]);
      expect(scheduler.config).toMatchObject({ beta_schedule: 'scaled_linear', beta_start: 0.00085 });
    }
  });

  it('keys no compatible class takes are listed in a single warning', () => {
    const { warnings, onWarning } = collect();
    EulerDiscreteScheduler.fromConfig({ ...SD15_SCHEDULER, karras_magic: 3, cfg_rescale: 0.7 }, { onWarning });
    expect(warnings).toEqual([
      'EulerDiscreteScheduler ignores the config keys "karras_magic", "cfg_rescale", which it does not use.',
    ]);
  });

  it("keys of the config's own _class_name are silent even for a class without compatibles (LCM)", () => {
    const { warnings, onWarning } = collect();
    // LCM has no compatibles in diffusers: a PNDM key is silent only because the config says it is PNDM's.
    LCMScheduler.fromConfig(SD15_SCHEDULER, { onWarning });
    expect(warnings).toEqual([]);
    const { _class_name, ...anonymous } = SD15_SCHEDULER;
    LCMScheduler.fromConfig(anonymous, { onWarning });
    expect(warnings).toEqual(['LCMScheduler ignores the config key "skip_prk_steps", which it does not use.']);
    DDIMInverseScheduler.fromConfig({ ...anonymous, clip_sample: true, variance_type: 'fixed_small' }, { onWarning });
    expect(warnings[1]).toBe(
      'DDIMInverseScheduler ignores the config keys "skip_prk_steps", "variance_type", which it does not use.',
    );
  });

  it('a key of its own diffusers namesake that the class does not implement still warns', () => {
    const { warnings, onWarning } = collect();
    // A class with an empty spec named DPMSolverMultistepScheduler: its namesake takes use_flow_sigmas (diffusers
    // would act on it, so ignoring it deserves a word), PNDM takes skip_prk_steps (silent).
    const config = { use_flow_sigmas: true, skip_prk_steps: true };
    resolveConfig('DPMSolverMultistepScheduler', {}, config, onWarning, KARRAS_DIFFUSION_SCHEDULERS);
    expect(warnings).toEqual([
      'DPMSolverMultistepScheduler ignores the config key "use_flow_sigmas", which it does not use.',
    ]);
  });
});

describe('what denoise accepts beyond diffusers gives the result diffusers would give', () => {
  it.each(['DDIMScheduler', 'EulerAncestralDiscreteScheduler', 'UniPCMultistepScheduler'])(
    '%s: custom timesteps equal to its own schedule repeat the loop exactly',
    (className) => {
      const run = (setup: (s: InstanceType<(typeof SCHEDULER_CLASSES)[string]>) => void) => {
        const scheduler = new SCHEDULER_CLASSES[className]({ ...SD15_SCHEDULER, timestep_spacing: 'leading' });
        setup(scheduler);
        const generator = new RandomGenerator(3);
        let sample = new RandomGenerator(2).randn([1, 4, 8, 8]);
        for (const t of scheduler.timesteps) {
          const input = scheduler.scaleModelInput(sample, t);
          sample = scheduler.step(dummyModel(input, t), t, sample, { generator }).prevSample;
        }
        return { sample: sample.data, timesteps: scheduler.timesteps };
      };
      const spaced = run((s) => s.setTimesteps(10));
      const custom = run((s) => s.setTimesteps({ timesteps: spaced.timesteps }));
      expect(custom.timesteps).toEqual(spaced.timesteps);
      expect(custom.sample).toEqual(spaced.sample);
    },
  );
});

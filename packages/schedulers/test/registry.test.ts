import { ConfigError } from '@denoise/core';
import { describe, expect, it } from 'vitest';
import { acceptsCustomSigmas } from '../src/capabilities.js';
import { DPMSolverMultistepScheduler } from '../src/dpm-solver-multistep.js';
import { EulerAncestralDiscreteScheduler } from '../src/euler-ancestral-discrete.js';
import { EulerDiscreteScheduler } from '../src/euler-discrete.js';
import { LMSDiscreteScheduler } from '../src/lms-discrete.js';
import { PNDMScheduler } from '../src/pndm.js';
import {
  compatibleSchedulers,
  customSigmasSchedulers,
  getScheduler,
  listSchedulers,
  SCHEDULER_ALIASES,
  SCHEDULER_CLASSES,
  schedulerFromConfig,
} from '../src/registry.js';

/** Stable Diffusion 1.5's `scheduler/scheduler_config.json`. */
const SD15_SCHEDULER = {
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

function collect() {
  const warnings: string[] = [];
  return { warnings, onWarning: (m: string) => warnings.push(m) };
}

describe('scheduler registry', () => {
  it('builds the class named by _class_name, silent about keys of compatible classes (clip_sample: DDIM)', () => {
    const { warnings, onWarning } = collect();
    const scheduler = schedulerFromConfig(SD15_SCHEDULER, { onWarning });
    expect(scheduler).toBeInstanceOf(PNDMScheduler);
    expect(scheduler.config).toMatchObject({ beta_schedule: 'scaled_linear', skip_prk_steps: true, steps_offset: 1 });
    expect(warnings).toEqual([]);
  });

  it('round-trips every registered class through toJSON', () => {
    for (const [name, Class] of Object.entries(SCHEDULER_CLASSES)) {
      const original = new Class({ num_train_timesteps: 500 });
      const rebuilt = schedulerFromConfig(JSON.parse(JSON.stringify(original)));
      expect(rebuilt.className).toBe(name);
      expect(rebuilt.config).toEqual(original.config);
    }
  });

  it('swaps between compatible classes with fromConfig, dropping the keys of the other class silently', () => {
    const { warnings, onWarning } = collect();
    const pndm = schedulerFromConfig(SD15_SCHEDULER, { onWarning });
    const euler = EulerDiscreteScheduler.fromConfig(pndm.config, { onWarning });
    EulerDiscreteScheduler.fromConfig(pndm.config, { onWarning });
    expect(euler.config).toMatchObject({ beta_schedule: 'scaled_linear', beta_start: 0.00085, steps_offset: 1 });
    expect(euler.toJSON()).not.toHaveProperty('skip_prk_steps');
    expect(warnings).toEqual([]);
    const back = PNDMScheduler.fromConfig(euler.config, { onWarning });
    expect(back.config.beta_end).toBe(0.012);
    expect(compatibleSchedulers('PNDMScheduler')).toEqual(
      expect.arrayContaining(['EulerDiscreteScheduler', 'DPMSolverMultistepScheduler', 'UniPCMultistepScheduler']),
    );
    expect(compatibleSchedulers('PNDMScheduler')).not.toContain('LCMScheduler');
  });

  it('names the classes that take custom sigmas, and each sets its schedule from them', () => {
    expect(customSigmasSchedulers()).toEqual([
      'EulerDiscreteScheduler',
      'FlowMatchEulerDiscreteScheduler',
      'EDMEulerScheduler',
    ]);
    // Three steps in each class's own reading of `sigmas`: σ with the final one, σ before the shift, ramp positions.
    const threeSteps: Record<string, number[]> = {
      EulerDiscreteScheduler: [10, 4, 1, 0],
      FlowMatchEulerDiscreteScheduler: [1, 0.6, 0.3],
      EDMEulerScheduler: [0, 0.5, 1],
    };
    for (const name of customSigmasSchedulers()) {
      const scheduler = new SCHEDULER_CLASSES[name]();
      if (!acceptsCustomSigmas(scheduler)) throw new Error(`${name} lost the capability`);
      scheduler.setTimesteps({ sigmas: threeSteps[name] });
      expect(scheduler.timesteps, name).toHaveLength(3);
    }
    expect(acceptsCustomSigmas(new SCHEDULER_CLASSES.DDIMScheduler())).toBe(false);
  });

  it('resolves UI names to a class and overrides on top of the model config', () => {
    const { onWarning } = collect();
    const karras = getScheduler('DPM++ 2M Karras', SD15_SCHEDULER, { onWarning });
    expect(karras).toBeInstanceOf(DPMSolverMultistepScheduler);
    expect(karras.config).toMatchObject({ use_karras_sigmas: true, algorithm_type: 'dpmsolver++', solver_order: 2 });
    expect(karras.config).toMatchObject({ beta_schedule: 'scaled_linear', steps_offset: 1 });
    expect(getScheduler('DPM++ 2M SDE', {}, { onWarning }).config).toMatchObject({ algorithm_type: 'sde-dpmsolver++' });
    expect(getScheduler('DPM++ 2M SDE Heun Karras', SD15_SCHEDULER, { onWarning }).config).toMatchObject({
      algorithm_type: 'sde-dpmsolver++',
      solver_type: 'heun',
      use_karras_sigmas: true,
    });
    // The names without "Heun" are the midpoint variant, whatever the model's config says.
    expect(getScheduler('DPM++ 2M SDE', { solver_type: 'heun' }, { onWarning }).config).toMatchObject({
      solver_type: 'midpoint',
    });
    expect(getScheduler('euler a', SD15_SCHEDULER, { onWarning })).toBeInstanceOf(EulerAncestralDiscreteScheduler);
    const lmsKarras = getScheduler('LMS Karras', SD15_SCHEDULER, { onWarning });
    expect(lmsKarras).toBeInstanceOf(LMSDiscreteScheduler);
    expect(lmsKarras.config).toMatchObject({ use_karras_sigmas: true });
    // "Euler" from a Karras config is plain Euler again.
    expect(getScheduler('Euler', { use_karras_sigmas: true }, { onWarning }).config).toMatchObject({
      use_karras_sigmas: false,
    });
    expect(getScheduler('EulerDiscreteScheduler', {}, { onWarning })).toBeInstanceOf(EulerDiscreteScheduler);
    for (const alias of SCHEDULER_ALIASES) {
      const scheduler = getScheduler(alias.name, SD15_SCHEDULER, { onWarning });
      expect(scheduler.className).toBe(alias.className);
      scheduler.setTimesteps(4);
      expect(scheduler.timesteps.length).toBeGreaterThanOrEqual(4);
    }
  });

  it('lists every name and rejects unknown ones with the list', () => {
    const names = listSchedulers().map((s) => s.name);
    for (const ui of ['DPM++ 2M', 'DPM++ 2M Karras', 'DPM++ 2M SDE', 'Euler', 'Euler a', 'Heun', 'LMS']) {
      expect(names).toContain(ui);
    }
    for (const ui of ['LMS Karras', 'DDIM', 'PNDM', 'UniPC', 'LCM']) expect(names).toContain(ui);
    for (const ui of ['DPM2', 'DPM2 Karras', 'DPM2 a', 'DPM2 a Karras', 'DPM++ 2S', 'DPM++ 2S Karras'])
      expect(names).toContain(ui);
    for (const ui of ['DPM++ SDE', 'DPM++ SDE Karras']) expect(names).toContain(ui);
    expect(() => getScheduler('DPM++ 3M')).toThrow(ConfigError);
    expect(() => getScheduler('DPM++ 3M')).toThrow(/Known names: "DPM\+\+ 2M", .*"Euler a"/);
    expect(() => schedulerFromConfig({ _class_name: 'KarrasVeScheduler' })).toThrow(
      /denoise implements: DDPMScheduler/,
    );
    expect(() => schedulerFromConfig({ beta_start: 0.1 })).toThrow(/_class_name/);
  });
});

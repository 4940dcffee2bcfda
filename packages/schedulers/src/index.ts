/**
 * Diffusion schedulers: pure math over float32 buffers, configured by diffusers' `scheduler_config.json` and
 * interchangeable through `fromConfig`. Imports nothing that needs a runtime.
 *
 * @packageDocumentation
 */

export * from './ddim.js';
export * from './ddpm.js';
export * from './schedule.js';
export * from './scheduler.js';

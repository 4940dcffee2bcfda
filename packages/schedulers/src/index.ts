/**
 * Diffusion schedulers: pure math over float32 buffers, configured by diffusers' `scheduler_config.json` and
 * interchangeable through `fromConfig`. Imports nothing that needs a runtime.
 *
 * @packageDocumentation
 */

export * from './ddim.js';
export * from './ddpm.js';
export type {
  DPMSolverAlgorithmType,
  DPMSolverMultistepSchedulerConfig,
  DPMSolverType,
} from './dpm-solver-multistep.js';
export {
  DPM_SOLVER_ALGORITHM_TYPES,
  DPM_SOLVER_MULTISTEP_CONFIG_SPEC,
  DPMSolverMultistepScheduler,
} from './dpm-solver-multistep.js';
export * from './schedule.js';
export * from './scheduler.js';
export type { UniPCMultistepSchedulerConfig, UniPCSolverType } from './unipc-multistep.js';
export { UNIPC_MULTISTEP_CONFIG_SPEC, UniPCMultistepScheduler } from './unipc-multistep.js';

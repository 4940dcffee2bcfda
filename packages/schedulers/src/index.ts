/**
 * Diffusion schedulers: pure math over float32 buffers, configured by diffusers' `scheduler_config.json` and
 * interchangeable through `fromConfig`. Imports nothing that needs a runtime.
 *
 * @packageDocumentation
 */

export * from './capabilities.js';
export * from './checks.js';
export * from './config.js';
export * from './ddim.js';
export * from './ddim-inverse.js';
export * from './ddpm.js';
export type { DEISMultistepSchedulerConfig } from './deis-multistep.js';
export { DEIS_MULTISTEP_CONFIG_SPEC, DEISMultistepScheduler } from './deis-multistep.js';
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
export type { DPMSolverSDESchedulerConfig, DPMSolverSDEStepOptions } from './dpm-solver-sde.js';
export { DPM_SOLVER_SDE_CONFIG_SPEC, DPMSolverSDEScheduler } from './dpm-solver-sde.js';
export type {
  DPMSolverSinglestepAlgorithmType,
  DPMSolverSinglestepSchedulerConfig,
} from './dpm-solver-singlestep.js';
export {
  DPM_SOLVER_SINGLESTEP_ALGORITHM_TYPES,
  DPM_SOLVER_SINGLESTEP_CONFIG_SPEC,
  DPMSolverSinglestepScheduler,
  singlestepOrders,
} from './dpm-solver-singlestep.js';
export type { EDMDPMSolverMultistepSchedulerConfig } from './edm-dpm-solver-multistep.js';
export {
  EDM_DPM_SOLVER_MULTISTEP_CONFIG_SPEC,
  EDMDPMSolverMultistepScheduler,
} from './edm-dpm-solver-multistep.js';
export type {
  EDMEulerSchedulerConfig,
  EDMEulerSetTimestepsOptions,
  EDMEulerStepOptions,
} from './edm-euler.js';
export { EDM_EULER_CONFIG_SPEC, EDMEulerScheduler } from './edm-euler.js';
export * from './euler-ancestral-discrete.js';
export * from './euler-discrete.js';
export type {
  FlowMatchEulerDiscreteSchedulerConfig,
  FlowMatchSetTimestepsOptions,
} from './flow-match-euler-discrete.js';
export {
  FLOW_MATCH_EULER_DISCRETE_CONFIG_SPEC,
  FlowMatchEulerDiscreteScheduler,
  flowMatchMu,
} from './flow-match-euler-discrete.js';
export * from './heun-discrete.js';
export type { IPNDMSchedulerConfig } from './ipndm.js';
export { IPNDM_CONFIG_SPEC, IPNDMScheduler } from './ipndm.js';
export type { KDPM2AncestralDiscreteSchedulerConfig } from './kdpm2-ancestral-discrete.js';
export {
  KDPM2_ANCESTRAL_DISCRETE_CONFIG_SPEC,
  KDPM2AncestralDiscreteScheduler,
} from './kdpm2-ancestral-discrete.js';
export type { KDPM2DiscreteSchedulerConfig } from './kdpm2-discrete.js';
export { KDPM2_DISCRETE_CONFIG_SPEC, KDPM2DiscreteScheduler } from './kdpm2-discrete.js';
export * from './lcm.js';
export * from './lms-discrete.js';
export type { MultistepPredictionType, MultistepSetTimestepsOptions } from './multistep.js';
export { MULTISTEP_PREDICTION_TYPES } from './multistep.js';
export * from './pndm.js';
export * from './prediction.js';
export * from './registry.js';
export * from './schedule.js';
export * from './schedule-cursor.js';
export * from './scheduler.js';
export * from './sigma-scheduler.js';
export * from './sigmas.js';
export type {
  TCDSchedulerConfig,
  TCDSchedulerOutput,
  TCDSetTimestepsOptions,
  TCDStepOptions,
} from './tcd.js';
export { TCD_CONFIG_SPEC, TCDScheduler } from './tcd.js';
export * from './thresholding.js';
export type { UniPCMultistepSchedulerConfig, UniPCSolverType } from './unipc-multistep.js';
export { UNIPC_MULTISTEP_CONFIG_SPEC, UniPCMultistepScheduler } from './unipc-multistep.js';

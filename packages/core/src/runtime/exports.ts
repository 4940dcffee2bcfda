/**
 * The part of `@denoise/core/runtime` that Node and browsers share; each entry adds its ONNX Runtime and cache.
 */
export type { Device, DeviceSupport, ProviderStatus, RuntimeEnvironment } from './device.js';
export { DeviceTensor, type DeviceUpload } from './device-tensor.js';
export type { HubOptions } from './hub-api.js';
export { externalDataFiles, findOnnxModel, type ModelDType, type OnnxModelFiles } from './model-files.js';
export { type ComponentSpec, type ModelIndex, parseModelIndex } from './model-index.js';
export type {
  DoneProgress,
  DownloadProgress,
  FileProgress,
  InitiateProgress,
  ProgressCallback,
  ProgressInfo,
  ReadyProgress,
  TotalProgress,
} from './progress.js';
export { type ComponentInfo, ModelRepository, type PerComponent, type RepositoryOptions } from './repository.js';
export {
  DEFAULT_LOG_SEVERITY_LEVEL,
  type LogSeverityLevel,
  ModelSession,
  type OrtModule,
  type SessionOptions,
} from './session.js';
export type { FeedValue, TensorSpec } from './tensor-adapter.js';

/**
 * The runtime-free foundation of denoise: tensors, torch-compatible random numbers and errors.
 * Model loading and ONNX sessions live in `@denoise/core/runtime`, so that importing this entry pulls in no
 * runtime and no network code.
 *
 * @module @denoise/core
 */
export * from './errors.js';
export * from './float16.js';
export * from './random.js';
export * from './tensor.js';

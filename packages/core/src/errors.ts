/**
 * Machine-readable reasons a denoise call can fail. Every error the SDK throws on purpose is a
 * {@link DenoiseError} carrying one of these, so applications can branch on `error.code`.
 */
export type DenoiseErrorCode =
  | 'INVALID_ARGUMENT'
  | 'INVALID_CONFIG'
  | 'NUMERIC'
  | 'MODEL_NOT_FOUND'
  | 'FILE_NOT_FOUND'
  | 'UNAUTHORIZED'
  | 'DOWNLOAD_FAILED'
  | 'INVALID_MODEL'
  | 'DEVICE_UNAVAILABLE'
  | 'ABORTED';

/** Base class of every error denoise throws on purpose. The message says what was wrong and what to do. */
export class DenoiseError extends Error {
  /** A stable code for programmatic handling. */
  readonly code: DenoiseErrorCode;

  /**
   * @param code - the stable code of this failure
   * @param message - what was wrong and how to fix it
   * @param options - the underlying cause, when there is one
   */
  constructor(code: DenoiseErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A function received an argument it cannot use (wrong shape, type, range or combination). */
export class InvalidArgumentError extends DenoiseError {
  /** @param message - what was wrong and how to fix it */
  constructor(message: string, options?: { cause?: unknown }) {
    super('INVALID_ARGUMENT', message, options);
  }
}

/** A configuration (a `scheduler_config.json`, a `model_index.json`, a component config) is invalid. */
export class ConfigError extends DenoiseError {
  /** @param message - which key is wrong and which values are allowed */
  constructor(message: string, options?: { cause?: unknown }) {
    super('INVALID_CONFIG', message, options);
  }
}

/** A computation produced NaN or Infinity from its inputs. */
export class NumericError extends DenoiseError {
  /** @param message - where the non-finite value appeared */
  constructor(message: string, options?: { cause?: unknown }) {
    super('NUMERIC', message, options);
  }
}

/** An operation was cancelled through an `AbortSignal`. Its `name` is `'AbortError'`, as for `fetch`. */
export class AbortError extends DenoiseError {
  /** @param message - what was cancelled */
  constructor(message = 'The operation was aborted.', options?: { cause?: unknown }) {
    super('ABORTED', message, options);
    this.name = 'AbortError';
  }
}

/**
 * Throws an {@link AbortError} when `signal` has been aborted.
 *
 * @param signal - the caller's signal, if any
 * @param what - the phase being cancelled, for the message (e.g. `'denoising step 3'`)
 */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) {
    throw new AbortError(`Aborted during ${what}.`, { cause: signal.reason });
  }
}

/** The {@link DenoiseErrorCode}s a {@link ModelLoadError} can carry. */
export type ModelLoadErrorCode =
  | 'MODEL_NOT_FOUND'
  | 'FILE_NOT_FOUND'
  | 'UNAUTHORIZED'
  | 'DOWNLOAD_FAILED'
  | 'INVALID_MODEL';

/**
 * Loading a model failed: the repository or a file is missing, access was refused, a download broke off or
 * failed its checks, or a file is not a valid model. `repo` and `file` say where.
 */
export class ModelLoadError extends DenoiseError {
  /** The repository id or local directory being loaded. */
  readonly repo: string;
  /** The file inside the repository, when the failure concerns one file. */
  readonly file: string | undefined;

  /**
   * @param code - why loading failed
   * @param message - what was wrong and what to do
   * @param where - the repository (id or directory) and, when relevant, the file
   * @param options - the underlying cause, when there is one
   */
  constructor(
    code: ModelLoadErrorCode,
    message: string,
    where: { repo: string; file?: string },
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.repo = where.repo;
    this.file = where.file;
  }
}

/** The requested execution device (CUDA, DirectML, CoreML, WebGPU...) is not available in this runtime. */
export class DeviceUnavailableError extends DenoiseError {
  /** @param message - which device is missing and what to install or choose instead */
  constructor(message: string, options?: { cause?: unknown }) {
    super('DEVICE_UNAVAILABLE', message, options);
  }
}

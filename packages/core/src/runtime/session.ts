import type { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-common';
import { DeviceUnavailableError, InvalidArgumentError, ModelLoadError } from '../errors.js';
import { float32ToFloat16 } from '../float16.js';
import type { Tensor, TensorLike } from '../tensor.js';
import { type Device, deviceInstallHint, executionProviders, type RuntimeEnvironment } from './device.js';
import { DeviceTensor, type DeviceUpload } from './device-tensor.js';
import type { ModelSource } from './snapshot.js';
import {
  type FeedValue,
  InputAdapter,
  type OrtTensorConstructor,
  type TensorSpec,
  toFloat32,
} from './tensor-adapter.js';

/** Options of one ONNX session. */
export interface SessionOptions {
  /** Where to run. Default `'auto'`. */
  device?: Device;
  /** ONNX Runtime graph optimisation. Default `'all'`. */
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * Fixed sizes for free dimensions (e.g. `{ batch: 2, height: 64, width: 64 }`), which lets WebGPU compile
   * static kernels; names are the graph's symbolic dimension names.
   */
  freeDimensionOverrides?: Readonly<Record<string, number>>;
  /**
   * Where outputs stay: `'cpu'` (default) or `'gpu-buffer'` for all, or per output name. Outputs left on the GPU
   * come back from {@link ModelSession.runOnDevice} as {@link DeviceTensor}s.
   */
  preferredOutputLocation?: 'cpu' | 'gpu-buffer' | Readonly<Record<string, 'cpu' | 'gpu-buffer'>>;
  /**
   * The least severe ONNX Runtime messages the session prints (ONNX Runtime's `logSeverityLevel`): 0 verbose,
   * 1 info, 2 warning, 3 error, 4 fatal. Default 3: the warnings ONNX Runtime prints while optimising a graph
   * (such as "Removing initializer ... not used by any node") are for whoever exported the model; pass 2 to see them.
   */
  logSeverityLevel?: LogSeverityLevel;
}

/** ONNX Runtime's message severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal. */
export type LogSeverityLevel = 0 | 1 | 2 | 3 | 4;

/** ONNX Runtime's `env.logLevel` names of the {@link LogSeverityLevel}s, in order. */
export const ORT_LOG_LEVEL_NAMES = ['verbose', 'info', 'warning', 'error', 'fatal'] as const;

/** The {@link SessionOptions.logSeverityLevel} sessions get when not told otherwise: errors only. */
export const DEFAULT_LOG_SEVERITY_LEVEL: LogSeverityLevel = 3;

/** The parts of an `onnxruntime-node` / `onnxruntime-web` module the session layer uses. */
export interface OrtModule {
  /** The session factory. */
  InferenceSession: {
    /** Opens a graph from a path or bytes. */
    create(model: string | Uint8Array, options?: InferenceSession.SessionOptions): Promise<InferenceSession>;
  };
  /** The tensor class. */
  Tensor: OrtTensorConstructor;
  /** Copies tensors to the device of WebGPU sessions (`onnxruntime-web` only); see {@link ModelSession.upload}. */
  webGpuUpload?: DeviceUpload;
}

function specsOf(metadata: readonly InferenceSession.ValueMetadata[]): TensorSpec[] {
  return metadata.map((m) =>
    m.isTensor ? { name: m.name, type: m.type, shape: m.shape } : { name: m.name, type: 'non-tensor', shape: [] },
  );
}

/**
 * One loaded ONNX graph. Callers pass and receive float32 {@link Tensor}s, integer tensors and plain numbers;
 * the session converts to and from whatever element types and ranks the graph declares. Runs on one session
 * are queued, never overlapped.
 */
export class ModelSession {
  /** The model's name (component or file), used in messages. */
  readonly name: string;
  /** The graph's inputs as it declares them. */
  readonly inputs: readonly TensorSpec[];
  /** The graph's outputs as it declares them. */
  readonly outputs: readonly TensorSpec[];
  /** The execution providers the session was created with. */
  readonly executionProviders: readonly string[];
  readonly #session: InferenceSession;
  readonly #adapter: InputAdapter;
  readonly #upload: DeviceUpload | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #released = false;

  /** @internal Sessions come from `ModelRepository.createSession` or `openSession`. */
  constructor(
    name: string,
    session: InferenceSession,
    TensorClass: OrtTensorConstructor,
    providers: readonly string[],
    upload?: DeviceUpload,
  ) {
    this.name = name;
    this.#upload = upload;
    this.#session = session;
    this.inputs = specsOf(session.inputMetadata);
    this.outputs = specsOf(session.outputMetadata);
    this.executionProviders = providers;
    this.#adapter = new InputAdapter(this.inputs, TensorClass, name);
  }

  /**
   * Runs the graph and returns every output as a float32 tensor on the CPU (outputs kept on the GPU are copied
   * back). The returned tensors belong to the caller.
   *
   * @param feeds - one value per graph input, by name
   */
  async run(feeds: Readonly<Record<string, FeedValue>>): Promise<Record<string, Tensor>> {
    const raw = await this.#runRaw(feeds);
    const out: Record<string, Tensor> = {};
    for (const [name, value] of Object.entries(raw)) {
      if (value instanceof DeviceTensor) {
        out[name] = await value.toTensor();
        value.dispose();
      } else {
        out[name] = value;
      }
    }
    return out;
  }

  /**
   * Runs the graph and leaves outputs where `preferredOutputLocation` put them: CPU outputs come back as float32
   * tensors, GPU outputs as {@link DeviceTensor}s to feed into the next run.
   */
  runOnDevice(feeds: Readonly<Record<string, FeedValue>>): Promise<Record<string, Tensor | DeviceTensor>> {
    return this.#runRaw(feeds);
  }

  #runRaw(feeds: Readonly<Record<string, FeedValue>>): Promise<Record<string, Tensor | DeviceTensor>> {
    const run = this.#queue.then(async () => {
      if (this.#released)
        throw new InvalidArgumentError(`Session ${this.name} was released; create a new one to run it again.`);
      const results = await this.#session.run(this.#adapter.adapt(feeds));
      const out: Record<string, Tensor | DeviceTensor> = {};
      for (const [name, value] of Object.entries(results)) {
        const tensor = value as OrtTensor;
        out[name] =
          tensor.location === 'cpu' ? toFloat32(tensor.type, tensor.data, tensor.dims) : new DeviceTensor(tensor);
      }
      return out;
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Whether {@link ModelSession.upload} can put inputs on this session's device: a WebGPU session in a browser. */
  get canUpload(): boolean {
    return this.#upload !== undefined;
  }

  /**
   * Copies a float32 tensor to the session's GPU once, in the element type the graph declares for `input`
   * (float32 or float16), so that every later run takes it without a copy. The caller owns the result and
   * disposes it.
   *
   * @param input - the graph input the tensor is for
   * @param tensor - its value, float32 on the CPU
   * @throws `InvalidArgumentError` when the session cannot upload (see {@link ModelSession.canUpload}) or `input`
   * is not a float input of the graph
   */
  async upload(input: string, tensor: TensorLike): Promise<DeviceTensor> {
    if (this.#upload === undefined) {
      throw new InvalidArgumentError(
        `Session ${this.name} does not run on WebGPU in a browser, so it has no device to upload ${input} to; ` +
          'feed the tensor as is.',
      );
    }
    const spec = this.inputs.find((i) => i.name === input);
    if (spec === undefined || (spec.type !== 'float32' && spec.type !== 'float16')) {
      throw new InvalidArgumentError(
        `${this.name} has no float input ${input} to upload to (its inputs: ${this.inputs.map((i) => `${i.name}: ${i.type}`).join(', ')}).`,
      );
    }
    const data = spec.type === 'float16' ? float32ToFloat16(tensor.data) : tensor.data;
    return this.#upload(spec.type, data, tensor.dims);
  }

  /** Frees the session's memory (and GPU resources). Later runs fail. Safe to call twice. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await this.#queue;
    await this.#session.release();
  }
}

/**
 * ONNX Runtime's message on one line, without the C++ source location and failed condition that its internal
 * checks put first (`/onnxruntime_src/…/webgpu_context.cc:136 <function> <condition> was false. <message>`).
 */
function ortReason(cause: unknown): string {
  const message = (cause instanceof Error ? cause.message : String(cause)).replace(/\s+/g, ' ').trim();
  return /^\/onnxruntime_src\/\S+:\d+ .*? was false\. (.+)$/.exec(message)?.[1] ?? message;
}

/**
 * Opens an ONNX graph on the requested device.
 *
 * @param ort - the `onnxruntime-node` or `onnxruntime-web` module
 * @param runtime - what that runtime offers
 * @param source - the graph (path or bytes) and its external data
 * @param where - the repository and file, for error messages
 * @throws `DeviceUnavailableError` when the device is missing; `ModelLoadError` `INVALID_MODEL` when
 * the runtime cannot read the graph (truncated file, missing external data)
 */
export async function createSession(
  ort: OrtModule,
  runtime: RuntimeEnvironment,
  source: ModelSource,
  options: SessionOptions & { name: string; repo: string; file: string },
): Promise<ModelSession> {
  const device = options.device ?? 'auto';
  const providers = executionProviders(device, runtime);
  const logSeverityLevel = options.logSeverityLevel ?? DEFAULT_LOG_SEVERITY_LEVEL;
  if (ORT_LOG_LEVEL_NAMES[logSeverityLevel] === undefined) {
    throw new InvalidArgumentError(
      `logSeverityLevel must be 0 (verbose), 1 (info), 2 (warning), 3 (error) or 4 (fatal), got ${logSeverityLevel}.`,
    );
  }
  const sessionOptions: InferenceSession.SessionOptions = {
    executionProviders: providers,
    graphOptimizationLevel: options.graphOptimizationLevel ?? 'all',
    logSeverityLevel,
    ...(options.freeDimensionOverrides && { freeDimensionOverrides: options.freeDimensionOverrides }),
    ...(options.preferredOutputLocation && { preferredOutputLocation: options.preferredOutputLocation }),
    ...(source.externalData.length > 0 && { externalData: source.externalData }),
  };
  let session: InferenceSession;
  try {
    session = await ort.InferenceSession.create(source.model, sessionOptions);
  } catch (cause) {
    const reason = ortReason(cause);
    if (
      device !== 'auto' &&
      device !== 'cpu' &&
      /provider|cuda|dml|directml|coreml|webgpu|shared library/i.test(reason)
    ) {
      throw new DeviceUnavailableError(
        `Could not start ${options.file} of ${options.repo} on device "${device}": ${reason}. ${deviceInstallHint(device, runtime.name)}`,
        { cause },
      );
    }
    throw new ModelLoadError(
      'INVALID_MODEL',
      `${runtime.name} could not load ${options.file} of ${options.repo}: ${reason}. The file may be truncated or ` +
        'its external data missing; delete it from the cache (or the model directory) and load again.',
      { repo: options.repo, file: options.file },
      { cause },
    );
  }
  const upload = providers[0] === 'webgpu' ? ort.webGpuUpload : undefined;
  return new ModelSession(options.name, session, ort.Tensor, providers, upload);
}

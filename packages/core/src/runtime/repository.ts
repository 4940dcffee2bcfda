import { InvalidArgumentError, ModelLoadError, throwIfAborted } from '../errors.js';
import type { Device, RuntimeEnvironment } from './device.js';
import { type FileSelection, type ModelDType, type OnnxModelFiles, selectFiles } from './model-files.js';
import { type ComponentSpec, type ModelIndex, parseModelIndex } from './model-index.js';
import { type ProgressCallback, ProgressTracker } from './progress.js';
import {
  createSession,
  type LogSeverityLevel,
  type ModelSession,
  type OrtModule,
  type SessionOptions,
} from './session.js';
import type { Snapshot } from './snapshot.js';

/** A value for every component, or per component name (components not named get `default`, else the fallback). */
export type PerComponent<T> =
  | T
  | (Readonly<Record<string, T>> & {
      /** The value of components not named. */
      default?: T;
    });

function pick<T extends string>(value: PerComponent<T> | undefined, component: string, fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value === 'string') return value as T;
  const record = value as Readonly<Record<string, T>>;
  return record[component] ?? record.default ?? fallback;
}

/** How to load a repository, whatever its source. */
export interface RepositoryOptions {
  /** The ONNX variant per component (`'fp32'` default). A repository with only one variant uses it regardless. */
  dtype?: PerComponent<ModelDType>;
  /** The device per component, used by {@link ModelRepository.createSession}. Default `'auto'`. */
  device?: PerComponent<Device>;
  /** Only these components (default: every component in `model_index.json`). */
  components?: readonly string[];
  /** Receives download progress. */
  progressCallback?: ProgressCallback;
  /** Cancels the load. */
  signal?: AbortSignal;
  /**
   * The least severe ONNX Runtime messages the component sessions print (see {@link SessionOptions.logSeverityLevel};
   * default 3, errors only).
   */
  logSeverityLevel?: LogSeverityLevel;
}

/** A component of a loaded repository. */
export interface ComponentInfo extends ComponentSpec {
  /** Its ONNX graph, when it has one. */
  model: OnnxModelFiles | undefined;
  /** Its files (configs, tokenizer files, graph), relative to the repository root. */
  files: readonly string[];
}

/**
 * A model repository in the diffusers layout whose files are available locally: its `model_index.json`, its
 * components and their files. Creates ONNX sessions for the components.
 */
export class ModelRepository {
  /** The repository id or directory. */
  readonly name: string;
  /** The commit the files come from (Hub repositories). */
  readonly commit: string | undefined;
  /** The parsed `model_index.json`. */
  readonly modelIndex: ModelIndex;
  /** The loaded components, by name. */
  readonly components: Readonly<Record<string, ComponentInfo>>;
  readonly #snapshot: Snapshot;
  readonly #ort: OrtModule;
  readonly #runtime: RuntimeEnvironment;
  readonly #device: PerComponent<Device> | undefined;
  readonly #logSeverityLevel: LogSeverityLevel | undefined;

  /** @internal Repositories come from `loadRepository`. */
  constructor(
    snapshot: Snapshot,
    modelIndex: ModelIndex,
    components: Record<string, ComponentInfo>,
    runtime: {
      ort: OrtModule;
      environment: RuntimeEnvironment;
      device: PerComponent<Device> | undefined;
      logSeverityLevel?: LogSeverityLevel;
    },
  ) {
    this.name = snapshot.name;
    this.commit = snapshot.commit;
    this.modelIndex = modelIndex;
    this.components = components;
    this.#snapshot = snapshot;
    this.#ort = runtime.ort;
    this.#runtime = runtime.environment;
    this.#device = runtime.device;
    this.#logSeverityLevel = runtime.logSeverityLevel;
  }

  #component(name: string): ComponentInfo {
    const component = this.components[name];
    if (!component && !this.modelIndex.components.some((c) => c.name === name)) {
      throw new ModelLoadError(
        'INVALID_MODEL',
        `model_index.json of ${this.name} declares no component "${name}" as ["library", "ClassName"]; it lists: ` +
          `${this.modelIndex.components.map((c) => c.name).join(', ') || 'none'}. Add the component to the repository.`,
        { repo: this.name, file: 'model_index.json' },
      );
    }
    if (!component) {
      throw new InvalidArgumentError(
        `${this.name} has no loaded component "${name}"; it has: ${Object.keys(this.components).join(', ')}.`,
      );
    }
    return component;
  }

  /** The text of a file of the repository (relative path, e.g. `'scheduler/scheduler_config.json'`). */
  async readText(path: string): Promise<string> {
    if (!this.#snapshot.files.has(path)) {
      throw new ModelLoadError('FILE_NOT_FOUND', `${path} is not in ${this.name}.`, { repo: this.name, file: path });
    }
    return this.#snapshot.readText(path);
  }

  /**
   * A component's JSON config (`config.json`, `scheduler_config.json`, `tokenizer_config.json`...), parsed.
   *
   * @param path - relative to the repository root
   * @throws `ModelLoadError` `INVALID_MODEL` when the file is not JSON
   */
  async readJson(path: string): Promise<unknown> {
    const text = await this.readText(path);
    try {
      return JSON.parse(text);
    } catch (cause) {
      throw new ModelLoadError(
        'INVALID_MODEL',
        `${path} of ${this.name} is not valid JSON. Re-download the model (delete it from the cache) or fix the file.`,
        { repo: this.name, file: path },
        { cause },
      );
    }
  }

  /** The absolute path of a file on disk (Node); undefined for browser-cached repositories. */
  localPath(path: string): string | undefined {
    return this.#snapshot.localPath(path);
  }

  /**
   * The device `createSession` opens `component` on when not told otherwise: the `device` option this repository
   * was loaded with, for that component (`'auto'` when it gave none).
   *
   * @param component - a component name, e.g. `'unet'`
   */
  deviceOf(component: string): Device {
    return pick(this.#device, component, 'auto');
  }

  /**
   * Opens the ONNX graph of a component.
   *
   * @param component - e.g. `'unet'`, `'text_encoder'`, `'vae_decoder'`
   * @param options - session options; `device` defaults to the repository's per-component choice,
   * `logSeverityLevel` to the one the repository was loaded with
   */
  async createSession(component: string, options: SessionOptions = {}): Promise<ModelSession> {
    const info = this.#component(component);
    if (!info.model) {
      // An ONNX export declares its graphs as OnnxRuntimeModel: a missing file is a broken repository, not a misuse.
      if (info.className === 'OnnxRuntimeModel') {
        throw new ModelLoadError(
          'FILE_NOT_FOUND',
          `${this.name} declares "${component}" as an ONNX model, but ${component}/ holds no .onnx graph ` +
            `(files: ${info.files.join(', ') || 'none'}). Re-export or re-upload ${component}/model.onnx.`,
          { repo: this.name, file: `${component}/model.onnx` },
        );
      }
      throw new InvalidArgumentError(
        `Component "${component}" of ${this.name} has no ONNX graph (it is a ${info.className}).`,
      );
    }
    const source = await this.#snapshot.modelSource(info.model);
    return createSession(this.#ort, this.#runtime, source, {
      logSeverityLevel: this.#logSeverityLevel,
      ...options,
      device: options.device ?? this.deviceOf(component),
      name: component,
      repo: this.name,
      file: info.model.file,
    });
  }
}

/**
 * Loads a repository from a {@link Snapshot}: reads `model_index.json`, picks each component's files and makes
 * them available locally (downloading what is missing), with progress events.
 */
export async function loadFromSnapshot(
  snapshot: Snapshot,
  options: RepositoryOptions,
  runtime: { ort: OrtModule; environment: RuntimeEnvironment },
): Promise<ModelRepository> {
  const name = snapshot.name;
  const indexSize = snapshot.files.get('model_index.json');
  if (indexSize === undefined) {
    throw new ModelLoadError(
      'INVALID_MODEL',
      `${name} has no model_index.json, so it is not a diffusers pipeline repository. Point at the folder (or repository) ` +
        'that holds model_index.json, or export the model with diffusers or Optimum.',
      { repo: name, file: 'model_index.json' },
    );
  }
  const indexProgress = new ProgressTracker(name, indexSize, undefined);
  await snapshot.fetchFiles(['model_index.json'], indexProgress);
  const modelIndex = parseModelIndex(await snapshot.readText('model_index.json'), name);

  const wanted = options.components ?? modelIndex.components.map((c) => c.name);
  const components = wanted.map((componentName) => {
    const spec = modelIndex.components.find((c) => c.name === componentName);
    if (!spec) {
      throw new InvalidArgumentError(
        `${name} has no component "${componentName}"; model_index.json lists: ${modelIndex.components.map((c) => c.name).join(', ')}.`,
      );
    }
    return spec;
  });
  const paths = new Set(snapshot.files.keys());
  const selection: FileSelection = selectFiles(paths, components, (c) => pick(options.dtype, c, 'fp32'));
  const total = selection.files.reduce((sum, f) => sum + (snapshot.files.get(f) ?? 0), 0);
  const progress = new ProgressTracker(name, total, options.progressCallback);
  throwIfAborted(options.signal, `loading ${name}`);
  await snapshot.fetchFiles(selection.files, progress);
  progress.ready();

  const byName: Record<string, ComponentInfo> = {};
  for (const spec of components) {
    const files = selection.files.filter((f) => f.startsWith(`${spec.name}/`));
    byName[spec.name] = { ...spec, model: selection.models[spec.name], files };
  }
  return new ModelRepository(snapshot, modelIndex, byName, {
    ...runtime,
    device: options.device,
    logSeverityLevel: options.logSeverityLevel,
  });
}

import type { OnnxModelFiles } from './model-files.js';
import type { ProgressTracker } from './progress.js';

/** How an ONNX graph reaches the runtime: a file path (Node) or bytes (browser), with its external data. */
export interface ModelSource {
  /** The `.onnx` file's path on disk, or its bytes. */
  model: string | Uint8Array;
  /**
   * External-data files for runtimes that cannot read them next to a path: `path` is the name the graph
   * refers to, `data` the bytes. Empty when `model` is a path (the runtime finds them beside it).
   */
  externalData: {
    /** The file name the graph refers to. */
    path: string;
    /** Its bytes. */
    data: Uint8Array;
  }[];
}

/**
 * One revision of a model repository, wherever it lives: the Hub through the Hugging Face cache (Node), the Hub
 * through Cache Storage (browser), or a local directory.
 */
export interface Snapshot {
  /** The repository id or directory, as the caller gave it. */
  readonly name: string;
  /** The commit, for Hub repositories. */
  readonly commit: string | undefined;
  /** Every file of the revision (relative path → size in bytes). */
  readonly files: ReadonlyMap<string, number>;
  /** Makes `paths` available locally (downloading what is missing), reporting bytes to `progress`. */
  fetchFiles(paths: readonly string[], progress: ProgressTracker): Promise<void>;
  /** The text of a fetched file. */
  readText(path: string): Promise<string>;
  /** What the runtime needs to open a fetched ONNX graph. */
  modelSource(model: OnnxModelFiles): Promise<ModelSource>;
  /** The absolute path of a fetched file on disk, when the snapshot is on disk. */
  localPath(path: string): string | undefined;
}

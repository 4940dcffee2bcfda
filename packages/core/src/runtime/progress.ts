/**
 * Download progress, reported in the shape transformers.js uses so that existing progress bars work unchanged,
 * plus one overall event per update so a single bar can cover every file of a model.
 */

/** A file is about to be looked up (in the cache, a local directory or on the Hub). */
export interface InitiateProgress {
  /** The phase. */
  status: 'initiate';
  /** The repository id or local directory. */
  name: string;
  /** The file, relative to the repository root. */
  file: string;
}

/** A file was not in the cache and its download starts. */
export interface DownloadProgress {
  /** The phase. */
  status: 'download';
  /** The repository id or local directory. */
  name: string;
  /** The file, relative to the repository root. */
  file: string;
}

/** Bytes of one file arrived. */
export interface FileProgress {
  /** The phase. */
  status: 'progress';
  /** The repository id or local directory. */
  name: string;
  /** The file, relative to the repository root. */
  file: string;
  /** Bytes received so far. */
  loaded: number;
  /** The file's size in bytes. */
  total: number;
  /** `loaded / total` in percent, 0 to 100. */
  progress: number;
}

/** Bytes arrived, counted over every file the load needs (files already cached count as loaded). */
export interface TotalProgress {
  /** The phase. */
  status: 'progress_total';
  /** The repository id or local directory. */
  name: string;
  /** Bytes available so far over all files. */
  loaded: number;
  /** Bytes of all the files the load needs. */
  total: number;
  /** `loaded / total` in percent, 0 to 100. */
  progress: number;
}

/** A file is complete and verified (or was already cached). */
export interface DoneProgress {
  /** The phase. */
  status: 'done';
  /** The repository id or local directory. */
  name: string;
  /** The file, relative to the repository root. */
  file: string;
}

/** Every file of the model is available. */
export interface ReadyProgress {
  /** The phase. */
  status: 'ready';
  /** The repository id or local directory. */
  name: string;
  /** The same as `name`, as transformers.js reports it. */
  model: string;
}

/** Any progress event. Branch on `status`. */
export type ProgressInfo =
  | InitiateProgress
  | DownloadProgress
  | FileProgress
  | TotalProgress
  | DoneProgress
  | ReadyProgress;

/** Receives {@link ProgressInfo} events while a model loads. */
export type ProgressCallback = (info: ProgressInfo) => void;

function percent(loaded: number, total: number): number {
  return total > 0 ? (100 * loaded) / total : 100;
}

/** Turns byte counts of several files into per-file and overall events for one model. */
export class ProgressTracker {
  readonly #name: string;
  readonly #callback: ProgressCallback | undefined;
  readonly #total: number;
  #loaded = 0;

  /**
   * @param name - the repository id or directory, echoed in every event
   * @param totalBytes - the bytes of every file the load needs
   * @param callback - the caller's callback, if any
   */
  constructor(name: string, totalBytes: number, callback: ProgressCallback | undefined) {
    this.#name = name;
    this.#total = totalBytes;
    this.#callback = callback;
  }

  /** Reports a phase of one file. */
  status(status: 'initiate' | 'download' | 'done', file: string): void {
    this.#callback?.({ status, name: this.#name, file });
  }

  /** Reports that `delta` more bytes of `file` arrived, `loaded` of `total` in all. */
  bytes(file: string, delta: number, loaded: number, total: number): void {
    this.#loaded += delta;
    if (!this.#callback) return;
    this.#callback({ status: 'progress', name: this.#name, file, loaded, total, progress: percent(loaded, total) });
    this.#totalEvent();
  }

  /** Reports that every file is available. */
  ready(): void {
    this.#callback?.({ status: 'ready', name: this.#name, model: this.#name });
  }

  #totalEvent(): void {
    this.#callback?.({
      status: 'progress_total',
      name: this.#name,
      loaded: this.#loaded,
      total: this.#total,
      progress: percent(this.#loaded, this.#total),
    });
  }

  /** Counts a file that was already available as fully loaded. */
  cached(bytes: number): void {
    this.#loaded += bytes;
    this.#totalEvent();
  }
}

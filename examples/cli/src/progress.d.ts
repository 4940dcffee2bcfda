/** Types of `progress.js`, for the TypeScript tests. */

/** A progress bar with one phase at a time. */
export interface ProgressBar {
  /** Begins a phase (a download, the denoising loop). */
  start(label: string, total: number): void;
  /** Reports progress; `total` may change mid-phase. */
  update(done: number, total?: number): void;
  /** Ends the current phase, if any. */
  stop(): void;
}

/** Creates the progress bar the CLI draws on `stream`, with `cli-progress` when `loadCliProgress` gives it. */
export function createProgressBar(options?: {
  stream?: NodeJS.WriteStream;
  loadCliProgress?: () => Promise<unknown>;
}): Promise<ProgressBar>;

/**
 * Progress bars for downloads and denoising. `cli-progress` draws them when it is installed; without it a plain
 * reporter prints one line per phase, so the CLI never depends on a package being present to work.
 */

/**
 * @typedef {object} ProgressBar
 * @property {(label: string, total: number) => void} start - begins a phase (a file download, the denoising loop)
 * @property {(done: number, total?: number) => void} update - reports progress; `total` may change mid-phase
 * @property {() => void} stop - ends the current phase, if any
 */

/**
 * Creates the progress bar the CLI draws on `stream`.
 *
 * @param {object} [options]
 * @param {NodeJS.WriteStream} [options.stream] - where bars go (stderr by default, so stdout stays parseable)
 * @param {() => Promise<{ SingleBar: new (...args: unknown[]) => any }>} [options.loadCliProgress] - how to load
 *   `cli-progress`; injected by tests, and rejected when it is not installed
 * @returns {Promise<ProgressBar>}
 */
export async function createProgressBar({
  stream = process.stderr,
  loadCliProgress = () => import('cli-progress'),
} = {}) {
  try {
    const cliProgress = await loadCliProgress();
    const SingleBar = cliProgress.SingleBar ?? cliProgress.default?.SingleBar;
    if (typeof SingleBar === 'function') return cliProgressBar(SingleBar, stream);
  } catch {
    // Not installed: fall through to the plain reporter.
  }
  return plainProgressBar(stream);
}

function cliProgressBar(SingleBar, stream) {
  const bar = new SingleBar({
    stream,
    format: '{label} [{bar}] {value}/{total} {unit} | {duration_formatted}',
    barCompleteChar: '#',
    barIncompleteChar: '-',
    hideCursor: true,
    clearOnComplete: false,
  });
  let active = false;
  // Downloads count bytes, shown in KiB; the denoising loop counts steps.
  let bytes = false;
  return {
    start(label, total) {
      if (active) bar.stop();
      bytes = label.startsWith('download');
      bar.start(bytes ? Math.ceil(total / 1024) : total, 0, { label, unit: bytes ? 'KiB' : '' });
      active = true;
    },
    update(done, total) {
      if (!active) return;
      if (total !== undefined) bar.setTotal(bytes ? Math.ceil(total / 1024) : total);
      bar.update(bytes ? Math.floor(done / 1024) : done);
    },
    stop() {
      if (active) bar.stop();
      active = false;
    },
  };
}

function plainProgressBar(stream) {
  let phase;
  const draw = (end) => {
    const line = `${phase.label} ${phase.done}/${phase.total}`;
    if (stream.isTTY) stream.write(`\r${line}${end ? '\n' : ''}`);
    else if (end) stream.write(`${line}\n`);
  };
  return {
    start(label, total) {
      if (phase) draw(true);
      phase = { label, total, done: 0 };
    },
    update(done, total) {
      if (!phase) return;
      phase.done = done;
      if (total !== undefined) phase.total = total;
      draw(false);
    },
    stop() {
      if (phase) draw(true);
      phase = undefined;
    },
  };
}

import { AbortError, ModelLoadError } from '../errors.js';

/** Where downloaded bytes go: a temporary file (Node) or memory (browser). */
export interface ByteSink {
  /** Stores the next chunk. */
  write(chunk: Uint8Array): void | Promise<void>;
}

/** One file download. */
export interface DownloadRequest {
  /** The address to GET. */
  url: string;
  /** The repository id, for error messages. */
  repo: string;
  /** The file inside the repository, for error messages and progress. */
  file: string;
  /** The size the Hub listed; the download fails unless exactly this many bytes arrive. */
  size: number;
  /** Sent as a bearer token. */
  accessToken?: string;
  /** The fetch to use (with the caller's signal already attached). */
  fetch: typeof fetch;
  /** Cancels the download. */
  signal?: AbortSignal;
  /** A download that receives nothing for this long fails instead of hanging. */
  stallTimeoutMs: number;
  /** Called after each chunk with its length and the bytes received so far. */
  onBytes(delta: number, loaded: number): void;
}

function failure(request: DownloadRequest, why: string, cause?: unknown): ModelLoadError {
  return new ModelLoadError(
    'DOWNLOAD_FAILED',
    `Downloading ${request.file} of ${request.repo} failed: ${why}. Nothing was added to the cache; run the load ` +
      'again to retry (check the network, or `hubUrl`).',
    { repo: request.repo, file: request.file },
    { cause },
  );
}

function httpError(request: DownloadRequest, status: number): ModelLoadError {
  const where = { repo: request.repo, file: request.file };
  if (status === 401 || status === 403) {
    return new ModelLoadError(
      'UNAUTHORIZED',
      `The Hub refused ${request.file} of ${request.repo} (HTTP ${status}). Accept the repository's terms on the Hub ` +
        'and pass `accessToken` (an hf_... token with read access).',
      where,
    );
  }
  if (status === 404) {
    return new ModelLoadError(
      'FILE_NOT_FOUND',
      `${request.file} of ${request.repo} was not found (HTTP 404). Check the revision; the file may have been removed.`,
      where,
    );
  }
  return failure(request, `the server answered HTTP ${status}`);
}

async function readWithTimeout(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  request: DownloadRequest,
): Promise<ReadableStreamReadResult<Uint8Array>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(failure(request, `no data arrived for ${request.stallTimeoutMs} ms`)),
      request.stallTimeoutMs,
    );
  });
  try {
    return await Promise.race([reader.read(), stalled]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Streams one file into `sink`, checking that exactly `request.size` bytes arrive. Throws
 * `ModelLoadError` (`DOWNLOAD_FAILED`, `UNAUTHORIZED`, `FILE_NOT_FOUND`) or `AbortError`; the caller
 * discards the sink's contents on any throw.
 */
export async function downloadTo(sink: ByteSink, request: DownloadRequest): Promise<void> {
  const aborted = () => new AbortError(`Download of ${request.file} of ${request.repo} was aborted.`);
  let response: Response;
  try {
    const headers: Record<string, string> = request.accessToken
      ? { Authorization: `Bearer ${request.accessToken}` }
      : {};
    // Called as a plain function: browsers reject `fetch` invoked as a method of any object but `window`.
    const fetchFile = request.fetch;
    response = await fetchFile(request.url, { headers, signal: request.signal });
  } catch (cause) {
    if (request.signal?.aborted) throw aborted();
    throw failure(request, cause instanceof Error ? cause.message : String(cause), cause);
  }
  if (!response.ok) throw httpError(request, response.status);

  let loaded = 0;
  const reader = response.body?.getReader();
  try {
    // A body-less answer is an empty file; the size check below decides whether that is right.
    while (reader) {
      const { done, value } = await readWithTimeout(reader, request);
      if (done) break;
      loaded += value.byteLength;
      if (loaded > request.size) throw failure(request, `the server sent more than the ${request.size} bytes listed`);
      await sink.write(value);
      request.onBytes(value.byteLength, loaded);
    }
  } catch (cause) {
    await reader?.cancel().catch(() => undefined);
    if (request.signal?.aborted) throw aborted();
    if (cause instanceof ModelLoadError) throw cause;
    throw failure(request, `the connection broke after ${loaded} of ${request.size} bytes`, cause);
  }
  if (loaded !== request.size) {
    throw failure(request, `the connection closed after ${loaded} of ${request.size} bytes`);
  }
}

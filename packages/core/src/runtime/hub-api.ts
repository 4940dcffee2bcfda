import { HubApiError, listFiles, modelInfo } from '@huggingface/hub';
import { AbortError, ModelLoadError } from '../errors.js';

/** Where and how to reach the Hub. Everything is passed through to `@huggingface/hub` and to file downloads. */
export interface HubOptions {
  /** A branch, tag or commit hash. Default `'main'`. */
  revision?: string;
  /** The Hub's address, for mirrors and tests. Default `https://huggingface.co`. */
  hubUrl?: string;
  /** A Hugging Face access token (`hf_...`) for gated and private repositories. */
  accessToken?: string;
  /** A replacement for the global `fetch` (proxies, custom headers). */
  fetch?: typeof fetch;
  /** Cancels every request. */
  signal?: AbortSignal;
}

/** A file of a repository at one commit, as the Hub lists it. */
export interface RemoteFile {
  /** Path relative to the repository root. */
  path: string;
  /** Size in bytes. */
  size: number;
  /** The Hub's etag: the SHA-256 of an LFS file, the git blob id of any other file. Names the cached blob. */
  etag: string;
  /** The SHA-256 of LFS files, to verify the download. */
  sha256: string | undefined;
  /** The git blob id of files stored in git itself (not LFS), to verify the download. */
  gitOid: string | undefined;
}

/** A repository revision resolved to a commit and its file list. */
export interface RemoteSnapshot {
  /** The 40-hex commit the revision points to. */
  commit: string;
  /** Every file of the repository at that commit. */
  files: RemoteFile[];
}

const DEFAULT_HUB_URL = 'https://huggingface.co';

/** The `resolve` address of a file at a commit. */
export function resolveUrl(repo: string, commit: string, path: string, hubUrl = DEFAULT_HUB_URL): string {
  const encodedPath = path.split('/').map(encodeURIComponent).join('/');
  return `${hubUrl.replace(/\/+$/, '')}/${repo}/resolve/${commit}/${encodedPath}`;
}

/** The caller's `fetch` with the caller's `signal` added to every request. */
export function fetchWithSignal(options: HubOptions): typeof fetch {
  const base = options.fetch ?? globalThis.fetch;
  const signal = options.signal;
  if (!signal) return base;
  return (input, init) =>
    base(input, { ...init, signal: init?.signal ? AbortSignal.any([signal, init.signal]) : signal });
}

/**
 * Rejects repository file names that would escape the folder they are written to: `..` segments, absolute,
 * drive and UNC paths (POSIX and Windows rules both apply, since a cache may move between systems).
 */
export function assertSafeRelativePath(path: string, repo: string): void {
  const segments = path.replace(/\\/g, '/').split('/');
  const escapes =
    segments.includes('..') ||
    path.startsWith('/') ||
    path.startsWith('\\') ||
    segments.some((s) => /^[a-zA-Z]:/.test(s));
  if (escapes || path === '' || segments.includes('')) {
    throw new ModelLoadError(
      'INVALID_MODEL',
      `Repository ${repo} lists the file "${path}", whose name would escape the model folder. Refusing to load it; ` +
        'ask the repository owner to rename the file.',
      { repo, file: path },
    );
  }
}

/**
 * Converts a failure of a Hub call into a `ModelLoadError` (or `AbortError`) that names the
 * repository, the file and what to do.
 */
export function toLoadError(error: unknown, repo: string, revision: string, file?: string): Error {
  if (error instanceof ModelLoadError || error instanceof AbortError) return error;
  const where = file ? `${file} of ${repo} (revision ${revision})` : `${repo} (revision ${revision})`;
  if (error instanceof Error && error.name === 'AbortError')
    return new AbortError(`Loading ${where} was aborted.`, { cause: error });
  const status = error instanceof HubApiError ? error.statusCode : undefined;
  if (status === 401 || status === 403) {
    return new ModelLoadError(
      'UNAUTHORIZED',
      `The Hub refused access to ${where} (HTTP ${status}). If the repository is gated or private, accept its terms on ` +
        'the Hub and pass `accessToken` (an hf_... token with read access).',
      { repo, file },
      { cause: error },
    );
  }
  if (status === 404) {
    return new ModelLoadError(
      file ? 'FILE_NOT_FOUND' : 'MODEL_NOT_FOUND',
      `${where} was not found on the Hub (HTTP 404). Check the repository id and the revision; a private repository ` +
        'also answers 404 without `accessToken`.',
      { repo, file },
      { cause: error },
    );
  }
  const reason = error instanceof Error ? error.message : String(error);
  return new ModelLoadError(
    'DOWNLOAD_FAILED',
    `Could not fetch ${where}: ${reason}. Check the network (or \`hubUrl\`) and retry, or pass ` +
      '`localFilesOnly: true` to use files already in the cache.',
    { repo, file },
    { cause: error },
  );
}

/**
 * Resolves `revision` to a commit and lists the repository's files at that commit, with `@huggingface/hub`.
 *
 * @param repo - `'org/name'`
 */
export async function fetchRemoteSnapshot(repo: string, options: HubOptions): Promise<RemoteSnapshot> {
  const revision = options.revision ?? 'main';
  const hubUrl = options.hubUrl?.replace(/\/+$/, '');
  const hub = { hubUrl, accessToken: options.accessToken, fetch: fetchWithSignal(options) };
  try {
    const info = await modelInfo({ ...hub, name: repo, revision, additionalFields: ['sha'] });
    const commit = info.sha;
    if (typeof commit !== 'string' || !/^[0-9a-f]{40}$/.test(commit)) {
      throw new ModelLoadError(
        'DOWNLOAD_FAILED',
        `The Hub did not return a commit for ${repo} at revision ${revision}. Check \`hubUrl\` points at a Hugging Face Hub.`,
        { repo },
      );
    }
    const files: RemoteFile[] = [];
    for await (const entry of listFiles({ ...hub, repo, revision: commit, recursive: true })) {
      if (entry.type !== 'file') continue;
      assertSafeRelativePath(entry.path, repo);
      const sha256 = entry.lfs?.oid;
      const etag = sha256 ?? entry.oid;
      if (!etag)
        throw new ModelLoadError('DOWNLOAD_FAILED', `The Hub listed ${entry.path} of ${repo} without an id.`, { repo });
      const gitOid = sha256 ? undefined : entry.oid;
      files.push({ path: entry.path, size: entry.lfs?.size ?? entry.size, etag, sha256, gitOid });
    }
    return { commit, files };
  } catch (error) {
    throw toLoadError(error, repo, revision);
  }
}

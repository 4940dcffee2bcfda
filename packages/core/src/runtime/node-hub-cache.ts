/**
 * Hub repositories in the Hugging Face cache on disk, in the layout Python's `huggingface_hub` uses, so that
 * models downloaded from Python are reused and vice versa:
 *
 * ```
 * <cacheDir>/models--<org>--<name>/
 *   blobs/<etag>                      file contents, named by SHA-256 (LFS) or git blob id
 *   refs/<revision>                   the commit a branch or tag pointed to when last resolved
 *   snapshots/<commit>/<path>         relative symlink to ../../blobs/<etag>
 * ```
 */
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdir, open, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { getHFHubCachePath } from '@huggingface/hub';
import { ModelLoadError } from '../errors.js';
import { downloadTo } from './download.js';
import {
  assertSafeRelativePath,
  fetchRemoteSnapshot,
  fetchWithSignal,
  type HubOptions,
  type RemoteFile,
  resolveUrl,
} from './hub-api.js';
import type { OnnxModelFiles } from './model-files.js';
import type { ProgressTracker } from './progress.js';
import type { ModelSource, Snapshot } from './snapshot.js';

/** Options of a Hub repository in the on-disk cache. */
export interface HubCacheOptions extends HubOptions {
  /** The cache root. Default: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`. */
  cacheDir?: string;
  /** Never touch the network: use what the cache holds, or fail. */
  localFilesOnly?: boolean;
  /** A download that receives nothing for this long fails instead of hanging. Default 60 s. */
  stallTimeoutMs?: number;
}

const COMMIT = /^[0-9a-f]{40}$/;

/** The cache folder of a model repository: `models--org--name`. */
export function repoCacheFolder(cacheDir: string, repo: string): string {
  return join(cacheDir, `models--${repo.split('/').join('--')}`);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function listSnapshotFiles(root: string, prefix = ''): Promise<Map<string, number>> {
  const files = new Map<string, number>();
  for (const entry of await readdir(join(root, prefix), { withFileTypes: true })) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    const info = await stat(join(root, path)).catch(() => undefined);
    if (!info) continue; // a dangling link: its blob was deleted, so the file is not available
    if (info.isDirectory()) for (const [p, s] of await listSnapshotFiles(root, path)) files.set(p, s);
    else files.set(path, info.size);
  }
  return files;
}

/** Hashes a file the way the Hub names it: SHA-256 of the bytes (LFS) or the git blob id. */
function hasher(file: RemoteFile) {
  if (file.sha256) return { hash: createHash('sha256'), expected: file.sha256 };
  const hash = createHash('sha1');
  hash.update(`blob ${file.size}\0`);
  return { hash, expected: file.gitOid };
}

class HubCacheSnapshot implements Snapshot {
  readonly name: string;
  readonly commit: string;
  readonly files: ReadonlyMap<string, number>;
  readonly #folder: string;
  readonly #remote: ReadonlyMap<string, RemoteFile> | undefined;
  readonly #options: HubCacheOptions;

  constructor(
    repo: string,
    commit: string,
    folder: string,
    files: ReadonlyMap<string, number>,
    remote: ReadonlyMap<string, RemoteFile> | undefined,
    options: HubCacheOptions,
  ) {
    this.name = repo;
    this.commit = commit;
    this.files = files;
    this.#folder = folder;
    this.#remote = remote;
    this.#options = options;
  }

  localPath(path: string): string {
    return join(this.#folder, 'snapshots', this.commit, path);
  }

  async fetchFiles(paths: readonly string[], progress: ProgressTracker): Promise<void> {
    for (const path of paths) {
      progress.status('initiate', path);
      const size = this.files.get(path);
      if (size === undefined) {
        throw new ModelLoadError(
          'FILE_NOT_FOUND',
          `${path} is not in ${this.name} at commit ${this.commit}${this.#remote ? '' : ' in the local cache'}. ` +
            (this.#remote ? 'Check the repository layout.' : 'Load once without `localFilesOnly` to download it.'),
          { repo: this.name, file: path },
        );
      }
      const pointer = this.localPath(path);
      const remote = this.#remote?.get(path);
      // Offline, `files` lists only what the snapshot holds, so every listed file is present.
      const present = (await stat(pointer).catch(() => undefined))?.size === size;
      if (remote && !present) await this.#fetchBlob(remote, pointer, progress);
      else progress.cached(size);
      progress.status('done', path);
    }
  }

  async #fetchBlob(file: RemoteFile, pointer: string, progress: ProgressTracker): Promise<void> {
    const blob = join(this.#folder, 'blobs', file.etag);
    await mkdir(dirname(blob), { recursive: true });
    if ((await stat(blob).catch(() => undefined))?.size === file.size) {
      progress.cached(file.size);
    } else {
      progress.status('download', file.path);
      await this.#download(file, blob, progress);
    }
    await mkdir(dirname(pointer), { recursive: true });
    // A relative link keeps the cache valid when it is moved, as huggingface_hub does; copy where links are refused
    // (Windows without developer mode). Made under a private name and renamed, so that a concurrent load never
    // sees the pointer missing or half-written.
    const temporary = `${pointer}.${randomBytes(6).toString('hex')}.incomplete`;
    await symlink(relative(dirname(pointer), blob), temporary).catch(() => copyFile(blob, temporary));
    await rename(temporary, pointer);
  }

  /** Downloads into a private temporary file and renames it to the blob only once size and hash match. */
  async #download(file: RemoteFile, blob: string, progress: ProgressTracker): Promise<void> {
    const temporary = `${blob}.${randomBytes(6).toString('hex')}.incomplete`;
    const out = await open(temporary, 'w');
    const { hash, expected } = hasher(file);
    const { hubUrl, accessToken, signal } = this.#options;
    try {
      await downloadTo(
        {
          write: async (chunk) => {
            hash.update(chunk);
            await out.write(chunk);
          },
        },
        {
          url: resolveUrl(this.name, this.commit, file.path, hubUrl),
          repo: this.name,
          file: file.path,
          size: file.size,
          accessToken,
          fetch: fetchWithSignal(this.#options),
          signal,
          stallTimeoutMs: this.#options.stallTimeoutMs ?? 60_000,
          onBytes: (delta, loaded) => progress.bytes(file.path, delta, loaded, file.size),
        },
      );
      await out.close();
      const actual = hash.digest('hex');
      if (expected && actual !== expected) {
        throw new ModelLoadError(
          'DOWNLOAD_FAILED',
          `${file.path} of ${this.name} arrived corrupted: its hash is ${actual}, the Hub lists ${expected}. ` +
            'Nothing was cached; run the load again to retry.',
          { repo: this.name, file: file.path },
        );
      }
      await rename(temporary, blob);
    } catch (error) {
      await out.close().catch(() => undefined);
      await rm(temporary, { force: true });
      throw error;
    }
  }

  async readText(path: string): Promise<string> {
    return readFile(this.localPath(path), 'utf8');
  }

  async modelSource(model: OnnxModelFiles): Promise<ModelSource> {
    return { model: this.localPath(model.file), externalData: [] };
  }
}

async function cachedSnapshot(repo: string, folder: string, revision: string, options: HubCacheOptions) {
  const commit = COMMIT.test(revision)
    ? revision
    : await readFile(join(folder, 'refs', revision), 'utf8').then(
        (text) => text.trim(),
        () => undefined,
      );
  if (!commit || !(await exists(join(folder, 'snapshots', commit)))) return undefined;
  const files = await listSnapshotFiles(join(folder, 'snapshots', commit));
  return new HubCacheSnapshot(repo, commit, folder, files, undefined, options);
}

/**
 * Opens a Hub repository through the on-disk cache. Online, the revision is resolved on the Hub (and
 * `refs/<revision>` updated); offline (`localFilesOnly`, or when the Hub cannot be reached and the revision was
 * resolved before), the cached snapshot is used.
 *
 * @param repo - `'org/name'`
 */
export async function openHubCacheSnapshot(repo: string, options: HubCacheOptions = {}): Promise<Snapshot> {
  const revision = options.revision ?? 'main';
  assertSafeRelativePath(revision, repo);
  const cacheDir = options.cacheDir ?? getHFHubCachePath();
  const folder = repoCacheFolder(cacheDir, repo);
  if (options.localFilesOnly) {
    const cached = await cachedSnapshot(repo, folder, revision, options);
    if (cached) return cached;
    throw new ModelLoadError(
      'MODEL_NOT_FOUND',
      `${repo} (revision ${revision}) is not in the cache at ${cacheDir} and \`localFilesOnly\` forbids downloading it. ` +
        'Load it once online, or point `cacheDir` (or HF_HUB_CACHE) at the cache that has it.',
      { repo },
    );
  }
  let remote: Awaited<ReturnType<typeof fetchRemoteSnapshot>>;
  try {
    remote = await fetchRemoteSnapshot(repo, options);
  } catch (error) {
    // As huggingface_hub does: when the Hub cannot be reached, a revision resolved before is used from the cache.
    const offline = error instanceof ModelLoadError && error.code === 'DOWNLOAD_FAILED' && !options.signal?.aborted;
    const cached = offline ? await cachedSnapshot(repo, folder, revision, options) : undefined;
    if (cached) return cached;
    throw error;
  }
  if (revision !== remote.commit) {
    await mkdir(join(folder, 'refs', dirname(revision)), { recursive: true });
    await writeFile(join(folder, 'refs', revision), remote.commit);
  }
  await mkdir(join(folder, 'snapshots', remote.commit), { recursive: true });
  const files = new Map(remote.files.map((f) => [f.path, f.size]));
  const byPath = new Map(remote.files.map((f) => [f.path, f]));
  return new HubCacheSnapshot(repo, remote.commit, folder, files, byPath, options);
}

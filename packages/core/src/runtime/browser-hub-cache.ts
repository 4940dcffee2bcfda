/**
 * Hub repositories in the browser's Cache Storage. Files are stored under their `resolve` address at a commit
 * (immutable), and a small manifest per revision records the commit and file list so that `localFilesOnly`
 * works offline.
 */
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

/** Options of a Hub repository in Cache Storage. */
export interface BrowserCacheOptions extends HubOptions {
  /** The Cache Storage cache to use. Default `'denoise-models'`. */
  cacheName?: string;
  /** Never touch the network: use what the cache holds, or fail. */
  localFilesOnly?: boolean;
  /** A download that receives nothing for this long fails instead of hanging. Default 60 s. */
  stallTimeoutMs?: number;
}

interface Manifest {
  commit: string;
  files: RemoteFile[];
}

function manifestKey(repo: string, revision: string, hubUrl: string | undefined): string {
  return `${hubUrl ?? 'https://huggingface.co'}/.denoise/manifests/${repo}/${encodeURIComponent(revision)}.json`;
}

async function digestHex(algorithm: 'SHA-256' | 'SHA-1', bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest(algorithm, bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function hashOf(file: RemoteFile, bytes: Uint8Array): Promise<{ actual: string; expected: string | undefined }> {
  if (file.sha256) return { actual: await digestHex('SHA-256', bytes), expected: file.sha256 };
  const header = new TextEncoder().encode(`blob ${file.size}\0`);
  const withHeader = new Uint8Array(header.length + bytes.length);
  withHeader.set(header);
  withHeader.set(bytes, header.length);
  return { actual: await digestHex('SHA-1', withHeader), expected: file.gitOid };
}

class BrowserCacheSnapshot implements Snapshot {
  readonly files: ReadonlyMap<string, number>;
  readonly #byPath: ReadonlyMap<string, RemoteFile>;

  constructor(
    readonly name: string,
    readonly commit: string,
    manifest: Manifest,
    private readonly cache: Cache,
    private readonly options: BrowserCacheOptions,
    private readonly online: boolean,
  ) {
    this.files = new Map(manifest.files.map((f) => [f.path, f.size]));
    this.#byPath = new Map(manifest.files.map((f) => [f.path, f]));
  }

  localPath(): undefined {
    return undefined;
  }

  #url(path: string): string {
    return resolveUrl(this.name, this.commit, path, this.options.hubUrl);
  }

  async fetchFiles(paths: readonly string[], progress: ProgressTracker): Promise<void> {
    for (const path of paths) {
      progress.status('initiate', path);
      const file = this.#byPath.get(path);
      if (!file) {
        throw new ModelLoadError('FILE_NOT_FOUND', `${path} is not in ${this.name} at commit ${this.commit}.`, {
          repo: this.name,
          file: path,
        });
      }
      if (await this.cache.match(this.#url(path))) {
        progress.cached(file.size);
      } else if (!this.online) {
        throw new ModelLoadError(
          'FILE_NOT_FOUND',
          `${path} of ${this.name} is not in the browser cache and \`localFilesOnly\` forbids downloading it.`,
          { repo: this.name, file: path },
        );
      } else {
        progress.status('download', path);
        await this.#download(file, progress);
      }
      progress.status('done', path);
    }
  }

  /** Downloads into memory and stores the file only once its size and hash match. */
  async #download(file: RemoteFile, progress: ProgressTracker): Promise<void> {
    const bytes = new Uint8Array(file.size);
    let offset = 0;
    await downloadTo(
      {
        write: (chunk) => {
          bytes.set(chunk, offset);
          offset += chunk.byteLength;
        },
      },
      {
        url: this.#url(file.path),
        repo: this.name,
        file: file.path,
        size: file.size,
        accessToken: this.options.accessToken,
        fetch: fetchWithSignal(this.options),
        signal: this.options.signal,
        stallTimeoutMs: this.options.stallTimeoutMs ?? 60_000,
        onBytes: (delta, loaded) => progress.bytes(file.path, delta, loaded, file.size),
      },
    );
    const { actual, expected } = await hashOf(file, bytes);
    if (expected && actual !== expected) {
      throw new ModelLoadError(
        'DOWNLOAD_FAILED',
        `${file.path} of ${this.name} arrived corrupted (hash ${actual}, expected ${expected}). Nothing was cached; load again to retry.`,
        { repo: this.name, file: file.path },
      );
    }
    await this.cache.put(
      this.#url(file.path),
      new Response(bytes, { headers: { 'content-length': String(file.size) } }),
    );
  }

  async #bytes(path: string): Promise<Uint8Array> {
    const response = await this.cache.match(this.#url(path));
    if (!response)
      throw new ModelLoadError('FILE_NOT_FOUND', `${path} of ${this.name} is not cached.`, {
        repo: this.name,
        file: path,
      });
    return new Uint8Array(await response.arrayBuffer());
  }

  async readText(path: string): Promise<string> {
    return new TextDecoder().decode(await this.#bytes(path));
  }

  async modelSource(model: OnnxModelFiles): Promise<ModelSource> {
    const folder = model.file.slice(0, model.file.lastIndexOf('/') + 1);
    const externalData = await Promise.all(
      model.externalData.map(async (path) => ({ path: path.slice(folder.length), data: await this.#bytes(path) })),
    );
    return { model: await this.#bytes(model.file), externalData };
  }
}

/**
 * Opens a Hub repository through Cache Storage.
 *
 * @param repo - `'org/name'`
 */
export async function openBrowserCacheSnapshot(repo: string, options: BrowserCacheOptions = {}): Promise<Snapshot> {
  const revision = options.revision ?? 'main';
  assertSafeRelativePath(revision, repo);
  const cache = await caches.open(options.cacheName ?? 'denoise-models');
  const key = manifestKey(repo, revision, options.hubUrl);
  const cachedManifest = async () => (await cache.match(key))?.json() as Promise<Manifest | undefined>;
  if (options.localFilesOnly) {
    const manifest = await cachedManifest();
    if (!manifest) {
      throw new ModelLoadError(
        'MODEL_NOT_FOUND',
        `${repo} (revision ${revision}) is not in this browser's cache and \`localFilesOnly\` forbids downloading it. Load it once online.`,
        { repo },
      );
    }
    return new BrowserCacheSnapshot(repo, manifest.commit, manifest, cache, options, false);
  }
  const manifest: Manifest = await fetchRemoteSnapshot(repo, options);
  await cache.put(key, new Response(JSON.stringify(manifest), { headers: { 'content-type': 'application/json' } }));
  return new BrowserCacheSnapshot(repo, manifest.commit, manifest, cache, options, true);
}

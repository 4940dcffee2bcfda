/**
 * A local stand-in for the Hugging Face Hub, for tests: it serves repositories built in memory over the endpoints
 * `@huggingface/hub` and denoise use (model info, tree listing, paths-info, resolve with range requests), with
 * the headers the real Hub sends, and hooks to inject faults (status codes, required auth, dropped or stalled
 * connections, wrong bytes).
 *
 * @example
 * ```ts
 * const hub = await HubServer.start();
 * const commit = hub.addRepo('org/tiny', { 'model_index.json': '{...}', 'unet/model.onnx': bytes });
 * await loadRepository('org/tiny', { hubUrl: hub.url, cacheDir });
 * await hub.close();
 * ```
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** What a test puts in a repository: path → contents. */
export type RepoFiles = Record<string, Uint8Array | string>;

/** One request as the server understood it, recorded in {@link HubServer.requests}. */
export interface HubRequest {
  /** Which endpoint. */
  kind: 'info' | 'tree' | 'paths-info' | 'resolve';
  /** `GET`, `HEAD` or `POST`. */
  method: string;
  /** `org/name`. */
  repo: string;
  /** The revision as requested (branch, tag or commit). */
  revision: string;
  /** The file, for `resolve`. */
  path?: string;
  /** The `Authorization` header, if any. */
  authorization?: string;
  /** The `Range` header, if any. */
  range?: string;
}

/** A fault to inject into one answer. */
export interface Fault {
  /** Answer with this HTTP status (and an empty JSON error body) instead. */
  status?: number;
  /** Send this many body bytes, then destroy the connection. */
  dropAfterBytes?: number;
  /** Send this many body bytes, then send nothing more (until the client gives up or the server closes). */
  stallAfterBytes?: number;
  /** Send these bytes instead of the file, with their own `Content-Length` (a wrong size or a wrong hash). */
  body?: Uint8Array;
}

interface StoredFile {
  bytes: Uint8Array;
  gitOid: string;
  sha256: string;
  lfs: boolean;
}

interface Commit {
  id: string;
  files: Map<string, StoredFile>;
}

interface Repo {
  branches: Map<string, Commit>;
  commits: Map<string, Commit>;
  token: string | undefined;
}

/** Files the Hub stores in LFS: weights and anything over 10 kB (as `.gitattributes` of diffusers repos do). */
function isLfs(path: string, size: number): boolean {
  return /\.(onnx|onnx_data|data|pb|bin|safetensors)$/.test(path) || size > 10_000;
}

/** The git blob id of `bytes`: SHA-1 of `blob <size>\0<bytes>`. */
export function gitBlobId(bytes: Uint8Array): string {
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

/** The SHA-256 of `bytes`, as hex. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function store(path: string, content: Uint8Array | string): StoredFile {
  // A copy: fixtures may be views of a Node Buffer pool, and tests compare served bytes with plain Uint8Arrays.
  const bytes = typeof content === 'string' ? new TextEncoder().encode(content) : new Uint8Array(content);
  return { bytes, gitOid: gitBlobId(bytes), sha256: sha256Hex(bytes), lfs: isLfs(path, bytes.length) };
}

/** The Hub's `etag` of a file: the SHA-256 of LFS files, the git blob id of others. */
function etagOf(file: StoredFile): string {
  return file.lfs ? file.sha256 : file.gitOid;
}

function treeEntry(path: string, file: StoredFile) {
  const entry: Record<string, unknown> = { type: 'file', path, size: file.bytes.length, oid: file.gitOid };
  if (file.lfs) entry.lfs = { oid: file.sha256, size: file.bytes.length, pointerSize: 134 };
  return entry;
}

/** A local Hub on 127.0.0.1 and a random port. */
export class HubServer {
  /** The base URL to pass as `hubUrl`. */
  readonly url: string;
  /** Every request, in arrival order. */
  readonly requests: HubRequest[] = [];
  /** Called for every request; return a {@link Fault} to inject it. */
  fault: ((request: HubRequest) => Fault | undefined) | undefined;
  readonly #server: Server;
  readonly #repos = new Map<string, Repo>();
  readonly #sockets = new Set<Socket>();
  #commitCounter = 0;

  private constructor(server: Server, url: string) {
    this.#server = server;
    this.url = url;
    server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  /** Starts a server on a free port. */
  static async start(): Promise<HubServer> {
    let hub: HubServer | undefined;
    const server = createServer((req, res) => {
      hub?.handle(req, res).catch((error: unknown) => {
        res.statusCode = 500;
        res.end(String(error));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    hub = new HubServer(server, `http://127.0.0.1:${address.port}`);
    return hub;
  }

  /**
   * Adds (or updates) a repository: a new commit on `revision` holding `files`.
   *
   * @param repo - `org/name`
   * @param files - path → contents
   * @param options - the branch or tag to point at the commit (default `main`), and a token the repository
   *   requires (then requests without `Authorization: Bearer <token>` get 401)
   * @returns the new commit's 40-hex id
   */
  addRepo(repo: string, files: RepoFiles, options: { revision?: string; token?: string } = {}): string {
    const existing = this.#repos.get(repo);
    const entry: Repo = existing ?? { branches: new Map(), commits: new Map(), token: undefined };
    entry.token = options.token ?? entry.token;
    const stored = new Map(Object.entries(files).map(([path, content]) => [path, store(path, content)]));
    this.#commitCounter += 1;
    const id = createHash('sha1')
      .update(`${repo}\n${this.#commitCounter}\n${[...stored].map(([p, f]) => `${p}:${f.gitOid}`).join('\n')}`)
      .digest('hex');
    const commit = { id, files: stored };
    entry.commits.set(id, commit);
    entry.branches.set(options.revision ?? 'main', commit);
    this.#repos.set(repo, entry);
    return id;
  }

  /** The bytes of a file of a repository at a revision, as served. */
  file(repo: string, path: string, revision = 'main'): Uint8Array {
    const file = this.#repos.get(repo)?.branches.get(revision)?.files.get(path);
    if (!file) throw new Error(`no ${path} in ${repo}@${revision}`);
    return file.bytes;
  }

  /** Stops the server and cuts every open connection (including stalled ones). */
  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #resolveRevision(repo: Repo, revision: string): Commit | undefined {
    return (
      repo.branches.get(revision) ??
      repo.commits.get(revision) ??
      (revision === 'HEAD' ? repo.branches.get('main') : undefined)
    );
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const segments = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const request = this.#parse(req, segments);
    if (!request) return error(res, 404, 'Not found', 'EntryNotFound');
    this.requests.push(request);

    const repo = this.#repos.get(request.repo);
    if (!repo) return error(res, 404, 'Repository not found', 'RepoNotFound');
    if (repo.token && request.authorization !== `Bearer ${repo.token}`) {
      return error(res, 401, 'Invalid credentials in Authorization header', 'GatedRepo');
    }
    const fault = this.fault?.(request);
    if (fault?.status) return error(res, fault.status, `Injected status ${fault.status}`, 'Injected');
    const commit = this.#resolveRevision(repo, request.revision);
    if (!commit) return error(res, 404, `Invalid rev id: ${request.revision}`, 'RevisionNotFound');

    switch (request.kind) {
      case 'info':
        return json(res, {
          _id: request.repo,
          id: request.repo,
          sha: commit.id,
          private: repo.token !== undefined,
          siblings: [...commit.files.keys()].map((rfilename) => ({ rfilename })),
        });
      case 'tree':
        return json(res, this.#tree(commit, request.path ?? '', url.searchParams.get('recursive') === 'true'));
      case 'paths-info': {
        const body = JSON.parse(await readBody(req)) as { paths: string[] };
        return json(
          res,
          body.paths.flatMap((p) => {
            const file = commit.files.get(p);
            return file
              ? [{ ...treeEntry(p, file), lastCommit: { id: commit.id, title: 'commit', date: new Date(0) } }]
              : [];
          }),
        );
      }
      case 'resolve':
        return this.#resolve(req, res, commit, request.path ?? '', fault);
    }
  }

  #parse(req: IncomingMessage, s: string[]): HubRequest | undefined {
    const base = { method: req.method ?? 'GET', authorization: req.headers.authorization, range: req.headers.range };
    if (s[0] === 'api' && s[1] === 'models' && s.length >= 6) {
      const repo = `${s[2]}/${s[3]}`;
      const kinds: Record<string, HubRequest['kind']> = { revision: 'info', tree: 'tree', 'paths-info': 'paths-info' };
      const kind = kinds[s[4]];
      if (!kind) return undefined;
      return { ...base, kind, repo, revision: s[5], path: s.slice(6).join('/') || undefined };
    }
    if (s.length >= 5 && s[2] === 'resolve') {
      return { ...base, kind: 'resolve', repo: `${s[0]}/${s[1]}`, revision: s[3], path: s.slice(4).join('/') };
    }
    return undefined;
  }

  #tree(commit: Commit, folder: string, recursive: boolean) {
    const prefix = folder ? `${folder}/` : '';
    const entries: Record<string, unknown>[] = [];
    const directories = new Set<string>();
    for (const [path, file] of commit.files) {
      if (!path.startsWith(prefix)) continue;
      const rest = path.slice(prefix.length).split('/');
      for (let depth = 1; depth < rest.length && (recursive || depth === 1); depth++) {
        directories.add(prefix + rest.slice(0, depth).join('/'));
      }
      if (recursive || rest.length === 1) entries.push(treeEntry(path, file));
    }
    const dirs = [...directories].map((path) => ({
      type: 'directory',
      path,
      size: 0,
      oid: gitBlobId(new TextEncoder().encode(path)),
    }));
    return [...dirs, ...entries];
  }

  #resolve(req: IncomingMessage, res: ServerResponse, commit: Commit, path: string, fault: Fault | undefined): void {
    const file = commit.files.get(path);
    if (!file) {
      error(res, 404, 'Entry not found', 'EntryNotFound', { 'X-Repo-Commit': commit.id });
      return;
    }
    let body = fault?.body ?? file.bytes;
    const headers: Record<string, string> = {
      'Content-Type': 'application/octet-stream',
      ETag: `"${etagOf(file)}"`,
      'X-Repo-Commit': commit.id,
      'Accept-Ranges': 'bytes',
    };
    if (file.lfs) {
      headers['X-Linked-Etag'] = `"${file.sha256}"`;
      headers['X-Linked-Size'] = String(file.bytes.length);
    }
    let status = 200;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range) {
      const start = Number(range[1]);
      const end = range[2] ? Math.min(Number(range[2]), body.length - 1) : body.length - 1;
      headers['Content-Range'] = `bytes ${start}-${end}/${body.length}`;
      body = body.subarray(start, end + 1);
      status = 206;
    }
    headers['Content-Length'] = String(body.length);
    res.writeHead(status, headers);
    if (req.method === 'HEAD') return void res.end();
    const cut = fault?.dropAfterBytes ?? fault?.stallAfterBytes;
    if (cut === undefined) return void res.end(body);
    res.write(body.subarray(0, cut), () => {
      if (fault?.dropAfterBytes !== undefined) res.socket?.destroy();
    });
  }
}

function json(res: ServerResponse, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function error(
  res: ServerResponse,
  status: number,
  message: string,
  code: string,
  extra: Record<string, string> = {},
): void {
  const text = JSON.stringify({ error: message });
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'X-Error-Code': code,
    'X-Error-Message': message,
    ...extra,
  });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      text += chunk;
    });
    req.on('end', () => resolve(text));
    req.on('error', reject);
  });
}

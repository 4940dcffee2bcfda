/**
 * A read-only Hugging Face Hub for one local model folder, mounted on the demo's own Vite server under `/hub`.
 * The page loads the embedded model with `fromPretrained('denoise/reference-world', { hubUrl: origin + '/hub' })`,
 * so the browser takes the same path as for any Hub model (file listing, download, checks, Cache Storage)
 * without leaving the page's origin. It answers the three calls that path makes: model info (the commit),
 * the recursive tree listing and `resolve` downloads.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join, relative, sep } from 'node:path';

interface HubFile {
  path: string;
  bytes: Buffer;
  /** The git blob id, which is the Hub's `oid` (and etag) of a file stored in git rather than LFS. */
  oid: string;
}

function gitBlobId(bytes: Buffer): string {
  return createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

function listFolder(folder: string): HubFile[] {
  return readdirSync(folder, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => {
      const absolute = join(entry.parentPath, entry.name);
      const bytes = readFileSync(absolute);
      return { path: relative(folder, absolute).split(sep).join('/'), bytes, oid: gitBlobId(bytes) };
    })
    .sort((a, b) => a.path.localeCompare(b.path));
}

/**
 * A Connect middleware serving `folder` as the Hub repository `repo` at `/hub`.
 *
 * @param repo - the id pages use, e.g. `denoise/reference-world`
 * @param folder - the model folder on disk, read once
 */
export function modelHub(repo: string, folder: string) {
  const files = listFolder(folder);
  const byPath = new Map(files.map((file) => [file.path, file]));
  // A stable commit id: the same files give the same commit, so Cache Storage keeps them across reloads.
  const commit = createHash('sha1')
    .update(files.map((f) => `${f.path} ${f.oid}`).join('\n'))
    .digest('hex');
  const info = `/hub/api/models/${repo}/revision/`;
  const tree = `/hub/api/models/${repo}/tree/${commit}`;
  const resolve = `/hub/${repo}/resolve/${commit}/`;

  return (request: IncomingMessage, response: ServerResponse, next: () => void): void => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://hub').pathname);
    if (!path.startsWith('/hub/')) {
      next();
      return;
    }
    const file = path.startsWith(resolve) ? byPath.get(path.slice(resolve.length)) : undefined;
    if (file) {
      response.setHeader('content-type', 'application/octet-stream');
      response.setHeader('content-length', file.bytes.length);
      response.setHeader('etag', `"${file.oid}"`);
      response.setHeader('x-repo-commit', commit);
      response.end(file.bytes);
      return;
    }
    let body: unknown = { error: `${path} is not part of ${repo} at ${commit}.` };
    if (path.startsWith(info)) body = { _id: commit.slice(0, 24), id: repo, sha: commit, private: false };
    else if (path === tree) body = files.map((f) => ({ type: 'file', path: f.path, oid: f.oid, size: f.bytes.length }));
    else response.statusCode = 404;
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify(body));
  };
}

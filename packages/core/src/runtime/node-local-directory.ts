import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { ModelLoadError } from '../errors.js';
import type { OnnxModelFiles } from './model-files.js';
import type { ProgressTracker } from './progress.js';
import type { ModelSource, Snapshot } from './snapshot.js';

function isInside(root: string, target: string): boolean {
  const rel = relative(root, target);
  return rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

/**
 * Lists every file under `root`, refusing symlinks that lead outside the allowed folders (a model folder must be
 * self-contained).
 */
async function listFiles(
  root: string,
  allowed: readonly string[],
  name: string,
  prefix = '',
): Promise<Map<string, number>> {
  const files = new Map<string, number>();
  for (const entry of await readdir(join(root, prefix), { withFileTypes: true })) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    const absolute = join(root, path);
    if (entry.isSymbolicLink()) {
      const target = await realpath(absolute).catch(() => undefined);
      if (!target || !allowed.some((folder) => isInside(folder, target))) {
        throw new ModelLoadError(
          'INVALID_MODEL',
          `${path} in the model directory ${name} is a symlink that leads outside it (or nowhere). Refusing to ` +
            'follow it; copy the file into the directory instead.',
          { repo: name, file: path },
        );
      }
    }
    const info = await stat(absolute);
    if (info.isDirectory()) for (const [p, s] of await listFiles(root, allowed, name, path)) files.set(p, s);
    else if (info.isFile()) files.set(path, info.size);
  }
  return files;
}

class LocalDirectorySnapshot implements Snapshot {
  readonly commit = undefined;

  constructor(
    readonly name: string,
    readonly root: string,
    readonly files: ReadonlyMap<string, number>,
  ) {}

  localPath(path: string): string {
    return join(this.root, path);
  }

  async fetchFiles(paths: readonly string[], progress: ProgressTracker): Promise<void> {
    for (const path of paths) {
      progress.status('initiate', path);
      const size = this.files.get(path);
      if (size === undefined) {
        throw new ModelLoadError(
          'FILE_NOT_FOUND',
          `${path} is missing from the model directory ${this.name}. Copy the complete model (every file the ` +
            'diffusers layout has) into it.',
          { repo: this.name, file: path },
        );
      }
      progress.cached(size);
      progress.status('done', path);
    }
  }

  readText(path: string): Promise<string> {
    return readFile(this.localPath(path), 'utf8');
  }

  async modelSource(model: OnnxModelFiles): Promise<ModelSource> {
    return { model: this.localPath(model.file), externalData: [] };
  }
}

/**
 * Opens a model directory in the diffusers layout on disk. Symlinks must stay inside it, except that a snapshot
 * folder of the Hugging Face cache (`models--org--name/snapshots/<commit>`) may link into its repository's `blobs`.
 *
 * @param directory - the folder that holds `model_index.json`
 */
export async function openLocalDirectory(directory: string): Promise<Snapshot> {
  const root = resolve(directory);
  const allowed = [await realpath(root)];
  if (basename(dirname(root)) === 'snapshots') {
    const blobs = await realpath(join(root, '..', '..', 'blobs')).catch(() => undefined);
    if (blobs) allowed.push(blobs);
  }
  return new LocalDirectorySnapshot(directory, root, await listFiles(root, allowed, directory));
}

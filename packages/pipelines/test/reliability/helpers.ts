/**
 * Shared by the reliability tests: copies of the embedded reference world to break on purpose, and a helper that
 * captures the error a promise rejects with.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The embedded reference world (docs/reference-world.md). */
export const REFERENCE_WORLD = fileURLToPath(new URL('../../../../models/reference-world/', import.meta.url));

/** A private copy of the reference world, changed by `mutate`; call the returned `remove` when done. */
export function referenceWorldCopy(mutate: (dir: string) => void = () => {}): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'denoise-reliability-'));
  cpSync(REFERENCE_WORLD, dir, { recursive: true });
  mutate(dir);
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The error `promise` rejects with; fails the test when it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string; file?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string; file?: string };
  }
  throw new Error('expected the promise to reject, it resolved');
}

import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

/**
 * The compatibility suite reads third-party fixtures that are never committed to this repository.
 * They live in `../shared` beside the checkout, or wherever `DENOISE_SHARED` points.
 */
export default function checkSharedFixtures(): void {
  const shared = resolve(process.env.DENOISE_SHARED ?? resolve(import.meta.dirname, '..', '..', 'shared'));
  if (!existsSync(resolve(shared, 'fixtures', 'tiny-random-sd', 'text_encoder.onnx'))) {
    throw new Error(
      `npm run test:compat needs the shared fixtures, and ${shared}/fixtures/tiny-random-sd is missing. ` +
        'Put the shared/ folder beside the repository or set DENOISE_SHARED to its path.',
    );
  }
  process.env.DENOISE_SHARED = shared;
}

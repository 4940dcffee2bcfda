/**
 * The last step of `npm run docs`: fails when a page of the generated API reference (docs/api) links a file name
 * as if it were a web address, e.g. `MATH.md` turned into http://MATH.md (markdown's linkify reads `.md` as a
 * top-level domain). Such mentions must be relative links, `[§2](../../docs/math.md#2-reverse-process)`, which
 * TypeDoc resolves from the commented source file.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const apiDir = join(import.meta.dirname, '..', 'docs', 'api');
// A linkified file name: an http(s) URL whose whole host ends in a file extension the repository uses.
const FILE_AS_HOST = /href="(https?:\/\/[\w.-]+\.(?:md|ts|js|json|onnx|txt))"/g;

const problems = [];
for (const entry of readdirSync(apiDir, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith('.html')) continue;
  const path = join(entry.parentPath, entry.name);
  const links = new Set([...readFileSync(path, 'utf8').matchAll(FILE_AS_HOST)].map((match) => match[1]));
  for (const link of links) problems.push(`${relative(apiDir, path)}: ${link}`);
}
if (problems.length > 0) {
  console.error(
    `docs/api links ${problems.length} file name(s) as web addresses; write them as relative markdown links:\n  ` +
      problems.join('\n  '),
  );
  process.exit(1);
}
console.log('docs/api: no file name is linked as a web address');

#!/usr/bin/env node
/**
 * The npm registry mirror this project's machines install from lacks some platform-specific builds of native
 * packages (e.g. `@biomejs/cli-win32-x64`, `@rollup/rollup-darwin-arm64`). `npm install` then writes a lock file
 * without them and `npm ci` refuses that lock as out of sync. This script adds an entry for every missing optional
 * platform package, with the `os`/`cpu`/`libc` read from its name, so `npm ci` skips them here and resolves them
 * from the registry by version on the platforms that need them.
 *
 * Run after any `npm install` that changes package-lock.json: `node tools/lock-platform-stubs.mjs`.
 */
import { readFileSync, writeFileSync } from 'node:fs';

const OS = [
  'android',
  'darwin',
  'linux',
  'win32',
  'freebsd',
  'openbsd',
  'netbsd',
  'openharmony',
  'sunos',
  'aix',
  'cygwin',
];
const CPU = ['arm64', 'x64', 'arm', 'ia32', 'loong64', 'ppc64', 'riscv64', 's390x', 'mips64el', 'wasm32'];

function platformOf(name) {
  const parts = name.split('/').pop().split('-');
  const os = parts.find((p) => OS.includes(p));
  const cpu = parts.find((p) => CPU.includes(p)) ?? (parts.includes('universal') ? undefined : null);
  if (!os || cpu === null) return undefined;
  const libc = parts.includes('musl') ? 'musl' : os === 'linux' && parts.includes('gnu') ? 'glibc' : undefined;
  return { os: [os], ...(cpu ? { cpu: [cpu] } : {}), ...(libc ? { libc: [libc] } : {}) };
}

const path = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(path, 'utf8'));
const added = [];
for (const [location, entry] of Object.entries(lock.packages)) {
  for (const [dep, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const parent = location === '' ? '' : `${location}/`;
    const candidates = [`${parent}node_modules/${dep}`, `node_modules/${dep}`];
    if (candidates.some((c) => lock.packages[c])) continue;
    const platform = platformOf(dep);
    if (!platform)
      throw new Error(
        `${dep} (optional dependency of ${location || 'the root'}) is missing from the lock file and is not a platform build`,
      );
    const stub = { version, optional: true, ...platform };
    if (entry.dev) stub.dev = true;
    lock.packages[`node_modules/${dep}`] = stub;
    added.push(dep);
  }
}
lock.packages = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0)),
);
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`added ${added.length} platform entries${added.length ? `: ${added.join(', ')}` : ''}`);

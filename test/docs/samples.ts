/**
 * Runs the guides' TypeScript samples as programs and checks their documented output.
 *
 * The rules a guide follows (README.md and docs/*.md):
 *
 * - Every ```ts block is run. Each block is its own program, unless the line before its fence (blank lines
 *   aside) is `<!-- sample: continues -->`: then it is appended to the previous block's program, whose names it
 *   uses (so it must not import a name again). A block after `<!-- sample: skip -->` is a signature or a
 *   fragment, not a program, and is not run (a later `continues` block joins the program before it).
 * - A guide may say, anywhere, `<!-- sample: after other.md -->`: its programs run after those of `other.md`
 *   (a path relative to the guide), in the same working directory, so they can read the files it wrote.
 * - A guide that says `<!-- sample: compat -->` needs the shared third-party fixtures; the compat project runs
 *   it (test/docs/compat), the unit project skips it.
 * - Expected output is written in comments, one comment per line of stdout:
 *   `console.log(x); // text` (a comment ending a line that holds `console.log(`), or a comment line of its
 *   own `// → text`, which may go on over the comment lines right after it that start with `//   ` (three
 *   spaces, so the text lines up under the arrow's; joined with one space). The expected lines must appear in
 *   stdout in that order, each as a whole line (other lines may come between them); `...` in an expectation
 *   matches any run of characters, for outputs that vary (commits, cache paths, timings). Any other comment is
 *   prose.
 * - A program runs with `node --import tsx --conditions source` (so `@denoise/*` resolve to the TypeScript
 *   sources) in a scratch working directory inside the repository, where `models/` and `tools/` link to the
 *   repository's; it must exit with code 0, and every `.save('file.png')` it makes must have written that file.
 * - Every program also passes `tsc` with the repository's strict tsconfig, so a reader can paste it as is.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';

/** The repository root. */
export const ROOT = resolve(import.meta.dirname, '..', '..');

/** One program: a guide's block, or several blocks that continue each other. */
export interface SampleProgram {
  /** The guide, relative to the repository root. */
  doc: string;
  /** `docs/loading.md:52` — where the program's first block starts, for test names and messages. */
  name: string;
  /** The source, blocks joined in order. */
  code: string;
  /** The expected stdout lines, in order, with `...` wildcards. */
  expected: string[];
  /** Files the program saves (`.save('x.png')`), relative to its working directory. */
  saves: string[];
}

/** A guide and its programs. */
export interface SampleDoc {
  /** The guide, relative to the repository root. */
  doc: string;
  /** Its programs, in the order they appear. */
  programs: SampleProgram[];
  /** The guide whose programs run first, in the same working directory. */
  after: string | undefined;
  /** Whether it needs the shared fixtures (compat project). */
  compat: boolean;
}

/** Environment variables for the programs: a value replaces the inherited one, `undefined` removes it. */
export type SampleEnv = Record<string, string | undefined>;

/** What one program did. */
export interface SampleRun {
  /** The exit code (`null` when it was killed). */
  code: number | null;
  /** Everything it printed on stdout. */
  stdout: string;
  /** Everything it printed on stderr (warnings, progress bars, the error that stopped it). */
  stderr: string;
  /** The working directory it ran in. */
  cwd: string;
}

const CONTINUES = /^<!--\s*sample:\s*continues\s*-->$/;
const SKIP = /^<!--\s*sample:\s*skip\s*-->$/;
const AFTER = /<!--\s*sample:\s*after\s+(\S+)\s*-->/;
const COMPAT = /<!--\s*sample:\s*compat\s*-->/;
const TRAILING_EXPECTATION = /console\.log\(.*\);\s*\/\/ (?:→ )?(.*)$/;
const LINE_EXPECTATION = /^\s*\/\/ → (.*)$/;
const CONTINUATION = /^\s*\/\/ {3}(\S.*)$/;
const SAVE = /\.save\(\s*'([^']+)'\s*\)/g;

/** The guides: README.md and docs/*.md, in a fixed order. */
export function listDocs(): string[] {
  const docs = readdirSync(join(ROOT, 'docs'))
    .filter((file) => file.endsWith('.md'))
    .sort()
    .map((file) => `docs/${file}`);
  return ['README.md', ...docs];
}

/** The expected stdout lines a program's comments declare. */
export function expectationsOf(code: string): string[] {
  const expected: string[] = [];
  let continuable = false;
  for (const line of code.split('\n')) {
    const continuation: RegExpExecArray | null = continuable ? CONTINUATION.exec(line) : null;
    const own = LINE_EXPECTATION.exec(line);
    const trailing = TRAILING_EXPECTATION.exec(line);
    if (continuation) expected.push(`${expected.pop()} ${continuation[1].trimEnd()}`);
    else if (own) expected.push(own[1].trimEnd());
    else if (trailing) expected.push(trailing[1].trimEnd());
    continuable = continuation !== null || own !== null;
  }
  return expected;
}

/** Reads a guide and splits its ```ts blocks into programs. */
export function parseDoc(doc: string): SampleDoc {
  const text = readFileSync(join(ROOT, doc), 'utf8');
  const lines = text.split('\n');
  const programs: SampleProgram[] = [];
  let lastNonBlank = '';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = /^(\s*)```(\w*)\s*$/.exec(line);
    if (!fence) {
      if (line.trim() !== '') lastNonBlank = line.trim();
      continue;
    }
    const indent = fence[1].length;
    const body: string[] = [];
    const start = i + 1;
    for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]); i++) body.push(lines[i].slice(indent));
    const isSample = fence[2] === 'ts' && !SKIP.test(lastNonBlank);
    const continues = CONTINUES.test(lastNonBlank);
    lastNonBlank = '```';
    if (!isSample) continue;
    const code = `${body.join('\n')}\n`;
    const previous = programs.at(-1);
    if (continues) {
      if (!previous) throw new Error(`${doc}:${start}: "sample: continues" before the first ts block`);
      previous.code += `\n${code}`;
    } else {
      programs.push({ doc, name: `${doc}:${start}`, code, expected: [], saves: [] });
    }
  }
  for (const program of programs) {
    program.expected = expectationsOf(program.code);
    program.saves = [...program.code.matchAll(SAVE)].map((match) => match[1]);
  }
  const after = AFTER.exec(text)?.[1];
  return {
    doc,
    programs,
    after: after === undefined ? undefined : relative(ROOT, join(ROOT, dirname(doc), after)),
    compat: COMPAT.test(text),
  };
}

/** Whether an expectation with `...` wildcards matches a whole line. */
export function lineMatches(expected: string, line: string): boolean {
  const pattern = expected
    .split('...')
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${pattern}$`, 's').test(line.trimEnd());
}

/**
 * Checks that the expected lines appear in stdout in order.
 *
 * @returns `undefined` when they do, else a message naming the first one missing
 */
export function findMissingExpectation(expected: readonly string[], stdout: string): string | undefined {
  const lines = stdout.split('\n');
  let next = 0;
  for (const want of expected) {
    while (next < lines.length && !lineMatches(want, lines[next])) next++;
    if (next === lines.length) return `expected output line not found (in order): ${want}`;
    next++;
  }
  return undefined;
}

/** A scratch folder inside the repository (git-ignored), so that the programs' `@denoise/*` imports resolve. */
export async function makeScratch(): Promise<string> {
  const base = join(ROOT, '.docs-samples');
  await mkdir(base, { recursive: true });
  return mkdtemp(join(base, 'run-'));
}

/** Removes a scratch folder made by {@link makeScratch}. */
export function removeScratch(scratch: string): Promise<void> {
  return rm(scratch, { recursive: true, force: true });
}

/** A working directory for a guide: an empty folder where `models/` and `tools/` link to the repository's. */
export async function makeWorkdir(scratch: string, doc: string): Promise<string> {
  const cwd = join(scratch, doc.replace(/[/.]/g, '_'));
  await mkdir(cwd, { recursive: true });
  await symlink(join(ROOT, 'models'), join(cwd, 'models'), 'dir');
  // The generators of the reference world's variants (the SDXL guide writes its model with one).
  await symlink(join(ROOT, 'tools'), join(cwd, 'tools'), 'dir');
  return cwd;
}

const TSX = import.meta.resolve('tsx');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

/** Runs a command to its end and collects what it printed. */
function collect(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number) {
  const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((done, fail) => {
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

/**
 * Type-checks programs with the repository's tsconfig (each file a module of its own).
 *
 * @returns tsc's exit code and its diagnostics
 */
export async function typecheckPrograms(
  programs: readonly SampleProgram[],
  scratch: string,
): Promise<{ code: number | null; output: string }> {
  const folder = join(scratch, 'typecheck');
  await mkdir(folder, { recursive: true });
  await symlink(join(ROOT, 'tools'), join(folder, 'tools'), 'dir');
  const files = programs.map((program) => `${program.name.replace(/[/:.]/g, '_')}.ts`);
  await Promise.all(programs.map((program, i) => writeFile(join(folder, files[i]), program.code)));
  const tsconfig = {
    extends: relative(folder, join(ROOT, 'tsconfig.json')),
    compilerOptions: { moduleDetection: 'force', noEmit: true, declaration: false, sourceMap: false },
    files,
  };
  await writeFile(join(folder, 'tsconfig.json'), JSON.stringify(tsconfig));
  const { code, stdout, stderr } = await collect(process.execPath, [TSC, '-p', folder], folder, process.env, 300_000);
  return { code, output: stdout + stderr };
}

/** Runs one program in `cwd`, killing it after `timeoutMs`. */
export async function runProgram(
  program: SampleProgram,
  cwd: string,
  options: { env?: SampleEnv; timeoutMs?: number } = {},
): Promise<SampleRun> {
  const file = join(cwd, `${basename(program.name).replace(/[:.]/g, '_')}.sample.ts`);
  await writeFile(file, program.code);
  // NODE_OPTIONS would carry vitest's own loader flags into the program.
  const env: Record<string, string | undefined> = { ...process.env, ...options.env, NODE_OPTIONS: undefined };
  for (const key of Object.keys(env)) if (env[key] === undefined) delete env[key];
  const args = ['--import', TSX, '--conditions', 'source', file];
  return { ...(await collect(process.execPath, args, cwd, env, options.timeoutMs ?? 60_000)), cwd };
}

/**
 * Everything wrong with a run: a non-zero exit, a missing expected line, a file it should have saved.
 *
 * @returns an empty list when the program did what its guide says
 */
export function problemsOf(program: SampleProgram, run: SampleRun): string[] {
  const problems: string[] = [];
  if (run.code !== 0) problems.push(`exit code ${run.code}`);
  const missing = findMissingExpectation(program.expected, run.stdout);
  if (missing) problems.push(missing);
  for (const file of program.saves) if (!existsSync(join(run.cwd, file))) problems.push(`${file} was not written`);
  if (problems.length > 0) problems.push(`--- stdout ---\n${run.stdout}--- stderr ---\n${run.stderr}`);
  return problems;
}

/**
 * Runs the programs of several guides: a guide's programs in order in its working directory (after the guide
 * it names with `sample: after`, in that guide's directory), guides concurrently up to `concurrency`.
 *
 * @returns one promise per program name
 */
export function runDocs(
  docs: readonly SampleDoc[],
  scratch: string,
  options: { concurrency: number; env?: SampleEnv },
): Map<string, Promise<SampleRun>> {
  const runs = new Map<string, Promise<SampleRun>>();
  const finished = new Map<string, Promise<string>>(); // guide → its working directory, once its programs ended
  let active = 0;
  const waiting: (() => void)[] = [];
  const slot = async <T>(work: () => Promise<T>): Promise<T> => {
    if (active >= options.concurrency) await new Promise<void>((go) => waiting.push(go));
    active++;
    try {
      return await work();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
  const byName = new Map(docs.map((doc) => [doc.doc, doc]));
  const start = (doc: SampleDoc): Promise<string> => {
    const known = finished.get(doc.doc);
    if (known) return known;
    const previous = doc.after === undefined ? undefined : byName.get(doc.after);
    if (doc.after !== undefined && !previous) throw new Error(`${doc.doc} runs after ${doc.after}, not a guide`);
    const cwd = previous ? start(previous) : makeWorkdir(scratch, doc.doc);
    let chain: Promise<unknown> = cwd;
    for (const program of doc.programs) {
      const run = chain.then(async () => slot(async () => runProgram(program, await cwd, { env: options.env })));
      runs.set(program.name, run);
      chain = run.catch(() => undefined);
    }
    const done = chain.then(() => cwd);
    finished.set(doc.doc, done);
    return done;
  };
  for (const doc of docs) void start(doc).catch(() => undefined);
  return runs;
}

/**
 * `npm run bench`: measures the SDK's own cost next to a baseline timed in the same process, prints one table per
 * target and writes everything to bench/results.json. Flags:
 *   --only=steps,noise,float16,loop,memory,cold   run only these sections (default: all)
 *   --device=cpu|cuda|dml|coreml                   execution provider for the model sections (default: cpu)
 *   --quick                                        fewer repetitions (a smoke run, not for figures)
 * See docs/performance.md.
 */
import { writeFileSync } from 'node:fs';
import { register } from 'node:module';
import { cpus } from 'node:os';
import type { Device } from '@denoise/core/runtime';

register('./source-condition.ts', import.meta.url);

const SECTIONS = ['steps', 'noise', 'float16', 'memory', 'loop', 'cold'];
const DEVICES = ['cpu', 'cuda', 'dml', 'coreml', 'auto'];

function usageError(message: string): never {
  console.error(`bench: ${message}\nUsage: npm run bench -- [--only=${SECTIONS.join(',')}] [--device=cpu] [--quick]`);
  process.exit(1);
}

const args = process.argv.slice(2);
for (const arg of args) {
  if (arg !== '--quick' && !arg.startsWith('--only=') && !arg.startsWith('--device=')) {
    usageError(`unknown argument "${arg}".`);
  }
}
const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const quick = args.includes('--quick');
const only = flag('only')?.split(',');
const unknownSection = only?.find((section) => !SECTIONS.includes(section));
if (unknownSection !== undefined) usageError(`unknown section "${unknownSection}"; sections: ${SECTIONS.join(', ')}.`);
const device = (flag('device') ?? 'cpu') as Device;
if (!DEVICES.includes(device)) usageError(`unknown device "${device}"; devices: ${DEVICES.join(', ')}.`);
const wanted = (section: string) => !only || only.includes(section);

const { printSections } = await import('./report.js');
const results: Record<string, unknown> = {
  machine: {
    nproc: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    date: new Date().toISOString(),
  },
  device,
  quick,
};

if (wanted('steps')) {
  const { benchSchedulerSteps } = await import('./scheduler-step.js');
  results.steps = benchSchedulerSteps(quick ? 3 : 30);
  printSections(results, 'steps');
}
if (wanted('noise')) {
  const { benchNoise } = await import('./noise.js');
  results.noise = benchNoise(quick ? 5 : 30);
  printSections(results, 'noise');
}
if (wanted('float16')) {
  const { benchFloat16 } = await import('./float16.js');
  results.float16 = benchFloat16(quick ? 5 : 40);
  printSections(results, 'float16');
}
if (wanted('memory')) {
  const { benchMemory } = await import('./memory.js');
  results.memory = await benchMemory(quick ? 10 : 100, quick ? 10 : 200, device);
  printSections(results, 'memory');
}
if (wanted('loop')) {
  const { benchLoop, HEAVY_UNET } = await import('./pipeline.js');
  const { loop, cfg } = await benchLoop(quick ? 2 : 8, device);
  results.loop = { ...loop, unet: HEAVY_UNET };
  results.cfg = cfg;
  printSections(results, 'loop');
}
if (wanted('cold')) {
  const { benchColdStart } = await import('./pipeline.js');
  results.coldStart = await benchColdStart(quick ? 2 : 5, device);
  printSections(results, 'cold');
}

writeFileSync(new URL('./results.json', import.meta.url), `${JSON.stringify(results, null, 2)}\n`);
console.log('\nWrote bench/results.json');

import type { Float16Result } from './float16.js';
import type { MemoryResult } from './memory.js';
import type { NoiseResult } from './noise.js';
import type { CfgBatchingResult, ColdStartResult, LoopOverheadResult } from './pipeline.js';
import type { MissingScheduler, SchedulerStepResult } from './scheduler-step.js';
import { formatSummary } from './stats.js';

/** A pass/fail verdict for a figure with a bound, or a note when there is none. */
function verdict(value: number, max: number | undefined): string {
  if (max === undefined) return 'no target';
  return value <= max ? `PASS (<= ${max})` : `FAIL (> ${max})`;
}

function table(title: string, header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  console.log(`\n${title}`);
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) console.log(line(row));
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
const perSecond = (values: number) => `${(values / 1e6).toFixed(1)} M/s`;

function printSteps(results: (SchedulerStepResult | MissingScheduler)[]): void {
  const rows = results.map((r) => {
    if ('missing' in r) return [r.className, '-', 'not in @denoise/schedulers yet', '', '', '', '', '', '', ''];
    return [
      r.className,
      r.dims.join('x'),
      formatSummary(r.timing.ratio),
      `${r.timing.candidateMs.median.toFixed(3)} / ${r.timing.baselineMs.median.toFixed(3)}`,
      verdict(r.timing.ratio.median, r.maxRatio),
      formatSummary(r.allocatingBaseline.ratio),
      `${formatSummary(r.ratioToAllocatingBaseline)} ${r.maxRatio === undefined ? '' : verdict(r.ratioToAllocatingBaseline.median, r.maxRatio)}`,
      `${r.allocatedPerStep.count.toFixed(2)} bufs, ${kib(r.allocatedPerStep.bytes)}`,
      kib(r.allocatedPerStep.returnedBytes),
      r.retained ? `${kib(r.retained.heapBytes)} heap, ${kib(r.retained.arrayBufferBytes)} buffers` : '',
    ];
  });
  table(
    'Target 1: scheduler step / axpby baseline (median [p10-p90] of per-round ratios)',
    [
      'scheduler',
      'dims',
      'ratio',
      'ms step / base',
      'verdict',
      'alloc+axpby / base',
      'step / alloc+axpby',
      'allocated per step',
      'returned',
      'retained /1000',
    ],
    rows,
  );
}

function printNoise(r: NoiseResult): void {
  table(
    `Target 2: noise, ${r.values} values per call`,
    ['generator', 'throughput', 'ms per call', 'time ratio vs baseline'],
    [
      [
        'RandomGenerator.randn',
        perSecond(r.randnPerSecond),
        r.timing.candidateMs.median.toFixed(3),
        formatSummary(r.timing.ratio),
      ],
      ['Math.random Box-Muller', perSecond(r.baselinePerSecond), r.timing.baselineMs.median.toFixed(3), '1'],
    ],
  );
}

function printFloat16(r: Float16Result): void {
  const row = (name: string, t: Float16Result['encode']) => [
    name,
    perSecond(r.values / (t.candidateMs.median / 1e3)),
    t.candidateMs.median.toFixed(3),
    t.baselineMs.median.toFixed(3),
    formatSummary(t.ratio),
  ];
  table(
    `Target 3: float16 codec, ${r.values} values (native Float16Array: ${r.nativeFloat16Array})`,
    ['direction', 'throughput', 'ms', 'ms plain copy', 'ratio vs copy'],
    [row('encode f32->f16', r.encode), row('decode f16->f32', r.decode)],
  );
}

function printLoop(loop: LoopOverheadResult, cfg: CfgBatchingResult): void {
  const percent = (s: LoopOverheadResult['overheadFraction']) =>
    `${(100 * s.median).toFixed(2)}% [${(100 * s.p10).toFixed(2)}–${(100 * s.p90).toFixed(2)}%]`;
  table(
    `Target 4: denoising loop overhead, ${loop.steps} steps, ${loop.unetCallsPerRun} UNet calls per run`,
    ['UNet ms per call', 'loop ms', '(loop - UNet) / loop', 'of which scheduler.step', 'verdict'],
    [
      [
        formatSummary(loop.unetCallMs, 1),
        formatSummary(loop.loopMs, 0),
        percent(loop.overheadFraction),
        percent(loop.schedulerFraction),
        loop.overheadFraction.median <= 0.02 ? 'PASS (<= 2%)' : 'FAIL (> 2%)',
      ],
    ],
  );
  table(
    'Target 5: classifier-free guidance, two batch-1 calls vs one batch-2 call per step (same weights)',
    ['variant', 'UNet calls per run', 'loop ms', 'ratio vs batched'],
    [
      ['batch 2 (free batch axis)', String(cfg.batchedUnetCallsPerRun), formatSummary(cfg.batchedLoopMs, 0), '1'],
      [
        '2 x batch 1 (fixed batch)',
        String(cfg.splitUnetCallsPerRun),
        formatSummary(cfg.splitLoopMs, 0),
        formatSummary(cfg.ratio),
      ],
    ],
  );
}

function printMemory(m: MemoryResult): void {
  const mib = (x: number) => `${x.toFixed(1)} MiB`;
  const row = (name: string, r: MemoryResult['beforeLoad']) => [name, mib(r.rss), mib(r.heapUsed), mib(r.external)];
  table(
    `Target 6: memory, embedded model, ${m.warmupGenerations} warm-up + ${m.generations} generations (after full GC)`,
    ['when', 'RSS', 'heap used', 'external'],
    [
      row('before load', m.beforeLoad),
      row('after load + warm-up', m.afterWarmup),
      row(`after ${m.generations} generations`, m.afterGenerations),
      row('after release()', m.afterRelease),
    ],
  );
  const growth = Math.max(m.rssGrowth, m.heapGrowth);
  console.log(
    `growth over ${m.generations} generations: RSS ${mib(m.rssGrowth)}, heap ${mib(m.heapGrowth)} -> ` +
      `${growth < 5 ? 'PASS (< 5 MiB)' : 'FAIL (>= 5 MiB)'}; release() gave back ${mib(m.rssReturnedByRelease)} ` +
      `of the ${mib(m.rssAddedByLoad)} RSS that load + warm-up added`,
  );
  const series = (values: number[]) => values.map((x) => x.toFixed(1)).join(', ');
  console.log(`RSS after every 10th warm-up generation: ${series(m.warmupRssEvery10)} MiB`);
  console.log(`RSS after every 10th measured generation: ${series(m.rssEvery10)} MiB`);
  console.log(
    `heavy-UNet load/generate/release cycles, RSS loaded -> released: ${m.releaseCycles
      .map((c) => `${c.loaded.toFixed(1)} -> ${c.released.toFixed(1)}`)
      .join(', ')} MiB`,
  );
}

function printColdStart(results: ColdStartResult[]): void {
  const share = (part: ColdStartResult['loadMs'], r: ColdStartResult) =>
    `${part.median.toFixed(0)} ms (${((100 * part.median) / r.totalMs.median).toFixed(0)}%)`;
  table(
    'Target 7: cold start, fromPretrained (local dir, warm file cache) to the first image, 20 steps; medians',
    ['model', 'load', 'text encoding', 'denoising', 'decoding', 'total'],
    results.map((r) => [
      r.model,
      share(r.loadMs, r),
      share(r.textEncodingMs, r),
      share(r.denoisingMs, r),
      share(r.decodingMs, r),
      formatSummary(r.totalMs, 0),
    ]),
  );
}

/**
 * Prints the table of one section of the results.
 *
 * @param results - the results object being built by run.ts
 * @param section - which section to print
 */
export function printSections(results: Record<string, unknown>, section: string): void {
  if (section === 'steps') printSteps(results.steps as (SchedulerStepResult | MissingScheduler)[]);
  if (section === 'noise') printNoise(results.noise as NoiseResult);
  if (section === 'float16') printFloat16(results.float16 as Float16Result);
  if (section === 'loop') printLoop(results.loop as LoopOverheadResult, results.cfg as CfgBatchingResult);
  if (section === 'memory') printMemory(results.memory as MemoryResult);
  if (section === 'cold') printColdStart(results.coldStart as ColdStartResult[]);
}

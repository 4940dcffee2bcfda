/**
 * Repetition and summary helpers. Every figure of the benchmark is a ratio against a baseline timed in the same
 * process and interleaved with it round by round, so that load from other processes on a shared machine hits
 * both sides of a ratio alike; the spread of the per-round ratios shows how much it did.
 */

/** The median and the 10th/90th percentiles of a set of repetitions. */
export interface Summary {
  /** The median. */
  median: number;
  /** The 10th percentile. */
  p10: number;
  /** The 90th percentile. */
  p90: number;
  /** The number of repetitions. */
  n: number;
}

/**
 * Summarises repeated measurements (nearest-rank percentiles).
 *
 * @param values - one value per repetition
 */
export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))))];
  return { median: at(0.5), p10: at(0.1), p90: at(0.9), n: sorted.length };
}

/** Milliseconds elapsed since `start` (a `process.hrtime.bigint()` reading). */
export function msSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/**
 * Times `body` once, in milliseconds.
 *
 * @param body - the work to time
 */
export function timeMs(body: () => void): number {
  const start = process.hrtime.bigint();
  body();
  return msSince(start);
}

/**
 * Untimed rounds before timing starts. One round left the first candidate measured still paying for V8's
 * optimisation of the code the candidates share (it read 3.7x where it reads 2x when measured later).
 */
export const WARMUP_ROUNDS = 5;

/** A candidate timed against a baseline, round by round. */
export interface PairedTiming {
  /** Milliseconds per call of the baseline. */
  baselineMs: Summary;
  /** Milliseconds per call of the candidate. */
  candidateMs: Summary;
  /** candidate / baseline, one ratio per round. */
  ratio: Summary;
  /** Milliseconds per call of the candidate in each round, in order (to pair it with another candidate). */
  candidateRoundsMs: number[];
}

/**
 * Alternates `callsPerRound` baseline calls and `callsPerRound` calls of each candidate for `rounds` rounds (after
 * {@link WARMUP_ROUNDS} untimed warm-up rounds) and returns, per candidate, per-call times and the per-round ratio candidate /
 * baseline.
 *
 * @param baseline - one call of the baseline; returns the time it took in ms
 * @param candidates - one call of each candidate; each returns the time it took in ms (so it can exclude set-up)
 * @param rounds - the number of timed rounds
 * @param callsPerRound - calls of each side per round
 */
export function pairedTimings(
  baseline: () => number,
  candidates: readonly (() => number)[],
  rounds: number,
  callsPerRound: number,
): PairedTiming[] {
  const runRound = (call: () => number) => {
    let total = 0;
    for (let i = 0; i < callsPerRound; i++) total += call();
    return total / callsPerRound;
  };
  for (let round = 0; round < WARMUP_ROUNDS; round++) {
    runRound(baseline);
    for (const candidate of candidates) runRound(candidate);
  }
  const base: number[] = [];
  const times = candidates.map(() => [] as number[]);
  const ratios = candidates.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    const b = runRound(baseline);
    base.push(b);
    candidates.forEach((candidate, c) => {
      const t = runRound(candidate);
      times[c].push(t);
      ratios[c].push(t / b);
    });
  }
  const baselineMs = summarize(base);
  return candidates.map((_, c) => ({
    baselineMs,
    candidateMs: summarize(times[c]),
    ratio: summarize(ratios[c]),
    candidateRoundsMs: times[c],
  }));
}

/**
 * {@link pairedTimings} for a single candidate.
 *
 * @param baseline - one call of the baseline; returns the time it took in ms
 * @param candidate - one call of the candidate; returns the time it took in ms
 * @param rounds - the number of timed rounds
 * @param callsPerRound - calls of each side per round
 */
export function pairedTiming(
  baseline: () => number,
  candidate: () => number,
  rounds: number,
  callsPerRound: number,
): PairedTiming {
  return pairedTimings(baseline, [candidate], rounds, callsPerRound)[0];
}

/**
 * Forces a full garbage collection; the benchmark runs with `--expose-gc` (see `npm run bench`).
 */
export function collectGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('Run the benchmark with node --expose-gc (npm run bench does).');
  gc();
  gc();
}

/** Formats a summary as `median [p10–p90]` with `digits` decimals. */
export function formatSummary(s: Summary, digits = 2): string {
  return `${s.median.toFixed(digits)} [${s.p10.toFixed(digits)}–${s.p90.toFixed(digits)}]`;
}

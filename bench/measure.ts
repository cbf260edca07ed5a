/**
 * Timing primitives: a preallocated latency recorder, percentiles, and a closed-loop driver that
 * keeps `concurrency` calls in flight for a duration or an op count.
 */

/** Milliseconds on the monotonic clock (µs resolution). */
export const now = (): number => performance.now();

/**
 * Per-operation latencies (ms) in one preallocated Float64Array, reused by every round so that
 * recording allocates nothing. Past its capacity it wraps around (keeps the latest samples).
 */
export class LatencyRecorder {
  private readonly samples: Float64Array;
  private count = 0;

  constructor(capacity = 1 << 21) {
    this.samples = new Float64Array(capacity);
  }

  reset(): void {
    this.count = 0;
  }

  add(ms: number): void {
    this.samples[this.count % this.samples.length] = ms;
    this.count++;
  }

  /** Operations recorded since the last reset (including any overwritten by wrapping). */
  get recorded(): number {
    return this.count;
  }

  /** p50, p99 and mean of what was recorded (zeros when empty). */
  summary(): LatencySummary {
    const n = Math.min(this.count, this.samples.length);
    if (n === 0) return { p50Ms: 0, p99Ms: 0, meanMs: 0, maxMs: 0 };
    const sorted = this.samples.slice(0, n).sort();
    let sum = 0;
    for (let i = 0; i < n; i++) sum += sorted[i]!;
    return {
      p50Ms: percentile(sorted, 0.5),
      p99Ms: percentile(sorted, 0.99),
      meanMs: sum / n,
      maxMs: sorted[n - 1]!,
    };
  }
}

export interface LatencySummary {
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  maxMs: number;
}

/** Nearest-rank percentile of ascending `sorted` (q in [0, 1]). */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return 0;
  const rank = Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1));
  return sorted[rank]!;
}

/** How long a round runs: a duration, or a fixed number of operations. */
export type RoundLimit = { kind: 'duration'; ms: number } | { kind: 'ops'; ops: number };

export interface LoopOutcome {
  /** Completed operations (successful ones). */
  ops: number;
  errors: number;
  firstError: unknown;
  elapsedMs: number;
  /** CPU time of this process (user + system) during the loop, ms; unset where not measured. */
  cpuMs?: number;
}

/**
 * Runs `op(i)` from `concurrency` workers, each starting its next call as soon as its previous
 * one settles, until the limit is reached; records each successful call's latency.
 */
export async function closedLoop(
  op: (i: number) => Promise<unknown>,
  concurrency: number,
  limit: RoundLimit,
  recorder: LatencyRecorder,
): Promise<LoopOutcome> {
  recorder.reset();
  let issued = 0;
  let ops = 0;
  let errors = 0;
  let firstError: unknown;
  const start = now();
  const cpuStart = process.cpuUsage();
  const deadline = limit.kind === 'duration' ? start + limit.ms : Infinity;
  const maxOps = limit.kind === 'ops' ? limit.ops : Infinity;
  const worker = async (): Promise<void> => {
    for (;;) {
      if (issued >= maxOps) return;
      const t0 = now();
      if (t0 >= deadline) return;
      const i = issued++;
      try {
        await op(i);
        recorder.add(now() - t0);
        ops++;
      } catch (err) {
        errors++;
        firstError ??= err;
        // An error storm must not spin: give up the round after many failures.
        if (errors > 1000 && errors > ops) return;
      }
    }
  };
  const workers: Array<Promise<void>> = [];
  for (let w = 0; w < concurrency; w++) workers.push(worker());
  await Promise.all(workers);
  const cpu = process.cpuUsage(cpuStart);
  return {
    ops,
    errors,
    firstError,
    elapsedMs: now() - start,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
}

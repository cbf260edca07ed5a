/**
 * Shared helpers of the reliability tests: an unhandled-rejection recorder that sees the real
 * process (jest gives each test file a copy of `process` whose events never fire), timing, GC and
 * heap measurement, open-handle counting.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The real `process` object. Under jest, `process` in a test file is a per-file copy whose
 * 'unhandledRejection' listeners are never called; functions of the outer realm (`setTimeout`)
 * carry that realm's Function constructor, which evaluates code where `process` is the real one.
 */
export function realProcess(): NodeJS.Process {
  const OuterFunction = (setTimeout as unknown as { constructor: FunctionConstructor }).constructor;
  const found: unknown = OuterFunction(
    'return typeof process === "object" ? process : undefined',
  )();
  if (found !== undefined && typeof (found as NodeJS.Process).on === 'function') {
    return found as NodeJS.Process;
  }
  return process;
}

export interface RejectionRecorder {
  /** Reasons of every unhandled rejection seen since `install`. */
  readonly reasons: unknown[];
  dispose(): void;
}

/** Records unhandled rejections (on the real process and on jest's copy) until `dispose()`. */
export function recordUnhandledRejections(): RejectionRecorder {
  const reasons: unknown[] = [];
  const listener = (reason: unknown): void => {
    reasons.push(reason);
  };
  const procs = [...new Set([realProcess(), process])];
  for (const p of procs) p.on('unhandledRejection', listener);
  return {
    reasons,
    dispose: () => {
      for (const p of procs) p.off('unhandledRejection', listener);
    },
  };
}

export type Outcome<T> =
  { ok: true; value: T; ms: number } | { ok: false; error: unknown; ms: number };

/** Runs `fn`, never throws: the value or the error, and how long it took. */
export async function timed<T>(fn: () => Promise<T>): Promise<Outcome<T>> {
  const started = performance.now();
  try {
    const value = await fn();
    return { ok: true, value, ms: performance.now() - started };
  } catch (error) {
    return { ok: false, error, ms: performance.now() - started };
  }
}

/** The rejection of `fn()` (fails the test when it resolves) and how long it took. */
export async function rejection(
  fn: () => Promise<unknown>,
): Promise<{ error: unknown; ms: number }> {
  const outcome = await timed(fn);
  if (outcome.ok) {
    throw new Error(`expected a rejection, got ${String(outcome.value)} after ${outcome.ms} ms`);
  }
  return { error: outcome.error, ms: outcome.ms };
}

/**
 * Calls `fn` until it resolves (at most `attempts` times, `intervalMs` apart) and returns the
 * value and the number of failed attempts before it; rethrows the last error when it never did.
 */
export async function eventually<T>(
  fn: () => Promise<T>,
  { attempts = 40, intervalMs = 100 } = {},
): Promise<{ value: T; failures: number }> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return { value: await fn(), failures: i };
    } catch (error) {
      last = error;
      await sleep(intervalMs);
    }
  }
  throw last;
}

let gcFn: (() => void) | undefined;

/** A full GC (exposes `gc` once via V8 flags). */
export function collectGarbage(): void {
  if (gcFn === undefined) {
    setFlagsFromString('--expose-gc');
    gcFn = runInNewContext('gc') as () => void;
  }
  gcFn();
}

/** heapUsed and arrayBuffers after a full GC. */
export function settledMemory(): { heapUsed: number; arrayBuffers: number } {
  collectGarbage();
  collectGarbage();
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers };
}

/** Active resources of the process by type (TCPSocketWrap, Timeout, ...). */
export function activeResources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) counts.set(r, (counts.get(r) ?? 0) + 1);
  return counts;
}

/** Waits (bounded) until the count of `type` resources is at most `max`; returns the count. */
export async function waitForResources(
  type: string,
  max: number,
  timeoutMs = 2000,
): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const n = activeResources().get(type) ?? 0;
    if (n <= max || performance.now() > deadline) return n;
    await sleep(10);
  }
}

/** Tracks promises and reports how many are still unsettled. */
export class SettleTracker {
  private unsettled = 0;
  track<T>(p: Promise<T>): Promise<T> {
    this.unsettled++;
    const done = (): void => {
      this.unsettled--;
    };
    p.then(done, done);
    return p;
  }
  get pending(): number {
    return this.unsettled;
  }
}

export { prng } from '../harness/prng.js';

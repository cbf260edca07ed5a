/**
 * Overload: with a stalled server, calls beyond `maxPending` fail fast with
 * MemcachedBackpressureError instead of queueing without bound, and memory stays flat while
 * hundreds of thousands of calls are fired. Graceful close: `close(graceMs)` lets calls in flight
 * finish within the grace period, rejects the rest with MemcachedConnectionError, settles every
 * promise and leaves no socket or timer behind.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from '@jest/globals';
import {
  MemcachedBackpressureError,
  MemcachedClient,
  MemcachedConnectionError,
  MemcachedError,
  MemcachedTimeoutError,
  type MemcachedOptions,
} from '../../lib/index.js';
import { startMemcached, stopAllMemcached, type MemcachedProcess } from '../harness/memcached.js';
import { startProxy, type FaultProxy } from '../harness/proxy.js';
import {
  activeResources,
  eventually,
  recordUnhandledRejections,
  settledMemory,
  SettleTracker,
  sleep,
  timed,
  waitForResources,
  type Outcome,
  type RejectionRecorder,
} from './helpers.js';

const MB = 1024 * 1024;

let server: MemcachedProcess;
let proxy: FaultProxy;
let recorder: RejectionRecorder;
const clients: MemcachedClient[] = [];

beforeAll(async () => {
  recorder = recordUnhandledRejections();
  server = await startMemcached();
});

beforeEach(async () => {
  proxy = await startProxy('127.0.0.1', server.port);
});

afterEach(async () => {
  if (server.paused) server.resume();
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await proxy.close();
  expect(recorder.reasons).toEqual([]);
});

afterAll(async () => {
  recorder.dispose();
  await stopAllMemcached();
});

function client(options: MemcachedOptions = {}): MemcachedClient {
  const c = new MemcachedClient({
    servers: proxy.address,
    timeout: 1000,
    failover: { failureThreshold: 1000 },
    ...options,
  });
  clients.push(c);
  return c;
}

function countBy(outcomes: ReadonlyArray<Outcome<unknown>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const o of outcomes) {
    const k = o.ok ? 'ok' : (o.error as Error).constructor.name;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

describe('backpressure (maxPending)', () => {
  test('maxPending (total): beyond the bound calls fail fast with MemcachedBackpressureError; the admitted ones wait and time out', async () => {
    const mc = client({ maxPending: 100, poolSize: 2, autoBatch: false, timeout: 800 });
    await mc.set('bp:warm', 1);
    proxy.stall();
    const fastDeadline = 400; // half the timeout: they never wait for the server
    const outcomes = await Promise.all(
      Array.from({ length: 1000 }, (_, i) => timed(() => mc.get(`bp:${i}`))),
    );
    const counts = countBy(outcomes);
    expect(counts).toEqual({ MemcachedBackpressureError: 900, MemcachedTimeoutError: 100 });
    for (const o of outcomes) {
      if (!o.ok && o.error instanceof MemcachedBackpressureError) {
        expect(o.error).toBeInstanceOf(MemcachedError);
        expect(o.ms).toBeLessThan(fastDeadline);
      }
    }
    await proxy.clearFaults();
    expect(await mc.get('bp:warm')).toBe(1);
  });

  test('maxPending.perConnection bounds each connection of the pool', async () => {
    const mc = client({
      maxPending: { total: 10_000, perConnection: 50 },
      poolSize: 2,
      timeout: 800,
    });
    await mc.set('bp:warm', 1);
    proxy.stall();
    const outcomes = await Promise.all(
      Array.from({ length: 400 }, (_, i) => timed(() => mc.set(`bp:s${i}`, i))),
    );
    expect(countBy(outcomes)).toEqual({
      MemcachedBackpressureError: 300,
      MemcachedTimeoutError: 100,
    });
    await proxy.clearFaults();
    // The timed-out requests still occupy their connections until their late replies arrive.
    const { value } = await eventually(() => mc.get('bp:warm'), { attempts: 20, intervalMs: 50 });
    expect(value).toBe(1);
  });

  test('SIGSTOPped server, 200,000 calls fired: bounded pending, retained memory stays flat, everything settles', async () => {
    const mc = client({
      servers: server.address,
      maxPending: 1000,
      poolSize: 2,
      timeout: 4000,
      // Over 1000 admitted calls time out: the server is marked dead; probe it soon after.
      failover: { failureThreshold: 1000, deadTimeout: 100, retryTimeout: 100 },
    });
    await mc.set('bp:warm', 'w');
    const tracker = new SettleTracker();
    const counts: Record<string, number> = {};
    const count = (name: string): void => {
      counts[name] = (counts[name] ?? 0) + 1;
    };
    server.pause();
    try {
      const before = settledMemory();
      let mid = before;
      for (let wave = 0; wave < 20; wave++) {
        if (wave === 5) mid = settledMemory();
        const calls: Array<Promise<void>> = [];
        for (let i = 0; i < 10_000; i++) {
          const p = tracker.track(
            i % 3 === 0 ? mc.set(`bp:w${wave}:${i}`, 'x'.repeat(100)) : mc.get(`bp:w${wave}:${i}`),
          );
          calls.push(
            p.then(
              () => count('ok'),
              (e: unknown) => count((e as Error).constructor.name),
            ),
          );
        }
        // Backpressure rejections are immediate: a wave settles apart from the admitted calls.
        await Promise.race([Promise.all(calls), sleep(50)]);
      }
      const during = settledMemory();
      const rejectedFast = counts['MemcachedBackpressureError'] ?? 0;
      process.stdout.write(
        `200k calls on a stopped server: ${rejectedFast} backpressure rejections, ${tracker.pending} pending, retained heap +${((mid.heapUsed - before.heapUsed) / MB).toFixed(2)} MB after 50k calls, +${((during.heapUsed - before.heapUsed) / MB).toFixed(2)} MB after 200k\n`,
      );
      expect(tracker.pending).toBeLessThanOrEqual(1000);
      expect(rejectedFast).toBeGreaterThanOrEqual(200_000 - 1000);
      // Bounded: 150k more calls after the first 50k do not retain more memory. Retaining them
      // would take well over 30 MB (a call and its promise are a few hundred bytes); the bound
      // leaves room for what a GC on a loaded machine has not yet returned.
      expect(during.heapUsed - mid.heapUsed).toBeLessThan(8 * MB);
      expect(during.heapUsed - before.heapUsed).toBeLessThan(16 * MB);
    } finally {
      server.resume();
    }
    // The admitted calls are answered (or time out) once the server runs again.
    for (let i = 0; i < 100 && tracker.pending > 0; i++) await sleep(50);
    expect(tracker.pending).toBe(0);
    expect(Object.keys(counts).sort()).toEqual(
      expect.arrayContaining(['MemcachedBackpressureError']),
    );
    for (const name of Object.keys(counts)) {
      // Admitted calls are answered, time out, or fail when the stuck connection is reset.
      expect([
        'ok',
        'MemcachedBackpressureError',
        'MemcachedTimeoutError',
        'MemcachedConnectionError',
      ]).toContain(name);
    }
    const { value } = await eventually(() => mc.get('bp:warm'), { attempts: 30, intervalMs: 100 });
    expect(value).toBe('w');
  }, 40_000);
});

describe('graceful close', () => {
  test('close(grace): calls in flight finish with their own results; close resolves as soon as they did', async () => {
    const mc = client({ poolSize: 2, timeout: 3000 });
    const keys = Array.from({ length: 20 }, (_, i) => `gc:${i}`);
    await mc.setMany(keys.map((k) => [k, `value-${k}`] as const));
    proxy.setLatency(200);
    const tracker = new SettleTracker();
    const gets = keys.map((k) => tracker.track(mc.get(k)));
    const sets = Array.from({ length: 10 }, (_, i) => tracker.track(mc.set(`gc:new${i}`, i)));
    const many = tracker.track(mc.getMany(keys.slice(0, 5)));
    await sleep(20); // written, waiting for the delayed replies
    const closing = timed(() => mc.close(2000));
    // New calls during the grace period are refused.
    const late = await timed(() => mc.get('gc:0'));
    expect(late.ok).toBe(false);
    if (!late.ok) expect(late.error).toBeInstanceOf(MemcachedConnectionError);
    const closed = await closing;
    expect(closed.ok).toBe(true);
    expect(closed.ms).toBeGreaterThanOrEqual(100);
    expect(closed.ms).toBeLessThan(1500);
    expect(await Promise.all(gets)).toEqual(keys.map((k) => `value-${k}`));
    expect(await Promise.all(sets)).toEqual(Array(10).fill(true));
    expect((await many).size).toBe(5);
    expect(tracker.pending).toBe(0);
    const check = client({ servers: server.address });
    expect(await check.get('gc:new9')).toBe(9);
  });

  test('close(grace) right after the calls, while the connection is still being opened: they complete', async () => {
    const setup = client();
    await setup.set('gc:fresh', 'F');
    const mc = client({ timeout: 3000 });
    const calls = [mc.get('gc:fresh'), mc.set('gc:fresh2', 'G'), mc.get('gc:missing')];
    await mc.close(1000);
    const outcomes = await Promise.all(calls.map((p) => timed(() => p)));
    expect(outcomes.map((o) => (o.ok ? o.value : (o.error as Error).constructor.name))).toEqual([
      'F',
      true,
      undefined,
    ]);
  });

  test('grace period over: the rest reject with MemcachedConnectionError, all settled when close resolves, no handles left', async () => {
    const baseSockets = activeResources().get('TCPSocketWrap') ?? 0;
    const baseTimers = activeResources().get('Timeout') ?? 0;
    const mc = client({ poolSize: 2, timeout: 5000 });
    await mc.setMany([
      ['gc:a', 'A'],
      ['gc:b', 'B'],
    ]);
    proxy.setLatency(2000);
    const tracker = new SettleTracker();
    const calls = [
      ...Array.from({ length: 20 }, (_, i) => tracker.track(mc.get(i % 2 ? 'gc:a' : 'gc:b'))),
      tracker.track(mc.set('gc:c', 'C')),
      tracker.track(mc.getMany(['gc:a', 'gc:b'])),
      tracker.track(mc.incr('gc:n')),
    ];
    await sleep(20);
    const closed = await timed(() => mc.close(300));
    expect(closed.ok).toBe(true);
    expect(closed.ms).toBeGreaterThanOrEqual(280);
    expect(closed.ms).toBeLessThan(300 + 250);
    const settled = await Promise.race([
      Promise.allSettled(calls),
      sleep(50).then(() => 'still pending' as const),
    ]);
    expect(settled).not.toBe('still pending');
    expect(tracker.pending).toBe(0);
    if (settled !== 'still pending') {
      for (const s of settled) {
        expect(s.status).toBe('rejected');
        if (s.status === 'rejected') expect(s.reason).toBeInstanceOf(MemcachedConnectionError);
      }
    }
    // The client's sockets (and the proxy's ends of them) are gone; no timer of the client runs.
    await proxy.close();
    expect(await waitForResources('TCPSocketWrap', baseSockets)).toBeLessThanOrEqual(baseSockets);
    expect(await waitForResources('Timeout', baseTimers)).toBeLessThanOrEqual(baseTimers);
    proxy = await startProxy('127.0.0.1', server.port); // for afterEach
  });

  test('close(grace) with a SIGSTOPped server: calls reject at the end of the grace, no socket left', async () => {
    const baseSockets = activeResources().get('TCPSocketWrap') ?? 0;
    const mc = client({ servers: server.address, poolSize: 3, timeout: 5000 });
    await mc.set('gc:s', 'S');
    server.pause();
    try {
      const tracker = new SettleTracker();
      const calls = Array.from({ length: 50 }, (_, i) =>
        timed(() => tracker.track(i % 2 ? mc.get('gc:s') : mc.set(`gc:s${i}`, i))),
      );
      await sleep(20);
      const closed = await timed(() => mc.close(200));
      expect(closed.ok).toBe(true);
      expect(closed.ms).toBeLessThan(200 + 250);
      const outcomes = await Promise.all(calls);
      expect(countBy(outcomes)).toEqual({ MemcachedConnectionError: 50 });
      expect(tracker.pending).toBe(0);
      expect(await waitForResources('TCPSocketWrap', baseSockets)).toBeLessThanOrEqual(baseSockets);
    } finally {
      server.resume();
    }
  });

  // A call started before close(graceMs) that reaches the pool only afterwards (a set compressed
  // off-thread) must not open a new connection that outlives close().
  test('close(grace) opens no new connection and leaves none open, even for calls still on their way to the pool', async () => {
    const mc = client({ poolSize: 4, timeout: 2000, compression: { threshold: 100 } });
    await mc.set('gc:o', 'O');
    proxy.setLatency(100);
    const busy = timed(() => mc.delete('gc:none')); // the one connection is busy
    const calls = [
      busy,
      timed(() => mc.get('gc:o')), // auto-batched: sent on the next tick
      timed(() => mc.get('gc:o1')),
      timed(() => mc.set('gc:o2', 'z'.repeat(100_000))), // compressed off-thread first
      timed(() => mc.set('gc:o3', 'y'.repeat(100_000))),
    ];
    const closed = await timed(() => mc.close(1000));
    const outcomes = await Promise.all(calls);
    for (const o of outcomes) {
      if (!o.ok) expect(o.error).toBeInstanceOf(MemcachedConnectionError);
    }
    await sleep(300);
    expect(closed.ms).toBeLessThan(1000 + 1000);
    expect(proxy.open).toBe(0);
  });

  test('close() without grace rejects everything at once; close is idempotent; later calls reject', async () => {
    const mc = client({ timeout: 5000 });
    await mc.set('gc:x', 'X');
    proxy.stall();
    const calls = Array.from({ length: 10 }, () => timed(() => mc.get('gc:x')));
    await sleep(20);
    const [a, b] = await Promise.all([timed(() => mc.close()), timed(() => mc.close(1000))]);
    expect(a.ok && b.ok).toBe(true);
    // "At once": far below the 5 s timeout (generous for a loaded machine).
    expect(a.ms).toBeLessThan(1500);
    for (const o of await Promise.all(calls)) {
      expect(o.ok).toBe(false);
      if (!o.ok) expect(o.error).toBeInstanceOf(MemcachedConnectionError);
      expect(o.ms).toBeLessThan(1500 + 20);
    }
    const after = await timed(() => mc.set('gc:y', 1));
    expect(!after.ok && after.error instanceof MemcachedConnectionError).toBe(true);
    const ping = await mc.ping();
    expect(
      Object.values(ping).every((p) => !p.ok && p.error instanceof MemcachedConnectionError),
    ).toBe(true);
    await proxy.clearFaults();
  });

  test('timeouts during the grace period still apply', async () => {
    const mc = client({ timeout: 200 });
    await mc.set('gc:t', 'T');
    proxy.stall();
    const call = timed(() => mc.get('gc:t'));
    await sleep(10);
    const closed = await timed(() => mc.close(1000));
    const o = await call;
    expect(o.ok).toBe(false);
    if (!o.ok) expect(o.error).toBeInstanceOf(MemcachedTimeoutError);
    expect(o.ms).toBeLessThan(200 + 250);
    expect(closed.ms).toBeLessThan(1000 + 1000);
    await proxy.clearFaults();
  });
});

/**
 * Crosstalk: 100,000 mixed operations (get, gets, getMany, set, noreply set, delete), 64 in
 * flight over two servers with pooled connections, while the proxies inject random faults
 * (dropped requests, replies cut mid-way with FIN or RST, stalls shorter and longer than the
 * timeout, latency, drip, resets). A get may miss or fail, but it must never return a value its
 * key does not hold, in particular never another key's value. The workload and its model are in
 * test/soak/workload.ts (shared with the soak). The operations are shared out between the text
 * protocol (70%) and the meta protocol (30%: its batched reads are matched by position).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { MemcachedClient } from '../../lib/index.js';
import { startMemcacheds, stopAllMemcached, type MemcachedProcess } from '../harness/memcached.js';
import { startProxy, type FaultProxy } from '../harness/proxy.js';
import { injectFaults, Workload } from '../soak/workload.js';
import { prng, recordUnhandledRejections, sleep, type RejectionRecorder } from './helpers.js';

const OPS = Number(process.env['CROSSTALK_OPS'] ?? 100_000);
const CONCURRENCY = 64;
const KEYS = 4096;
const TIMEOUT = 120;
const SEED = Number(process.env['CROSSTALK_SEED'] ?? Date.now() % 1_000_000);

let servers: MemcachedProcess[];
let proxies: FaultProxy[];
let recorder: RejectionRecorder;

beforeAll(async () => {
  recorder = recordUnhandledRejections();
  servers = await startMemcacheds(2);
  proxies = await Promise.all(servers.map((s) => startProxy('127.0.0.1', s.port)));
});

afterAll(async () => {
  recorder.dispose();
  await Promise.all(proxies.map((p) => p.close()));
  await stopAllMemcached();
});

/**
 * An in-memory stand-in for the client that answers a few gets with another key's value: the
 * checker must notice (so a clean run above means something).
 */
class CrossingClient {
  private readonly store = new Map<string, unknown>();
  private calls = 0;
  private crossed(key: string): string {
    return ++this.calls % 97 === 0 ? `k:${(Number(key.slice(2)) + 1) % KEYS}` : key;
  }
  async get(key: string): Promise<unknown> {
    return this.store.get(this.crossed(key));
  }
  async gets(key: string): Promise<{ value: unknown; cas: string } | undefined> {
    const value = this.store.get(key);
    return value === undefined ? undefined : { value, cas: '1' };
  }
  async getMany(keys: string[]): Promise<Map<string, unknown>> {
    const out = new Map<string, unknown>();
    for (const k of keys) if (this.store.has(k)) out.set(k, this.store.get(k));
    return out;
  }
  async set(key: string, value: unknown): Promise<boolean> {
    this.store.set(key, value);
    return true;
  }
  async setMany(entries: Array<readonly [string, unknown]>): Promise<string[]> {
    for (const [k, v] of entries) this.store.set(k, v);
    return [];
  }
  async delete(key: string): Promise<boolean> {
    return this.store.delete(key);
  }
}

describe('the checker', () => {
  test('catches values of other keys (a client with crosstalk fails the check)', async () => {
    const workload = new Workload({ keys: KEYS, concurrency: 8, random: prng(1) });
    const crossing = new CrossingClient() as unknown as MemcachedClient;
    await workload.seed(crossing);
    await workload.run(crossing, 20_000);
    expect(workload.tally.wrongValues).toBeGreaterThan(0);
    expect(workload.tally.foreignValues).toBe(workload.tally.wrongValues);
    expect(workload.tally.examples.length).toBeGreaterThan(0);
  });
});

describe.each([
  ['text', Math.round(OPS * 0.7)],
  ['meta', Math.round(OPS * 0.3)],
] as const)('crosstalk under random faults, protocol %s', (protocol, ops) => {
  test(`${ops} operations, ${CONCURRENCY} in flight, poolSize 4, two servers: no get ever returns a value its key does not hold`, async () => {
    const random = prng(SEED + (protocol === 'meta' ? 1 : 0));
    const addresses = proxies.map((p) => p.address);
    const workload = new Workload({ keys: KEYS, concurrency: CONCURRENCY, random });
    // Baseline without faults (same addresses, so the same placement; a generous timeout).
    const setup = new MemcachedClient({ servers: addresses, protocol, timeout: 10_000 });
    await workload.seed(setup);
    await setup.close();

    const mc = new MemcachedClient({
      servers: addresses,
      protocol,
      poolSize: 4,
      timeout: TIMEOUT,
      connectTimeout: 500,
      // Keys must stay on their server: a failover would legitimately serve stale values.
      failover: { failureThreshold: 1000 },
    });
    const tally = workload.tally;
    let running = true;
    const started = performance.now();
    const faults = injectFaults({
      proxies,
      random,
      timeout: TIMEOUT,
      gapMin: 10,
      gapSpread: 40,
      // At most one fault per OPS/180 operations, so a slow machine does not get more faults
      // per operation (and a longer run) than a fast one.
      opsBetween: Math.floor(ops / 180),
      running: () => running,
      tally,
      maxFaults: 2000,
    });
    try {
      await workload.run(mc, ops);
    } finally {
      running = false;
      await faults;
    }
    const elapsed = performance.now() - started;
    // A quiet final pass reads every key once more (late replies have drained by then).
    await sleep(TIMEOUT * 2);
    await workload.verifyAll(mc);
    await mc.close();

    process.stdout.write(
      `crosstalk: ${JSON.stringify({
        protocol,
        seed: SEED,
        seconds: Math.round(elapsed / 100) / 10,
        opsPerSecond: Math.round((tally.ops / elapsed) * 1000),
        ...tally,
      })}\n`,
    );
    expect(tally.ops).toBeGreaterThanOrEqual(ops);
    expect(tally.examples).toEqual([]);
    expect(tally.wrongValues).toBe(0);
    expect(tally.foreignValues).toBe(0);
    expect(tally.unaskedKeys).toBe(0);
    expect(tally.unexpectedMisses).toBe(0);
    expect(tally.errors['NOT_MEMCACHED'] ?? 0).toBe(0);
    // The faults really happened and hurt, and most operations still went through.
    for (const kind of ['drop', 'cut', 'stallShort', 'stallLong', 'latencyLong', 'drip', 'reset']) {
      expect(tally.faults[kind] ?? 0).toBeGreaterThan(0);
    }
    // 80 faults per 100,000 operations.
    expect(Object.values(tally.faults).reduce((a, b) => a + b, 0)).toBeGreaterThan(
      (80 * ops) / 100_000,
    );
    expect(tally.errors['MemcachedTimeoutError'] ?? 0).toBeGreaterThan(0);
    expect(tally.errors['MemcachedConnectionError'] ?? 0).toBeGreaterThan(0);
    const ok = Object.values(tally.okByOp).reduce((a, b) => a + b, 0);
    expect(ok).toBeGreaterThan(ops * 0.5);
    expect(tally.checkedValues).toBeGreaterThan(ops * 0.3);
    expect(recorder.reasons).toEqual([]);
  }, 120_000);
});

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import {
  MemcachedClient,
  MemcachedConnectionError,
  MemcachedTimeoutError,
} from '../../lib/index.js';
import {
  serverStats,
  startMemcached,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';

let server: MemcachedProcess;

beforeAll(async () => {
  server = await startMemcached();
});

afterAll(async () => {
  await stopAllMemcached();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('ordering under concurrency', () => {
  test('1,000 concurrent mixed calls: every get returns its own value', async () => {
    const mc = new MemcachedClient({ servers: server.address, poolSize: 3, timeout: 5000 });
    try {
      const n = 1000;
      await mc.setMany(Array.from({ length: n }, (_, i) => [`own:${i}`, `value-${i}`] as const));
      const calls: Array<Promise<void>> = [];
      for (let i = 0; i < n; i++) {
        switch (i % 5) {
          case 0:
          case 1:
            calls.push(
              mc.get(`own:${i}`).then((v) => {
                expect(v).toBe(`value-${i}`);
              }),
            );
            break;
          case 2:
            calls.push(
              mc.set(`own:${i}`, `value-${i}`).then((ok) => {
                expect(ok).toBe(true);
              }),
            );
            break;
          case 3:
            calls.push(
              mc.getMany([`own:${i}`, `own:${i - 1}`, `absent:${i}`]).then((m) => {
                expect(m.get(`own:${i}`)).toBe(`value-${i}`);
                expect(m.get(`own:${i - 1}`)).toBe(`value-${i - 1}`);
                expect(m.has(`absent:${i}`)).toBe(false);
              }),
            );
            break;
          default:
            calls.push(
              mc.gets(`own:${i}`).then((v) => {
                expect(v?.value).toBe(`value-${i}`);
              }),
            );
        }
      }
      await Promise.all(calls);
    } finally {
      await mc.close();
    }
  });

  test('calls awaited one after another run in that order, over several pooled connections', async () => {
    // A server of its own, so its curr_connections counts only this client's connections.
    const own = await startMemcached();
    const baseline = Number((await serverStats(own))['curr_connections']);
    const poolSize = 4;
    const mc = new MemcachedClient({ servers: own.address, poolSize });
    try {
      // Awaited calls alone never have more than one request pending, so the pool would never
      // open a second connection: open the whole pool with concurrent calls first.
      await Promise.all(Array.from({ length: poolSize * 8 }, (_, i) => mc.set(`warm:${i}`, i)));
      const open = Number((await serverStats(own))['curr_connections']) - baseline;
      expect(open).toBeGreaterThanOrEqual(poolSize - 1);
      const outOfOrder: string[] = [];
      for (let i = 0; i < 300; i++) {
        // Acknowledged and noreply writes, and deletes: each is seen by the next call.
        await mc.set('seq', i, { noreply: i % 4 !== 0 });
        const got = await mc.get('seq');
        if (got !== i) outOfOrder.push(`set ${i}, get ${String(got)}`);
        if (i % 10 === 9) {
          await mc.delete('seq');
          const gone = await mc.get('seq');
          if (gone !== undefined) outOfOrder.push(`delete after set ${i}, get ${String(gone)}`);
        }
      }
      expect({ outOfOrder: outOfOrder.length, first: outOfOrder.slice(0, 5) }).toEqual({
        outOfOrder: 0,
        first: [],
      });
    } finally {
      await mc.close();
      await own.stop();
    }
  });
});

describe('timeouts', () => {
  test('a timed-out call rejects alone; its late reply is dropped; the connection stays usable', async () => {
    const mc = new MemcachedClient({ servers: server.address, poolSize: 1, timeout: 300 });
    try {
      await mc.set('late:a', 'A');
      await mc.set('late:b', 'B');
      server.pause();
      const started = performance.now();
      const err = await mc.get('late:a').catch((e: unknown) => e);
      const elapsed = performance.now() - started;
      expect(err).toBeInstanceOf(MemcachedTimeoutError);
      expect((err as MemcachedTimeoutError).server).toBe(server.serverId);
      expect((err as MemcachedTimeoutError).command).toBe('get');
      expect(elapsed).toBeGreaterThanOrEqual(290);
      expect(elapsed).toBeLessThan(2000);
      server.resume();
      // The reply to the abandoned get of late:a arrives first and must be dropped.
      expect(await mc.get('late:b')).toBe('B');
      expect(await mc.get('late:a')).toBe('A');
    } finally {
      server.resume();
      await mc.close();
    }
  });
});

describe('connection loss', () => {
  test('a killed server rejects every pending call at once; a restart is picked up by the same client', async () => {
    const own = await startMemcached();
    const mc = new MemcachedClient({
      servers: own.address,
      poolSize: 2,
      timeout: 10_000,
      failover: false,
    });
    try {
      await mc.set('k', 'v');
      // Keep many requests in flight, then kill the server under them.
      own.pause();
      const pending = Array.from({ length: 200 }, (_, i) =>
        mc.get(i % 2 ? 'k' : `x${i}`).then(
          () => 'ok',
          (e: unknown) => e,
        ),
      );
      await sleep(50);
      const killedAt = performance.now();
      await own.kill();
      const results = await Promise.all(pending);
      const settledAfter = performance.now() - killedAt;
      expect(settledAfter).toBeLessThan(1000); // promptly, not after the 10 s timeout
      for (const r of results) expect(r).toBeInstanceOf(MemcachedConnectionError);
      // While down: fast failures, never hangs.
      const down = await mc.get('k').catch((e: unknown) => e);
      expect(down).toBeInstanceOf(MemcachedConnectionError);
      await own.restart();
      let value: unknown;
      const deadline = performance.now() + 5000;
      while (performance.now() < deadline) {
        try {
          await mc.set('k', 'after');
          value = await mc.get('k');
          break;
        } catch {
          await sleep(50);
        }
      }
      expect(value).toBe('after');
    } finally {
      await mc.close();
      await own.stop();
    }
  });

  test('connect errors name the server and back off instead of hammering it', async () => {
    const own = await startMemcached();
    const address = own.address;
    await own.stop();
    const mc = new MemcachedClient({ servers: address, failover: false, connectTimeout: 500 });
    try {
      const first = await mc.get('a').catch((e: unknown) => e);
      expect(first).toBeInstanceOf(MemcachedConnectionError);
      expect((first as Error).message).toContain(own.serverId);
      // Immediately after, the backoff fails fast without a new attempt.
      const started = performance.now();
      const second = await mc.get('a').catch((e: unknown) => e);
      expect(second).toBeInstanceOf(MemcachedConnectionError);
      expect(performance.now() - started).toBeLessThan(50);
    } finally {
      await mc.close();
    }
  });
});

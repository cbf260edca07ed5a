import { afterAll, beforeAll, describe, expect, jest, test } from '@jest/globals';
import { Connection } from '../../lib/connection/connection.js';
import {
  MemcachedBackpressureError,
  MemcachedClient,
  MemcachedConnectionError,
  MemcachedKeyError,
  MemcachedSerdeError,
  MemcachedTimeoutError,
} from '../../lib/index.js';
import {
  rawRequest,
  startMemcached,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';
import { PROTOCOLS } from '../harness/protocols.js';

let server: MemcachedProcess;

beforeAll(async () => {
  server = await startMemcached();
});

afterAll(async () => {
  await stopAllMemcached();
});

describe.each(PROTOCOLS)('%s protocol', (protocol) => {
  describe('auto-batching of concurrent gets', () => {
    test('gets issued in one tick go out as one multi-get; each caller gets its own result', async () => {
      const mc = new MemcachedClient({ servers: server.address, protocol, poolSize: 1 });
      try {
        await mc.setMany({ b1: 'one', b2: 2, b3: { three: 3 } });
        await rawRequest(server, 'set bbad 1 0 1\r\nx\r\n'); // unknown flags
        const spy = jest.spyOn(Connection.prototype, 'enqueue');
        let results: unknown[];
        let bad: unknown;
        let invalid: unknown;
        try {
          const calls = ['b1', 'b2', 'b3', 'bmiss', 'b1'].map((k) => mc.get(k));
          bad = mc.get('bbad').catch((e: unknown) => e);
          invalid = mc.get('has space').catch((e: unknown) => e);
          results = await Promise.all(calls);
          expect(spy).toHaveBeenCalledTimes(1);
          expect(spy.mock.calls[0]![0].op).toBe('get');
          expect(spy.mock.calls[0]![0].keys).toEqual(['b1', 'b2', 'b3', 'bmiss', 'b1', 'bbad']);
        } finally {
          spy.mockRestore();
        }
        expect(results).toEqual(['one', 2, { three: 3 }, undefined, 'one']);
        expect(await bad).toBeInstanceOf(MemcachedSerdeError); // only that caller fails
        expect(await invalid).toBeInstanceOf(MemcachedKeyError);
      } finally {
        await mc.close();
      }
    });

    test('a key asked twice in a batch: each caller gets its own Buffer', async () => {
      const mc = new MemcachedClient({ servers: server.address, protocol });
      try {
        await mc.set('buf', Buffer.from('abc'));
        const [a, b] = await Promise.all([mc.get<Buffer>('buf'), mc.get<Buffer>('buf')]);
        expect(a).toEqual(Buffer.from('abc'));
        expect(b).toEqual(Buffer.from('abc'));
        a![0] = 0x7a;
        expect(b!.toString()).toBe('abc');
      } finally {
        await mc.close();
      }
    });

    test('500 concurrent gets: batched in chunks, all correct', async () => {
      const mc = new MemcachedClient({ servers: server.address, protocol, poolSize: 2 });
      try {
        const keys = Array.from({ length: 500 }, (_, i) => `bb:${i}`);
        await mc.setMany(keys.filter((_, i) => i % 3 !== 0).map((k) => [k, `v-${k}`] as const));
        const results = await Promise.all(keys.map((k) => mc.get(k)));
        results.forEach((v, i) => expect(v).toBe(i % 3 === 0 ? undefined : `v-${keys[i]}`));
      } finally {
        await mc.close();
      }
    });

    test('batched callers time out together with their request, each with its own rejection', async () => {
      const mc = new MemcachedClient({
        servers: server.address,
        protocol,
        timeout: 200,
        poolSize: 1,
      });
      try {
        await mc.set('t1', 1);
        server.pause();
        const results = await Promise.all(
          ['t1', 't2', 't3'].map((k) => mc.get(k).catch((e: unknown) => e)),
        );
        for (const r of results) expect(r).toBeInstanceOf(MemcachedTimeoutError);
        server.resume();
        expect(await mc.get('t1')).toBe(1);
      } finally {
        server.resume();
        await mc.close();
      }
    });

    test('autoBatch: false sends one request per get', async () => {
      const mc = new MemcachedClient({ servers: server.address, protocol, autoBatch: false });
      try {
        await mc.setMany({ n1: 1, n2: 2 });
        const spy = jest.spyOn(Connection.prototype, 'enqueue');
        try {
          expect(await Promise.all([mc.get('n1'), mc.get('n2')])).toEqual([1, 2]);
          expect(spy).toHaveBeenCalledTimes(2);
        } finally {
          spy.mockRestore();
        }
      } finally {
        await mc.close();
      }
    });
  });

  describe('backpressure and graceful close', () => {
    test('beyond maxPending calls fail fast with MemcachedBackpressureError', async () => {
      const mc = new MemcachedClient({
        servers: server.address,
        protocol,
        maxPending: 50,
        timeout: 2000,
        autoBatch: false,
      });
      try {
        await mc.set('bp', 1);
        server.pause();
        const calls = Array.from({ length: 80 }, () => mc.get('bp').catch((e: unknown) => e));
        await new Promise((r) => setTimeout(r, 20));
        server.resume();
        const results = await Promise.all(calls);
        const rejected = results.filter((r) => r instanceof MemcachedBackpressureError).length;
        expect(rejected).toBe(30);
        expect(results.filter((r) => r === 1).length).toBe(50);
      } finally {
        server.resume();
        await mc.close();
      }
    });

    test('close(graceMs) lets in-flight calls finish, then rejects what is left', async () => {
      const mc = new MemcachedClient({
        servers: server.address,
        protocol,
        timeout: 5000,
        poolSize: 1,
      });
      await mc.set('g', 'ok');
      const inFlight = mc.get('g');
      const closing = mc.close(1000);
      await expect(mc.get('g')).rejects.toBeInstanceOf(MemcachedConnectionError);
      expect(await inFlight).toBe('ok');
      await closing;

      const stuck = new MemcachedClient({
        servers: server.address,
        protocol,
        timeout: 5000,
        poolSize: 1,
      });
      await stuck.set('g', 'ok');
      server.pause();
      try {
        const pending = stuck.get('g').catch((e: unknown) => e);
        const started = performance.now();
        await stuck.close(200);
        expect(performance.now() - started).toBeGreaterThanOrEqual(150);
        expect(await pending).toBeInstanceOf(MemcachedConnectionError);
      } finally {
        server.resume();
      }
    });
  });
});

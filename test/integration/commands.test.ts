import { afterAll, beforeAll, beforeEach, describe, expect, test } from '@jest/globals';
import {
  MemcachedClient,
  MemcachedClientError,
  MemcachedConnectionError,
  MemcachedKeyError,
  MemcachedValueError,
} from '../../lib/index.js';
import {
  rawRequest,
  startMemcached,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';
import { PROTOCOLS } from '../harness/protocols.js';

describe.each(PROTOCOLS)('%s protocol', (protocol) => {
  let server: MemcachedProcess;
  let mc: MemcachedClient;

  beforeAll(async () => {
    server = await startMemcached();
    mc = new MemcachedClient({ servers: server.address, timeout: 2000, protocol });
  });

  afterAll(async () => {
    await mc.close();
    await stopAllMemcached();
  });

  beforeEach(async () => {
    await mc.flushAll();
  });

  describe('retrieval', () => {
    test('get: hit returns the typed value, miss returns undefined', async () => {
      expect(await mc.set('user:1', { name: 'Ada' })).toBe(true);
      const user = await mc.get<{ name: string }>('user:1');
      expect(user).toEqual({ name: 'Ada' });
      expect(await mc.get('user:missing')).toBeUndefined();
    });

    test('values of every default-serde type round-trip', async () => {
      const values: unknown[] = [
        'text é ✓',
        Buffer.from([0, 1, 2, 13, 10, 255]),
        42,
        -7,
        2n ** 70n,
        true,
        null,
        1.5,
        { a: [1, { b: 'c' }] },
        [1, 'two'],
        '',
        Buffer.alloc(0),
      ];
      for (const [i, v] of values.entries()) {
        await mc.set(`type:${i}`, v);
        expect(await mc.get(`type:${i}`)).toEqual(v);
      }
    });

    test('values written by other clients are read with their flags', async () => {
      // python-memcached/pymemcache: int → flag 2, long → 4, text → 16, bytes → 0
      await rawRequest(server, 'set py:int 2 0 3\r\n123\r\n');
      await rawRequest(server, 'set py:long 4 0 20\r\n12345678901234567890\r\n');
      await rawRequest(
        server,
        'set py:text 16 0 5\r\nh\xc3\xa9y!\r\n'.replace('h\xc3\xa9y!', 'hey!!'),
      );
      await rawRequest(server, 'set py:bytes 0 0 3\r\nabc\r\n');
      expect(await mc.get('py:int')).toBe(123);
      expect(await mc.get('py:long')).toBe(12345678901234567890n);
      expect(await mc.get('py:text')).toBe('hey!!');
      expect(await mc.get('py:bytes')).toEqual(Buffer.from('abc'));
    });

    test('gets returns the cas token; getMany and getsMany return only hits', async () => {
      await mc.set('a', 1);
      await mc.set('b', 'two');
      const g = await mc.gets<number>('a');
      expect(g?.value).toBe(1);
      expect(g?.cas).toMatch(/^\d+$/);
      expect(await mc.gets('nope')).toBeUndefined();
      const many = await mc.getMany(['a', 'b', 'c', 'a']);
      expect([...many.entries()].sort()).toEqual([
        ['a', 1],
        ['b', 'two'],
      ]);
      const withCas = await mc.getsMany<unknown>(['a', 'b', 'zzz']);
      expect(withCas.size).toBe(2);
      expect(withCas.get('a')?.cas).toBe(g?.cas);
      expect(withCas.get('b')?.value).toBe('two');
    });

    test('getMany([]) sends nothing and returns an empty map', async () => {
      const before = (await mc.stats())[server.serverId]!.cmd_get;
      expect((await mc.getMany([])).size).toBe(0);
      expect((await mc.stats())[server.serverId]!.cmd_get).toBe(before);
    });

    test('getMany of 1,000 keys (pipelined chunks) returns every hit', async () => {
      const keys = Array.from({ length: 1000 }, (_, i) => `many:${i}`);
      expect(await mc.setMany(keys.map((k, i) => [k, i] as const))).toEqual([]);
      const got = await mc.getMany<number>([...keys, 'many:absent']);
      expect(got.size).toBe(1000);
      for (const [i, k] of keys.entries()) expect(got.get(k)).toBe(i);
    });

    test('getAndTouch returns the value and sets the ttl; miss is undefined', async () => {
      await mc.set('gat', 'v', { ttl: 1000 });
      expect(await mc.getAndTouch('gat', 1)).toBe('v');
      expect(await mc.getAndTouch('gat:none', 1)).toBeUndefined();
      await new Promise((r) => setTimeout(r, 2100));
      expect(await mc.get('gat')).toBeUndefined();
    });
  });

  describe('storage', () => {
    test('add stores only new keys; replace only existing ones', async () => {
      expect(await mc.add('k', 1)).toBe(true);
      expect(await mc.add('k', 2)).toBe(false); // NOT_STORED
      expect(await mc.get('k')).toBe(1);
      expect(await mc.replace('k', 3)).toBe(true);
      expect(await mc.replace('absent', 3)).toBe(false); // NOT_STORED
      expect(await mc.get('k')).toBe(3);
      expect(await mc.get('absent')).toBeUndefined();
    });

    test('append/prepend raw bytes; false when the key is missing', async () => {
      await mc.set('s', 'mid');
      expect(await mc.append('s', '-end')).toBe(true);
      expect(await mc.prepend('s', Buffer.from('start-'))).toBe(true);
      expect(await mc.get('s')).toBe('start-mid-end');
      expect(await mc.append('none', 'x')).toBe(false);
      expect(await mc.prepend('none', 'x')).toBe(false);
      await expect(mc.append('s', 5 as unknown as string)).rejects.toThrow(MemcachedValueError);
    });

    test('cas: fresh token stores, stale token gives false (EXISTS), gone key gives false (NOT_FOUND)', async () => {
      await mc.set('c', 'v1');
      const t1 = (await mc.gets('c'))!.cas;
      expect(await mc.cas('c', 'v2', t1)).toBe(true);
      expect(await mc.cas('c', 'v3', t1)).toBe(false);
      expect(await mc.get('c')).toBe('v2');
      const t2 = (await mc.gets('c'))!.cas;
      await mc.delete('c');
      expect(await mc.cas('c', 'v4', t2)).toBe(false);
      expect(await mc.get('c')).toBeUndefined();
    });

    test('ttl: expires after the given seconds; negative expires at once', async () => {
      await mc.set('t1', 'x', { ttl: 1 });
      await mc.set('tneg', 'x', { ttl: -1 });
      expect(await mc.get('t1')).toBe('x');
      expect(await mc.get('tneg')).toBeUndefined();
      await new Promise((r) => setTimeout(r, 2100));
      expect(await mc.get('t1')).toBeUndefined();
    });

    test('setMany accepts objects, Maps and pairs, and returns the keys not stored', async () => {
      expect(await mc.setMany({ o1: 1, o2: 2 })).toEqual([]);
      expect(await mc.setMany(new Map([['m1', 'x']]))).toEqual([]);
      expect(await mc.setMany([['p1', true]])).toEqual([]);
      expect(await mc.getMany(['o1', 'o2', 'm1', 'p1'])).toEqual(
        new Map<string, unknown>([
          ['o1', 1],
          ['o2', 2],
          ['m1', 'x'],
          ['p1', true],
        ]),
      );
      expect(await mc.setMany({})).toEqual([]);
    });

    test('noreply resolves true once written and the value lands', async () => {
      expect(await mc.set('nr', 'quiet', { noreply: true })).toBe(true);
      expect(await mc.get('nr')).toBe('quiet');
    });
  });

  describe('delete, touch, incr/decr', () => {
    test('delete: true when it existed, false when missing; deleteMany counts', async () => {
      await mc.set('d', 1);
      expect(await mc.delete('d')).toBe(true);
      expect(await mc.delete('d')).toBe(false);
      await mc.setMany({ d1: 1, d2: 2 });
      expect(await mc.deleteMany(['d1', 'd2', 'd3'])).toBe(2);
      expect(await mc.deleteMany([])).toBe(0);
    });

    test('touch: true when present, false when missing', async () => {
      await mc.set('tt', 1);
      expect(await mc.touch('tt', 100)).toBe(true);
      expect(await mc.touch('tt:none', 100)).toBe(false);
    });

    test('incr/decr: default delta 1, undefined when missing, decr stops at 0', async () => {
      await mc.set('n', 10);
      expect(await mc.incr('n')).toBe(11);
      expect(await mc.incr('n', 5)).toBe(16);
      expect(await mc.decr('n', 20)).toBe(0);
      expect(await mc.decr('n')).toBe(0);
      expect(await mc.incr('missing')).toBeUndefined();
      expect(await mc.decr('missing')).toBeUndefined();
      expect(await mc.get('n')).toBe(0);
    });

    test('decr of a longer number (space-padded reply) parses exactly', async () => {
      await mc.set('pad', 1000);
      expect(await mc.decr('pad', 995)).toBe(5);
      expect(await mc.get('pad')).toBe(5);
    });

    test('incr is exact above 2^53 and wraps at 2^64 (unsigned 64-bit)', async () => {
      await mc.set('big', '18446744073709551610');
      expect(await mc.incr('big', 1n)).toBe(18446744073709551611n);
      expect(await mc.incr('big', 10n)).toBe(5n); // wrapped
      await mc.set('big2', String(2 ** 53));
      const err = await mc.incr('big2', 1).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MemcachedValueError);
      expect((err as MemcachedValueError).value).toBe(9007199254740993n);
      expect(await mc.get('big2')).toBe('9007199254740993'); // the server applied it (stored as text)
    });

    test('incr of a non-numeric value is a CLIENT_ERROR and the connection stays usable', async () => {
      await mc.set('str', 'abc');
      await expect(mc.incr('str')).rejects.toThrow(MemcachedClientError);
      expect(await mc.get('str')).toBe('abc');
    });

    test('bad deltas are rejected before sending', async () => {
      await expect(mc.incr('n', -1)).rejects.toThrow(MemcachedValueError);
      await expect(mc.incr('n', 1.5)).rejects.toThrow(MemcachedValueError);
      await expect(mc.decr('n', 2n ** 64n)).rejects.toThrow(MemcachedValueError);
      await expect(mc.incr('n', -1n)).rejects.toThrow(MemcachedValueError);
    });
  });

  describe('whole-server commands', () => {
    test('version and stats are keyed by server id', async () => {
      const v = await mc.version();
      expect(Object.keys(v)).toEqual([server.serverId]);
      expect(v[server.serverId]).toMatch(/^\d+\.\d+\.\d+/);
      const s = await mc.stats();
      expect(Number(s[server.serverId]!.pid)).toBeGreaterThan(0);
      const settings = await mc.stats('settings');
      expect(settings[server.serverId]!.maxbytes).toMatch(/^\d+$/);
      const items = await mc.stats('items');
      expect(typeof items[server.serverId]).toBe('object');
      await expect(mc.stats('bad group\r\nflush_all')).rejects.toThrow(MemcachedValueError);
    });

    test("stats('reset') resets the counters and keeps the connection", async () => {
      await mc.get('reset:miss');
      const before = await mc.stats();
      expect(Number(before[server.serverId]!.get_misses)).toBeGreaterThan(0);
      expect(await mc.stats('reset')).toEqual({ [server.serverId]: {} });
      const after = await mc.stats();
      expect(after[server.serverId]!.get_misses).toBe('0');
      // Same connection: none was dropped or added (total_connections is reset too).
      expect(after[server.serverId]!.curr_connections).toBe(
        before[server.serverId]!.curr_connections,
      );
      expect(after[server.serverId]!.total_connections).toBe('0');
    });

    test('flushAll empties the server; a delay is accepted', async () => {
      await mc.set('f', 1);
      await mc.flushAll();
      expect(await mc.get('f')).toBeUndefined();
      await mc.flushAll(0);
      await expect(mc.flushAll(-1)).rejects.toThrow(MemcachedValueError);
    });
  });

  describe('keyPrefix and close', () => {
    test('keyPrefix is on the wire and stripped from results; placement ignores it', async () => {
      const pre = new MemcachedClient({ servers: server.address, keyPrefix: 'app:', protocol });
      try {
        await pre.set('x', 'prefixed');
        expect(await mc.get('app:x')).toBe('prefixed');
        expect(await pre.getMany(['x'])).toEqual(new Map([['x', 'prefixed']]));
        // 250 bytes including the prefix
        await expect(pre.set('k'.repeat(247), 1)).rejects.toThrow(MemcachedKeyError);
        expect(await pre.set('k'.repeat(246), 1)).toBe(true);
      } finally {
        await pre.close();
      }
    });

    test('after close, calls reject with MemcachedConnectionError', async () => {
      const c = new MemcachedClient({ servers: server.address, protocol });
      await c.set('closing', 1);
      await c.close();
      await expect(c.get('closing')).rejects.toThrow(MemcachedConnectionError);
      await expect(c.close()).resolves.toBeUndefined();
    });
  });
});

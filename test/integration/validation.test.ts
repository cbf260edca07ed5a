import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import {
  MemcachedClient,
  MemcachedKeyError,
  MemcachedOptionsError,
  MemcachedSerdeError,
  MemcachedServerError,
  MemcachedValueError,
} from '../../lib/index.js';
import {
  rawRequest,
  serverStats,
  startMemcached,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';

let server: MemcachedProcess;
let mc: MemcachedClient;

beforeAll(async () => {
  server = await startMemcached({ args: ['-I', '64k'] });
  mc = new MemcachedClient({ servers: server.address, poolSize: 1 });
});

afterAll(async () => {
  await mc.close();
  await stopAllMemcached();
});

/** Counters that move when any command reaches the server. */
async function commandCounters(): Promise<string> {
  const s = await serverStats(server);
  return [
    s.cmd_get,
    s.cmd_set,
    s.cmd_touch,
    s.delete_hits,
    s.delete_misses,
    s.incr_misses,
    s.incr_hits,
    s.decr_misses,
    s.cmd_flush,
  ].join(',');
}

const BAD_KEYS: Array<[string, unknown]> = [
  ['empty', ''],
  ['space', 'a b'],
  ['newline injection', 'k\r\nflush_all'],
  ['bare LF', 'k\nset x 0 0 1'],
  ['tab', 'a\tb'],
  ['NUL', 'a\u0000b'],
  ['DEL', 'a\u007fb'],
  ['C1 control', 'a\u0085b'],
  ['251 bytes', 'k'.repeat(251)],
  ['126 two-byte chars (252 bytes)', 'é'.repeat(126)],
  ['lone surrogate', 'a\ud800b'],
  ['number', 42],
  ['undefined', undefined],
  ['null', null],
];

describe('bad keys are rejected before anything is sent', () => {
  test.each(BAD_KEYS)('%s', async (_name, key) => {
    await mc.set('sentinel', 'untouched');
    const before = await commandCounters();
    const k = key as string;
    const calls: Array<Promise<unknown>> = [
      mc.get(k),
      mc.gets(k),
      mc.set(k, 1),
      mc.add(k, 1),
      mc.delete(k),
      mc.touch(k, 1),
      mc.incr(k),
      mc.getAndTouch(k, 1),
      mc.getMany(['ok', k]),
      mc.setMany([
        ['ok', 1],
        [k, 2],
      ]),
      mc.deleteMany(['sentinel', k]),
    ];
    for (const call of calls) {
      const err = await call.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MemcachedKeyError);
      expect((err as MemcachedKeyError).key).toBe(key);
    }
    expect(await commandCounters()).toBe(before);
    // The sentinel proves no injected command (delete, flush_all) ran.
    expect(await mc.get('sentinel')).toBe('untouched');
  });

  test('valid edge keys work: 250 bytes, UTF-8, punctuation', async () => {
    for (const key of ['k'.repeat(250), 'é'.repeat(125), 'ключ:🔑', 'a:b/c?d=e&f#g%h']) {
      expect(await mc.set(key, key)).toBe(true);
      expect(await mc.get(key)).toBe(key);
    }
  });

  test('errors name the key and the rule', async () => {
    const err = (await mc.get('a b').catch((e: unknown) => e)) as MemcachedKeyError;
    expect(err.message).toMatch(/"a b".*space/);
    expect(err.command).toBe('get');
    const long = (await mc.get('x'.repeat(300)).catch((e: unknown) => e)) as Error;
    expect(long.message).toMatch(/300 bytes.*250/);
  });
});

describe('bad values, ttl and cas tokens are rejected before anything is sent', () => {
  const cases: Array<[string, () => Promise<unknown>, new (...a: never[]) => Error]> = [
    ['ttl not an integer', () => mc.set('v', 1, { ttl: 1.5 }), MemcachedValueError],
    ['ttl NaN', () => mc.set('v', 1, { ttl: NaN }), MemcachedValueError],
    ['ttl too large', () => mc.set('v', 1, { ttl: 2 ** 31 }), MemcachedValueError],
    ['ttl string', () => mc.touch('v', '5' as unknown as number), MemcachedValueError],
    ['undefined value', () => mc.set('v', undefined), MemcachedValueError],
    ['function value', () => mc.set('v', () => 1), MemcachedValueError],
    ['NaN value', () => mc.set('v', NaN), MemcachedValueError],
    [
      'cyclic value',
      () => {
        const o: Record<string, unknown> = {};
        o.self = o;
        return mc.set('v', o);
      },
      MemcachedValueError,
    ],
    [
      'value over maxValueSize',
      () => mc.set('v', Buffer.alloc(1024 * 1024 + 1)),
      MemcachedValueError,
    ],
    ['cas token not numeric', () => mc.cas('v', 1, 'abc'), MemcachedValueError],
    ['cas token injection', () => mc.cas('v', 1, '1 noreply\r\nflush_all'), MemcachedValueError],
    ['cas token over 2^64', () => mc.cas('v', 1, '18446744073709551616'), MemcachedValueError],
    [
      'noreply not boolean',
      () => mc.set('v', 1, { noreply: 'yes' as unknown as boolean }),
      MemcachedValueError,
    ],
    ['setMany with one bad value', () => mc.setMany({ v1: 1, v2: undefined }), MemcachedValueError],
  ];
  test('a custom serde returning flags outside 0…2^32−1 or a non-Buffer: MemcachedSerdeError', async () => {
    for (const bad of [
      { value: Buffer.from('x'), flags: -1 },
      { value: Buffer.from('x'), flags: 2 ** 32 },
      { value: 'not a buffer', flags: 0 },
    ]) {
      const custom = new MemcachedClient({
        servers: server.address,
        serde: { serialize: () => bad as never, deserialize: (_k, v) => v },
      });
      try {
        const before = await commandCounters();
        await expect(custom.set('serde', 1)).rejects.toBeInstanceOf(MemcachedSerdeError);
        expect(await commandCounters()).toBe(before);
      } finally {
        await custom.close();
      }
    }
  });

  test.each(cases)('%s', async (_name, call, errorClass) => {
    const before = await commandCounters();
    await expect(call()).rejects.toBeInstanceOf(errorClass);
    expect(await commandCounters()).toBe(before);
  });
});

describe('server limits and foreign values', () => {
  test("a value over the server's -I limit fails cleanly and the client stays usable", async () => {
    await mc.set('big', 'old');
    const err = await mc.set('big', Buffer.alloc(100 * 1024, 1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MemcachedServerError);
    expect((err as Error).message).toMatch(/too large/);
    expect((err as MemcachedServerError).server).toBe(server.serverId);
    // memcached drops the old value of a key whose set was too large.
    expect(await mc.get('big')).toBeUndefined();
    expect(await mc.set('after', 'fine')).toBe(true);
    expect(await mc.get('after')).toBe('fine');
  });

  test('unknown flags give MemcachedSerdeError and the connection stays usable', async () => {
    await rawRequest(server, 'set pickled 1 0 3\r\nabc\r\n');
    await mc.set('next', 'ok');
    const err = await mc.get('pickled').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MemcachedSerdeError);
    expect((err as Error).message).toContain('pickled');
    expect(await mc.get('next')).toBe('ok');
    const many = await mc.getMany(['next', 'pickled']).catch((e: unknown) => e);
    expect(many).toBeInstanceOf(MemcachedSerdeError);
  });
});

describe('options', () => {
  test.each([
    [{ timeout: -1 }, 'timeout'],
    [{ timeout: 'fast' }, 'timeout'],
    [{ poolSize: 0 }, 'poolSize'],
    [{ hashing: 'crc' }, 'hashing'],
    [{ servers: 'host:notaport' }, 'servers'],
    [{ servers: ['a:1', { host: 'b', port: 70000 }] }, 'servers[1].port'],
    [{ servers: '::1:11211' }, 'servers'],
    [{ servers: [] }, 'servers'],
    [{ servers: 'a:1,a:1' }, 'servers'],
    [{ keyPrefix: 'a b' }, 'keyPrefix'],
    [{ maxValueSize: 0 }, 'maxValueSize'],
    [{ compression: { threshold: -1 } }, 'compression.threshold'],
    [{ auth: { username: '', password: 'x' } }, 'auth.username'],
    [{ retry: { attempts: 0 } }, 'retry.attempts'],
    [{ failover: { deadTimeout: 0 } }, 'failover.deadTimeout'],
    [{ serde: {} }, 'serde'],
    [{ protocol: 'udp' }, 'protocol'],
    [{ timout: 5 }, 'timout'],
    [{ failover: { deadTimout: 5 } }, 'failover.deadTimout'],
    [{ retry: { attempts: 2, unsafeCommands: ['flush'] } }, 'retry.unsafeCommands[0]'],
    [{ auth: true }, 'auth'],
  ])('%j fails at construction naming %s', (options, name) => {
    let err: unknown;
    try {
      new MemcachedClient(options as never);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MemcachedOptionsError);
    expect((err as MemcachedOptionsError).option).toBe(name);
    expect((err as Error).message).toContain(`"${name}"`);
  });

  test('servers come from options, then <PREFIX>_MEMCACHED_SERVERS, then MEMCACHED_SERVERS, then the default', async () => {
    const saved = { a: process.env.APP_MEMCACHED_SERVERS, b: process.env.MEMCACHED_SERVERS };
    try {
      process.env.APP_MEMCACHED_SERVERS = `${server.address},127.0.0.1:1:3`;
      process.env.MEMCACHED_SERVERS = '10.0.0.1:11211:2, 10.0.0.2:11211';
      const fromPrefixed = new MemcachedClient({ envPrefix: 'APP' });
      expect(fromPrefixed.servers).toEqual([server.serverId, '127.0.0.1:1']);
      await fromPrefixed.close();
      const fromPlain = new MemcachedClient();
      expect(fromPlain.servers).toEqual(['10.0.0.1:11211', '10.0.0.2:11211']);
      expect(fromPlain.options.servers.map((s) => s.weight)).toEqual([2, 1]);
      await fromPlain.close();
      const explicit = new MemcachedClient({
        servers: ['[::1]:1', { host: 'h', weight: 3 }, { path: '/tmp/m.sock' }],
      });
      expect(explicit.servers).toEqual(['[::1]:1', 'h:11211', '/tmp/m.sock']);
      await explicit.close();
      delete process.env.APP_MEMCACHED_SERVERS;
      delete process.env.MEMCACHED_SERVERS;
      const byDefault = new MemcachedClient();
      expect(byDefault.servers).toEqual(['127.0.0.1:11211']);
      await byDefault.close(); // never connected: nothing is sent to a server we did not start
    } finally {
      if (saved.a === undefined) delete process.env.APP_MEMCACHED_SERVERS;
      else process.env.APP_MEMCACHED_SERVERS = saved.a;
      if (saved.b === undefined) delete process.env.MEMCACHED_SERVERS;
      else process.env.MEMCACHED_SERVERS = saved.b;
    }
  });
});

describe('close', () => {
  test('close() leaves no sockets or timers behind', async () => {
    const baseline = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap');
    const c = new MemcachedClient({ servers: server.address, poolSize: 3, timeout: 60_000 });
    await Promise.all(Array.from({ length: 30 }, (_, i) => c.set(`h${i}`, i)));
    server.pause();
    const pending = c.get('h1').catch((e: unknown) => e);
    await c.close();
    server.resume();
    expect(await pending).toBeInstanceOf(Error);
    const count = (list: string[], kind: string): number => list.filter((r) => r === kind).length;
    // Destroyed sockets release their handles on later turns of the event loop (slower on a
    // loaded machine): wait up to 2 s; a leak stays forever.
    const settledDown = (list: string[]): boolean =>
      count(list, 'TCPSocketWrap') <= count(baseline, 'TCPSocketWrap') &&
      count(list, 'Timeout') <= count(baseline, 'Timeout') + 1; // +1: our own polling timer
    let after = process.getActiveResourcesInfo();
    for (let i = 0; i < 100 && !settledDown(after); i++) {
      await new Promise((r) => setTimeout(r, 20));
      after = process.getActiveResourcesInfo();
    }
    expect(count(after, 'TCPSocketWrap')).toBeLessThanOrEqual(count(baseline, 'TCPSocketWrap'));
    expect(count(after, 'Timeout')).toBeLessThanOrEqual(count(baseline, 'Timeout'));
  });
});

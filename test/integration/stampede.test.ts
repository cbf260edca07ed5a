/**
 * getOrSet's leases and stale-while-revalidate (API.md section 8) against memcached 1.6.18.
 * Several clients in one process stand for several processes here: each has its own single
 * flight, so only the server can make them agree (test/integration/stampede-processes.test.ts
 * does the same with real child processes). Factory runs are counted by memcached itself (an
 * incr counter), and placeholders are looked at with raw requests.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from '@jest/globals';
import {
  MemcachedClient,
  MemcachedOptionsError,
  MemcachedService,
  MemcachedValueError,
  type GetOrSetOptions,
} from '../../lib/index.js';
import {
  rawRequest,
  serverStats,
  startMemcached,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let server: MemcachedProcess;
let clients: MemcachedClient[];
let admin: MemcachedClient;

beforeAll(async () => {
  server = await startMemcached();
  clients = Array.from(
    { length: 4 },
    () => new MemcachedClient({ servers: server.address, protocol: 'meta', timeout: 3000 }),
  );
  admin = new MemcachedClient({ servers: server.address, protocol: 'meta' });
});

afterAll(async () => {
  await Promise.all([...clients, admin].map((c) => c.close()));
  await stopAllMemcached();
});

beforeEach(async () => {
  await admin.flushAll();
  await admin.set('runs', 0);
});

/** A factory that counts its runs in memcached, waits `ms`, then returns `value`. */
function counted<T>(value: T | (() => T), ms: number): () => Promise<T> {
  return async () => {
    await admin.incr('runs');
    await sleep(ms);
    return typeof value === 'function' ? (value as () => T)() : value;
  };
}

const runs = async (): Promise<number> => (await admin.get<number>('runs')) ?? -1;

/** `calls` concurrent getOrSet calls on each client. */
function stampede<T>(
  key: string,
  factory: () => Promise<T>,
  opts: GetOrSetOptions<T>,
  calls = 10,
): Promise<PromiseSettledResult<T>[]> {
  return Promise.allSettled(
    clients.flatMap((c) => Array.from({ length: calls }, () => c.getOrSet(key, factory, opts))),
  );
}

const values = <T>(settled: PromiseSettledResult<T>[]): unknown[] =>
  settled.map((s) => (s.status === 'fulfilled' ? s.value : `rejected: ${String(s.reason)}`));

// -----------------------------------------------------------------------------------------------

describe('a lease on a miss', () => {
  test('4 clients × 10 concurrent calls of one missing key: the factory runs once, every caller gets its value', async () => {
    const settled = await stampede('hot', counted({ id: 1 }, 300), {
      lease: true,
      ttl: 60,
    });
    expect(values(settled)).toEqual(Array(40).fill({ id: 1 }));
    expect(await runs()).toBe(1);
    expect(await admin.get('hot')).toEqual({ id: 1 });
  });

  test('without a lease every client computes (one run per client: single flight is per process)', async () => {
    const settled = await stampede('cold', counted('v', 300), { ttl: 60 });
    expect(values(settled)).toEqual(Array(40).fill('v'));
    expect(await runs()).toBe(clients.length);
  });

  test('lease: true is { ttl: 30, wait: 2000 }: the placeholder lives 30 s', async () => {
    let placeholder = '';
    await clients[0]!.getOrSet(
      'defaults',
      async () => {
        placeholder = await rawRequest(server, 'mg defaults v t\r\n');
        return 1;
      },
      { lease: true },
    );
    expect(placeholder).toMatch(/^VA 0 t(30|29) Z\r\n\r\n$/);
  });

  test('a throwing factory gives the lease back at once: a caller of another client computes long before lease.ttl', async () => {
    const opts = { lease: { ttl: 20, wait: 15_000 }, ttl: 60 };
    const started = performance.now();
    const failing = clients[0]!.getOrSet(
      'boom',
      async () => {
        await admin.incr('runs');
        await sleep(200);
        throw new Error('database down');
      },
      opts,
    );
    await sleep(50); // client 0 holds the lease now
    const taker = clients[1]!.getOrSet('boom', counted('recovered', 10), opts);
    await expect(failing).rejects.toThrow('database down');
    expect(await taker).toBe('recovered');
    // Seconds, not the lease's 20 s: the placeholder was deleted when the factory threw.
    expect(performance.now() - started).toBeLessThan(5000);
    expect(await runs()).toBe(2);
    expect(await admin.get('boom')).toBe('recovered');
  });

  test('a result that is not stored (undefined, unless) also gives the lease back at once', async () => {
    const opts = { lease: { ttl: 20, wait: 15_000 } };
    for (const [first, extra] of [
      [undefined, {}],
      ['skip', { unless: (v: unknown) => v === 'skip' }],
    ] as const) {
      await admin.delete('kept');
      const started = performance.now();
      const one = clients[0]!.getOrSet('kept', counted(first, 200), { ...opts, ...extra });
      await sleep(50);
      const two = clients[1]!.getOrSet('kept', counted('second', 10), { ...opts, ...extra });
      expect(await one).toBe(first);
      expect(await two).toBe('second');
      expect(performance.now() - started).toBeLessThan(5000);
    }
  });

  test('a holder that died leaves its placeholder: the others wait, and compute once it expired after lease.ttl', async () => {
    // A raw connection takes the lease and goes away without writing.
    expect(await rawRequest(server, 'mg orphan v c N2\r\n')).toMatch(/^VA 0 c\d+ W\r\n/);
    const started = performance.now();
    const value = await clients[0]!.getOrSet('orphan', counted('mine', 10), {
      lease: { ttl: 2, wait: 20_000 },
    });
    const waited = performance.now() - started;
    expect(value).toBe('mine');
    expect(waited).toBeGreaterThan(900); // memcached's clock ticks in whole seconds
    expect(await runs()).toBe(1);
    expect(await admin.get('orphan')).toBe('mine');
  });

  test('after waiting lease.wait, a caller computes itself and stores over the placeholder it saw; the late holder then cannot overwrite it', async () => {
    const taken = await rawRequest(server, 'mg late v c N30\r\n');
    const cas = /c(\d+)/.exec(taken)![1]!;
    const started = performance.now();
    expect(
      await clients[0]!.getOrSet('late', counted('waited', 10), {
        lease: { ttl: 30, wait: 300 },
        ttl: 60,
      }),
    ).toBe('waited');
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    expect(await admin.get('late')).toBe('waited');
    // The original holder comes back with the placeholder's cas: refused.
    expect(await rawRequest(server, `ms late 4 C${cas} T60\r\nlate\r\n`)).toBe('EX\r\n');
    expect(await admin.get('late')).toBe('waited');
  });

  describe('a write, delete or invalidation while the factory runs wins', () => {
    const during = async (
      change: (c: MemcachedClient) => Promise<unknown>,
      by: MemcachedClient,
    ): Promise<unknown> => {
      await admin.delete('race');
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const pending = clients[0]!.getOrSet(
        'race',
        async () => {
          await gate;
          return 'computed from old data';
        },
        { lease: true, ttl: 60 },
      );
      await sleep(30);
      await change(by);
      release();
      expect(await pending).toBe('computed from old data'); // the caller still gets it
      return admin.get('race');
    };

    test.each([
      ['another client', 1],
      ['the same client', 0],
    ])('by %s', async (_label, index) => {
      const by = clients[index]!;
      expect(await during((c) => c.set('race', 'newer'), by)).toBe('newer');
      expect(await during((c) => c.delete('race'), by)).toBeUndefined();
      expect(await during((c) => c.invalidate('race'), by)).toBeUndefined();
    });
  });

  test('MemcachedService.getOrSet and client.getOrSet share one single flight', async () => {
    const service = new MemcachedService(clients[0]!);
    const factory = counted('shared', 200);
    const both = await Promise.all([
      service.getOrSet('svc', factory),
      clients[0]!.getOrSet('svc', factory),
      service.getOrSet('svc', factory),
    ]);
    expect(both).toEqual(['shared', 'shared', 'shared']);
    expect(await runs()).toBe(1);
  });
});

// -----------------------------------------------------------------------------------------------

describe('stale-while-revalidate', () => {
  const opts = { ttl: 1, staleWhileRevalidate: 30 };

  test('values are stored for ttl + staleWhileRevalidate seconds', async () => {
    await clients[0]!.getOrSet('stored', () => 'v', { ttl: 100, staleWhileRevalidate: 20 });
    const left = Number(/t(\d+)/.exec(await rawRequest(server, 'mg stored t\r\n'))![1]);
    expect(left).toBeGreaterThan(115);
    expect(left).toBeLessThanOrEqual(120);
  });

  test('past ttl: every client gets the old value at once, exactly one refresh runs in the background, then the new value is served', async () => {
    expect(await clients[0]!.getOrSet('swr', () => 'old', opts)).toBe('old');
    await sleep(2100); // past ttl (1 s), well within the window
    const settled = await stampede('swr', counted('new', 300), opts, 5);
    expect(values(settled)).toEqual(Array(20).fill('old'));
    for (let i = 0; i < 100 && (await admin.get('swr')) !== 'new'; i++) await sleep(20);
    expect(await admin.get('swr')).toBe('new');
    expect(await runs()).toBe(1);
    expect(await clients[1]!.getOrSet('swr', counted('newer', 10), opts)).toBe('new');
    expect(await runs()).toBe(1);
  });

  test('a failing background refresh gives the token back: a later reader refreshes', async () => {
    expect(await clients[0]!.getOrSet('retry', () => 'old', opts)).toBe('old');
    await sleep(2100);
    let attempt = 0;
    const factory = async (): Promise<string> => {
      await admin.incr('runs');
      if (++attempt === 1) throw new Error('refresh failed');
      return 'fixed';
    };
    expect(await clients[0]!.getOrSet('retry', factory, opts)).toBe('old');
    await sleep(100); // the first refresh failed and gave the token back
    expect(await clients[1]!.getOrSet('retry', factory, opts)).toBe('old');
    for (let i = 0; i < 100 && (await admin.get('retry')) !== 'fixed'; i++) await sleep(20);
    expect(await admin.get('retry')).toBe('fixed');
    expect(await runs()).toBe(2);
  });

  test('invalidate: callers with staleWhileRevalidate keep the old value while one refreshes; callers without it compute; false when missing', async () => {
    await admin.set('inv', 'old', { ttl: 100 });
    expect(await clients[0]!.invalidate('inv')).toBe(true);
    expect(await clients[0]!.invalidate('inv:missing')).toBe(false);
    const swr = { ttl: 100, staleWhileRevalidate: 10 };
    const served = await Promise.all(
      clients.map((c) => c.getOrSet('inv', counted('new', 300), swr)),
    );
    expect(served).toEqual(Array(clients.length).fill('old'));
    for (let i = 0; i < 100 && (await admin.get('inv')) !== 'new'; i++) await sleep(20);
    expect(await runs()).toBe(1);

    await admin.invalidate('inv');
    expect(await clients[1]!.getOrSet('inv', counted('strict', 10), { ttl: 100 })).toBe('strict');
    expect(await admin.get('inv')).toBe('strict');
  });

  test('invalidate bounds the stale window: staleTtl seconds (default 30)', async () => {
    await admin.set('window', 'v', { ttl: 0 });
    await admin.invalidate('window');
    expect(await rawRequest(server, 'mg window t\r\n')).toMatch(/^HD t(30|29) X W\r\n$/);
    await admin.set('window', 'v', { ttl: 0 });
    await admin.invalidate('window', { staleTtl: 5 });
    expect(await rawRequest(server, 'mg window t\r\n')).toMatch(/^HD t[45] X W\r\n$/);
  });

  test('without staleWhileRevalidate an expired value is a miss', async () => {
    await clients[0]!.getOrSet('plain', () => 'old', { ttl: 1 });
    await sleep(2100);
    expect(await clients[0]!.getOrSet('plain', () => 'new', { ttl: 1 })).toBe('new');
  });
});

// -----------------------------------------------------------------------------------------------

describe('options', () => {
  test('on the text protocol, lease, staleWhileRevalidate and invalidate reject with MemcachedOptionsError naming protocol; nothing is sent', async () => {
    const plain = new MemcachedClient({ servers: server.address });
    const service = new MemcachedService({ servers: server.address });
    try {
      const before = (await serverStats(server))['cmd_get'];
      const errors = await Promise.all(
        [
          plain.getOrSet('k', () => 1, { lease: true }),
          plain.getOrSet('k', () => 1, { staleWhileRevalidate: 5 }),
          plain.getOrSet('k', () => 1, { lease: { ttl: 5 } }),
          plain.invalidate('k'),
          service.getOrSet('k', () => 1, { lease: true }),
          service.invalidate('k'),
        ].map((p) => p.catch((e: unknown) => e)),
      );
      for (const error of errors) {
        expect(error).toBeInstanceOf(MemcachedOptionsError);
        expect((error as MemcachedOptionsError).option).toBe('protocol');
        expect((error as Error).message).toMatch(/needs protocol: 'meta'/);
      }
      expect((await serverStats(server))['cmd_get']).toBe(before);
      // Plain getOrSet works on text, and `lease: false` / staleWhileRevalidate 0 ask for nothing.
      expect(await plain.getOrSet('k', () => 1, { lease: false, staleWhileRevalidate: 0 })).toBe(1);
    } finally {
      await plain.close();
      await service.close();
    }
  });

  test.each<[string, GetOrSetOptions<unknown>, RegExp]>([
    ['lease.ttl -1', { lease: { ttl: -1 } }, /lease\.ttl must be a whole number of seconds/],
    ['lease.ttl "5"', { lease: { ttl: '5' as unknown as number } }, /lease\.ttl .* got "5"/],
    [
      'lease.wait -5',
      { lease: { wait: -5 } },
      /lease\.wait must be a whole number of milliseconds/,
    ],
    ['lease.wait NaN', { lease: { wait: NaN } }, /lease\.wait .* got NaN/],
    ['a lease typo', { lease: { tll: 5 } as never }, /unknown lease option "tll"/],
    ['lease "yes"', { lease: 'yes' as never }, /lease must be true, false or \{ ttl\?, wait\? \}/],
    ['staleWhileRevalidate -1', { staleWhileRevalidate: -1 }, /staleWhileRevalidate must be/],
    ['staleWhileRevalidate "x"', { staleWhileRevalidate: 'x' as never }, /got "x"/],
    ['ttl + swr over 30 days', { ttl: 2_592_000, staleWhileRevalidate: 1 }, /30-day limit/],
    ['ttl 1.5', { ttl: 1.5 }, /ttl must be an integer/],
    ['an option typo', { staleWhileRevalidte: 5 } as never, /unknown option "staleWhileRevalidte"/],
  ])('%s: MemcachedValueError before anything is sent', async (_label, opts, message) => {
    const before = (await serverStats(server))['cmd_get'];
    let ran = false;
    const error = await clients[0]!
      .getOrSet('bad', () => (ran = true), opts)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MemcachedValueError);
    expect((error as Error).message).toMatch(/^getOrSet "bad": /);
    expect((error as Error).message).toMatch(message);
    expect(ran).toBe(false);
    expect((await serverStats(server))['cmd_get']).toBe(before);
  });

  test('invalidate: a bad staleTtl is MemcachedValueError before anything is sent', async () => {
    await expect(clients[0]!.invalidate('k', { staleTtl: 0 })).rejects.toBeInstanceOf(
      MemcachedValueError,
    );
    await expect(clients[0]!.invalidate('k', { staleTtl: -3 })).rejects.toThrow(
      /staleTtl must be a whole number of seconds from 1/,
    );
  });
});

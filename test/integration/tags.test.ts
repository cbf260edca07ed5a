/**
 * Tag invalidation (API.md section 10) against real memcached servers, on every protocol:
 * getOrSet with `tags`, invalidateTags, the version keys and the envelope. The servers are
 * never flushed (`stats cmd_flush` stays 0): every test uses keys and tags of its own. Factory
 * runs are counted locally (one client) or by memcached (an incr counter, several clients).
 */
import { afterAll, beforeAll, describe, expect, jest, test } from '@jest/globals';
import * as dc from 'node:diagnostics_channel';
import { Connection } from '../../lib/connection/connection.js';
import {
  MemcachedClient,
  MemcachedConnectionError,
  MemcachedKeyError,
  MemcachedOptionsError,
  MemcachedService,
  TaggedValue,
} from '../../lib/index.js';
import {
  rawRequest,
  serverStats,
  startMemcached,
  startMemcacheds,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';
import { PROTOCOLS } from '../harness/protocols.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let server: MemcachedProcess;
let trio: MemcachedProcess[];
const open: MemcachedClient[] = [];
let unique = 0;
/** A name no other test uses (keys and tags live on without flushes). */
const fresh = (what: string): string => `${what}-${process.pid}-${++unique}`;

beforeAll(async () => {
  server = await startMemcached();
  trio = await startMemcacheds(3);
});

afterAll(async () => {
  await Promise.all(open.map((c) => c.close()));
  // The whole suite ran without a single flush_all.
  for (const s of [server, ...trio]) expect((await serverStats(s))['cmd_flush']).toBe('0');
  await stopAllMemcached();
});

function client(options: ConstructorParameters<typeof MemcachedClient>[0] = {}): MemcachedClient {
  const c = new MemcachedClient({ servers: server.address, timeout: 3000, ...options });
  open.push(c);
  return c;
}

/** A factory counting its runs. */
function counter<T>(
  value: (n: number) => T,
  ms = 0,
): { runs: () => number; factory: () => Promise<T> } {
  let n = 0;
  return {
    runs: () => n,
    factory: async () => {
      n++;
      if (ms > 0) await sleep(ms);
      return value(n);
    },
  };
}

const stat = async (s: MemcachedProcess, name: string): Promise<number> =>
  Number((await serverStats(s))[name]);

describe.each(PROTOCOLS)('protocol %s', (protocol) => {
  test('a tagged value hits until one of its tags is invalidated; values under other tags still hit; no flush', async () => {
    const mc = client({ protocol });
    const [products, users] = [fresh('products'), fresh('users')];
    const [list, user] = [fresh('list'), fresh('user')];
    const a = counter((n) => ({ list: n }));
    const b = counter((n) => `user:${n}`);
    expect(await mc.getOrSet(list, a.factory, { tags: [products], ttl: 60 })).toEqual({ list: 1 });
    expect(await mc.getOrSet(user, b.factory, { tags: [users], ttl: 60 })).toBe('user:1');
    expect(await mc.getOrSet(list, a.factory, { tags: [products], ttl: 60 })).toEqual({ list: 1 });
    expect(await mc.getOrSet(user, b.factory, { tags: [users], ttl: 60 })).toBe('user:1');
    expect([a.runs(), b.runs()]).toEqual([1, 1]);

    await mc.invalidateTags([products]);
    expect(await mc.getOrSet(list, a.factory, { tags: [products], ttl: 60 })).toEqual({ list: 2 });
    expect(await mc.getOrSet(user, b.factory, { tags: [users], ttl: 60 })).toBe('user:1');
    // The recomputed value is stored under the new version: a hit again.
    expect(await mc.getOrSet(list, a.factory, { tags: [products], ttl: 60 })).toEqual({ list: 2 });
    expect([a.runs(), b.runs()]).toEqual([2, 1]);
    expect(await stat(server, 'cmd_flush')).toBe(0);
  });

  test('one tag of several invalidated is enough; the version key is `__tag:<tag>` under keyPrefix', async () => {
    const prefix = `${fresh('app')}:`;
    const mc = client({ protocol, keyPrefix: prefix });
    const plain = client({ protocol });
    const tags = [fresh('t1'), fresh('t2'), fresh('t3')];
    const key = fresh('k');
    const c = counter((n) => n);
    await mc.getOrSet(key, c.factory, { tags });
    // The version keys exist under the prefix, as raw bytes.
    for (const tag of tags) {
      const version = await plain.get<Buffer>(`${prefix}__tag:${tag}`);
      expect(Buffer.isBuffer(version) && version.length).toBe(16);
    }
    await mc.invalidateTags([tags[1]!]);
    expect(await mc.getOrSet(key, c.factory, { tags })).toBe(2);
    expect(await mc.getOrSet(key, c.factory, { tags })).toBe(2);
    expect(c.runs()).toBe(2);
  });

  test('a version key that is gone (evicted: deleted directly) makes every value under it a miss, never a hit', async () => {
    const mc = client({ protocol });
    const tag = fresh('evicted');
    const [k1, k2] = [fresh('k'), fresh('k')];
    const c = counter((n) => `v${n}`);
    expect(await mc.getOrSet(k1, c.factory, { tags: [tag], ttl: 60 })).toBe('v1');
    expect(await mc.getOrSet(k2, c.factory, { tags: [tag], ttl: 60 })).toBe('v2');
    const reply = await rawRequest(server, `delete __tag:${tag}\r\n`, /\r\n$/);
    expect(reply).toBe('DELETED\r\n');
    // The first reader creates a new version; the other value, stored under the old one, is
    // still a miss: a version is never made again.
    expect(await mc.getOrSet(k1, c.factory, { tags: [tag], ttl: 60 })).toBe('v3');
    expect(await mc.getOrSet(k2, c.factory, { tags: [tag], ttl: 60 })).toBe('v4');
    expect(await mc.getOrSet(k1, c.factory, { tags: [tag], ttl: 60 })).toBe('v3');
    expect(await mc.getOrSet(k2, c.factory, { tags: [tag], ttl: 60 })).toBe('v4');
    expect(c.runs()).toBe(4);
  });

  test('a tag invalidated while the factory runs wins: the stored value reads back as a miss', async () => {
    const mc = client({ protocol });
    const other = client({ protocol }); // another process's client: shares nothing but the server
    const tag = fresh('race');
    const key = fresh('k');
    let runs = 0;
    const factory = async (): Promise<string> => {
      runs++;
      if (runs === 1) {
        await other.invalidateTags([tag]);
      }
      return `v${runs}`;
    };
    expect(await mc.getOrSet(key, factory, { tags: [tag] })).toBe('v1');
    // It was stored (in add mode after the miss), with the version read before the factory ran.
    const raw = await other.get(key);
    expect(raw).toBeInstanceOf(TaggedValue);
    expect((raw as TaggedValue).value).toBe('v1');
    expect(await mc.getOrSet(key, factory, { tags: [tag] })).toBe('v2');
    expect(await mc.getOrSet(key, factory, { tags: [tag] })).toBe('v2');
    expect(runs).toBe(2);
  });

  test('invalidateTags on the same client while a factory runs: the result is not stored, later callers do not join it', async () => {
    const mc = client({ protocol });
    const tag = fresh('inflight');
    const key = fresh('k');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const first = mc.getOrSet(
      key,
      async () => {
        await gate;
        return 'old';
      },
      { tags: [tag] },
    );
    await sleep(50);
    await mc.invalidateTags([tag]);
    const second = mc.getOrSet(key, () => 'new', { tags: [tag] });
    release();
    expect(await first).toBe('old');
    expect(await second).toBe('new');
    expect(await mc.getOrSet(key, () => 'third', { tags: [tag] })).toBe('new');
  });

  test('a plain get sees the envelope (TaggedValue); an untagged getOrSet does not take it for a hit', async () => {
    const mc = client({ protocol });
    const tag = fresh('env');
    const key = fresh('k');
    await mc.getOrSet(key, () => ({ a: 1 }), { tags: [tag] });
    const seen = await mc.get(key);
    expect(seen).toBeInstanceOf(TaggedValue);
    const tagged = seen as TaggedValue<{ a: number }>;
    expect(tagged.value).toEqual({ a: 1 });
    expect([...tagged.versions.keys()]).toEqual([`__tag:${tag}`]);
    const version = await mc.get<Buffer>(`__tag:${tag}`);
    expect(tagged.versions.get(`__tag:${tag}`)).toBe(version!.toString('latin1'));
    expect((await mc.getMany([key])).get(key)).toBeInstanceOf(TaggedValue);
    expect(await mc.getOrSet(key, () => 'untagged')).toBe('untagged');
    expect(await mc.get(key)).toBe('untagged');
  });

  test('a value stored with other tags is a miss for a read with these tags', async () => {
    const mc = client({ protocol });
    const [t1, t2] = [fresh('a'), fresh('b')];
    const key = fresh('k');
    expect(await mc.getOrSet(key, () => 'ab', { tags: [t1, t2] })).toBe('ab');
    expect(await mc.getOrSet(key, () => 'ab', { tags: [t2, t1] })).toBe('ab'); // order is free
    expect(await mc.getOrSet(key, () => 'a', { tags: [t1] })).toBe('a');
    expect(await mc.getOrSet(key, () => 'x', { tags: [t1] })).toBe('a');
  });

  test('tags too long for a key are hashed (`__tag#…`); non-ASCII tags work', async () => {
    const mc = client({ protocol, keyPrefix: 'p:' });
    const long = 'x'.repeat(300) + fresh('');
    const utf = `caf\u00e9-${fresh('t')}`;
    const key = fresh('k');
    const c = counter((n) => n);
    await mc.getOrSet(key, c.factory, { tags: [long, utf] });
    const entry = (await mc.get(key)) as TaggedValue;
    const keys = [...entry.versions.keys()];
    expect(keys[0]).toMatch(/^__tag#[A-Za-z0-9_-]{43}$/);
    expect(keys[1]).toBe(`__tag:${utf}`);
    await mc.getOrSet(key, c.factory, { tags: [long, utf] });
    expect(c.runs()).toBe(1);
    await mc.invalidateTags([long]);
    await mc.getOrSet(key, c.factory, { tags: [long, utf] });
    expect(c.runs()).toBe(2);
  });

  test('bad tags reject with MemcachedKeyError before anything is sent', async () => {
    const mc = client({ protocol });
    const before = await serverStats(server);
    const bad: unknown[] = [
      'products',
      [''],
      ['a b'],
      ['a\nb'],
      [1],
      [null],
      ['\ud800'],
      Array(33)
        .fill(0)
        .map((_, i) => `t${i}`),
    ];
    for (const tags of bad) {
      await expect(mc.invalidateTags(tags as string[])).rejects.toThrow(MemcachedKeyError);
      await expect(mc.getOrSet(fresh('k'), () => 1, { tags: tags as string[] })).rejects.toThrow(
        MemcachedKeyError,
      );
    }
    await expect(mc.invalidateTags(['a b'])).rejects.toThrow(/tag "a b" contains a space/);
    await mc.invalidateTags([]); // nothing to do
    const after = await serverStats(server);
    for (const name of ['cmd_get', 'cmd_set', 'cmd_touch', 'delete_hits', 'delete_misses']) {
      expect([name, after[name]]).toEqual([name, before[name]]);
    }
  });

  if (protocol !== 'meta') {
    test('tags with lease or staleWhileRevalidate: refused as without tags (they need meta)', async () => {
      const mc = client({ protocol });
      for (const o of [{ lease: true }, { staleWhileRevalidate: 10 }]) {
        await expect(mc.getOrSet(fresh('k'), () => 1, { tags: ['t'], ...o })).rejects.toThrow(
          MemcachedOptionsError,
        );
      }
    });
  }

  test('MemcachedService: getOrSet with tags and invalidateTags (delegated)', async () => {
    const service = new MemcachedService({ servers: server.address, protocol });
    try {
      const tag = fresh('svc');
      const key = fresh('k');
      const c = counter((n) => n);
      await service.getOrSet(key, c.factory, { tags: [tag] });
      await service.getOrSet(key, c.factory, { tags: [tag] });
      await service.invalidateTags([tag]);
      await service.getOrSet(key, c.factory, { tags: [tag] });
      expect(c.runs()).toBe(2);
    } finally {
      await service.close();
    }
  });

  test.each([true, false])(
    'the cost of a read, counted (autoBatch %s): a tagged hit is one request and 1 + tags keys read (cmd_get)',
    async (autoBatch) => {
      const mc = client({ protocol, autoBatch });
      const tags = [fresh('c1'), fresh('c2')];
      const [plainKey, taggedKey] = [fresh('plain'), fresh('tagged')];
      await mc.getOrSet(plainKey, () => 'v');
      await mc.getOrSet(taggedKey, () => 'v', { tags });
      /** [requests sent, keys the server read] for `run`. */
      const cost = async (run: () => Promise<unknown>): Promise<[number, number]> => {
        const before = await stat(server, 'cmd_get');
        const spy = jest.spyOn(Connection.prototype, 'enqueue');
        try {
          await run();
          return [spy.mock.calls.length, (await stat(server, 'cmd_get')) - before];
        } finally {
          spy.mockRestore();
        }
      };
      expect(await cost(() => mc.getOrSet(plainKey, () => 'x'))).toEqual([1, 1]);
      expect(await cost(() => mc.getOrSet(taggedKey, () => 'x', { tags }))).toEqual([1, 3]);
      // Ten concurrent tagged reads: with autoBatch one multi-get for all of them.
      const ten = (): Promise<unknown> =>
        Promise.all(Array.from({ length: 10 }, () => mc.getOrSet(taggedKey, () => 'x', { tags })));
      // (Single flight: the ten calls of one key share one read.)
      expect(await cost(ten)).toEqual([1, 3]);
      const keys = Array.from({ length: 10 }, () => fresh('many'));
      for (const key of keys) await mc.getOrSet(key, () => 'v', { tags });
      const many = (): Promise<unknown> =>
        Promise.all(keys.map((key) => mc.getOrSet(key, () => 'x', { tags })));
      // With autoBatch the tick's reads share one multi-get, each key asked once (10 + 2 tags).
      expect(await cost(many)).toEqual(autoBatch ? [1, 12] : [10, 30]);
      // A miss under existing tags: the read, then the write of the value.
      await mc.invalidateTags([tags[0]!]);
      expect(await cost(() => mc.getOrSet(taggedKey, () => 'y', { tags }))).toEqual([2, 3]);
      // invalidateTags: one write per tag (in one round trip per server), nothing read.
      expect(await cost(() => mc.invalidateTags(tags))).toEqual([2, 0]);
    },
  );

  test('three servers: value and version keys on different servers, one request per server, one cmd_get per key', async () => {
    const mc = new MemcachedClient({ servers: trio.map((s) => s.address), protocol });
    open.push(mc);
    const byId = new Map(trio.map((s) => [s.serverId, s]));
    // A key and two tags whose three keys land on three different servers.
    const spread = (): { key: string; tags: string[] } => {
      for (let i = 0; i < 500; i++) {
        const key = fresh('multi');
        const tags = [fresh('ta'), fresh('tb')];
        const homes = new Set([key, ...tags.map((t) => `__tag:${t}`)].map((k) => mc.serverFor(k)));
        if (homes.size === 3) return { key, tags };
      }
      throw new Error('no spread found');
    };
    const { key, tags } = spread();
    const c = counter((n) => n);
    await mc.getOrSet(key, c.factory, { tags });
    const gets = async (): Promise<number[]> => Promise.all(trio.map((s) => stat(s, 'cmd_get')));
    const before = await gets();
    expect(await mc.getOrSet(key, c.factory, { tags })).toBe(1);
    const after = await gets();
    // A tagged read asked each of the three servers for its one key.
    expect(after.map((n, i) => n - before[i]!)).toEqual([1, 1, 1]);
    await mc.invalidateTags([tags[0]!]);
    expect(await mc.getOrSet(key, c.factory, { tags })).toBe(2);
    expect(await mc.getOrSet(key, c.factory, { tags })).toBe(2);
    expect(c.runs()).toBe(2);
    expect(byId.size).toBe(3);
  });
});

describe('a version key on a server that does not answer', () => {
  test.each(PROTOCOLS)(
    '%s, with ignoreErrors: the tagged call computes every time (reported, outcome error), never a hit',
    async (protocol) => {
      const dead = '127.0.0.1:1';
      const mc = client({
        protocol,
        servers: [server.address, dead],
        ignoreErrors: true,
        connectTimeout: 200,
        timeout: 500,
      });
      const spread = (): { key: string; tag: string } => {
        for (let i = 0; i < 500; i++) {
          const key = fresh('k');
          const tag = fresh('t');
          if (mc.serverFor(key) === server.serverId && mc.serverFor(`__tag:${tag}`) === dead) {
            return { key, tag };
          }
        }
        throw new Error('no placement found');
      };
      const { key, tag } = spread();
      const ignored: string[] = [];
      mc.on('ignoredError', ({ command }) => void ignored.push(command));
      const outcomes: string[] = [];
      const onCache = (m: unknown): void => {
        const event = m as { key: string; outcome: string };
        if (event.key === key) outcomes.push(event.outcome);
      };
      dc.subscribe('memcached:cache', onCache);
      const c = counter((n) => n);
      try {
        expect(await mc.getOrSet(key, c.factory, { tags: [tag] })).toBe(1);
        expect(await mc.getOrSet(key, c.factory, { tags: [tag] })).toBe(2);
      } finally {
        dc.unsubscribe('memcached:cache', onCache);
      }
      expect(outcomes).toEqual(['error', 'error']);
      expect(ignored.length).toBeGreaterThan(0);
      expect(new Set(ignored)).toEqual(new Set(['getOrSet']));
      // Nothing was stored under a version nobody can check.
      expect(await mc.get(key)).toBeUndefined();
      await expect(mc.invalidateTags([tag])).resolves.toBeUndefined(); // ignored, reported
      expect(ignored.filter((c) => c === 'invalidateTags').length).toBe(1);
    },
  );

  test("without ignoreErrors, invalidateTags rejects when a version key's server does not answer", async () => {
    const dead = '127.0.0.1:1';
    const mc = client({ servers: [server.address, dead], connectTimeout: 200, timeout: 500 });
    let tag = fresh('t');
    while (mc.serverFor(`__tag:${tag}`) !== dead) tag = fresh('t');
    await expect(mc.invalidateTags([tag])).rejects.toThrow(MemcachedConnectionError);
  });
});

describe('meta protocol: tags with lease and staleWhileRevalidate', () => {
  /** Clients that stand for processes: each has its own single flight. */
  const several = (n: number): MemcachedClient[] =>
    Array.from({ length: n }, () => client({ protocol: 'meta' }));

  test('lease: a tagged hit, then after invalidateTags one factory run across four clients × five calls', async () => {
    const clients = several(4);
    const admin = clients[0]!;
    const tag = fresh('lt');
    const key = fresh('k');
    const counterKey = fresh('runs');
    await admin.set(counterKey, 0);
    const factory = async (): Promise<string> => {
      const n = await admin.incr(counterKey);
      await sleep(300);
      return `v${n}`;
    };
    const opts = { tags: [tag], lease: { ttl: 10, wait: 5000 }, ttl: 60 };
    expect(await clients[1]!.getOrSet(key, factory, opts)).toBe('v1');
    expect(await clients[2]!.getOrSet(key, factory, opts)).toBe('v1');
    await clients[3]!.invalidateTags([tag]);
    const all = await Promise.all(
      clients.flatMap((c) => Array.from({ length: 5 }, () => c.getOrSet(key, factory, opts))),
    );
    expect(all).toEqual(Array(20).fill('v2'));
    expect(await admin.get(counterKey)).toBe(2);
    expect(await clients[2]!.getOrSet(key, factory, opts)).toBe('v2');
  });

  test('lease: a client arriving while the recomputation of a tag-invalidated value runs waits for it (the stale item is not marked again)', async () => {
    const [a, b, admin] = several(3);
    const tag = fresh('late');
    const key = fresh('k');
    let runs = 0;
    const factory = async (): Promise<string> => {
      runs++;
      await sleep(400);
      return `v${runs}`;
    };
    const opts = { tags: [tag], lease: { ttl: 10, wait: 5000 }, ttl: 60 };
    expect(await a!.getOrSet(key, factory, opts)).toBe('v1');
    await admin!.invalidateTags([tag]);
    const first = a!.getOrSet(key, factory, opts);
    await sleep(150); // a holds the token and computes
    const second = b!.getOrSet(key, factory, opts);
    expect(await Promise.all([first, second])).toEqual(['v2', 'v2']);
    expect(runs).toBe(2);
  });

  test('lease: a version key that is gone makes the value a miss; a tag invalidated while the lease holder computes wins', async () => {
    const [mc, other] = several(2);
    const tag = fresh('lg');
    const key = fresh('k');
    let runs = 0;
    const opts = { tags: [tag], lease: true, ttl: 60 };
    const factory = async (): Promise<string> => {
      runs++;
      if (runs === 2) await other!.invalidateTags([tag]);
      return `v${runs}`;
    };
    expect(await mc!.getOrSet(key, factory, opts)).toBe('v1');
    expect(await rawRequest(server, `delete __tag:${tag}\r\n`, /\r\n$/)).toBe('DELETED\r\n');
    // The miss's factory invalidates the tag (another client) while it runs.
    expect(await mc!.getOrSet(key, factory, opts)).toBe('v2');
    const stored = await other!.get(key);
    expect((stored as TaggedValue).value).toBe('v2'); // stored, with the versions read before
    expect(await mc!.getOrSet(key, factory, opts)).toBe('v3');
    expect(await mc!.getOrSet(key, factory, opts)).toBe('v3');
    expect(runs).toBe(3);
  });

  test('staleWhileRevalidate: a valid value past ttl is served while one refresh runs; an invalidated tag is never served stale', async () => {
    const [mc, other] = several(2);
    const tag = fresh('swr');
    const key = fresh('k');
    let runs = 0;
    const factory = async (): Promise<string> => {
      runs++;
      await sleep(200);
      return `v${runs}`;
    };
    const opts = { tags: [tag], ttl: 1, staleWhileRevalidate: 60 };
    expect(await mc!.getOrSet(key, factory, opts)).toBe('v1');
    await sleep(2100); // past ttl, within the stale window
    expect(await other!.getOrSet(key, factory, opts)).toBe('v1'); // served at once…
    await sleep(400); // …while its refresh runs in the background, stored under the tag
    expect(runs).toBe(2);
    expect(await mc!.getOrSet(key, factory, opts)).toBe('v2');
    await other!.invalidateTags([tag]);
    // Not the stale v2: a miss, computed now.
    expect(await mc!.getOrSet(key, factory, opts)).toBe('v3');
    expect(await other!.getOrSet(key, factory, opts)).toBe('v3');
    expect(runs).toBe(3);
  });

  test('a value stored without tags is a miss for a tagged read with a lease', async () => {
    const [mc] = several(1);
    const key = fresh('k');
    await mc!.set(key, 'plain');
    expect(await mc!.getOrSet(key, () => 'tagged', { tags: [fresh('t')], lease: true })).toBe(
      'tagged',
    );
    expect(((await mc!.get(key)) as TaggedValue).value).toBe('tagged');
  });
});

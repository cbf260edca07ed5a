/**
 * KeyvMemcached against memcached servers started by the harness: what is stored where, TTLs
 * as the server sees them, namespace-scoped clear() (in this process and from another one),
 * hashed keys, round trips per server (counted by a proxy), has/hasMany, ownership of the
 * client, and failures.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import Keyv, { type KeyvStoreAdapter } from 'keyv';
import ts from 'typescript';
import {
  MemcachedClient,
  MemcachedConnectionError,
  MemcachedError,
  MemcachedKeyError,
  MemcachedOptionsError,
  MemcachedValueError,
} from '../../lib/client/index.js';
import { KeyvMemcached } from '../../lib/keyv/index.js';
import { MemcachedService } from '../../lib/memcached.service.js';
import {
  rawRequest,
  serverStats,
  startMemcached,
  startMemcacheds,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';
import { turnProxy, type TurnProxy } from './turn-proxy.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DAY_MS = 86_400_000;

let servers: MemcachedProcess[];
let client: MemcachedClient;

beforeAll(async () => {
  servers = await startMemcacheds(2);
  client = new MemcachedClient({ servers: servers.map((s) => s.address) });
});

afterAll(async () => {
  await client.close();
  await stopAllMemcached();
});

/** The harness process holding `key` (a key as the client is given it). */
function serverOf(key: string, via: MemcachedClient = client): MemcachedProcess {
  const id = via.serverFor(key);
  const proc = servers.find((s) => s.serverId === id);
  if (proc === undefined) throw new Error(`no harness server ${id}`);
  return proc;
}

/** The raw bytes stored under `wire` (the full key on the wire), read with a raw `get`. */
async function rawGet(
  proc: MemcachedProcess,
  wire: string,
): Promise<{ flags: number; data: string } | undefined> {
  const reply = await rawRequest(proc, `get ${wire}\r\n`);
  const match = /^VALUE (\S+) (\d+) (\d+)\r\n/.exec(reply);
  if (match === null) {
    expect(reply).toBe('END\r\n');
    return undefined;
  }
  const start = match[0].length;
  return { flags: Number(match[2]), data: reply.slice(start, start + Number(match[3])) };
}

/** Remaining TTL in seconds as the server sees it (`mg <key> t`): -1 = never, undefined = miss. */
async function serverTtl(proc: MemcachedProcess, wire: string): Promise<number | undefined> {
  const reply = await rawRequest(proc, `mg ${wire} t\r\n`, /\r\n$/);
  if (reply === 'EN\r\n') return undefined;
  const match = /^HD t(-?\d+)\r\n$/.exec(reply);
  if (match === null) throw new Error(`unexpected mg reply ${JSON.stringify(reply)}`);
  return Number(match[1]);
}

async function generationOf(namespace: string, via: MemcachedClient = client): Promise<string> {
  const key = `kg:${namespace}`;
  const stored = await rawGet(serverOf(key, via), `${via.options.keyPrefix}${key}`);
  expect(stored).toBeDefined();
  return stored!.data;
}

async function total(stat: string): Promise<number> {
  const all = await Promise.all(servers.map((s) => serverStats(s)));
  return all.reduce((sum, stats) => sum + Number(stats[stat]), 0);
}

function errorsOf(keyv: Keyv): unknown[] {
  const errors: unknown[] = [];
  keyv.on('error', (error: unknown) => errors.push(error));
  return errors;
}

const sha = (text: string): string => createHash('sha256').update(text, 'utf8').digest('base64url');

describe('what is stored', () => {
  test('Keyv’s serialized string, unchanged, under kv:<generation>:<namespace>:<key>', async () => {
    const keyv = new Keyv({ store: new KeyvMemcached(client), namespace: 'stored' });
    await keyv.set('user:1', { name: 'Ada', born: 1815 });
    const generation = await generationOf('stored');
    expect(generation).toMatch(/^[A-Za-z0-9_-]{11}$/);
    const wire = `kv:${generation}:stored:user:1`;
    const raw = await rawGet(serverOf(wire), wire);
    expect(raw).toEqual({ flags: 16, data: '{"value":{"name":"Ada","born":1815}}' });
    // The store returns what it stored: the string, for Keyv to deserialize.
    expect(await keyv.store.get('stored:user:1')).toBe(raw!.data);
    expect(await keyv.get('user:1')).toEqual({ name: 'Ada', born: 1815 });
  });

  test('with Keyv’s serialization turned off, the envelope object round-trips', async () => {
    const keyv = new Keyv({
      store: new KeyvMemcached(client),
      namespace: 'raw-envelope',
      serialize: undefined,
      deserialize: undefined,
    });
    await keyv.set('k', { list: [1, 2] }, 60_000);
    const stored = (await keyv.store.get('raw-envelope:k')) as { value: unknown; expires: number };
    expect(stored.value).toEqual({ list: [1, 2] });
    expect(typeof stored.expires).toBe('number');
    expect(await keyv.get('k')).toEqual({ list: [1, 2] });
  });

  test('keys without the namespace (useKeyPrefix: false) get it, so namespaces never share keys', async () => {
    const a = new Keyv({
      store: new KeyvMemcached(client),
      namespace: 'np-a',
      useKeyPrefix: false,
    });
    const b = new Keyv({
      store: new KeyvMemcached(client),
      namespace: 'np-b',
      useKeyPrefix: false,
    });
    await a.set('same', 'from a');
    await b.set('same', 'from b');
    expect(await a.get('same')).toBe('from a');
    expect(await b.get('same')).toBe('from b');
    const wire = `kv:${await generationOf('np-a')}:np-a:same`;
    expect(await rawGet(serverOf(wire), wire)).toBeDefined();
  });

  test('opts for Keyv (url, dialect), no iterator; the type is a Keyv 5 KeyvStoreAdapter', () => {
    const store: KeyvStoreAdapter = new KeyvMemcached(client);
    expect(store.opts).toEqual({
      url: `memcache://${servers.map((s) => s.serverId).join(',')}`,
      dialect: 'memcache',
    });
    expect('iterator' in store).toBe(false);
    expect(new Keyv({ store }).iterator).toBeUndefined();
  });
});

describe('TTLs', () => {
  const keyv = () => new Keyv({ store: new KeyvMemcached(client), namespace: 'ttl' });
  const wire = async (key: string) => `kv:${await generationOf('ttl')}:ttl:${key}`;
  const ttlOf = async (key: string) => {
    const w = await wire(key);
    return serverTtl(serverOf(w), w);
  };

  test('milliseconds are rounded up to whole seconds (1 ms is 1 s, never 0 = forever)', async () => {
    const k = keyv();
    await k.set('1ms', 'v', 1);
    await k.set('999ms', 'v', 999);
    await k.set('1001ms', 'v', 1001);
    await k.set('60s', 'v', 60_000);
    await k.set('none', 'v');
    expect(await ttlOf('1ms')).toBe(1);
    expect(await ttlOf('999ms')).toBe(1);
    expect(await ttlOf('1001ms')).toBe(2);
    expect(await ttlOf('60s')).toBe(60);
    expect(await ttlOf('none')).toBe(-1);
  });

  test('Keyv’s default ttl (CacheModule ttl) applies the same way', async () => {
    const k = new Keyv({ store: new KeyvMemcached(client), namespace: 'ttl', ttl: 2500 });
    await k.set('default', 'v');
    expect(await ttlOf('default')).toBe(3);
  });

  test('over 30 days: sent as an absolute unix time (a relative 31 days would be read as 1970)', async () => {
    const k = keyv();
    await k.set('31d', 'v', 31 * DAY_MS);
    await k.set('30d', 'v', 30 * DAY_MS);
    expect(await k.get('31d')).toBe('v');
    const remaining = await ttlOf('31d');
    expect(remaining).toBeGreaterThanOrEqual(31 * 86_400 - 5);
    // An absolute time is rounded to the server's clock, which ticks once a second: +2 at most.
    expect(remaining).toBeLessThanOrEqual(31 * 86_400 + 3);
    expect(await ttlOf('30d')).toBe(30 * 86_400);
  });

  test('setMany: each entry gets its own TTL', async () => {
    const k = keyv();
    await k.setMany([
      { key: 'm1', value: 'a', ttl: 1500 },
      { key: 'm2', value: 'b', ttl: 10_000 },
      { key: 'm3', value: 'c' },
      { key: 'm4', value: 'd', ttl: 1500 },
    ]);
    expect(await Promise.all(['m1', 'm2', 'm3', 'm4'].map(ttlOf))).toEqual([2, 10, -1, 2]);
    expect(await k.get(['m1', 'm2', 'm3', 'm4'])).toEqual(['a', 'b', 'c', 'd']);
  });

  test.each([
    ['negative', -1000],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['a string', '1000'],
  ])(
    'a %s ttl: set resolves false with an error event, nothing is sent, no hit',
    async (_, ttl) => {
      const k = keyv();
      const errors = errorsOf(k);
      await k.set('warm', 'v'); // the generation is read: what follows sends nothing
      const sets = await total('cmd_set');
      expect(await k.set('bad', 'v', ttl as number)).toBe(false);
      expect(await total('cmd_set')).toBe(sets);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toBeInstanceOf(MemcachedValueError);
      expect((errors[0] as Error).message).toMatch(
        /^set: a Keyv ttl must be a finite, non-negative/,
      );
      expect(await k.get('bad')).toBeUndefined();
      await expect(k.store.set('ttl:bad', 'v', ttl)).rejects.toThrow(MemcachedValueError);
      await expect(
        k.store.setMany([
          { key: 'ttl:ok', value: 'v', ttl: 1000 },
          { key: 'ttl:bad', value: 'v', ttl },
        ]),
      ).rejects.toThrow(/^setMany: a Keyv ttl/);
      expect(await k.get('ok')).toBeUndefined();
    },
  );
});

describe('clear()', () => {
  test('clears its namespace only, with no flush_all; other namespaces and non-Keyv keys stay', async () => {
    const one = new Keyv({ store: new KeyvMemcached(client), namespace: 'one' });
    const two = new Keyv({ store: new KeyvMemcached(client), namespace: 'two' });
    const none = new Keyv({ store: new KeyvMemcached(client), namespace: undefined });
    await one.set('a', 1);
    await one.set('b', 2);
    await two.set('a', 'two-a');
    await none.set('a', 'none-a');
    // Keys of the client itself, including ones that look like Keyv's.
    await client.set('one:a', 'plain');
    await client.set('kv:one:a', 'plain-kv');
    const flushes = await total('cmd_flush');
    const before = await generationOf('one');

    await one.clear();

    expect(await total('cmd_flush')).toBe(flushes);
    expect(await generationOf('one')).not.toBe(before);
    expect(await one.get(['a', 'b'])).toEqual([undefined, undefined]);
    expect(await two.get('a')).toBe('two-a');
    expect(await none.get('a')).toBe('none-a');
    expect(await client.get('one:a')).toBe('plain');
    expect(await client.get('kv:one:a')).toBe('plain-kv');
    // The namespace works after it was cleared.
    await one.set('a', 'again');
    expect(await one.get('a')).toBe('again');
    // And a namespace without a name clears too, leaving the others.
    await none.clear();
    expect(await none.get('a')).toBeUndefined();
    expect(await one.get('a')).toBe('again');
    expect(await total('cmd_flush')).toBe(flushes);
  });

  test('a clear() through another store instance is seen at once by every operation', async () => {
    const reader = new KeyvMemcached(client);
    reader.namespace = 'seen';
    const clearer = new KeyvMemcached(client);
    clearer.namespace = 'seen';
    await reader.setMany([
      { key: 'seen:a', value: 'A' },
      { key: 'seen:b', value: 'B' },
    ]);
    expect(await reader.get('seen:a')).toBe('A'); // the reader knows the generation now
    await clearer.clear();
    expect(await reader.get('seen:a')).toBeUndefined();
    expect(await reader.getMany(['seen:a', 'seen:b'])).toEqual([undefined, undefined]);
    expect(await reader.has('seen:b')).toBe(false);

    // Writes and deletes through a store that has not seen the clear land in the new generation.
    await reader.set('seen:c', 'C1');
    await clearer.clear();
    expect(await reader.set('seen:c', 'C2')).toBe(true);
    expect(await clearer.get('seen:c')).toBe('C2');
    await clearer.clear();
    await clearer.set('seen:d', 'D');
    expect(await reader.delete('seen:d')).toBe(true);
    expect(await clearer.get('seen:d')).toBeUndefined();
    await reader.set('seen:e', 'E');
    await clearer.clear();
    await reader.setMany([{ key: 'seen:e', value: 'E2' }]);
    expect(await clearer.get('seen:e')).toBe('E2');
    await clearer.clear();
    await clearer.set('seen:f', 'F');
    expect(await reader.deleteMany(['seen:f'])).toBe(true);
    expect(await clearer.get('seen:f')).toBeUndefined();
  });

  test('an evicted generation key reads as a cleared namespace, never as the old values', async () => {
    const store = new KeyvMemcached(client);
    const keyv = new Keyv({ store, namespace: 'evicted' });
    await keyv.set('a', 'old');
    const before = await generationOf('evicted');
    expect(await rawRequest(serverOf('kg:evicted'), 'delete kg:evicted\r\n')).toBe('DELETED\r\n');
    expect(await keyv.get('a')).toBeUndefined();
    const after = await generationOf('evicted');
    expect(after).not.toBe(before);
    // The old value is still in memcached, under the old generation, and is never read.
    const oldWire = `kv:${before}:evicted:a`;
    expect(await rawGet(serverOf(oldWire), oldWire)).toBeDefined();
    expect(
      await new Keyv({ store: new KeyvMemcached(client), namespace: 'evicted' }).get('a'),
    ).toBe(undefined);
  });

  test('a generation key holding a foreign value is an error (get fails open), until clear()', async () => {
    await client.set('kg:foreign', 'not a generation');
    const keyv = new Keyv({ store: new KeyvMemcached(client), namespace: 'foreign' });
    const errors = errorsOf(keyv);
    expect(await keyv.get('a')).toBeUndefined();
    expect(await keyv.set('a', 1)).toBe(false);
    expect(errors).toHaveLength(2);
    for (const error of errors) {
      expect(error).toBeInstanceOf(MemcachedError);
      expect((error as Error).message).toMatch(/generation key "kg:foreign" holds a value/);
    }
    await keyv.clear();
    expect(await keyv.set('a', 1)).toBe(true);
    expect(await keyv.get('a')).toBe(1);
  });
});

describe('clear() from another process', () => {
  const outDir = join(root, '.tmp', `keyv-${process.pid}`);
  let libUrl: string;

  /** The library transpiled to ES modules, so that a plain `node` child can load it. */
  beforeAll(async () => {
    const libDir = join(root, 'lib');
    for (const entry of await readdir(libDir, { recursive: true })) {
      if (!entry.endsWith('.ts')) continue;
      const { outputText } = ts.transpileModule(await readFile(join(libDir, entry), 'utf8'), {
        fileName: entry,
        compilerOptions: {
          target: ts.ScriptTarget.ES2022,
          module: ts.ModuleKind.ES2022,
          experimentalDecorators: true,
          emitDecoratorMetadata: true,
        },
      });
      const target = join(outDir, 'lib', entry.replace(/\.ts$/, '.js'));
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, outputText);
    }
    libUrl = pathToFileURL(join(outDir, 'lib')).href;
    await writeFile(
      join(outDir, 'child.mjs'),
      `import Keyv from 'keyv';
const [lib, servers, namespace] = process.argv.slice(2);
const { KeyvMemcached } = await import(lib + '/keyv/index.js');
const store = new KeyvMemcached({ servers });
const keyv = new Keyv({ store, namespace });
await keyv.clear();
await keyv.set('written', 'by the child');
await keyv.disconnect();
console.log('REPORT ' + JSON.stringify({ done: true }));
`,
    );
  });

  afterAll(async () => {
    await rm(outDir, { recursive: true, force: true });
  });

  test('the parent’s next get misses the cleared values and sees the child’s write', async () => {
    const store = new KeyvMemcached(client);
    const keyv = new Keyv({ store, namespace: 'across' });
    const other = new Keyv({ store: new KeyvMemcached(client), namespace: 'across-other' });
    await keyv.set('a', 'parent');
    await other.set('a', 'other');
    expect(await keyv.get('a')).toBe('parent');
    const env = { ...process.env };
    delete env['NODE_OPTIONS'];
    const stdout = await new Promise<string>((resolvePromise, reject) =>
      execFile(
        process.execPath,
        [join(outDir, 'child.mjs'), libUrl, servers.map((s) => s.address).join(','), 'across'],
        { cwd: root, env, timeout: 20_000 },
        (error, out, stderr) =>
          error ? reject(new Error(`${error.message}\n${stderr}`)) : resolvePromise(out),
      ),
    );
    expect(stdout).toContain('REPORT {"done":true}');
    expect(await keyv.get('a')).toBeUndefined();
    expect(await keyv.get('written')).toBe('by the child');
    expect(await other.get('a')).toBe('other');
    expect(await total('cmd_flush')).toBe(0);
  });
});

describe('keys memcached cannot take', () => {
  const keyv = () => new Keyv({ store: new KeyvMemcached(client), namespace: 'odd' });

  test('long keys and keys with whitespace or control characters round-trip, stored under kh:<generation>:<sha-256>', async () => {
    const k = keyv();
    const keys = [
      `/search?q=${'x'.repeat(300)}`,
      'with space',
      'a\r\nflush_all',
      'tab\there',
      'nul\u0000',
      'é'.repeat(130),
    ];
    await k.setMany(keys.map((key, i) => ({ key, value: `v${i}` })));
    expect(await k.get(keys)).toEqual(keys.map((_, i) => `v${i}`));
    for (const key of keys) expect(await k.get(key)).toBe(`v${keys.indexOf(key)}`);
    const generation = await generationOf('odd');
    for (const key of keys) {
      const wire = `kh:${generation}:${sha(`odd:${key}`)}`;
      expect(await rawGet(serverOf(wire), wire)).toBeDefined();
    }
    expect(await k.has('with space')).toBe(true);
    expect(await k.delete('with space')).toBe(true);
    expect(await k.get('with space')).toBeUndefined();
    expect(await total('cmd_flush')).toBe(0);
  });

  test('a namespace memcached cannot take: its generation key is hashed too, and clear() works', async () => {
    const spaced = new Keyv({ store: new KeyvMemcached(client), namespace: 'my space' });
    const plain = new Keyv({ store: new KeyvMemcached(client), namespace: 'my' });
    await spaced.set('a', 1);
    await plain.set('space:a', 2);
    const generationKey = `kg#${sha('my space')}`;
    expect(await rawGet(serverOf(generationKey), generationKey)).toBeDefined();
    expect(await spaced.get('a')).toBe(1);
    await spaced.clear();
    expect(await spaced.get('a')).toBeUndefined();
    expect(await plain.get('space:a')).toBe(2);
  });

  test('the 250-byte limit counts the client’s keyPrefix', async () => {
    const prefixed = new MemcachedClient({
      servers: servers.map((s) => s.address),
      keyPrefix: 'app:',
    });
    try {
      const k = new Keyv({ store: new KeyvMemcached(prefixed), namespace: 'p' });
      // 'app:' + 'kv:' + 11 + ':' + 'p:' + key = 21 + key bytes.
      const fits = 'f'.repeat(229);
      const over = 'o'.repeat(230);
      await k.set(fits, 1);
      await k.set(over, 2);
      expect(await k.get([fits, over])).toEqual([1, 2]);
      const generation = await generationOf('p', prefixed);
      const fitsWire = `kv:${generation}:p:${fits}`;
      expect(await rawGet(serverOf(fitsWire, prefixed), `app:${fitsWire}`)).toBeDefined();
      const overWire = `kh:${generation}:${sha(`p:${over}`)}`;
      expect(await rawGet(serverOf(overWire, prefixed), `app:${overWire}`)).toBeDefined();
    } finally {
      await prefixed.close();
    }
  });

  test('a key that is not a string is a MemcachedKeyError', async () => {
    const store = new KeyvMemcached(client);
    await expect(store.get(42 as unknown as string)).rejects.toThrow(MemcachedKeyError);
    await expect(store.getMany(['ok', null as unknown as string])).rejects.toThrow(
      /getMany: key must be a string, got null/,
    );
  });
});

describe('round trips: one request per server (counted by a proxy)', () => {
  let proxies: TurnProxy[];
  let viaProxy: MemcachedClient;

  beforeAll(async () => {
    proxies = await Promise.all(servers.map((s) => turnProxy(s)));
    viaProxy = new MemcachedClient({ servers: proxies.map((p) => p.address), poolSize: 1 });
  });

  afterAll(async () => {
    await viaProxy.close();
    await Promise.all(proxies.map((p) => p.close()));
  });

  const keys = Array.from({ length: 30 }, (_, i) => `item:${i}`);

  async function turnsOf(
    run: () => Promise<unknown>,
  ): Promise<{ turns: number[]; sent: string[] }> {
    for (const p of proxies) p.reset();
    await run();
    return { turns: proxies.map((p) => p.turns), sent: proxies.map((p) => p.sent) };
  }

  const lines = (sent: string, command: string): number =>
    sent.split('\r\n').filter((line) => line.startsWith(`${command} `)).length;

  test('getMany, setMany, deleteMany, hasMany: one turn on each server, the generation read included', async () => {
    const keyv = new Keyv({ store: new KeyvMemcached(viaProxy), namespace: 'rt' });
    await keyv.set('warm', 1); // connects and reads the generation
    // The 30 keys are spread over both servers.
    const generation = (await viaProxy.get('kg:rt')) as string;
    const spread = new Set(keys.map((k) => viaProxy.serverFor(`kv:${generation}:rt:${k}`)));
    expect(spread.size).toBe(2);

    const setMany = await turnsOf(() =>
      keyv.setMany(keys.map((key, i) => ({ key, value: i, ttl: i % 2 === 0 ? 60_000 : 120_000 }))),
    );
    expect(setMany.turns).toEqual([1, 1]);
    expect(setMany.sent.reduce((n, s) => n + lines(s, 'set'), 0)).toBe(30);

    const getMany = await turnsOf(async () => {
      expect(await keyv.get(keys)).toEqual(keys.map((_, i) => i));
    });
    expect(getMany.turns).toEqual([1, 1]);
    expect(getMany.sent.map((s) => lines(s, 'get'))).toEqual([1, 1]);
    const requested = getMany.sent.flatMap((s) => s.split('\r\n')[0]!.split(' ').slice(1));
    expect(requested.sort()).toEqual(
      ['kg:rt', ...keys.map((k) => `kv:${generation}:rt:${k}`)].sort(),
    );

    const hasMany = await turnsOf(async () => {
      expect(await keyv.hasMany([...keys, 'missing'])).toEqual([...keys.map(() => true), false]);
    });
    expect(hasMany.turns).toEqual([1, 1]);

    const deleteMany = await turnsOf(async () => {
      expect(await keyv.delete(keys)).toBe(true);
    });
    expect(deleteMany.turns).toEqual([1, 1]);
    expect(deleteMany.sent.reduce((n, s) => n + lines(s, 'delete'), 0)).toBe(30);
  });

  test('get, set, delete, has: one turn per server they touch (value and generation in parallel)', async () => {
    const keyv = new Keyv({ store: new KeyvMemcached(viaProxy), namespace: 'rt1' });
    await keyv.set('warm', 1);
    for (const run of [
      () => keyv.set('k', 'v'),
      () => keyv.get('k'),
      () => keyv.has('k'),
      () => keyv.delete('k'),
    ]) {
      const { turns } = await turnsOf(run);
      expect(turns.every((t) => t <= 1)).toBe(true);
      expect(turns.reduce((a, b) => a + b)).toBeGreaterThanOrEqual(1);
    }
  });

  test('the first call of a store reads the generation first: one turn more', async () => {
    const keyv = new Keyv({ store: new KeyvMemcached(viaProxy), namespace: 'rt' });
    const { turns } = await turnsOf(() => keyv.get(keys));
    expect(turns.reduce((a, b) => a + b)).toBe(3);
  });
});

describe('has / hasMany', () => {
  test('a value past the expires of Keyv’s envelope is absent, although memcached still has it', async () => {
    const store = new KeyvMemcached(client);
    const keyv = new Keyv({ store, namespace: 'has' });
    const past = JSON.stringify({ value: 'old', expires: Date.now() - 1 });
    const future = JSON.stringify({ value: 'new', expires: Date.now() + 60_000 });
    await store.set('has:past', past, 60_000);
    await store.set('has:future', future, 60_000);
    await store.set('has:not-json', 'plain text', 60_000);
    await keyv.set('forever', 'x');
    expect(await keyv.has('past')).toBe(false);
    expect(await keyv.has('future')).toBe(true);
    expect(await keyv.hasMany(['past', 'future', 'missing', 'not-json', 'forever'])).toEqual([
      false,
      true,
      false,
      true,
      true,
    ]);
    // It is still there: the store returns what it has, and Keyv judges it expired (and
    // deletes it).
    expect(await store.get('has:past')).toBe(past);
    expect(await keyv.get('past')).toBeUndefined();
    expect(await store.get('has:past')).toBeUndefined();
  });

  test('deleteMany is true only when every key existed', async () => {
    const keyv = new Keyv({ store: new KeyvMemcached(client), namespace: 'dm' });
    await keyv.set('a', 1);
    await keyv.set('b', 2);
    expect(await keyv.delete(['a', 'missing'])).toBe(false);
    expect(await keyv.get('a')).toBeUndefined();
    expect(await keyv.delete(['b', 'b'])).toBe(true);
    expect(await keyv.delete(['x', 'y'])).toBe(false);
  });
});

describe('the client: shared or owned', () => {
  test('a client it was given stays open after disconnect()', async () => {
    const shared = new MemcachedClient({ servers: servers[0]!.address });
    try {
      const keyv = new Keyv({ store: new KeyvMemcached(shared) });
      await keyv.set('a', 1);
      await keyv.disconnect();
      expect(await shared.set('still', 'open')).toBe(true);
    } finally {
      await shared.close();
    }
  });

  test('a MemcachedService: its client is used and stays open after disconnect()', async () => {
    const service = new MemcachedService({ servers: servers[0]!.address });
    try {
      const store = new KeyvMemcached(service);
      expect(store.client).toBe(service.client);
      expect(store.ownsClient).toBe(false);
      await new Keyv({ store }).set('a', 1);
      await store.disconnect();
      expect(await service.set('still', 'open')).toBe(true);
    } finally {
      await service.close();
    }
  });

  test('options: it creates its client and closes it in disconnect()', async () => {
    const store = new KeyvMemcached({ servers: servers[0]!.address });
    expect(store.ownsClient).toBe(true);
    const keyv = new Keyv({ store, namespace: 'owned' });
    await keyv.set('a', 1);
    expect(await keyv.get('a')).toBe(1);
    await keyv.disconnect();
    await store.disconnect();
    await expect(store.client.get('x')).rejects.toThrow(MemcachedConnectionError);
  });

  test('anything else is a MemcachedOptionsError', () => {
    expect(() => new KeyvMemcached(null as never)).toThrow(MemcachedOptionsError);
    expect(() => new KeyvMemcached('127.0.0.1:11211' as never)).toThrow(
      /must be a MemcachedClient, a MemcachedService or client options, got string/,
    );
    const otherCopy = { getMany: () => undefined, close: () => undefined, get: () => undefined };
    expect(() => new KeyvMemcached(otherCopy as never)).toThrow(/another copy|installed twice/);
    expect(() => new KeyvMemcached({ client: otherCopy } as never)).toThrow(/installed twice/);
    expect(() => new KeyvMemcached({ servers: 42 } as never)).toThrow(MemcachedOptionsError);
  });
});

describe('failures', () => {
  test('a server that does not answer: get fails open with an error event, set is false', async () => {
    const doomed = await startMemcached();
    const address = doomed.address;
    await doomed.stop();
    const store = new KeyvMemcached({ servers: address, connectTimeout: 200, timeout: 200 });
    const keyv = new Keyv({ store });
    const errors = errorsOf(keyv);
    try {
      expect(await keyv.get('a')).toBeUndefined();
      expect(errors).toHaveLength(1);
      expect(errors[0]).toBeInstanceOf(MemcachedConnectionError);
      expect(await keyv.set('a', 1)).toBe(false);
      expect(errors).toHaveLength(2);
      // The store rejects; its get also emits (Keyv forwards it), as Keyv would hide it.
      await expect(store.get('keyv:a')).rejects.toThrow(MemcachedConnectionError);
      expect(errors).toHaveLength(3);
      await expect(store.getMany(['keyv:a'])).rejects.toThrow(MemcachedConnectionError);
      expect(errors).toHaveLength(3);
      await expect(keyv.clear()).resolves.toBeUndefined();
      expect(errors).toHaveLength(4);
    } finally {
      await store.disconnect();
    }
  });

  test('setMany with ignoreErrors and a server down: Keyv reports false for each entry and an error', async () => {
    const doomed = await startMemcached();
    const deadAddress = doomed.address;
    await doomed.stop();
    const mixed = new MemcachedClient({
      servers: [servers[0]!.address, deadAddress],
      ignoreErrors: true,
      connectTimeout: 200,
      timeout: 200,
    });
    try {
      // A namespace whose generation key is on the live server.
      const namespace = Array.from({ length: 50 }, (_, i) => `partial${i}`).find(
        (ns) => mixed.serverFor(`kg:${ns}`) === servers[0]!.serverId,
      )!;
      const keyv = new Keyv({ store: new KeyvMemcached(mixed), namespace });
      const errors = errorsOf(keyv);
      const entries = Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, value: i }));
      expect(await keyv.setMany(entries)).toEqual(entries.map(() => false));
      expect(errors).toHaveLength(1);
      expect((errors[0] as Error).message).toMatch(/^setMany: \d+ of 20 entries were not stored/);
      // The live server's entries were stored.
      const values = await keyv.get(entries.map((e) => e.key));
      expect(values.filter((v) => v !== undefined).length).toBeGreaterThan(0);
      expect(values.filter((v) => v === undefined).length).toBeGreaterThan(0);
    } finally {
      await mixed.close();
    }
  });

  test('a value over the client’s maxValueSize: set is false with a MemcachedValueError, nothing is sent', async () => {
    const small = new MemcachedClient({ servers: servers[0]!.address, maxValueSize: 1024 });
    try {
      const keyv = new Keyv({ store: new KeyvMemcached(small), namespace: 'big' });
      const errors = errorsOf(keyv);
      await keyv.set('warm', 1);
      const sets = await total('cmd_set');
      expect(await keyv.set('big', 'x'.repeat(2000))).toBe(false);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toBeInstanceOf(MemcachedValueError);
      expect((errors[0] as Error).message).toMatch(/over maxValueSize \(1024 bytes\)/);
      expect(await total('cmd_set')).toBe(sets);
      expect(await keyv.get('big')).toBeUndefined();
    } finally {
      await small.close();
    }
  });

  test('a store on its own, without listeners, never throws for an error event', async () => {
    const doomed = await startMemcached();
    const address = doomed.address;
    await doomed.stop();
    const store = new KeyvMemcached({ servers: address, connectTimeout: 200 });
    try {
      await expect(store.get('a')).rejects.toThrow(MemcachedConnectionError);
    } finally {
      await store.disconnect();
    }
  });
});

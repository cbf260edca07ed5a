/**
 * The meta protocol driver against memcached 1.6.18 (and scripted servers where a real one cannot
 * play the part): the connection handshake, and one test (at least) per pitfall of META.md
 * section 4. Counts come from the servers' `stats`, a byte-counting proxy, or the scripted
 * server's log; nothing is mocked.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from '@jest/globals';
import {
  MemcachedAuthError,
  MemcachedClient,
  MemcachedClientError,
  MemcachedConnectionError,
  MemcachedError,
  MemcachedKeyError,
  MemcachedProtocolError,
  MemcachedServerError,
  MemcachedValueError,
} from '../../lib/index.js';
import { startHostileServer, type HostileServer } from '../harness/hostile-server.js';
import {
  rawRequest,
  serverStats,
  startMemcached,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';
import { PROTOCOLS } from '../harness/protocols.js';
import { startProxy } from '../harness/proxy.js';

const MiB = 1024 * 1024;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let server: MemcachedProcess;
let mc: MemcachedClient;
let text: MemcachedClient;

beforeAll(async () => {
  server = await startMemcached();
  mc = new MemcachedClient({ servers: server.address, protocol: 'meta', timeout: 2000 });
  text = new MemcachedClient({ servers: server.address, timeout: 2000 });
});

afterAll(async () => {
  await mc.close();
  await text.close();
  await stopAllMemcached();
});

beforeEach(async () => {
  await mc.flushAll();
});

async function stat(s: MemcachedProcess, name: string): Promise<number> {
  return Number((await serverStats(s))[name]);
}

/** A scripted server that says it is `version` and answers `mg` lines with `answer(tokens)`. */
async function scriptedMeta(
  version: string,
  answer: (tokens: readonly string[]) => string | undefined,
): Promise<HostileServer> {
  const hostile = await startHostileServer();
  hostile.respond((req, conn) => {
    if (req.command === 'version') conn.write(`VERSION ${version}\r\n`);
    else if (req.command === 'mn') conn.write('MN\r\n');
    else {
      const reply = answer(req.tokens);
      if (reply !== undefined) conn.write(reply);
    }
  });
  return hostile;
}

// -----------------------------------------------------------------------------------------------

describe('the connection handshake', () => {
  test('a server older than 1.6.10 fails the call with MemcachedConnectionError naming the version needed; nothing but `version` is sent', async () => {
    const old = await scriptedMeta('1.5.22', () => 'EN\r\n');
    const client = new MemcachedClient({ servers: old.address, protocol: 'meta', timeout: 500 });
    try {
      const error = await client.get('k').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(MemcachedConnectionError);
      expect((error as Error).message).toMatch(/1\.5\.22/);
      expect((error as Error).message).toMatch(/protocol 'meta' needs memcached 1\.6\.10 or newer/);
      expect(old.log).toEqual(['version']);
      // The same server is fine for the text protocol.
      const plain = new MemcachedClient({ servers: old.address });
      expect(await plain.version()).toEqual({ [old.address]: '1.5.22' });
      await plain.close();
    } finally {
      await client.close();
      await old.close();
    }
  });

  test('1.6.10 and newer are accepted; a meta client speaks mg/ms/md/ma on the wire', async () => {
    const hostile = await scriptedMeta('1.6.10', (t) =>
      t[0] === 'mg' ? 'EN\r\n' : t[0] === 'md' ? 'NF\r\n' : undefined,
    );
    const client = new MemcachedClient({ servers: hostile.address, protocol: 'meta' });
    try {
      expect(await client.get('a')).toBeUndefined();
      expect(await client.delete('a')).toBe(false);
      expect(hostile.log).toEqual(['version', 'mg a v f k', 'md a']);
    } finally {
      await client.close();
      await hostile.close();
    }
  });

  test('with auth, the version is read after authenticating (memcached -Y); a wrong password is MemcachedAuthError', async () => {
    const secured = await startMemcached({ auth: { username: 'meta', password: 'pw1' } });
    const good = new MemcachedClient({
      servers: secured.address,
      protocol: 'meta',
      auth: { username: 'meta', password: 'pw1' },
    });
    const bad = new MemcachedClient({
      servers: secured.address,
      protocol: 'meta',
      auth: { username: 'meta', password: 'nope' },
      failover: false,
    });
    try {
      expect(await good.set('secured', 'yes')).toBe(true);
      expect(await good.get('secured')).toBe('yes');
      await expect(bad.get('secured')).rejects.toBeInstanceOf(MemcachedAuthError);
    } finally {
      await good.close();
      await bad.close();
    }
  });

  test('newer features are per server: on 1.6.18 a miss must echo its key, before it need not', async () => {
    // 1.6.12 answers EN without flags: a plain miss.
    const older = await scriptedMeta('1.6.12', () => 'EN\r\n');
    // A 1.6.18 that answers EN without the key it always echoes cannot be trusted.
    const newer = await scriptedMeta('1.6.18', () => 'EN\r\n');
    const a = new MemcachedClient({ servers: older.address, protocol: 'meta' });
    const b = new MemcachedClient({ servers: newer.address, protocol: 'meta', failover: false });
    try {
      expect(await a.get('k')).toBeUndefined();
      const error = await b.get('k').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(MemcachedProtocolError);
      expect((error as Error).message).toMatch(/sent EN for key \(none\)/);
    } finally {
      await a.close();
      await b.close();
      await older.close();
      await newer.close();
    }
  });
});

describe('text and meta share the data', () => {
  const values: unknown[] = [
    'text é ✓',
    '',
    Buffer.from([0, 1, 2, 13, 10, 255]),
    Buffer.alloc(0),
    42,
    -7,
    2n ** 70n,
    true,
    null,
    1.5,
    { a: [1, { b: 'c' }] },
    'x'.repeat(5000), // compressed below
  ];

  test.each([
    ['text', 'meta'],
    ['meta', 'text'],
  ])(
    'values written by %s read back identically on %s (every serde type, compressed ones too)',
    async (from, to) => {
      const opts = { servers: server.address, compression: { threshold: 1024 } };
      const writer = new MemcachedClient({ ...opts, protocol: from as 'text' | 'meta' });
      const reader = new MemcachedClient({ ...opts, protocol: to as 'text' | 'meta' });
      try {
        const keys = values.map((_, i) => `shared:${from}:${i}`);
        expect(await writer.setMany(keys.map((k, i) => [k, values[i]] as const))).toEqual([]);
        for (const [i, key] of keys.entries()) expect(await reader.get(key)).toEqual(values[i]);
        const many = await reader.getMany(keys);
        expect(keys.map((k) => many.get(k))).toEqual(values);
        // Cas tokens are the server's: one read through one protocol works for the other.
        const token = (await writer.gets(keys[0]!))!.cas;
        expect(await reader.cas(keys[0]!, 'swapped', token)).toBe(true);
        expect(await writer.get(keys[0]!)).toBe('swapped');
        expect(await writer.append(keys[1]!, 'tail')).toBe(true);
        expect(await reader.get(keys[1]!)).toBe('tail');
        expect(await reader.incr(keys[4]!, 8)).toBe(50);
        expect(await writer.get(keys[4]!)).toBe(50);
      } finally {
        await writer.close();
        await reader.close();
      }
    },
  );
});

// -----------------------------------------------------------------------------------------------

describe('pitfall 1: q is not noreply', () => {
  test('noreply writes the server refuses still answer NS/EX despite q: read and dropped before the fence; every neighbour gets its own reply, no new connection, no noreplyError', async () => {
    const client = new MemcachedClient({ servers: server.address, protocol: 'meta', poolSize: 1 });
    const strays: string[] = [];
    client.on('noreplyError', ({ error }) => strays.push(error.message));
    try {
      await client.set('exists', 'old');
      await client.set('n1', 1);
      const token = (await client.gets('exists'))!.cas;
      await client.set('exists', 'newer'); // the token is stale now
      const before = await stat(server, 'total_connections');
      const results = await Promise.all([
        client.add('exists', 'x', { noreply: true }), // NS
        client.get('n1'),
        client.replace('missing', 'x', { noreply: true }), // NS
        client.cas('exists', 'x', token, { noreply: true }), // EX
        client.append('missing', 'x', { noreply: true }), // NS
        client.get('exists'),
        client.set('n2', 2),
      ]);
      expect(results).toEqual([true, 1, true, true, true, 'newer', true]);
      expect(await client.get('missing')).toBeUndefined();
      // +1: the stats request itself.
      expect((await stat(server, 'total_connections')) - before).toBe(1);
      expect(strays).toEqual([]);
    } finally {
      await client.close();
    }
  });

  test('an error of a noreply set still comes with q (SERVER_ERROR object too large): a noreplyError event, no call fails, and the old value is gone (pitfall 7)', async () => {
    const small = await startMemcached({ args: ['-I', '1m'] });
    // The client allows 2 MiB, the server 1 MiB: the server refuses the value.
    const client = new MemcachedClient({
      servers: small.address,
      protocol: 'meta',
      poolSize: 1,
      maxValueSize: 2 * MiB,
    });
    const strays: MemcachedError[] = [];
    client.on('noreplyError', ({ error }) => strays.push(error));
    try {
      await client.set('big', 'old');
      await client.set('other', 'o');
      const results = await Promise.all([
        client.set('big', Buffer.alloc(1.5 * MiB), { noreply: true }),
        client.get('other'),
        client.set('after', 'a'),
      ]);
      expect(results).toEqual([true, 'o', true]);
      await client.get('other'); // the fence's MN has come
      expect(strays).toHaveLength(1);
      expect(strays[0]).toBeInstanceOf(MemcachedServerError);
      expect(strays[0]!.message).toMatch(/too large/);
      // memcached drops the old value of a refused set.
      expect(await client.get('big')).toBeUndefined();
      // Awaited, the same write fails its own call.
      await expect(client.set('big', Buffer.alloc(1.5 * MiB))).rejects.toBeInstanceOf(
        MemcachedServerError,
      );
      expect(await client.get('after')).toBe('a');
    } finally {
      await client.close();
    }
  });

  test('a multi-key read is not quiet: every key is answered in order, a miss with its position (`EN O<i>`), and no MN', async () => {
    const proxy = await startProxy('127.0.0.1', server.port);
    const client = new MemcachedClient({ servers: proxy.address, protocol: 'meta', poolSize: 1 });
    try {
      await client.set('warm', 1); // connected, handshake done
      const keys = Array.from({ length: 100 }, (_, i) => `absent:${i}`);
      const before = proxy.bytesToClient;
      expect((await client.getMany(keys)).size).toBe(0);
      const misses = keys.reduce((n, _k, i) => n + `EN O${i}\r\n`.length, 0);
      expect(proxy.bytesToClient - before).toBe(misses);
      // Hits still come, each with its value.
      await client.set('absent:7', 'seven');
      expect(await client.getMany(keys)).toEqual(new Map([['absent:7', 'seven']]));
    } finally {
      await client.close();
      await proxy.close();
    }
  });
});

describe('pitfall 2: errors carry no opaque', () => {
  test('an error line in the middle of a multi-key read answers its position and fails that read alone, once every key was answered; the connection stays in step', async () => {
    const hostile = await scriptedMeta('1.6.18', (t) => {
      if (t[0] !== 'mg') return undefined;
      const key = t[1]!;
      const opaque = t.find((x) => x.startsWith('O'));
      if (opaque === undefined) return key === 'solo' ? 'VA 3 f16 c9 ksolo\r\nabc\r\n' : undefined;
      if (opaque === 'O0') return `VA 1 f16 c1 k${key} O0\r\na\r\n`;
      if (opaque === 'O1') return 'CLIENT_ERROR bad data chunk\r\n';
      if (opaque === 'O2') return `VA 1 f16 c3 k${key} O2\r\nc\r\n`;
      return `EN ${opaque}\r\n`;
    });
    const client = new MemcachedClient({ servers: hostile.address, protocol: 'meta', poolSize: 1 });
    try {
      const [many, solo] = await Promise.allSettled([
        client.getMany(['x0', 'x1', 'x2', 'x3']),
        client.get('solo'),
      ]);
      expect(many.status).toBe('rejected');
      expect((many as PromiseRejectedResult).reason).toBeInstanceOf(MemcachedClientError);
      expect(solo).toEqual({ status: 'fulfilled', value: 'abc' });
      expect(hostile.connections).toBe(1);
    } finally {
      await client.close();
      await hostile.close();
    }
  });
});

describe('pitfall 3: desync', () => {
  test('keys with a space, a control character or over 250 bytes are refused before anything is sent', async () => {
    const setsBefore = await stat(server, 'cmd_set');
    const getsBefore = await stat(server, 'cmd_get');
    for (const key of ['a T1', 'a\r\nmn', 'tab\there', 'k'.repeat(251)]) {
      await expect(mc.set(key, 'v')).rejects.toBeInstanceOf(MemcachedKeyError);
      await expect(mc.get(key)).rejects.toBeInstanceOf(MemcachedKeyError);
      await expect(mc.getOrSet(key, () => 'v')).resolves.toBe('v'); // a cache failure, not the call's
    }
    expect(await stat(server, 'cmd_set')).toBe(setsBefore);
    expect(await stat(server, 'cmd_get')).toBe(getsBefore);
  });

  test('a value that looks like commands is data: stored and read back byte for byte, nothing else happens', async () => {
    await mc.set('victim', 'still here');
    const payload = Buffer.from('mn\r\nmd victim\r\nms victim 1\r\nX\r\n', 'latin1');
    expect(await mc.set('payload', payload)).toBe(true);
    expect(await mc.get('payload')).toEqual(payload);
    expect(await mc.get('victim')).toBe('still here');
  });

  test('a reply the client cannot trust resets the connection; the next call reconnects', async () => {
    let lie = true;
    const hostile = await scriptedMeta('1.6.18', (t) => {
      if (t[0] !== 'mg') return undefined;
      // A declared length that does not match the data.
      if (lie) return `VA 1 f0 c1 k${t[1]}\r\nabc\r\n`;
      return `EN k${t[1]}\r\n`;
    });
    const client = new MemcachedClient({
      servers: hostile.address,
      protocol: 'meta',
      failover: false,
    });
    try {
      await expect(client.get('k')).rejects.toBeInstanceOf(MemcachedProtocolError);
      lie = false;
      expect(await client.get('k')).toBeUndefined();
      expect(hostile.connections).toBe(2);
    } finally {
      await client.close();
      await hostile.close();
    }
  });
});

describe('pitfall 4: keys and base64', () => {
  test('a 250-byte non-ASCII key works on meta (sent as is: the 186-byte limit of base64 keys does not apply) and is the same item for text', async () => {
    const key = 'é'.repeat(125);
    expect(Buffer.byteLength(key)).toBe(250);
    expect(await mc.set(key, 'long')).toBe(true);
    expect(await mc.get(key)).toBe('long');
    expect(await text.get(key)).toBe('long');
    expect(await mc.getMany([key, 'other'])).toEqual(new Map([[key, 'long']]));
    await expect(mc.set('é'.repeat(126), 'x')).rejects.toBeInstanceOf(MemcachedKeyError);
  });

  test('an item stored under a base64 key (`b`, as other meta clients do) is the same item; the key memcached echoes back in base64 is decoded and checked', async () => {
    const b64 = Buffer.from('café').toString('base64');
    expect(await rawRequest(server, `ms ${b64} 2 b F16\r\nhi\r\n`)).toBe('HD\r\n');
    // memcached now echoes this item's key in base64 (`k<base64> b`), even to raw-key reads.
    expect(await rawRequest(server, 'mg café k v\r\n')).toBe(`VA 2 k${b64} b\r\nhi\r\n`);
    expect(await mc.get('café')).toBe('hi');
    expect(await mc.getMany(['café', 'nope'])).toEqual(new Map([['café', 'hi']]));
    expect(await mc.getAndTouch('café', 100)).toBe('hi');
    expect(await mc.touch('café', 100)).toBe(true);
    expect(await text.get('café')).toBe('hi');
  });
});

describe('pitfall 5: TTLs', () => {
  test('ttl 0 never expires, a negative ttl expires at once, more than 30 days is a unix time', async () => {
    await mc.set('forever', 1, { ttl: 0 });
    await mc.set('gone', 1, { ttl: -1 });
    const at = Math.floor(Date.now() / 1000) + 100;
    await mc.set('absolute', 1, { ttl: at });
    expect(await rawRequest(server, 'mg forever t\r\n')).toBe('HD t-1\r\n');
    expect(await mc.get('gone')).toBeUndefined();
    const left = Number(/t(\d+)/.exec(await rawRequest(server, 'mg absolute t\r\n'))![1]);
    expect(left).toBeGreaterThan(95);
    expect(left).toBeLessThanOrEqual(101);
  });

  test('a lease placeholder lives lease.ttl seconds (N before t); lease.ttl 0 or negative is refused before anything is sent', async () => {
    let seen = '';
    await mc.getOrSet(
      'leased',
      async () => {
        seen = await rawRequest(server, 'mg leased v t\r\n');
        return 'v';
      },
      { lease: { ttl: 7 } },
    );
    expect(seen).toMatch(/^VA 0 t[67] Z\r\n\r\n$/);
    const before = await stat(server, 'cmd_get');
    for (const ttl of [0, -1, 1.5, '7' as unknown as number]) {
      await expect(mc.getOrSet('leased2', () => 'v', { lease: { ttl } })).rejects.toBeInstanceOf(
        MemcachedValueError,
      );
    }
    expect(await stat(server, 'cmd_get')).toBe(before);
  });
});

describe('pitfall 6: cas', () => {
  test.each(PROTOCOLS)('%s: cas token 0 never matches', async (protocol) => {
    const client = protocol === 'meta' ? mc : text;
    await client.set('c0', 'v');
    expect(await client.cas('c0', 'w', '0')).toBe(false);
    expect(await client.get('c0')).toBe('v');
  });

  test('a server without cas (-C) reports cas 0: a lease still runs the factory once and stores its value', async () => {
    const nocas = await startMemcached({ args: ['-C'] });
    const a = new MemcachedClient({ servers: nocas.address, protocol: 'meta' });
    const b = new MemcachedClient({ servers: nocas.address, protocol: 'meta' });
    try {
      await a.set('runs', 0);
      const factory = async (): Promise<string> => {
        await a.incr('runs');
        await sleep(200);
        return 'computed';
      };
      const opts = { lease: { ttl: 10, wait: 5000 }, ttl: 60 };
      const values = await Promise.all([
        ...Array.from({ length: 5 }, () => a.getOrSet('nocas', factory, opts)),
        ...Array.from({ length: 5 }, () => b.getOrSet('nocas', factory, opts)),
      ]);
      expect(values).toEqual(Array(10).fill('computed'));
      expect(await a.get('runs')).toBe(1);
      expect(await b.get('nocas')).toBe('computed');
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('pitfall 7: item size', () => {
  test('a value over maxValueSize is refused before sending, and the old value stays', async () => {
    const client = new MemcachedClient({
      servers: server.address,
      protocol: 'meta',
      maxValueSize: 1000,
    });
    try {
      await client.set('sized', 'old');
      const before = await stat(server, 'cmd_set');
      await expect(client.set('sized', 'x'.repeat(2000))).rejects.toBeInstanceOf(
        MemcachedValueError,
      );
      await expect(client.set('sized', 'x'.repeat(2000), { noreply: true })).rejects.toBeInstanceOf(
        MemcachedValueError,
      );
      expect(await stat(server, 'cmd_set')).toBe(before);
      expect(await client.get('sized')).toBe('old');
    } finally {
      await client.close();
    }
  });
});

describe('pitfall 8: placeholders and counters', () => {
  test('while a lease is held, get, gets, getMany and getAndTouch of the key are misses (a text client sees an empty value)', async () => {
    let during: unknown[] = [];
    await mc.set('neighbour', 'n');
    await mc.getOrSet(
      'held',
      async () => {
        during = [
          await mc.get('held'),
          await mc.gets('held'),
          await mc.getMany(['held', 'neighbour']),
          await mc.getAndTouch('held', 30),
          await text.get('held'), // the text protocol cannot tell a placeholder from a value
        ];
        return 'value';
      },
      { lease: true, ttl: 60 },
    );
    expect(during).toEqual([
      undefined,
      undefined,
      new Map([['neighbour', 'n']]),
      undefined,
      Buffer.alloc(0),
    ]);
    expect(await mc.get('held')).toBe('value');
  });

  test('an empty Buffer that was really stored is a hit (VA 0 f0 without W or Z)', async () => {
    await mc.set('empty', Buffer.alloc(0));
    expect(await rawRequest(server, 'mg empty v f\r\n')).toBe('VA 0 f0\r\n\r\n');
    expect(await mc.get('empty')).toEqual(Buffer.alloc(0));
    expect((await mc.gets('empty'))?.value).toEqual(Buffer.alloc(0));
    expect(await mc.getMany(['empty', 'x'])).toEqual(new Map([['empty', Buffer.alloc(0)]]));
    let runs = 0;
    expect(await mc.getOrSet('empty', () => ++runs, { lease: true })).toEqual(Buffer.alloc(0));
    expect(runs).toBe(0);
  });

  test('decr: memcached pads the stored digits with spaces; the reply and the value read back are exact', async () => {
    await mc.set('pad', 1000);
    expect(await mc.decr('pad', 991)).toBe(9);
    expect(await rawRequest(server, 'get pad\r\n')).toBe('VALUE pad 2 4\r\n9   \r\nEND\r\n');
    expect(await mc.get('pad')).toBe(9);
    expect(await mc.incr('pad', 1n)).toBe(10n);
  });
});

describe('pitfall 9: mixed readers', () => {
  test('a plain get of an invalidated value is a miss and hands the refresh token on: a getOrSet with staleWhileRevalidate still refreshes it', async () => {
    await mc.set('mixed', 'old', { ttl: 100 });
    expect(await mc.invalidate('mixed')).toBe(true);
    expect(await mc.get('mixed')).toBeUndefined(); // took the token (X W), and gave it back
    await sleep(50); // the token is handed back right after the reply
    let runs = 0;
    const value = await mc.getOrSet('mixed', () => `new${++runs}`, {
      ttl: 100,
      staleWhileRevalidate: 30,
    });
    expect(value).toBe('old'); // served stale at once...
    for (let i = 0; i < 50 && (await mc.get('mixed')) !== 'new1'; i++) await sleep(20);
    expect(await mc.get('mixed')).toBe('new1'); // ...and refreshed once, in the background
    expect(runs).toBe(1);
  });

  test('a batched plain read (it does not ask for the cas) hands the token on too: the client reads the cas, then gives the token back', async () => {
    await mc.set('mixed:a', 'a', { ttl: 100 });
    await mc.set('mixed:b', 'old', { ttl: 100 });
    expect(await mc.invalidate('mixed:b')).toBe(true);
    const [a, b] = await Promise.all([mc.get('mixed:a'), mc.get('mixed:b')]); // one mg run
    expect([a, b]).toEqual(['a', undefined]);
    await sleep(50);
    let runs = 0;
    const value = await mc.getOrSet('mixed:b', () => `new${++runs}`, {
      ttl: 100,
      staleWhileRevalidate: 30,
    });
    expect(value).toBe('old');
    for (let i = 0; i < 50 && (await mc.get('mixed:b')) !== 'new1'; i++) await sleep(20);
    expect(await mc.get('mixed:b')).toBe('new1');
    expect(runs).toBe(1);
  });

  test('the token is given back only to the stale item it came with: a value stored meanwhile stays fresh', async () => {
    await mc.set('mixed:c', 'old', { ttl: 100 });
    expect(await mc.invalidate('mixed:c')).toBe(true);
    expect(await mc.get('mixed:c')).toBeUndefined(); // took the token; giving it back starts now
    expect(await mc.set('mixed:c', 'fresh')).toBe(true); // before the token is back
    await sleep(50);
    expect(await mc.get('mixed:c')).toBe('fresh'); // not marked stale by the give-back
    expect(await mc.gets('mixed:c')).toEqual({ value: 'fresh', cas: expect.any(String) });
  });

  test('a text reader sees an invalidated value as a value (it cannot see X): route reads of such keys through one protocol', async () => {
    await mc.set('seen', 'old');
    await mc.invalidate('seen');
    expect(await text.get('seen')).toBe('old');
    expect(await mc.get('seen')).toBeUndefined();
  });
});

describe('pitfall 10: reply parsing', () => {
  test('extra spaces, unknown flags and any flag order are accepted; an unknown reply code resets the connection', async () => {
    let code = 'VA';
    const hostile = await scriptedMeta('1.6.30', (t) => {
      if (t[0] !== 'mg') return undefined;
      if (code === 'VA') return `VA 2  Q9  c5 f16   k${t[1]} h1  \r\nhi\r\n`;
      return `${code} k${t[1]}\r\n`;
    });
    const client = new MemcachedClient({
      servers: hostile.address,
      protocol: 'meta',
      failover: false,
    });
    try {
      expect(await client.gets('k')).toEqual({ value: 'hi', cas: '5' });
      code = 'XY';
      await expect(client.get('k')).rejects.toBeInstanceOf(MemcachedProtocolError);
      expect(hostile.open).toBeLessThanOrEqual(1);
    } finally {
      await client.close();
      await hostile.close();
    }
  });
});

describe('pitfall 11: limits', () => {
  test('opaque tokens, flags and tokens per line stay within memcached limits for every command the client sends', async () => {
    // A 100-key read uses opaques O0..O99; lease reads send the most flags.
    const keys = Array.from({ length: 100 }, (_, i) => `lim:${i}`);
    await mc.setMany(keys.map((k) => [k, k] as const));
    expect((await mc.getMany(keys)).size).toBe(100);
    expect(
      await mc.getOrSet('lim:x', () => 'x', { lease: true, staleWhileRevalidate: 10, ttl: 5 }),
    ).toBe('x');
    expect(await mc.getOrSet('lim:x', () => 'y', { lease: true, staleWhileRevalidate: 10 })).toBe(
      'x',
    );
  });
});

/**
 * Security: keys built from user input cannot inject commands (they are refused before anything
 * is sent, or stored under exactly that key); values, TTLs, cas tokens, deltas and stats groups
 * cannot smuggle protocol text; the default serde never executes anything or pollutes a
 * prototype; a wrong password raises MemcachedAuthError without a reconnect storm.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  MemcachedAuthError,
  MemcachedClient,
  MemcachedKeyError,
  MemcachedOptionsError,
  MemcachedSerdeError,
  MemcachedValueError,
  type MemcachedOptions,
} from '../../lib/index.js';
import {
  rawRequest,
  serverStats,
  startMemcached,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';
import { startProxy } from '../harness/proxy.js';
import {
  recordUnhandledRejections,
  rejection,
  sleep,
  timed,
  type RejectionRecorder,
} from './helpers.js';

let server: MemcachedProcess;
let recorder: RejectionRecorder;
const clients: MemcachedClient[] = [];

beforeAll(async () => {
  recorder = recordUnhandledRejections();
  server = await startMemcached();
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  expect(recorder.reasons).toEqual([]);
});

afterAll(async () => {
  recorder.dispose();
  await stopAllMemcached();
});

function client(options: MemcachedOptions = {}): MemcachedClient {
  const c = new MemcachedClient({ servers: server.address, timeout: 2000, ...options });
  clients.push(c);
  return c;
}

/** Counters that any command reaching the server would move. */
async function counters(): Promise<Record<string, number>> {
  const s = await serverStats(server);
  const n = (k: string): number => Number(s[k] ?? 0);
  return {
    cmd_get: n('cmd_get'),
    cmd_set: n('cmd_set'),
    cmd_flush: n('cmd_flush'),
    cmd_touch: n('cmd_touch'),
    deletes: n('delete_hits') + n('delete_misses'),
    arith: n('incr_hits') + n('incr_misses') + n('decr_hits') + n('decr_misses'),
  };
}

function delta(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(a)) out[k] = b[k]! - a[k]!;
  return out;
}

const SENTINEL = 'sec:sentinel';

/** Strings assembled from fragments an attacker would try. */
const injection = fc
  .array(
    fc.constantFrom(
      'a',
      'key',
      ' ',
      '\r\n',
      '\n',
      '\r',
      '\0',
      '\t',
      '\x7f',
      '\u0085',
      '\u2028',
      'flush_all',
      `delete ${SENTINEL}`,
      `set ${SENTINEL} 0 0 4`,
      'evil',
      'noreply',
      'get',
      'é',
      '🎉',
      '\ud800',
    ),
    { minLength: 1, maxLength: 8 },
  )
  .map((parts) => parts.join(''));

describe('key injection', () => {
  test('fast-check: any string as a key is refused with MemcachedKeyError before sending, or stored and read back under exactly that key; never a second command', async () => {
    const mc = client();
    await mc.set(SENTINEL, 'alive');
    const before = await counters();
    let accepted = 0;
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ unit: 'binary', maxLength: 40 }),
          fc.string({ unit: 'grapheme', maxLength: 40 }),
          fc.string({ maxLength: 300 }),
          injection,
        ),
        async (key) => {
          const value = `value of ${JSON.stringify(key)}`;
          const stored = await timed(() => mc.set(key, value));
          if (!stored.ok) {
            expect(stored.error).toBeInstanceOf(MemcachedKeyError);
            // The other key commands refuse it the same way.
            for (const call of [
              () => mc.get(key),
              () => mc.delete(key),
              () => mc.incr(key),
              () => mc.touch(key, 1),
              () => mc.getMany(['sec:ok', key]),
            ]) {
              const { error } = await rejection(call);
              expect(error).toBeInstanceOf(MemcachedKeyError);
            }
            refused++;
            return;
          }
          accepted++;
          expect(stored.value).toBe(true);
          expect(await mc.get(key)).toBe(value);
          expect(await mc.getMany([key])).toEqual(new Map([[key, value]]));
        },
      ),
      { numRuns: 300, seed: 6061 },
    );
    const moved = delta(before, await counters());
    // Exactly the accepted keys reached the server (one set, two key reads each); refused keys
    // sent nothing, and no injected command ran.
    expect(moved).toEqual({
      cmd_get: 2 * accepted,
      cmd_set: accepted,
      cmd_flush: 0,
      cmd_touch: 0,
      deletes: 0,
      arith: 0,
    });
    expect(refused).toBeGreaterThan(50);
    expect(accepted).toBeGreaterThan(50);
    expect(await mc.get(SENTINEL)).toBe('alive');
  }, 60_000);

  test('classic injection strings are refused and change nothing on the server', async () => {
    const mc = client();
    await mc.set(SENTINEL, 'alive');
    const before = await counters();
    const keys = [
      'x\r\nflush_all',
      'x flush_all',
      `x\r\ndelete ${SENTINEL}`,
      `k 0 0 1\r\nA\r\nset ${SENTINEL} 0 0 4\r\nevil`,
      'a\nb',
      'a\rb',
      'a\0b',
      'a\tb',
      'x\u0085y',
      '',
      'k'.repeat(251),
      '\ud800',
    ];
    for (const key of keys) {
      for (const call of [
        () => mc.set(key, 'v'),
        () => mc.get(key),
        () => mc.gets(key),
        () => mc.delete(key),
        () => mc.incr(key, 1),
        () => mc.touch(key, 10),
        () => mc.getMany(['ok', key]),
        () =>
          mc.setMany([
            ['ok', 1],
            [key, 2],
          ]),
        () => mc.deleteMany(['ok', key]),
      ]) {
        const { error } = await rejection(call);
        expect(error).toBeInstanceOf(MemcachedKeyError);
      }
    }
    expect(delta(before, await counters())).toEqual({
      cmd_get: 0,
      cmd_set: 0,
      cmd_flush: 0,
      cmd_touch: 0,
      deletes: 0,
      arith: 0,
    });
    expect(await mc.get(SENTINEL)).toBe('alive');
    expect(await mc.get('ok')).toBeUndefined(); // setMany stored nothing: validated up front
  });

  test('protocol text inside values, TTLs, cas tokens, deltas, stats groups and prefixes goes nowhere', async () => {
    const mc = client();
    await mc.set(SENTINEL, 'alive');
    const before = await counters();
    const evil = `x\r\nflush_all\r\nset ${SENTINEL} 0 0 4\r\nevil\r\nEND\r\n`;
    // A value is data: length-prefixed, stored verbatim.
    expect(await mc.set('sec:v', evil)).toBe(true);
    expect(await mc.get('sec:v')).toBe(evil);
    expect(await mc.set('sec:b', Buffer.from(evil))).toBe(true);
    expect(await mc.append('sec:v', '\r\nflush_all\r\n')).toBe(true);
    expect(await mc.get('sec:v')).toBe(`${evil}\r\nflush_all\r\n`);
    // Numbers and tokens are validated.
    const bad: Array<() => Promise<unknown>> = [
      () => mc.set('sec:t', 'v', { ttl: '0\r\nflush_all' as unknown as number }),
      () => mc.touch('sec:t', '1 noreply\r\nflush_all' as unknown as number),
      () => mc.cas('sec:t', 'v', '1\r\nflush_all'),
      () => mc.cas('sec:t', 'v', '1 noreply'),
      () => mc.incr('sec:t', '1\r\nflush_all' as unknown as number),
      () => mc.stats('items\r\nflush_all'),
      () => mc.stats('items flush_all'),
      () => mc.flushAll('0\r\nflush_all' as unknown as number),
    ];
    for (const call of bad) {
      const { error } = await rejection(call);
      expect(error).toBeInstanceOf(MemcachedValueError);
    }
    expect(
      () => new MemcachedClient({ servers: server.address, keyPrefix: 'p\r\nflush_all ' }),
    ).toThrow(MemcachedOptionsError);
    expect(
      () =>
        new MemcachedClient({
          servers: server.address,
          auth: { username: 'u', password: 'p\r\nflush_all' },
        }),
    ).toThrow(MemcachedOptionsError);
    const moved = delta(before, await counters());
    expect(moved.cmd_flush).toBe(0);
    expect(moved.cmd_set).toBe(3); // the two sets and the append above, nothing else
    expect(await mc.get(SENTINEL)).toBe('alive');
  });
});

describe('the default serde keeps values inert', () => {
  /** Writes raw bytes with raw flags, bypassing the client's serializer. */
  async function rawSet(key: string, flags: number, text: string): Promise<void> {
    const bytes = Buffer.from(text, 'utf8');
    const reply = await rawRequest(
      server,
      Buffer.concat([
        Buffer.from(`set ${key} ${flags} 0 ${bytes.length}\r\n`),
        bytes,
        Buffer.from('\r\n'),
      ]),
    );
    expect(reply).toBe('STORED\r\n');
  }

  const unpolluted = (): void => {
    const probe: Record<string, unknown> = {};
    for (const name of ['polluted', 'isAdmin', 'x']) {
      expect(probe[name]).toBeUndefined();
      expect(Object.prototype.hasOwnProperty.call(Object.prototype, name)).toBe(false);
    }
  };

  test('JSON with __proto__ / constructor.prototype stays plain data; Object.prototype is untouched', async () => {
    const mc = client();
    const payloads = [
      '{"__proto__":{"polluted":true}}',
      '{"constructor":{"prototype":{"polluted":true}}}',
      '{"a":{"__proto__":{"isAdmin":true}},"b":[{"__proto__":{"x":1}}]}',
      '[{"__proto__":{"polluted":true}},{"constructor":{"prototype":{"isAdmin":true}}}]',
    ];
    for (const [i, text] of payloads.entries()) {
      await rawSet(`sec:json${i}`, 32, text);
      const got = await mc.get<Record<string, unknown>>(`sec:json${i}`);
      expect(JSON.stringify(got)).toBe(text);
      unpolluted();
    }
    const first = (await mc.get<Record<string, unknown>>('sec:json0'))!;
    expect(Object.getPrototypeOf(first)).toBe(Object.prototype);
    expect(Object.hasOwn(first, '__proto__')).toBe(true);
    expect(first['polluted']).toBeUndefined();
    const ctor = (await mc.get<Record<string, unknown>>('sec:json1'))!;
    expect(ctor['constructor']).toEqual({ prototype: { polluted: true } });
    expect({}.constructor).toBe(Object);
    // A round trip through the client's own serializer keeps the own "__proto__" key as data.
    const parsed = JSON.parse('{"__proto__":{"polluted":true},"then":1}') as Record<
      string,
      unknown
    >;
    await mc.set('sec:rt', parsed);
    const back = (await mc.get<Record<string, unknown>>('sec:rt'))!;
    expect(Object.hasOwn(back, '__proto__')).toBe(true);
    expect(back['then']).toBe(1); // a "then" key does not make the result a thenable
    unpolluted();
  });

  test('code in values is returned as text, never run', async () => {
    const mc = client();
    const marker = join(tmpdir(), `nestjs-memcached-pwned-${process.pid}-${Date.now()}`);
    const code = [
      `(function(){globalThis.__pwned=1;require('fs').writeFileSync(${JSON.stringify(marker)},'x')})()`,
      `process.mainModule.require('child_process').execSync('touch ${marker}')`,
      '${globalThis.__pwned=1}',
      '__proto__',
    ];
    for (const [i, text] of code.entries()) {
      await rawSet(`sec:code${i}`, 16, text);
      expect(await mc.get(`sec:code${i}`)).toBe(text);
      await rawSet(`sec:codej${i}`, 32, JSON.stringify(text));
      expect(await mc.get(`sec:codej${i}`)).toBe(text);
      await mc.set(`sec:codes${i}`, text);
      expect(await mc.get(`sec:codes${i}`)).toBe(text);
    }
    // Integers flags with non-integer text, unknown flags, broken JSON: a serde error, no eval.
    for (const [flags, text] of [
      [2, 'constructor'],
      [2, '1e9999'],
      [4, 'process.exit(1)'],
      [32, '{"a":function(){}}'],
      [32, 'globalThis.__pwned=1'],
      [1, "cos\nsystem\n(S'touch /tmp/x'\ntR."],
    ] as const) {
      await rawSet('sec:bad', flags, text);
      const { error } = await rejection(() => mc.get('sec:bad'));
      expect(error).toBeInstanceOf(MemcachedSerdeError);
    }
    expect((globalThis as Record<string, unknown>)['__pwned']).toBeUndefined();
    expect(existsSync(marker)).toBe(false);
  });
});

describe('authentication failure', () => {
  test('a wrong password raises MemcachedAuthError on every call, without a reconnect storm', async () => {
    const authServer = await startMemcached({ auth: { username: 'user', password: 'right' } });
    const proxy = await startProxy('127.0.0.1', authServer.port);
    const poolSize = 2;
    try {
      const mc = client({
        servers: proxy.address,
        auth: { username: 'user', password: 'wrong' },
        poolSize,
      });
      const counts: Record<string, number> = {};
      const started = performance.now();
      let calls = 0;
      // Constant calls for 2 s (bounded in count too), several at a time.
      while (performance.now() - started < 2000 && calls < 20_000) {
        const outcomes = await Promise.all(
          Array.from({ length: 5 }, (_, i) => timed(() => (i % 2 ? mc.get('a') : mc.set('a', 1)))),
        );
        for (const o of outcomes) {
          calls++;
          const name = o.ok ? 'ok' : (o.error as Error).constructor.name;
          counts[name] = (counts[name] ?? 0) + 1;
        }
        await sleep(5);
      }
      expect(counts).toEqual({ MemcachedAuthError: calls });
      expect(calls).toBeGreaterThan(100);
      // Reconnects back off (about a second apart): a handful of connections, not one per call.
      expect(proxy.accepted).toBeGreaterThanOrEqual(1);
      expect(proxy.accepted).toBeLessThanOrEqual(poolSize * 3);
      // The right password works against the same server.
      const good = client({
        servers: proxy.address,
        auth: { username: 'user', password: 'right' },
      });
      expect(await good.set('a', 1)).toBe(true);
      expect(await good.get('a')).toBe(1);
      await mc.close();
      await good.close();
    } finally {
      await proxy.close();
      await authServer.stop();
    }
  });

  // Once auth failures have marked a server dead, its calls still fail with MemcachedAuthError
  // (not a generic connection error), so callers can report bad credentials.
  test('auth failure errors stay MemcachedAuthError once the server is marked dead (failureThreshold 1)', async () => {
    const authServer = await startMemcached({ auth: { username: 'user', password: 'right' } });
    try {
      const mc = client({
        servers: authServer.address,
        auth: { username: 'user', password: 'wrong' },
        failover: { failureThreshold: 1, deadTimeout: 5000 },
      });
      for (let i = 0; i < 10; i++) {
        const { error } = await rejection(() => mc.get('a'));
        expect(error).toBeInstanceOf(MemcachedAuthError);
        await sleep(20);
      }
      await mc.close();
    } finally {
      await authServer.stop();
    }
  });
});

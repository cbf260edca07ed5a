import { afterAll, beforeAll, beforeEach, describe, expect, test } from '@jest/globals';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  MemcachedClient,
  MemcachedConflictError,
  MemcachedConnectionError,
  MemcachedError,
  MemcachedKeyError,
  MemcachedServerError,
  MemcachedValueError,
} from '../../lib/index.js';
import { buildForChildren, report, runChild, type ChildBuild } from '../harness/child.js';
import {
  serverStats,
  startMemcached,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';
import { PROTOCOLS } from '../harness/protocols.js';

/** N concurrent `update(key, n => (n ?? 0) + 1)` calls; prints `REPORT {ok, failed}`. */
const INCREMENTER = `
const [entry, server, protocol, key, n] = process.argv.slice(2);
const { MemcachedClient } = await import(entry);
const mc = new MemcachedClient({ servers: server, protocol, timeout: 5000 });
const results = await Promise.allSettled(
  Array.from({ length: Number(n) }, () => mc.update(key, (v) => (v ?? 0) + 1)),
);
await mc.close();
const failed = results.filter((r) => r.status === 'rejected').map((r) => String(r.reason));
console.log('REPORT ' + JSON.stringify({ ok: results.length - failed.length, failed }));
`;

let server: MemcachedProcess;
let build: ChildBuild;
let script: string;

beforeAll(async () => {
  server = await startMemcached();
  build = await buildForChildren('update');
  script = join(build.dir, 'incrementer.mjs');
  await writeFile(script, INCREMENTER);
});

afterAll(async () => {
  await stopAllMemcached();
  await build.remove();
});

describe.each(PROTOCOLS)('update on %s', (protocol) => {
  let mc: MemcachedClient;

  beforeAll(() => {
    mc = new MemcachedClient({ servers: server.address, protocol });
  });
  afterAll(() => mc.close());
  beforeEach(() => mc.flushAll());

  test('20 concurrent increments from two processes, starting from a missing key: exact total', async () => {
    const key = `counter:${protocol}`;
    const runs = await Promise.all([
      runChild(script, [build.entry, server.address, protocol, key, '10']),
      runChild(script, [build.entry, server.address, protocol, key, '10']),
    ]);
    const reports = runs.map((r) => report<{ ok: number; failed: string[] }>(r));
    expect(reports).toEqual([
      { ok: 10, failed: [] },
      { ok: 10, failed: [] },
    ]);
    expect(runs.map((r) => r.code)).toEqual([0, 0]);
    expect(await mc.get(key)).toBe(20);
  });

  test('fn gets undefined on a miss (the value is added), the current value otherwise; resolves to what it stored', async () => {
    const seen: unknown[] = [];
    const fn = (v: { n: number } | undefined) => {
      seen.push(v);
      return { n: (v?.n ?? 0) + 1 };
    };
    expect(await mc.update('obj', fn, { ttl: 100 })).toEqual({ n: 1 });
    expect(await mc.update('obj', fn)).toEqual({ n: 2 });
    expect(seen).toEqual([undefined, { n: 1 }]);
    expect(await mc.get('obj')).toEqual({ n: 2 });
    // an async fn
    expect(await mc.update<number>('num', async (v) => (v ?? 40) + 2)).toBe(42);
  });

  test('a writer that changes the value on every attempt: MemcachedConflictError after `attempts` rounds', async () => {
    const other = new MemcachedClient({ servers: server.address, protocol });
    try {
      await mc.set('hot', 0);
      let calls = 0;
      const err = await mc
        .update<number>(
          'hot',
          async (v) => {
            calls++;
            await other.set('hot', 1000 + calls); // gets in between every read and write
            return (v ?? 0) + 1;
          },
          { attempts: 3 },
        )
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MemcachedConflictError);
      expect(err).toBeInstanceOf(MemcachedError);
      expect((err as Error).message).toMatch(/3 attempts/);
      expect(calls).toBe(3);
      expect(await mc.get('hot')).toBe(1003);
    } finally {
      await other.close();
    }
  });

  test('a missing key another writer adds first is a conflict too, then read again', async () => {
    const other = new MemcachedClient({ servers: server.address, protocol });
    try {
      let calls = 0;
      const result = await mc.update<number>('race', async (v) => {
        calls++;
        if (calls === 1) await other.set('race', 10); // wins the add
        return (v ?? 0) + 1;
      });
      expect(result).toBe(11);
      expect(calls).toBe(2);
      expect(await mc.get('race')).toBe(11);
    } finally {
      await other.close();
    }
  });

  test('fn throws: the call rejects with its error and nothing is stored', async () => {
    await mc.set('keep', 'old');
    const boom = new Error('boom');
    await expect(
      mc.update('keep', () => {
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(await mc.get('keep')).toBe('old');
  });

  test('bad arguments: a clear error before anything is sent', async () => {
    const before = await serverStats(server);
    await expect(mc.update('k', 'not a function' as never)).rejects.toThrow(MemcachedValueError);
    await expect(mc.update('k', undefined as never)).rejects.toThrow(/fn must be a function/);
    await expect(mc.update('k', (v) => v, { attempts: 0 })).rejects.toThrow(MemcachedValueError);
    await expect(mc.update('k', (v) => v, { ttl: 1.5 })).rejects.toThrow(MemcachedValueError);
    await expect(mc.update('bad key', (v) => v)).rejects.toThrow(MemcachedKeyError);
    const after = await serverStats(server);
    expect(Number(after.cmd_get)).toBe(Number(before.cmd_get));
    expect(Number(after.cmd_set)).toBe(Number(before.cmd_set));
  });
});

/** The address of a memcached that was started and stopped: nothing listens there. */
let gone: Promise<string> | undefined;
function goneAddress(): Promise<string> {
  gone ??= startMemcached().then(async (m) => {
    await m.stop();
    return m.address;
  });
  return gone;
}

describe.each(PROTOCOLS)('update with ignoreErrors on %s', (protocol) => {
  // A value over the server's item size limit (-I 1m) but within the client's maxValueSize: the
  // server itself refuses the write (SERVER_ERROR object too large / status 0x03).
  const tooLarge = 'x'.repeat(1536 * 1024);
  let mc: MemcachedClient;
  let ignored: Array<{ command: string; error: MemcachedError }>;

  beforeAll(() => {
    mc = new MemcachedClient({
      servers: server.address,
      protocol,
      ignoreErrors: true,
      maxValueSize: 4 * 1024 * 1024,
    });
    mc.on('ignoredError', (e) => ignored.push(e));
  });
  afterAll(() => mc.close());
  beforeEach(async () => {
    ignored = [];
    await mc.flushAll();
  });

  test.each(['cas', 'add'] as const)(
    'a server error on the write (%s) is no conflict: one attempt, resolves to fn’s value (not stored), emitted as ignoredError',
    async (write) => {
      const key = `big:${write}`;
      if (write === 'cas') await mc.set(key, 'small');
      const before = await serverStats(server);
      let calls = 0;
      const result = await mc.update(
        key,
        () => {
          calls++;
          return tooLarge;
        },
        { attempts: 3, ttl: 60 },
      );
      const after = await serverStats(server);
      expect(result).toBe(tooLarge);
      expect(calls).toBe(1);
      // One read: no retry after an error that was not a conflict.
      expect(Number(after.cmd_get) - Number(before.cmd_get)).toBe(1);
      expect(ignored.map((e) => e.command)).toEqual(['update']);
      expect(ignored[0]!.error).toBeInstanceOf(MemcachedServerError);
      expect(ignored[0]!.error).not.toBeInstanceOf(MemcachedConflictError);
      // Never stored. (On meta and binary memcached also drops the old item when it cannot
      // allocate the new one; the text protocol's cas leaves it.)
      expect(await mc.get(key)).not.toBe(tooLarge);
    },
  );

  test('without ignoreErrors the same write rejects with the server error itself, after one attempt', async () => {
    const strict = new MemcachedClient({
      servers: server.address,
      protocol,
      maxValueSize: 4 * 1024 * 1024,
    });
    try {
      await strict.set('big:strict', 'small');
      const before = await serverStats(server);
      const error = await strict
        .update('big:strict', () => tooLarge, { attempts: 3 })
        .catch((e: unknown) => e);
      const after = await serverStats(server);
      expect(error).toBeInstanceOf(MemcachedServerError);
      expect(Number(after.cmd_get) - Number(before.cmd_get)).toBe(1);
      expect(await strict.get('big:strict')).not.toBe(tooLarge);
    } finally {
      await strict.close();
    }
  });

  test('a server that is down: fn runs once on a miss, its value is returned, the error emitted (no MemcachedConflictError)', async () => {
    const down = new MemcachedClient({
      servers: await goneAddress(),
      protocol,
      ignoreErrors: true,
      connectTimeout: 200,
      timeout: 200,
    });
    const seen: Array<{ command: string; error: MemcachedError }> = [];
    down.on('ignoredError', (e) => seen.push(e));
    try {
      const currents: unknown[] = [];
      const result = await down.update(
        'counter',
        (n: number | undefined) => {
          currents.push(n);
          return (n ?? 0) + 1;
        },
        { attempts: 3, ttl: 60 },
      );
      expect(result).toBe(1);
      expect(currents).toEqual([undefined]);
      expect(seen.map((e) => e.command)).toEqual(['update']);
      expect(seen[0]!.error).toBeInstanceOf(MemcachedConnectionError);
    } finally {
      await down.close();
    }
  });
});

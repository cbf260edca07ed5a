import { afterAll, beforeAll, beforeEach, describe, expect, test } from '@jest/globals';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  MemcachedClient,
  MemcachedConflictError,
  MemcachedError,
  MemcachedKeyError,
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

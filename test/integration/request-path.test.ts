/**
 * Regression tests of the request path, through the public API only (client methods, options,
 * events, `serverFor`, `close`, the error classes) against harness servers. Each one states a rule
 * of the API contract (section 1, "Rules that hold everywhere"):
 *
 * - awaited calls run in order, noreply writes included, whichever pooled connection they use;
 * - a stall of the client's own event loop never turns an answered call into a timeout, never
 *   marks a server dead, never moves keys;
 * - a call fails only for its own reasons: an error reply to another caller's noreply write, or
 *   another key's oversized value, fails nobody else and keeps the connection;
 * - no call ever produces an unhandled rejection (checked in a child process run with
 *   `--unhandled-rejections=strict`, on a build of the package);
 * - `close()` settles every call at once, those waiting in a retry delay included, and leaves no
 *   timer behind;
 * - `ignoreErrors` turns a refused call (backpressure) into a miss / `false`.
 *
 * Counts come from the servers' own `stats` (curr_connections, total_connections) or from the
 * fake server's connection counter; nothing is mocked.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  MemcachedClient,
  MemcachedBackpressureError,
  MemcachedConnectionError,
  MemcachedError,
  MemcachedProtocolError,
  MemcachedTimeoutError,
  type MemcachedOptions,
} from '../../lib/index.js';
import { buildForChildren, runChild, type ChildBuild } from '../harness/child.js';
import { startHostileServer, type HostileServer } from '../harness/hostile-server.js';
import {
  rawRequest,
  serverStats,
  startMemcached,
  startMemcacheds,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';
import { PROTOCOLS } from '../harness/protocols.js';

const MiB = 1024 * 1024;

afterAll(async () => {
  await stopAllMemcached();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function stat(server: MemcachedProcess, name: string): Promise<number> {
  return Number((await serverStats(server))[name]);
}

/**
 * Opens the whole pool of `mc` on each server (concurrent calls: a new connection opens only
 * while the open ones are busy) and checks with the servers' `curr_connections` that at least
 * `poolSize - 1` of them are really open on each (one less, in case a stats connection is still
 * counted in the baseline). `baselines` are the servers' curr_connections before the client.
 */
async function warmPool(
  mc: MemcachedClient,
  servers: readonly MemcachedProcess[],
  baselines: readonly number[],
  poolSize: number,
): Promise<void> {
  const keysPerServer = new Map<string, string[]>();
  for (let i = 0; i < 5000; i++) {
    const key = `warm:${i}`;
    const list = keysPerServer.get(mc.serverFor(key)) ?? [];
    if (list.length < poolSize * 4) list.push(key);
    keysPerServer.set(mc.serverFor(key), list);
  }
  expect(keysPerServer.size).toBe(servers.length);
  const keys = [...keysPerServer.values()].flat();
  const stored = await Promise.all(keys.map((key) => mc.set(key, key)));
  expect(stored.every(Boolean)).toBe(true);
  const opened = await Promise.all(
    servers.map(async (s, i) => (await stat(s, 'curr_connections')) - baselines[i]!),
  );
  for (const n of opened) expect(n).toBeGreaterThanOrEqual(poolSize - 1);
}

/** Blocks the event loop for `ms` (a synchronous busy loop, like a long JSON.parse would). */
function busyFor(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // spin
  }
}

/**
 * Lets the calls issued in this tick be written (auto-batching and the connections' flushes run
 * on process.nextTick), then blocks the event loop for `ms` before any reply can be read: no I/O
 * phase runs between the writes and the stall, so the replies arrive while the loop is blocked.
 */
function stallAfterWrites(ms: number): Promise<void> {
  return new Promise((resolve) => {
    let depth = 0;
    const step = (): void => {
      if (++depth < 5) {
        process.nextTick(step);
        return;
      }
      busyFor(ms);
      resolve();
    };
    process.nextTick(step);
  });
}

/** `status:value` / `rejected:ErrorClass` of a settled call, for readable failure output. */
function outcome(r: PromiseSettledResult<unknown>): string {
  if (r.status === 'fulfilled') return `ok:${String(r.value)}`;
  const reason = r.reason as unknown;
  return `rejected:${reason instanceof Error ? reason.constructor.name : String(reason)}`;
}

function tally(outcomes: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const o of outcomes) counts[o] = (counts[o] ?? 0) + 1;
  return counts;
}

// -----------------------------------------------------------------------------------------------

describe('noreply writes keep the order of awaited calls over several pooled connections', () => {
  const POOL = 4;
  const ROUNDS = 300;
  const variants: Array<[string, MemcachedOptions]> = PROTOCOLS.flatMap((protocol) => [
    [`auto-batching on (default), ${protocol}`, { protocol }],
    [`autoBatch: false, ${protocol}`, { autoBatch: false, protocol }],
  ]);

  for (const [label, extra] of variants) {
    test(`await set(k, i, { noreply }) then await get(k) returns i, ${ROUNDS} times (${label})`, async () => {
      const server = await startMemcached();
      const baseline = await stat(server, 'curr_connections');
      const mc = new MemcachedClient({ servers: server.address, poolSize: POOL, ...extra });
      try {
        await warmPool(mc, [server], [baseline], POOL);
        const stale: string[] = [];
        for (let i = 0; i < ROUNDS; i++) {
          expect(await mc.set('order:set', i, { noreply: true })).toBe(true);
          const got = await mc.get('order:set');
          if (got !== i) stale.push(`#${i}: ${String(got)}`);
        }
        expect({ staleReads: stale.length, firstStale: stale.slice(0, 5) }).toEqual({
          staleReads: 0,
          firstStale: [],
        });
      } finally {
        await mc.close();
      }
    });

    test(`await set(k, { noreply }), await delete(k), await get(k): deleted, ${ROUNDS} times (${label})`, async () => {
      const server = await startMemcached();
      const baseline = await stat(server, 'curr_connections');
      const mc = new MemcachedClient({ servers: server.address, poolSize: POOL, ...extra });
      try {
        await warmPool(mc, [server], [baseline], POOL);
        let resurrected = 0;
        let deleteMissed = 0;
        for (let i = 0; i < ROUNDS; i++) {
          await mc.set('order:del', `v${i}`, { noreply: true });
          // The key was just written, so the delete finds it...
          if ((await mc.delete('order:del')) !== true) deleteMissed++;
          // ...and nothing brings it back.
          if ((await mc.get('order:del')) !== undefined) resurrected++;
        }
        expect({ resurrected, deleteMissed }).toEqual({ resurrected: 0, deleteMissed: 0 });
      } finally {
        await mc.close();
      }
    });
  }
});

// -----------------------------------------------------------------------------------------------

describe('a stall of the client event loop is not a server failure', () => {
  const POOL = 4;
  const STALL_MS = 400;
  const TIMEOUT_MS = 200;

  async function stallRun(
    servers: MemcachedProcess[],
    options: MemcachedOptions,
    pickKeys: (mc: MemcachedClient) => string[],
  ): Promise<void> {
    const baselines = await Promise.all(servers.map((s) => stat(s, 'curr_connections')));
    const mc = new MemcachedClient({
      servers: servers.map((s) => s.address),
      timeout: TIMEOUT_MS,
      poolSize: POOL,
      ...options,
    });
    const downs: string[] = [];
    mc.on('serverDown', ({ server }) => downs.push(server));
    try {
      await warmPool(mc, servers, baselines, POOL);
      const keys = pickKeys(mc);
      expect(await mc.setMany(keys.map((k) => [k, `value:${k}`] as const))).toEqual([]);
      const probes = Array.from({ length: 300 }, (_, i) => `placement:${i}`);
      const placement = (k: string): string => {
        try {
          return mc.serverFor(k);
        } catch (e) {
          return `throws ${e instanceof Error ? e.constructor.name : String(e)}`;
        }
      };
      const placedBefore = probes.map(placement);

      const calls = keys.map((k) => mc.get(k));
      await stallAfterWrites(STALL_MS);
      const settled = await Promise.allSettled(calls);

      const wrong = settled
        .map((r, i) =>
          r.status === 'fulfilled' && r.value === `value:${keys[i]}` ? '' : outcome(r),
        )
        .filter((o) => o !== '');
      const moved = probes.filter((k, i) => placement(k) !== placedBefore[i]).length;
      expect({ calls: keys.length, notTheirValue: tally(wrong), serverDown: downs, moved }).toEqual(
        { calls: keys.length, notTheirValue: {}, serverDown: [], moved: 0 },
      );
    } finally {
      await mc.close();
    }
  }

  test(`40 auto-batched gets over 3 servers, loop blocked ${STALL_MS} ms (timeout ${TIMEOUT_MS} ms): all resolve, no serverDown, no key moves`, async () => {
    const servers = await startMemcacheds(3);
    await stallRun(servers, {}, () => Array.from({ length: 40 }, (_, i) => `stall:${i}`));
  });

  test(`5 gets with autoBatch: false (all for one of 2 servers), loop blocked ${STALL_MS} ms: all resolve, no serverDown, no key moves`, async () => {
    const servers = await startMemcacheds(2);
    // All five for one server: enough timeouts there to reach the failure threshold (3).
    await stallRun(servers, { autoBatch: false }, (mc) => {
      const target = mc.serverFor('single:0');
      const keys: string[] = [];
      for (let i = 0; keys.length < 5; i++) {
        if (mc.serverFor(`single:${i}`) === target) keys.push(`single:${i}`);
      }
      return keys;
    });
  });
});

// -----------------------------------------------------------------------------------------------

describe("one caller's error never fails its neighbours, and the connection stays", () => {
  /**
   * A server that answers an oversized noreply set with SERVER_ERROR. memcached 1.6.18 itself
   * suppresses that error for a text-protocol noreply (checked with raw requests: `set big 0 0
   * 1500000 noreply` on -I 1m answers nothing), so for 'text' a scripted server plays a server
   * that does answer it — memcached's own reply to that set without noreply. On 'meta' the quiet
   * flag `q` does not hide errors, nor do the binary protocol's quiet opcodes, so there
   * memcached (-I 1m) itself answers it.
   */
  async function refusingServer(
    protocol: NonNullable<MemcachedOptions['protocol']>,
  ): Promise<{ address: string; connections(): Promise<number>; close(): Promise<void> }> {
    if (protocol === 'meta' || protocol === 'binary') {
      const real = await startMemcached({ args: ['-I', '1m'] });
      let probes = 0;
      return {
        address: real.address,
        // Less the connection of each stats request so far (this one included).
        connections: async () => (await stat(real, 'total_connections')) - ++probes,
        close: () => real.stop(),
      };
    }
    const hostile: HostileServer = await startHostileServer();
    hostile.respond((req, conn) => {
      if (req.data !== undefined && req.data.length > MiB) {
        conn.write('SERVER_ERROR object too large for cache\r\n');
        return;
      }
      const reply = hostile.honestReply(req); // also applies the write
      if (!req.noreply) conn.write(reply);
    });
    return {
      address: hostile.address,
      connections: () => Promise.resolve(hostile.connections),
      close: () => hostile.close(),
    };
  }

  test.each(PROTOCOLS)(
    '%s: an error reply to a noreply set (SERVER_ERROR object too large) fails no other call pipelined with it',
    async (protocol) => {
      // The contract: "an error the server raises for a noreply request never fails another
      // caller's call".
      const refusing = await refusingServer(protocol);
      const mc = new MemcachedClient({
        servers: refusing.address,
        maxValueSize: 4 * MiB,
        poolSize: 1,
        protocol,
      });
      const downs: string[] = [];
      const strays: string[] = [];
      mc.on('serverDown', ({ server }) => downs.push(server));
      mc.on('noreplyError', ({ error }) => strays.push(error.constructor.name));
      try {
        for (const k of ['a', 'c', 'd', 'e'])
          expect(await mc.set(`nb:${k}`, k.toUpperCase())).toBe(true);
        const connectionsBefore = await refusing.connections();

        // One tick: the oversized noreply write, then other callers' calls on the same socket.
        const big = mc.set('nb:big', 'x'.repeat(1_500_000), { noreply: true }).then(
          () => 'resolved',
          (e: unknown) => (e instanceof Error ? e.constructor.name : String(e)),
        );
        const neighbours = await Promise.allSettled<unknown>([
          mc.set('nb:b', 'B2'),
          mc.get('nb:a'),
          mc.delete('nb:d'),
          mc.get('nb:c'),
          mc.set('nb:f', 'F'),
          mc.get('nb:e'),
        ]);
        await big;
        const after = await Promise.all([mc.get('nb:b'), mc.get('nb:d'), mc.get('nb:f')]);
        expect({
          neighbours: neighbours.map(outcome),
          after,
          newConnections: (await refusing.connections()) - connectionsBefore,
          serverDown: downs,
          noreplyErrors: strays,
        }).toEqual({
          neighbours: ['ok:true', 'ok:A', 'ok:true', 'ok:C', 'ok:true', 'ok:E'],
          after: ['B2', undefined, 'F'],
          newConnections: 0,
          serverDown: [],
          noreplyErrors: ['MemcachedServerError'],
        });
      } finally {
        await mc.close();
        await refusing.close();
      }
    },
  );

  test.each(PROTOCOLS)(
    "%s: a value over this client's maxValueSize (stored by another client) fails only its own get in an auto-batched multi-get",
    async (protocol) => {
      const server = await startMemcached({ args: ['-I', '2m'] });
      const writer = new MemcachedClient({ servers: server.address, maxValueSize: 4 * MiB });
      // 1 MiB default
      const reader = new MemcachedClient({ servers: server.address, poolSize: 1, protocol });
      const downs: string[] = [];
      reader.on('serverDown', ({ server: id }) => downs.push(id));
      try {
        expect(await writer.set('mv:big', Buffer.alloc(1_500_000, 0x62))).toBe(true);
        for (const k of ['a', 'b', 'c', 'd']) expect(await writer.set(`mv:${k}`, k)).toBe(true);
        await writer.close();
        expect(await reader.get('mv:a')).toBe('a'); // the reader's connection is open
        const totalBefore = await stat(server, 'total_connections');

        // Gets of one tick for one server: one multi-get (`get mv:a mv:b mv:big mv:c mv:d`, or a
        // quiet run of `mg` closed by `mn`).
        const settled = await Promise.allSettled(
          ['mv:a', 'mv:b', 'mv:big', 'mv:c', 'mv:d'].map((k) => reader.get(k)),
        );
        const bigError = settled[2]!.status === 'rejected' ? settled[2]!.reason : undefined;
        const again = await reader.get('mv:a'); // on the same connection, if it was kept
        const totalAfter = await stat(server, 'total_connections');

        expect({
          small: [0, 1, 3, 4].map((i) => outcome(settled[i]!)),
          again,
          // +1: the stats request itself opens one connection.
          newConnections: totalAfter - totalBefore - 1,
          serverDown: downs,
        }).toEqual({
          small: ['ok:a', 'ok:b', 'ok:c', 'ok:d'],
          again: 'a',
          newConnections: 0,
          serverDown: [],
        });
        expect(bigError).toBeInstanceOf(MemcachedError);
        expect(bigError).not.toBeInstanceOf(MemcachedProtocolError);
        expect(bigError).not.toBeInstanceOf(MemcachedConnectionError);
      } finally {
        await writer.close();
        await reader.close();
      }
    },
  );
});

// -----------------------------------------------------------------------------------------------

/** Runs getMany / getsMany over [keyA, keyB]; prints `REPORT {json}`; exit code 0 unless it crashed. */
const CHILD_SCRIPT = `
const [entry, method, serverA, serverB, keyA, keyB] = process.argv.slice(2);
const { MemcachedClient } = await import(entry);
const mc = new MemcachedClient({ servers: [serverA, serverB], timeout: 2000, connectTimeout: 1000 });
let outcome;
try {
  const found = await mc[method]([keyA, keyB]);
  outcome = { resolved: [...found.keys()] };
} catch (error) {
  outcome = { rejected: error?.constructor?.name, message: String(error?.message) };
}
// Give the off-thread inflate of the corrupt value time to finish (and to reject).
await new Promise((resolve) => setTimeout(resolve, 500));
await mc.close();
console.log('REPORT ' + JSON.stringify(outcome));
`;

describe('no unhandled rejection (child process, --unhandled-rejections=strict)', () => {
  let build: ChildBuild;
  let script: string;

  beforeAll(async () => {
    build = await buildForChildren('request-path');
    script = join(build.dir, 'getmany-child.mjs');
    await writeFile(script, CHILD_SCRIPT);
  });

  afterAll(() => build.remove());

  test('getMany / getsMany with one server down and a corrupt compressed value (off-thread inflate) on the other settle normally', async () => {
    const [a, b] = await startMemcacheds(2);
    const servers = [a!.address, b!.address];
    const placement = new MemcachedClient({ servers });
    const pick = (id: string, prefix: string): string => {
      for (let i = 0; ; i++)
        if (placement.serverFor(`${prefix}${i}`) === id) return `${prefix}${i}`;
    };
    const keyA = pick(a!.serverId, 'corrupt:');
    const keyB = pick(b!.serverId, 'lost:');
    await placement.close();
    // Flag bit 8 (zlib), 80,000 bytes that are not zlib data: above the 64 KiB from which values
    // are inflated on the thread pool, so the failure comes back as a rejected Promise.
    const garbage = Buffer.alloc(80_000, 0x41);
    const stored = await rawRequest(
      a!,
      Buffer.concat([
        Buffer.from(`set ${keyA} 8 0 ${garbage.length}\r\n`),
        garbage,
        Buffer.from('\r\n'),
      ]),
    );
    expect(stored).toBe('STORED\r\n');
    await b!.kill();

    const runs = await Promise.all(
      ['getMany', 'getsMany'].map(async (method) => {
        const r = await runChild(script, [build.entry, method, ...servers, keyA, keyB]);
        const line = r.stdout.split('\n').find((l) => l.startsWith('REPORT '));
        return {
          method,
          exitCode: r.code,
          report:
            line === undefined
              ? undefined
              : (JSON.parse(line.slice('REPORT '.length)) as Record<string, unknown>),
          stderr: r.code === 0 ? [] : r.stderr.split('\n').slice(0, 8),
        };
      }),
    );
    expect(runs.map(({ method, exitCode, stderr }) => ({ method, exitCode, stderr }))).toEqual([
      { method: 'getMany', exitCode: 0, stderr: [] },
      { method: 'getsMany', exitCode: 0, stderr: [] },
    ]);
    // The call itself settled: server B's failure rejects it (or its hits resolve).
    for (const run of runs) expect(run.report).toBeDefined();
  });
});

// -----------------------------------------------------------------------------------------------

describe('close() settles a call waiting in a retry delay', () => {
  test('retry { attempts: 3, delay: 5000 } against a stopped server: close() rejects the waiting get at once and leaves no timer', async () => {
    const gone = await startMemcached();
    const address = gone.address;
    await gone.kill();
    const timeouts = (): number =>
      process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const timersBefore = timeouts();
    const mc = new MemcachedClient({
      servers: address,
      retry: { attempts: 3, delay: 5000 },
      connectTimeout: 1000,
    });
    let settledAt: number | undefined;
    let result: unknown;
    const call = mc.get('retry:k').then(
      (v) => {
        result = { value: v };
        settledAt = performance.now();
      },
      (e: unknown) => {
        result = e;
        settledAt = performance.now();
      },
    );
    try {
      await sleep(300); // the first attempt failed (connection refused): now in the 5 s delay
      expect(settledAt).toBeUndefined();
      await mc.close();
      const closedAt = performance.now();
      let bound: NodeJS.Timeout | undefined;
      await Promise.race([call, new Promise<void>((r) => (bound = setTimeout(r, 500)))]);
      clearTimeout(bound);
      const extraTimers = Math.max(0, timeouts() - timersBefore);
      expect({
        settledWithin500msOfClose: settledAt !== undefined && settledAt - closedAt < 500,
        extraTimers,
      }).toEqual({ settledWithin500msOfClose: true, extraTimers: 0 });
      expect(result).toBeInstanceOf(MemcachedConnectionError);
    } finally {
      await mc.close();
      // Not awaited: when close() does not settle it, the call only settles once the retry
      // timers have run (5 s each), long after this test.
      void call;
    }
  });
});

// -----------------------------------------------------------------------------------------------

describe('ignoreErrors', () => {
  test('turns MemcachedBackpressureError into a miss / false (maxPending: 1, paused server)', async () => {
    const server = await startMemcached();
    const mc = new MemcachedClient({
      servers: server.address,
      ignoreErrors: true,
      maxPending: 1,
      autoBatch: false,
      timeout: 300,
    });
    const ignored: string[] = [];
    mc.on('ignoredError', ({ error }) => ignored.push(error.constructor.name));
    server.pause();
    try {
      const settled = await Promise.allSettled<unknown>([
        mc.get('bp:a'),
        mc.get('bp:b'),
        mc.get('bp:c'),
        mc.set('bp:d', 'd'),
        mc.delete('bp:e'),
      ]);
      expect(settled.map(outcome)).toEqual([
        'ok:undefined',
        'ok:undefined',
        'ok:undefined',
        'ok:false',
        'ok:false',
      ]);
      expect(tally(ignored)).toEqual({
        [MemcachedTimeoutError.name]: 1,
        [MemcachedBackpressureError.name]: 4,
      });
    } finally {
      server.resume();
      await mc.close();
    }
  });
});

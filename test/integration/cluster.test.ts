import { afterAll, afterEach, beforeAll, describe, expect, jest, test } from '@jest/globals';
import { Connection } from '../../lib/connection/connection.js';
import {
  MemcachedClient,
  MemcachedConnectionError,
  type MemcachedOptions,
} from '../../lib/index.js';
import {
  rawRequest,
  startMemcacheds,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';
import { startProxy, type FaultProxy } from '../harness/proxy.js';

let servers: MemcachedProcess[];
const clients: MemcachedClient[] = [];

beforeAll(async () => {
  servers = await startMemcacheds(3);
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  for (const s of servers) if (!s.running) await s.restart();
  for (const s of servers) await rawRequest(s, 'flush_all\r\n');
});

afterAll(async () => {
  await stopAllMemcached();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function client(options: MemcachedOptions = {}): MemcachedClient {
  const c = new MemcachedClient({
    servers: servers.map((s) => s.address),
    timeout: 1000,
    ...options,
  });
  clients.push(c);
  return c;
}

/** Keys grouped by the server they are placed on. */
function keysByServer(mc: MemcachedClient, n: number): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (let i = 0; i < n; i++) {
    const key = `key:${i}`;
    const id = mc.serverFor(key);
    out.set(id, [...(out.get(id) ?? []), key]);
  }
  return out;
}

async function rawGet(server: MemcachedProcess, key: string): Promise<boolean> {
  return (await rawRequest(server, `get ${key}\r\n`)).startsWith('VALUE ');
}

describe('placement across servers', () => {
  test('keys spread over every server and each key lives only on its server', async () => {
    const mc = client();
    const groups = keysByServer(mc, 300);
    expect([...groups.keys()].sort()).toEqual(servers.map((s) => s.serverId).sort());
    expect(await mc.setMany([...groups.values()].flat().map((k) => [k, k] as const))).toEqual([]);
    for (const server of servers) {
      const mine = groups.get(server.serverId)!;
      expect(await rawGet(server, mine[0]!)).toBe(true);
      const other = [...groups].find(([id]) => id !== server.serverId)![1][0]!;
      expect(await rawGet(server, other)).toBe(false);
    }
  });

  test('getMany sends one request per server and merges the results', async () => {
    const mc = client();
    const keys = Array.from({ length: 90 }, (_, i) => `m:${i}`);
    await mc.setMany(keys.map((k) => [k, `v-${k}`] as const));
    const spy = jest.spyOn(Connection.prototype, 'enqueue');
    try {
      const got = await mc.getMany([...keys, 'm:absent']);
      expect(spy).toHaveBeenCalledTimes(3);
      expect(got.size).toBe(90);
      for (const k of keys) expect(got.get(k)).toBe(`v-${k}`);
    } finally {
      spy.mockRestore();
    }
  });

  test('stats, version and flushAll cover every server, keyed by server id', async () => {
    const mc = client();
    const ids = servers.map((s) => s.serverId).sort();
    expect(Object.keys(await mc.version()).sort()).toEqual(ids);
    expect(Object.keys(await mc.stats()).sort()).toEqual(ids);
    await mc.setMany(Array.from({ length: 30 }, (_, i) => [`f:${i}`, i] as const));
    await mc.flushAll();
    expect((await mc.getMany(Array.from({ length: 30 }, (_, i) => `f:${i}`))).size).toBe(0);
  });
});

describe('failover', () => {
  test('a killed server is marked dead after failureThreshold failures; its keys move, no other key moves; it rejoins after restart', async () => {
    const mc = client({ failover: { failureThreshold: 3, deadTimeout: 400, retryTimeout: 100 } });
    const events: string[] = [];
    mc.on('serverDown', ({ server }) => events.push(`down ${server}`));
    mc.on('serverUp', ({ server }) => events.push(`up ${server}`));
    const groups = keysByServer(mc, 300);
    const victim = servers[1]!;
    const victimKeys = groups.get(victim.serverId)!;
    const otherKeys = [...groups].filter(([id]) => id !== victim.serverId).flatMap(([, k]) => k);
    await mc.setMany([...victimKeys, ...otherKeys].map((k) => [k, k] as const));

    await victim.kill();
    // Calls for the victim's keys fail until it is marked dead ...
    let failures = 0;
    const deadline = performance.now() + 5000;
    while (performance.now() < deadline) {
      const r = await mc.get(victimKeys[0]!).catch((e: unknown) => e);
      if (!(r instanceof Error)) break;
      expect(r).toBeInstanceOf(MemcachedConnectionError);
      failures++;
      await sleep(20);
    }
    expect(failures).toBeGreaterThanOrEqual(1);
    expect(events).toEqual([`down ${victim.serverId}`]);
    // ... then they go to the remaining servers (a miss there, then stored there).
    for (const k of victimKeys.slice(0, 20)) {
      expect(mc.serverFor(k)).not.toBe(victim.serverId);
      expect(await mc.set(k, 'moved')).toBe(true);
      expect(await mc.get(k)).toBe('moved');
    }
    // No other key moved: every one is still a hit on its own server.
    const hits = await mc.getMany(otherKeys);
    expect(hits.size).toBe(otherKeys.length);
    for (const k of otherKeys)
      expect(mc.serverFor(k)).toBe(
        groups.get(mc.serverFor(k))!.includes(k) ? mc.serverFor(k) : 'moved!',
      );

    await victim.restart();
    const back = performance.now() + 5000;
    while (performance.now() < back && !events.includes(`up ${victim.serverId}`)) {
      await mc.get(otherKeys[0]!); // traffic drives the probe
      await sleep(50);
    }
    expect(events).toEqual([`down ${victim.serverId}`, `up ${victim.serverId}`]);
    // Its keys route back to it.
    expect(mc.serverFor(victimKeys[0]!)).toBe(victim.serverId);
    expect(await mc.set(victimKeys[0]!, 'home')).toBe(true);
    expect(await rawGet(victim, victimKeys[0]!)).toBe(true);
  });

  test('with failover off, calls to a dead server fail fast with MemcachedConnectionError', async () => {
    const mc = client({ failover: false });
    const groups = keysByServer(mc, 100);
    const victim = servers[2]!;
    const key = groups.get(victim.serverId)![0]!;
    const other = groups.get(servers[0]!.serverId)![0]!;
    await mc.set(key, 1);
    await victim.kill();
    await expect(mc.get(key)).rejects.toBeInstanceOf(MemcachedConnectionError);
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      await expect(mc.get(key)).rejects.toBeInstanceOf(MemcachedConnectionError);
      expect(performance.now() - started).toBeLessThan(100);
      expect(mc.serverFor(key)).toBe(victim.serverId); // never moved
    }
    expect(await mc.set(other, 'fine')).toBe(true);
  });

  test('ignoreErrors: a dead server gives misses and false, never throws; getMany keeps the others', async () => {
    const mc = client({ ignoreErrors: true, failover: false });
    const ignored: string[] = [];
    mc.on('ignoredError', ({ command }) => ignored.push(command));
    const groups = keysByServer(mc, 150);
    const victim = servers[0]!;
    const all = [...groups.values()].flat();
    await mc.setMany(all.map((k) => [k, k] as const));
    await victim.kill();
    const victimKeys = groups.get(victim.serverId)!;
    expect(await mc.get(victimKeys[0]!)).toBeUndefined();
    expect(await mc.set(victimKeys[0]!, 1)).toBe(false);
    expect(await mc.delete(victimKeys[0]!)).toBe(false);
    expect(await mc.incr(victimKeys[0]!)).toBeUndefined();
    const many = await mc.getMany(all);
    expect(many.size).toBe(all.length - victimKeys.length);
    const notStored = await mc.setMany(all.map((k) => [k, 2] as const));
    expect(notStored.sort()).toEqual([...victimKeys].sort());
    const versions = await mc.version();
    expect(Object.keys(versions).sort()).toEqual(
      servers
        .filter((s) => s !== victim)
        .map((s) => s.serverId)
        .sort(),
    );
    expect(ignored.length).toBeGreaterThan(0);
  });

  test('getMany across all servers with one dead: rejects naming it until marked dead, then serves the rest', async () => {
    const mc = client({ failover: { failureThreshold: 3, deadTimeout: 60_000 } });
    const groups = keysByServer(mc, 150);
    const victim = servers[1]!;
    const all = [...groups.values()].flat();
    await mc.setMany(all.map((k) => [k, k] as const));
    await victim.kill();
    const errors: unknown[] = [];
    let hits: Map<string, unknown> | undefined;
    const deadline = performance.now() + 5000;
    while (performance.now() < deadline && hits === undefined) {
      try {
        hits = await mc.getMany(all);
      } catch (err) {
        errors.push(err);
        await sleep(20);
      }
    }
    expect(errors.length).toBeGreaterThanOrEqual(1);
    for (const err of errors) {
      expect(err).toBeInstanceOf(MemcachedConnectionError);
      expect((err as Error).message).toContain(victim.serverId);
    }
    const victimKeys = groups.get(victim.serverId)!;
    expect(hits?.size).toBe(all.length - victimKeys.length);
    for (const k of victimKeys) expect(hits?.has(k)).toBe(false);
  });
});

describe('retry', () => {
  let proxy: FaultProxy;

  beforeAll(async () => {
    proxy = await startProxy('127.0.0.1', servers[0]!.port);
  });

  afterAll(async () => {
    await proxy.close();
  });

  test('a get is retried after a dropped connection and succeeds', async () => {
    const mc = client({ servers: proxy.address, retry: { attempts: 2 }, poolSize: 1 });
    await mc.set('r', 'value');
    proxy.dropNextRequest();
    expect(await mc.get('r')).toBe('value');
    const noRetry = client({ servers: proxy.address, poolSize: 1 });
    await noRetry.get('r');
    proxy.dropNextRequest();
    await expect(noRetry.get('r')).rejects.toBeInstanceOf(MemcachedConnectionError);
  });

  test('an incr is not retried unless opted in', async () => {
    const mc = client({ servers: proxy.address, retry: { attempts: 3 }, poolSize: 1 });
    await mc.set('n', 10);
    proxy.dropNextRequest();
    await expect(mc.incr('n')).rejects.toBeInstanceOf(MemcachedConnectionError);
    expect(await mc.get('n')).toBe(10); // dropped before it reached the server, and not repeated

    const optIn = client({
      servers: proxy.address,
      retry: { attempts: 3, unsafeCommands: ['incr'] },
      poolSize: 1,
    });
    await optIn.get('n');
    proxy.dropNextRequest();
    expect(await optIn.incr('n')).toBe(11);
  });
});

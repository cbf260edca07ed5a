/**
 * Placement that changes while the client runs: routeBy, setServers, resetDeadServers.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import {
  MemcachedClient,
  MemcachedConnectionError,
  MemcachedKeyError,
  MemcachedOptionsError,
  type MemcachedOptions,
} from '../../lib/index.js';
import {
  rawRequest,
  serverStats,
  startMemcacheds,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';

let servers: MemcachedProcess[];
const clients: MemcachedClient[] = [];

beforeAll(async () => {
  servers = await startMemcacheds(4);
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  for (const s of servers) if (!s.running) await s.restart();
  for (const s of servers) await rawRequest(s, 'flush_all\r\n');
});

afterAll(stopAllMemcached);

function client(options: MemcachedOptions = {}): MemcachedClient {
  const c = new MemcachedClient({
    servers: servers.slice(0, 3).map((s) => s.address),
    timeout: 1000,
    ...options,
  });
  clients.push(c);
  return c;
}

const keys = Array.from({ length: 2000 }, (_, i) => `user:${i}:profile`);

async function rawHas(server: MemcachedProcess, key: string): Promise<boolean> {
  return (await rawRequest(server, `get ${key}\r\n`)).startsWith('VALUE ');
}

async function currConnections(server: MemcachedProcess): Promise<number> {
  // The stats request counts itself.
  return Number((await serverStats(server)).curr_connections) - 1;
}

describe('routeBy', () => {
  test('keys that route to the same string share a server; placement ignores keyPrefix', async () => {
    const mc = client({ routeBy: (k) => k.split(':')[1]!, keyPrefix: 'app:' });
    const plain = client();
    for (let id = 0; id < 50; id++) {
      const home = mc.serverFor(`name:${id}`);
      expect(mc.serverFor(`cart:${id}`)).toBe(home);
      expect(mc.serverFor(`orders:${id}:2024`)).toBe(home);
      // the server is the one the route string itself is placed on
      expect(home).toBe(plain.serverFor(String(id)));
    }
    await mc.set('cart:7', ['apple']);
    const home = servers.find((s) => s.serverId === mc.serverFor('name:7'))!;
    expect(await rawHas(home, 'app:cart:7')).toBe(true);
    expect(await mc.getMany(['cart:7', 'name:7'])).toEqual(new Map([['cart:7', ['apple']]]));
  });

  test('a route that is not a string, or a throwing routeBy: a clear error, nothing sent', async () => {
    const mc = client({ routeBy: (k) => k.split(':')[1]! });
    const before = await Promise.all(servers.map(serverStats));
    const bad = mc.set('nocolon', 1).catch((e: unknown) => e);
    expect(await bad).toBeInstanceOf(MemcachedKeyError);
    expect(((await bad) as Error).message).toMatch(/routeBy must return a string.*undefined/);
    await expect(mc.get('nocolon')).rejects.toThrow(MemcachedKeyError);
    await expect(mc.getMany(['a:1', 'nocolon'])).rejects.toThrow(MemcachedKeyError);
    await expect(mc.setMany({ 'a:1': 1, nocolon: 2 })).rejects.toThrow(MemcachedKeyError);
    await expect(mc.deleteMany(['a:1', 'nocolon'])).rejects.toThrow(MemcachedKeyError);
    const throwing = client({
      routeBy: () => {
        throw new Error('no route');
      },
    });
    await expect(throwing.get('x')).rejects.toThrow(/routeBy threw.*no route/);
    const after = await Promise.all(servers.map(serverStats));
    for (let i = 0; i < servers.length; i++) {
      expect(after[i]!.cmd_get).toBe(before[i]!.cmd_get);
      expect(after[i]!.cmd_set).toBe(before[i]!.cmd_set);
    }
  });

  test('a routeBy that is not a function fails at construction', () => {
    expect(() => new MemcachedClient({ routeBy: 'id' as never })).toThrow(MemcachedOptionsError);
  });
});

describe.each(['ketama', 'rendezvous'] as const)('setServers with %s', (hashing) => {
  test('3 → 4 servers: 15–35 % of 2,000 keys move, every one of them to the new server', async () => {
    const mc = client({ hashing });
    const before = keys.map((k) => mc.serverFor(k));
    await mc.setServers(servers.map((s) => s.address));
    expect(mc.servers).toEqual(servers.map((s) => s.serverId));
    const after = keys.map((k) => mc.serverFor(k));
    const moved = keys.filter((_, i) => before[i] !== after[i]);
    expect(moved.length / keys.length).toBeGreaterThanOrEqual(0.15);
    expect(moved.length / keys.length).toBeLessThanOrEqual(0.35);
    for (const k of moved) expect(mc.serverFor(k)).toBe(servers[3]!.serverId);
    // and back: exactly the same placement as before
    await mc.setServers(servers.slice(0, 3).map((s) => s.address));
    expect(keys.map((k) => mc.serverFor(k))).toEqual(before);
  });
});

describe('setServers', () => {
  test('a removed server: calls in flight settle, then its connections close; its keys go elsewhere', async () => {
    const mc = client({ poolSize: 2 });
    await mc.setMany(keys.slice(0, 200).map((k) => [k, k] as const));
    const gone = servers[2]!;
    const kept = servers[0]!;
    expect(await currConnections(gone)).toBeGreaterThanOrEqual(1);
    const keptConnections = await currConnections(kept);
    // Writes issued in the same tick as setServers, many of them to the server being removed.
    const writes = keys.slice(0, 300).map((k) => mc.set(k, `v2:${k}`));
    const changed = mc.setServers(servers.slice(0, 2).map((s) => s.address));
    expect((await Promise.allSettled(writes)).map((r) => r.status)).toEqual(
      writes.map(() => 'fulfilled'),
    );
    await changed;
    expect(await currConnections(gone)).toBe(0);
    // a server in both lists keeps its pool: no connection opened or left behind
    expect(await currConnections(kept)).toBe(keptConnections);
    expect(mc.servers).toEqual(servers.slice(0, 2).map((s) => s.serverId));
    for (const k of keys.slice(0, 50)) expect(mc.serverFor(k)).not.toBe(gone.serverId);
    expect(await mc.set('after', 1)).toBe(true);
    const totalBefore = Number((await serverStats(gone)).total_connections);
    await Promise.all(keys.slice(0, 100).map((k) => mc.get(k)));
    // nothing goes to it any more (+1: that stats request)
    expect(Number((await serverStats(gone)).total_connections)).toBe(totalBefore + 1);
  });

  test('an empty list or a bad server string: MemcachedOptionsError, nothing changed', async () => {
    const mc = client();
    const ids = mc.servers;
    const placement = keys.slice(0, 100).map((k) => mc.serverFor(k));
    await expect(mc.setServers([])).rejects.toThrow(MemcachedOptionsError);
    await expect(mc.setServers('')).rejects.toThrow(/empty/);
    await expect(mc.setServers(['127.0.0.1:notaport'])).rejects.toThrow(MemcachedOptionsError);
    await expect(mc.setServers([servers[0]!.address, 'a b'])).rejects.toThrow(
      MemcachedOptionsError,
    );
    await expect(mc.setServers(undefined as never)).rejects.toThrow(MemcachedOptionsError);
    await expect(mc.setServers([servers[0]!.address, servers[0]!.address])).rejects.toThrow(
      /listed twice/,
    );
    expect(mc.servers).toEqual(ids);
    expect(keys.slice(0, 100).map((k) => mc.serverFor(k))).toEqual(placement);
    expect(await mc.set('still', 'works')).toBe(true);
  });

  test('after close: MemcachedConnectionError', async () => {
    const mc = client();
    await mc.close();
    await expect(mc.setServers([servers[0]!.address])).rejects.toThrow(MemcachedConnectionError);
  });
});

describe('resetDeadServers', () => {
  test("a restarted server's keys route back to it at once", async () => {
    const mc = client({
      failover: { failureThreshold: 1, deadTimeout: 60_000, retryTimeout: 60_000 },
      connectTimeout: 300,
    });
    const down = servers[1]!;
    const key = keys.find((k) => mc.serverFor(k) === down.serverId)!;
    const ups: string[] = [];
    mc.on('serverUp', ({ server }) => ups.push(server));
    await mc.set(key, 'before');
    await down.kill();
    // The lost connection (or the next failed call) marks it dead: its keys go elsewhere.
    for (let i = 0; i < 50 && mc.serverFor(key) === down.serverId; i++) {
      await mc.get(key).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(mc.serverFor(key)).not.toBe(down.serverId);
    // Connection attempts that fail meanwhile (ping ignores dead marks) grow its reconnect
    // backoff towards a second.
    for (let i = 0; i < 5; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 60 * 2 ** (i - 1)));
      await mc.ping(200);
    }
    await down.restart();
    // still dead for a minute without the reset
    expect(mc.serverFor(key)).not.toBe(down.serverId);
    mc.resetDeadServers();
    expect(ups).toEqual([down.serverId]);
    expect(mc.serverFor(key)).toBe(down.serverId);
    expect(await mc.set(key, 'after')).toBe(true);
    expect(await rawHas(down, key)).toBe(true);
    expect(await mc.get(key)).toBe('after');
  });
});

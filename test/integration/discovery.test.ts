/**
 * ElastiCache auto-discovery against a fake configuration endpoint whose node lists point at
 * real memcached processes.
 */
import { createHook } from 'node:async_hooks';
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, expect, test } from '@jest/globals';
import {
  MemcachedClient,
  MemcachedConnectionError,
  MemcachedProtocolError,
  type MemcachedOptions,
} from '../../lib/index.js';
import {
  rawRequest,
  serverStats,
  startMemcacheds,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';

/** A configuration endpoint answering `config get cluster` with whatever `reply` holds now. */
interface ConfigEndpoint {
  address: string;
  reply: Buffer;
  /** `config get cluster` requests received. */
  requests: number;
  /** Every line received. */
  lines: string[];
  /** Connections open now. */
  connections(): number;
  close(): Promise<void>;
}

async function startConfigEndpoint(): Promise<ConfigEndpoint> {
  const sockets = new Set<Socket>();
  const endpoint: ConfigEndpoint = {
    address: '',
    reply: Buffer.from('ERROR\r\n'),
    requests: 0,
    lines: [],
    connections: () => sockets.size,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    // The client may reset the connection (close(), a timeout): not an error of the test.
    socket.on('error', () => undefined);
    let buffered = '';
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      let eol: number;
      while ((eol = buffered.indexOf('\r\n')) >= 0) {
        const line = buffered.slice(0, eol);
        buffered = buffered.slice(eol + 2);
        endpoint.lines.push(line);
        if (line === 'config get cluster') endpoint.requests++;
        socket.write(endpoint.reply);
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  endpoint.address = `127.0.0.1:${address.port}`;
  return endpoint;
}

function config(version: number, nodes: readonly MemcachedProcess[]): Buffer {
  const list = nodes.map((n, i) => `node${i}.example|127.0.0.1|${n.port}`).join(' ');
  const payload = `${version}\n${list}\n`;
  return Buffer.from(`CONFIG cluster 0 ${Buffer.byteLength(payload)}\r\n${payload}\r\nEND\r\n`);
}

let memcacheds: MemcachedProcess[];
let endpoint: ConfigEndpoint;
const clients: MemcachedClient[] = [];

beforeAll(async () => {
  memcacheds = await startMemcacheds(3);
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await endpoint?.close();
  for (const s of memcacheds) await rawRequest(s, 'flush_all\r\n');
});

afterAll(stopAllMemcached);

async function setup(options: Omit<MemcachedOptions, 'discovery'> = {}, interval = 60_000) {
  endpoint = await startConfigEndpoint();
  const client = new MemcachedClient({
    discovery: { endpoint: endpoint.address, interval },
    timeout: 1000,
    ...options,
  });
  clients.push(client);
  return client;
}

async function rawHas(server: MemcachedProcess, key: string): Promise<boolean> {
  return (await rawRequest(server, `get ${key}\r\n`)).startsWith('VALUE ');
}

async function currConnections(server: MemcachedProcess): Promise<number> {
  // The stats request counts itself.
  return Number((await serverStats(server)).curr_connections) - 1;
}

async function eventually(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('condition never held');
}

const [a, b, c] = [0, 1, 2];
const keys = Array.from({ length: 300 }, (_, i) => `k:${i}`);

test('applies the discovered node lists: keys move to an added node, a removed node is closed', async () => {
  endpoint = await startConfigEndpoint();
  endpoint.reply = config(1, [memcacheds[a]!, memcacheds[b]!]);
  const mc = new MemcachedClient({ discovery: { endpoint: endpoint.address }, timeout: 1000 });
  clients.push(mc);
  const first = await once(mc, 'serversDiscovered');
  expect(first[0]).toEqual({
    endpoint: endpoint.address,
    version: 1,
    servers: [memcacheds[a]!.address, memcacheds[b]!.address],
  });
  expect(mc.servers).toEqual([memcacheds[a]!.address, memcacheds[b]!.address]);
  for (const key of keys) expect(await mc.set(key, key)).toBe(true);
  const before = new Map(keys.map((k) => [k, mc.serverFor(k)]));
  expect(new Set(before.values())).toEqual(
    new Set([memcacheds[a]!.address, memcacheds[b]!.address]),
  );

  // A node added: only keys that now belong to it move.
  endpoint.reply = config(2, [memcacheds[a]!, memcacheds[b]!, memcacheds[c]!]);
  await mc.refreshServers();
  expect(mc.servers).toHaveLength(3);
  const moved = keys.filter((k) => mc.serverFor(k) !== before.get(k));
  expect(moved.length).toBeGreaterThan(0);
  for (const k of moved) expect(mc.serverFor(k)).toBe(memcacheds[c]!.address);
  for (const k of moved) {
    expect(await mc.get(k)).toBeUndefined();
    expect(await mc.set(k, 'new')).toBe(true);
    expect(await rawHas(memcacheds[c]!, k)).toBe(true);
  }
  const stayed = keys.find((k) => !moved.includes(k))!;
  expect(await mc.get(stayed)).toBe(stayed);

  // A node removed: its keys go elsewhere and its connections close.
  expect(await currConnections(memcacheds[a]!)).toBeGreaterThan(0);
  endpoint.reply = config(3, [memcacheds[b]!, memcacheds[c]!]);
  await mc.refreshServers();
  expect(mc.servers).toEqual([memcacheds[b]!.address, memcacheds[c]!.address]);
  await eventually(async () => (await currConnections(memcacheds[a]!)) === 0);
  for (const k of keys) expect(mc.serverFor(k)).not.toBe(memcacheds[a]!.address);
  expect(await mc.set('after', 1)).toBe(true);
  expect(await mc.get('after')).toBe(1);
});

test('an unchanged configuration is not applied again', async () => {
  const mc = await setup();
  endpoint.reply = config(5, [memcacheds[a]!]);
  const applied: number[] = [];
  mc.on('serversDiscovered', (e) => applied.push(e.version));
  await mc.refreshServers();
  await mc.refreshServers();
  await mc.refreshServers();
  expect(endpoint.requests).toBeGreaterThanOrEqual(3);
  expect(applied).toEqual([5]);
  // A new version with the same nodes is applied (and moves nothing).
  endpoint.reply = config(6, [memcacheds[a]!]);
  await mc.refreshServers();
  expect(applied).toEqual([5, 6]);
});

test('a malformed reply emits discoveryError and keeps the previous list', async () => {
  const mc = await setup();
  endpoint.reply = config(1, [memcacheds[a]!, memcacheds[b]!]);
  await mc.refreshServers();
  expect(mc.servers).toEqual([memcacheds[a]!.address, memcacheds[b]!.address]);
  const errors: unknown[] = [];
  mc.on('discoveryError', (e) => errors.push(e));
  const bad = [
    // The port of the second node is not a number.
    Buffer.from('CONFIG cluster 0 44\r\n2\nnode0.example|127.0.0.1|1 node1|1.2.3.4|x\n\r\nEND\r\n'),
    Buffer.from('ERROR\r\n'),
    Buffer.from('CONFIG cluster 0 3\r\n2\n\n\r\nEND\r\n'),
  ];
  for (const reply of bad) {
    endpoint.reply = reply;
    await mc.refreshServers();
  }
  expect(errors).toHaveLength(bad.length);
  for (const e of errors) {
    expect(e).toEqual({ endpoint: endpoint.address, error: expect.any(MemcachedProtocolError) });
  }
  expect(mc.servers).toEqual([memcacheds[a]!.address, memcacheds[b]!.address]);
  expect(await mc.set('still', 'works')).toBe(true);
  expect(await mc.get('still')).toBe('works');
});

test('with servers given, calls use them until the first list; an unreachable endpoint fails no call', async () => {
  endpoint = await startConfigEndpoint();
  const address = endpoint.address;
  await endpoint.close();
  const mc = new MemcachedClient({
    servers: [memcacheds[c]!.address],
    discovery: { endpoint: address, interval: 100 },
    timeout: 1000,
  });
  clients.push(mc);
  const [failure] = await once(mc, 'discoveryError');
  expect(failure.error).toBeInstanceOf(MemcachedConnectionError);
  expect(await mc.set('x', 'y')).toBe(true);
  expect(await rawHas(memcacheds[c]!, 'x')).toBe(true);
  expect(mc.servers).toEqual([memcacheds[c]!.address]);
  // It keeps polling (every interval) and keeps failing quietly.
  await once(mc, 'discoveryError');
  expect(await mc.get('x')).toBe('y');
});

test('polls every interval on its own connections, sending only config get cluster', async () => {
  const mc = await setup({}, 100);
  endpoint.reply = config(1, [memcacheds[a]!]);
  await eventually(async () => endpoint.requests >= 3);
  expect(new Set(endpoint.lines)).toEqual(new Set(['config get cluster']));
  expect(mc.servers).toEqual([memcacheds[a]!.address]);
});

/**
 * Timers (ref'd or not) created between the call and pause() that have not fired or been
 * cleared yet.
 */
function trackTimers(): { live(): number; pause(): void; stop(): void } {
  const live = new Set<number>();
  let recording = true;
  const hook = createHook({
    init(id, type) {
      if (recording && type === 'Timeout') live.add(id);
    },
    destroy(id) {
      live.delete(id);
    },
  }).enable();
  return {
    live: () => live.size,
    pause: () => void (recording = false),
    stop: () => void hook.disable(),
  };
}

test('close() stops polling and leaves no timer behind', async () => {
  endpoint = await startConfigEndpoint();
  endpoint.reply = config(1, [memcacheds[a]!]);
  const tracked = trackTimers();
  try {
    const mc = new MemcachedClient({ discovery: { endpoint: endpoint.address } });
    // The first poll is done and the next one is scheduled (a minute away).
    await mc.refreshServers();
    tracked.pause();
    expect(mc.servers).toEqual([memcacheds[a]!.address]);
    expect(tracked.live()).toBeGreaterThan(0);
    await mc.close();
    await eventually(async () => tracked.live() === 0);
    const requests = endpoint.requests;
    expect(await mc.refreshServers()).toBeUndefined();
    expect(endpoint.requests).toBe(requests);
  } finally {
    tracked.stop();
  }
});

test('no poll runs after close()', async () => {
  const mc = await setup({}, 100);
  endpoint.reply = config(1, [memcacheds[a]!]);
  await eventually(async () => endpoint.requests >= 2);
  await mc.close();
  const requests = endpoint.requests;
  await new Promise((resolve) => setTimeout(resolve, 350));
  expect(endpoint.requests).toBe(requests);
});

test('close() during a poll ends it: no list is applied, no timer or socket is left', async () => {
  endpoint = await startConfigEndpoint();
  // The reply never completes: the poll waits until close().
  endpoint.reply = Buffer.from('CONFIG cluster 0 100\r\n');
  const tracked = trackTimers();
  const mc = new MemcachedClient({
    servers: [memcacheds[b]!.address],
    discovery: { endpoint: endpoint.address },
    timeout: 60_000,
    connectTimeout: 60_000,
  });
  const events: string[] = [];
  mc.on('discoveryError', () => events.push('error'));
  mc.on('serversDiscovered', () => events.push('discovered'));
  await eventually(async () => endpoint.requests === 1);
  tracked.pause();
  expect(tracked.live()).toBeGreaterThan(0);
  expect(endpoint.connections()).toBe(1);
  await mc.close();
  await eventually(async () => tracked.live() === 0 && endpoint.connections() === 0);
  tracked.stop();
  expect(events).toEqual([]);
  expect(mc.servers).toEqual([memcacheds[b]!.address]);
});

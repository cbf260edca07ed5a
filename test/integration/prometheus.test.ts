/**
 * `nestjs-memcached/prometheus` with prom-client against real memcached servers: the metrics
 * move with the commands, cache-aside reads and failover transitions.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import { Registry } from 'prom-client';
import { MemcachedClient, MemcachedService, type MemcachedOptions } from '../../lib/index.js';
import { collectMemcachedMetrics } from '../../lib/prometheus/index.js';
import {
  rawRequest,
  startMemcached,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';
import { startProxy, type FaultProxy } from '../harness/proxy.js';

let server: MemcachedProcess;
let proxy: FaultProxy;
const clients: MemcachedClient[] = [];
const stops: Array<() => void> = [];

beforeAll(async () => {
  server = await startMemcached();
  proxy = await startProxy(server.host, server.port);
});

afterEach(async () => {
  for (const stop of stops.splice(0)) stop();
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await proxy.clearFaults();
  await rawRequest(server, 'flush_all\r\n');
});

afterAll(async () => {
  await proxy.close();
  await stopAllMemcached();
});

function client(options: MemcachedOptions = {}): MemcachedClient {
  const c = new MemcachedClient({ servers: server.address, timeout: 1000, ...options });
  clients.push(c);
  return c;
}

function collect(options: Parameters<typeof collectMemcachedMetrics>[0] = {}): Registry {
  const register = new Registry();
  stops.push(collectMemcachedMetrics({ register, ...options }));
  return register;
}

/** The value of one sample of the exposition text, or undefined when it is absent. */
function sample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const got = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]),
    );
    const keys = Object.keys(labels);
    if (keys.length === Object.keys(got).length && keys.every((k) => got[k] === labels[k])) {
      return Number(m[3]);
    }
  }
  return undefined;
}

describe('collectMemcachedMetrics', () => {
  test('commands: memcached_commands_total and the duration histogram move per command, server and outcome', async () => {
    const register = collect();
    const mc = client();
    const id = server.serverId;
    await mc.set('a', 1);
    await mc.get('a');
    await mc.get('b');
    await mc.getMany(['a', 'b']);
    await mc.set('text', 'abc');
    await mc.incr('text').catch(() => undefined);
    const text = await register.metrics();
    expect(
      sample(text, 'memcached_commands_total', { command: 'set', server: id, outcome: 'ok' }),
    ).toBe(2);
    expect(
      sample(text, 'memcached_commands_total', { command: 'get', server: id, outcome: 'ok' }),
    ).toBe(3);
    expect(
      sample(text, 'memcached_commands_total', { command: 'incr', server: id, outcome: 'error' }),
    ).toBe(1);
    expect(
      sample(text, 'memcached_commands_total', { command: 'incr', server: id, outcome: 'ok' }),
    ).toBeUndefined();
    const labels = { command: 'get', server: id };
    expect(sample(text, 'memcached_command_duration_seconds_count', labels)).toBe(3);
    const sum = sample(text, 'memcached_command_duration_seconds_sum', labels)!;
    expect(sum).toBeGreaterThan(0);
    expect(sum).toBeLessThan(3);
    expect(sample(text, 'memcached_command_duration_seconds_bucket', { ...labels, le: '10' })).toBe(
      3,
    );
    expect(
      sample(text, 'memcached_command_duration_seconds_bucket', { ...labels, le: '+Inf' }),
    ).toBe(3);
    expect(text).not.toMatch(/key|"a"/);
    expect(sample(text, 'memcached_servers_up', { server: id })).toBe(1);
  });

  test('the duration is in seconds: 50 ms of latency show as 0.05', async () => {
    const register = collect();
    const mc = client({ servers: proxy.address });
    await mc.get('warm');
    proxy.setLatency(50);
    await mc.get('slow');
    const text = await register.metrics();
    const labels = { command: 'get', server: proxy.address };
    const sum = sample(text, 'memcached_command_duration_seconds_sum', labels)!;
    expect(sum).toBeGreaterThan(0.045);
    expect(sum).toBeLessThan(1);
    expect(
      sample(text, 'memcached_command_duration_seconds_bucket', { ...labels, le: '0.01' }),
    ).toBe(1);
  });

  test('cache-aside reads: memcached_cache_requests_total by outcome', async () => {
    const register = collect();
    const service = new MemcachedService({ servers: server.address });
    clients.push(service.client);
    await Promise.all([service.getOrSet('k', () => 1), service.getOrSet('k', () => 1)]);
    await service.getOrSet('k', () => 1);
    await service.getOrSet('k', () => 1);
    const text = await register.metrics();
    expect(sample(text, 'memcached_cache_requests_total', { outcome: 'miss' })).toBe(1);
    expect(sample(text, 'memcached_cache_requests_total', { outcome: 'coalesced' })).toBe(1);
    expect(sample(text, 'memcached_cache_requests_total', { outcome: 'hit' })).toBe(2);
  });

  test.each([
    ['from the failover events', false],
    ['from the clients given', true],
  ])(
    'memcached_servers_up drops to 0 for a server marked dead (%s) and is 1 again when it rejoins',
    async (_label, withClients) => {
      const mc = client({
        servers: [server.address, proxy.address],
        failover: { failureThreshold: 2, deadTimeout: 300, retryTimeout: 100 },
        connectTimeout: 300,
      });
      const register = collect(withClients ? { clients: [mc] } : {});
      // Before any traffic, only the clients given tell which servers there are.
      const before = await register.metrics();
      for (const id of [server.serverId, proxy.address]) {
        expect(sample(before, 'memcached_servers_up', { server: id })).toBe(
          withClients ? 1 : undefined,
        );
      }
      const key = Array.from({ length: 100 }, (_, i) => `p${i}`).find(
        (k) => mc.serverFor(k) === proxy.address,
      )!;
      await mc.set(key, 1);
      await mc.set(`${key}-live`, 1); // whichever server: some traffic
      let text = await register.metrics();
      expect(sample(text, 'memcached_servers_up', { server: proxy.address })).toBe(1);
      await proxy.stopListening();
      proxy.dropAll();
      for (let i = 0; i < 20 && !mc.poolStats()[proxy.address]!.dead; i++) {
        await mc.get(key).catch(() => undefined);
      }
      text = await register.metrics();
      expect(sample(text, 'memcached_servers_up', { server: proxy.address })).toBe(0);
      if (withClients)
        expect(sample(text, 'memcached_servers_up', { server: server.serverId })).toBe(1);
      await proxy.startListening();
      const deadline = performance.now() + 5000;
      while (mc.poolStats()[proxy.address]!.dead && performance.now() < deadline) {
        await mc.get(key).catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      text = await register.metrics();
      expect(sample(text, 'memcached_servers_up', { server: proxy.address })).toBe(1);
    },
  );

  test('pool gauges: open connections and pending calls of the clients given', async () => {
    const mc = client({ servers: proxy.address, poolSize: 2 });
    const register = collect({ clients: [mc] });
    let text = await register.metrics();
    expect(sample(text, 'memcached_pool_connections', { server: proxy.address })).toBe(0);
    await Promise.all([mc.get('a'), mc.set('b', 1), mc.set('c', 1)]);
    text = await register.metrics();
    expect(sample(text, 'memcached_pool_connections', { server: proxy.address })).toBe(2);
    expect(sample(text, 'memcached_pool_pending_calls', { server: proxy.address })).toBe(0);
    proxy.stall();
    const waiting = [mc.set('d', 1), mc.set('e', 1), mc.set('f', 1)].map((p) =>
      p.catch(() => undefined),
    );
    await new Promise((resolve) => setTimeout(resolve, 20));
    text = await register.metrics();
    expect(sample(text, 'memcached_pool_pending_calls', { server: proxy.address })).toBe(3);
    proxy.resume();
    await Promise.all(waiting);
  });

  test('the function it returns stops collecting and removes the metrics', async () => {
    const register = new Registry();
    const stop = collectMemcachedMetrics({ register });
    expect(() => collectMemcachedMetrics({ register })).toThrow(/already registered/);
    const mc = client();
    await mc.get('a');
    expect(await register.metrics()).toContain('memcached_commands_total');
    stop();
    expect(await register.metrics()).toBe('\n');
    // Collecting again into the same registry starts from zero.
    stops.push(collectMemcachedMetrics({ register }));
    await mc.get('a');
    const text = await register.metrics();
    expect(
      sample(text, 'memcached_commands_total', {
        command: 'get',
        server: server.serverId,
        outcome: 'ok',
      }),
    ).toBe(1);
  });

  test('rejects invalid options', () => {
    expect(() => collectMemcachedMetrics({ register: {} as never })).toThrow(/register/);
    expect(() =>
      collectMemcachedMetrics({ register: new Registry(), clients: [{}] as never }),
    ).toThrow(/clients/);
    expect(() => collectMemcachedMetrics({ register: new Registry(), buckets: [0] })).toThrow(
      /buckets/,
    );
  });
});

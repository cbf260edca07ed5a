/**
 * MemcachedHealthIndicator in a Nest testing module against harness servers: a server the
 * client marks dead is `down` with `dead: true` and `deadSince`, even while it answers pings.
 */
import 'reflect-metadata';
import type { INestApplicationContext } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { Test } from '@nestjs/testing';
import { MemcachedHealthIndicator, MemcachedHealthModule } from '../../lib/health/index.js';
import { MemcachedModule, MemcachedService } from '../../lib/index.js';
import { startMemcached, stopAllMemcached, type MemcachedProcess } from '../harness/memcached.js';
import { startProxy, type FaultProxy } from '../harness/proxy.js';

let live: MemcachedProcess;
let proxied: MemcachedProcess;
let proxy: FaultProxy;
let app: INestApplicationContext;
let health: MemcachedHealthIndicator;
let service: MemcachedService;

beforeAll(async () => {
  [live, proxied] = await Promise.all([startMemcached(), startMemcached()]);
  proxy = await startProxy(proxied.host, proxied.port);
  const moduleRef = await Test.createTestingModule({
    imports: [
      MemcachedModule.forRoot({
        servers: [live.address, proxy.address],
        failover: { failureThreshold: 2, deadTimeout: 60_000, retryTimeout: 60_000 },
        connectTimeout: 300,
        timeout: 500,
      }),
      TerminusModule,
      MemcachedHealthModule,
    ],
  }).compile();
  moduleRef.useLogger(false);
  app = await moduleRef.init();
  health = app.get(MemcachedHealthIndicator);
  service = app.get(MemcachedService);
});

afterAll(async () => {
  await app?.close();
  await proxy?.close();
  await stopAllMemcached();
});

test('a server the client marks dead is down with dead: true and since when, though it answers ping', async () => {
  const before = await health.pingCheck('memcached');
  expect(before['memcached']).toMatchObject({
    status: 'up',
    servers: { [live.serverId]: { status: 'up' }, [proxy.address]: { status: 'up' } },
  });
  expect(before['memcached']!.servers[proxy.address]).not.toHaveProperty('dead');

  const key = Array.from({ length: 100 }, (_, i) => `h${i}`).find(
    (k) => service.serverFor(k) === proxy.address,
  )!;
  await proxy.stopListening();
  proxy.dropAll();
  const t0 = Date.now();
  for (let i = 0; i < 20 && service.poolStats()[proxy.address]?.dead !== true; i++) {
    await service.get(key).catch(() => undefined);
  }
  const t1 = Date.now();
  const stats = service.poolStats()[proxy.address]!;
  expect(stats.dead).toBe(true);
  expect(stats.deadSince!.getTime()).toBeGreaterThanOrEqual(t0);
  expect(stats.deadSince!.getTime()).toBeLessThanOrEqual(t1);

  // The server is back and answers ping, but the client still treats it as dead (60 s).
  await proxy.startListening();
  const deadline = performance.now() + 5000;
  let pinged = await service.ping(300);
  while (!pinged[proxy.address]!.ok && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    pinged = await service.ping(300);
  }
  expect(pinged[proxy.address]!.ok).toBe(true);
  expect(service.poolStats()[proxy.address]!.dead).toBe(true);

  const result = (await health.pingCheck('memcached'))['memcached']!;
  const since = stats.deadSince!.toISOString();
  expect(result.status).toBe('degraded'); // terminus 12: one of two servers down
  expect(result.servers[live.serverId]).toEqual({ status: 'up', latencyMs: expect.any(Number) });
  expect(result.servers[proxy.address]).toEqual({
    status: 'down',
    dead: true,
    deadSince: since,
    latencyMs: expect.any(Number),
    error: expect.stringContaining(`marked dead by the client since ${since}`),
  });
  expect(result.servers[proxy.address]!.error).toContain('answers ping');
  expect(result.message).toBe(
    '1 of 2 memcached servers are down (1 of them answer but the client marks them dead)',
  );

  // The live server's stats carry no dead mark.
  expect(service.poolStats()[live.serverId]).toMatchObject({ dead: false, failures: 0 });
  expect(service.poolStats()[live.serverId]).not.toHaveProperty('deadSince');
});

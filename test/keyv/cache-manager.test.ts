/**
 * KeyvMemcached under @nestjs/cache-manager (12) and cache-manager 7, unchanged: a Nest HTTP app
 * whose route is cached by `CacheInterceptor`, against memcached servers started by the harness.
 * The second GET is served from memcached (the handler does not run, the server counts a hit and
 * holds the value), and `app.close()` leaves no socket or timer behind, whether the store shares
 * the app's MemcachedService or owns its client.
 */
import 'reflect-metadata';
import {
  Controller,
  Get,
  Module,
  Param,
  UseInterceptors,
  type DynamicModule,
  type INestApplication,
} from '@nestjs/common';
import { CACHE_MANAGER, CacheInterceptor, CacheModule, CacheTTL } from '@nestjs/cache-manager';
import { Test } from '@nestjs/testing';
import type { Cache } from 'cache-manager';
import Keyv from 'keyv';
import request from 'supertest';
import { MemcachedModule, MemcachedService } from '../../lib/index.js';
import { KeyvMemcached } from '../../lib/keyv/index.js';
import {
  rawRequest,
  serverStats,
  startMemcacheds,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';

let servers: MemcachedProcess[];
const calls = { items: 0 };

@Controller('items')
@UseInterceptors(CacheInterceptor)
class ItemsController {
  @Get(':id')
  findOne(@Param('id') id: string): { id: string; calls: number } {
    calls.items++;
    return { id, calls: calls.items };
  }

  @Get(':id/short')
  @CacheTTL(1500)
  short(@Param('id') id: string): { id: string } {
    return { id };
  }
}

beforeAll(async () => {
  servers = await startMemcacheds(2);
});

afterAll(async () => {
  await stopAllMemcached();
});

function byServerId(id: string): MemcachedProcess {
  const proc = servers.find((s) => s.serverId === id);
  if (proc === undefined) throw new Error(`no harness server ${id}`);
  return proc;
}

/** Counts of the process's sockets, servers and timers. */
function handles(): Record<string, number> {
  const counts: Record<string, number> = { TCPSocketWrap: 0, TCPServerWrap: 0, Timeout: 0 };
  for (const r of process.getActiveResourcesInfo()) if (r in counts) counts[r]!++;
  return counts;
}

/**
 * Waits (bounded: a leak stays) until no more handles than `baseline` remain (one more timer:
 * the wait's own); returns what is over the baseline.
 */
async function leftOver(baseline: Record<string, number>): Promise<Record<string, number>> {
  const within = (now: Record<string, number>) =>
    Object.keys(baseline).every((k) => now[k]! <= baseline[k]! + (k === 'Timeout' ? 1 : 0));
  let now = handles();
  for (let i = 0; i < 100 && !within(now); i++) {
    await new Promise((r) => setTimeout(r, 20));
    now = handles();
  }
  const over: Record<string, number> = {};
  for (const k of Object.keys(baseline)) {
    const extra = now[k]! - baseline[k]! - (k === 'Timeout' ? 1 : 0);
    if (extra > 0) over[k] = extra;
  }
  return over;
}

async function createApp(cacheModule: DynamicModule, withMemcached: boolean) {
  @Module({
    imports: [
      ...(withMemcached
        ? [MemcachedModule.forRoot({ servers: servers.map((s) => s.address), isGlobal: true })]
        : []),
      cacheModule,
    ],
    controllers: [ItemsController],
  })
  class AppModule {}
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  return app;
}

/** The stored value of a Keyv key, read raw from the server the app's client puts it on. */
async function rawValue(app: INestApplication, namespace: string, keyvKey: string) {
  const mc = app.get(MemcachedService);
  const generation = (await mc.client.get(`kg:${namespace}`)) as string;
  const wire = `kv:${generation}:${keyvKey}`;
  const proc = byServerId(mc.serverFor(wire));
  const reply = await rawRequest(
    proc,
    `get ${wire}\r\nmg ${wire} t\r\n`,
    /END\r\n(EN|HD[^\r]*)\r\n$/,
  );
  return { proc, wire, reply };
}

describe('CacheModule + CacheInterceptor over KeyvMemcached', () => {
  test('sharing the MemcachedService: the second GET is a memcached hit; app.close() leaves no handle', async () => {
    const baseline = handles();
    const app = await createApp(
      CacheModule.registerAsync({
        inject: [MemcachedService],
        useFactory: (mc: MemcachedService) => ({
          stores: [new Keyv({ store: new KeyvMemcached(mc) })],
          ttl: 30_000,
        }),
      }),
      true,
    );
    const server = app.getHttpServer();
    const before = calls.items;

    const first = await request(server).get('/items/7').expect(200);
    expect(first.headers['x-cache']).toBe('MISS');
    expect(first.body).toEqual({ id: '7', calls: before + 1 });

    // The interceptor's write is not awaited: wait for the value to be on the server.
    let stored = await rawValue(app, 'keyv', 'keyv:/items/7');
    for (let i = 0; i < 100 && !stored.reply.startsWith('VALUE'); i++) {
      await new Promise((r) => setTimeout(r, 10));
      stored = await rawValue(app, 'keyv', 'keyv:/items/7');
    }
    expect(stored.reply).toMatch(
      new RegExp(
        `^VALUE ${stored.wire} 16 \\d+\\r\\n\\{"value":\\{"id":"7","calls":${before + 1}\\},"expires":\\d+\\}\\r\\nEND\\r\\n`,
      ),
    );
    // Keyv's 30 000 ms became 30 s on the server.
    const ttl = Number(/HD t(\d+)/.exec(stored.reply)![1]);
    expect(ttl).toBeGreaterThan(25);
    expect(ttl).toBeLessThanOrEqual(30);

    const hitsBefore = Number((await serverStats(stored.proc))['get_hits']);
    const second = await request(server).get('/items/7').expect(200);
    expect(second.headers['x-cache']).toBe('HIT');
    expect(second.body).toEqual(first.body);
    expect(calls.items).toBe(before + 1);
    // The hit came from that server (the generation read may be a hit there too).
    expect(Number((await serverStats(stored.proc))['get_hits'])).toBeGreaterThan(hitsBefore);

    // @CacheTTL(1500): 2 s on the server.
    await request(server).get('/items/8/short').expect(200);
    let short = await rawValue(app, 'keyv', 'keyv:/items/8/short');
    for (let i = 0; i < 100 && !short.reply.startsWith('VALUE'); i++) {
      await new Promise((r) => setTimeout(r, 10));
      short = await rawValue(app, 'keyv', 'keyv:/items/8/short');
    }
    expect(short.reply).toMatch(/HD t[12]\r\n$/);

    // CACHE_MANAGER's clear() empties the cache without flush_all.
    const cache = app.get<Cache>(CACHE_MANAGER);
    await cache.clear();
    const third = await request(server).get('/items/7').expect(200);
    expect(third.headers['x-cache']).toBe('MISS');
    expect(calls.items).toBe(before + 2);
    for (const s of servers) expect((await serverStats(s))['cmd_flush']).toBe('0');

    const mc = app.get(MemcachedService);
    await app.close();
    // The module closed its client (the store did not close it first: the cache's own
    // disconnect runs on module destroy, before the client's shutdown, and left it open).
    await expect(mc.client.get('x')).rejects.toThrow(/closed/);
    expect(await leftOver(baseline)).toEqual({});
  });

  test('a store that owns its client (options): Nest’s disconnect closes it; no handle remains', async () => {
    const baseline = handles();
    const store = new KeyvMemcached({ servers: servers.map((s) => s.address) });
    const app = await createApp(
      CacheModule.register({ stores: [new Keyv({ store, namespace: 'owned' })] }),
      false,
    );
    const server = app.getHttpServer();
    const before = calls.items;
    expect((await request(server).get('/items/9').expect(200)).headers['x-cache']).toBe('MISS');
    let hit = await request(server).get('/items/9').expect(200);
    for (let i = 0; i < 100 && hit.headers['x-cache'] !== 'HIT'; i++) {
      await new Promise((r) => setTimeout(r, 10));
      hit = await request(server).get('/items/9').expect(200);
    }
    expect(hit.headers['x-cache']).toBe('HIT');
    expect(calls.items).toBe(before + 1);
    expect(await store.client.get(`kg:owned`)).toEqual(expect.any(String));
    await app.close();
    await expect(store.client.get('x')).rejects.toThrow(/closed/);
    expect(await leftOver(baseline)).toEqual({});
  });

  test('the bare store in `stores` (CacheModule wraps it in a Keyv with its namespace)', async () => {
    const app = await createApp(
      CacheModule.registerAsync({
        inject: [MemcachedService],
        useFactory: (mc: MemcachedService) => ({
          stores: [new KeyvMemcached(mc)],
          namespace: 'http',
        }),
      }),
      true,
    );
    try {
      const server = app.getHttpServer();
      await request(server).get('/items/10').expect(200);
      let stored = await rawValue(app, 'http', 'http:/items/10');
      for (let i = 0; i < 100 && !stored.reply.startsWith('VALUE'); i++) {
        await new Promise((r) => setTimeout(r, 10));
        stored = await rawValue(app, 'http', 'http:/items/10');
      }
      expect(stored.reply).toMatch(/^VALUE kv:[\w-]{11}:http:\/items\/10 16 /);
      // No ttl anywhere: never expires on the server.
      expect(stored.reply).toMatch(/HD t-1\r\n$/);
      expect((await request(server).get('/items/10').expect(200)).headers['x-cache']).toBe('HIT');
    } finally {
      await app.close();
    }
  });
});

/**
 * The sample app (sample/) end to end, over HTTP, against memcached servers started by the
 * harness: two for the default client (the product cache), one for the `counters` client.
 */
import 'reflect-metadata';
import type { INestApplication } from '@nestjs/common';
import { ClientProxyFactory, Transport, type ClientProxy } from '@nestjs/microservices';
import { lastValueFrom } from 'rxjs';
import request from 'supertest';
import type { ProductPagesService as Pages } from '../../sample/products/product-pages.service.js';
import type { ProductsRepository as Repository } from '../../sample/products/products.repository.js';
import {
  freePort,
  rawRequest,
  serverStats,
  startMemcacheds,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';

interface HealthServer {
  status: 'up' | 'down';
  latencyMs?: number;
  error?: string;
}
interface HealthIndicatorBody {
  status: string;
  message?: string;
  servers: Record<string, HealthServer>;
}
interface HealthBody {
  status: string;
  details: Record<string, HealthIndicatorBody>;
  error?: Record<string, HealthIndicatorBody>;
}

let cacheA: MemcachedProcess;
let cacheB: MemcachedProcess;
let counters: MemcachedProcess;
let app: INestApplication;
let repository: Repository;
let pages: Pages;
let url: string;
let tcp: ClientProxy;
const savedEnv = { ...process.env };

/** Whether `key` (the full wire key) is stored on `server`, asked with a raw `get`. */
async function storedOn(server: MemcachedProcess, key: string): Promise<boolean> {
  const reply = await rawRequest(server, `get ${key}\r\n`);
  expect(reply).toMatch(/END\r\n$/);
  return reply.startsWith(`VALUE ${key} `);
}

beforeAll(async () => {
  [cacheA, cacheB, counters] = (await startMemcacheds(3)) as [
    MemcachedProcess,
    MemcachedProcess,
    MemcachedProcess,
  ];
  process.env['MEMCACHED_SERVERS'] = `${cacheA.address},${cacheB.address}`;
  process.env['COUNTERS_MEMCACHED_SERVERS'] = counters.address;
  process.env['SAMPLE_REPOSITORY_DELAY_MS'] = '150';
  const tcpPort = await freePort();
  process.env['SAMPLE_TCP_PORT'] = String(tcpPort);
  const { createApp } = await import('../../sample/app.js');
  const { ProductsRepository } = await import('../../sample/products/products.repository.js');
  const { ProductPagesService } = await import('../../sample/products/product-pages.service.js');
  app = await createApp({ logger: false });
  await app.startAllMicroservices();
  await app.listen(0, '127.0.0.1');
  tcp = ClientProxyFactory.create({
    transport: Transport.TCP,
    options: { host: '127.0.0.1', port: tcpPort },
  });
  await tcp.connect();
  const address = app.getHttpServer().address() as { port: number };
  url = `http://127.0.0.1:${address.port}`;
  repository = app.get(ProductsRepository);
  pages = app.get(ProductPagesService);
});

afterAll(async () => {
  await tcp?.close();
  await app?.close();
  await stopAllMemcached();
  process.env = savedEnv;
});

describe('sample app', () => {
  test('the cached route runs its body once for 20 concurrent and for repeated requests', async () => {
    const before = repository.calls.findAll;
    const replies = await Promise.all(
      Array.from({ length: 20 }, () => request(url).get('/products').expect(200)),
    );
    for (const reply of replies) expect(reply.body).toEqual(replies[0]!.body);
    expect((replies[0]!.body as unknown[]).length).toBe(3);
    for (let i = 0; i < 5; i++) {
      const reply = await request(url).get('/products').expect(200);
      expect(reply.body).toEqual(replies[0]!.body);
    }
    expect(repository.calls.findAll - before).toBe(1);
  });

  test('the cached service method runs once for 20 concurrent and for repeated requests', async () => {
    const before = repository.calls.findOne;
    const replies = await Promise.all(
      Array.from({ length: 20 }, () => request(url).get('/products/2').expect(200)),
    );
    for (const reply of replies) {
      expect(reply.body).toMatchObject({ id: '2', name: 'Burr grinder', price: 129.5 });
    }
    // Every request counted a view on the counters client (not cached).
    const views = replies.map((r) => (r.body as { views: number }).views).sort((a, b) => a - b);
    expect(views).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    await request(url).get('/products/2').expect(200);
    await request(url).get('/products/2').expect(200);
    expect(repository.calls.findOne - before).toBe(1);
  });

  test('an update evicts: the next reads run the bodies again and see the new data', async () => {
    await request(url).get('/products').expect(200);
    await request(url).get('/products/2').expect(200);
    const calls = { ...repository.calls };

    const updated = await request(url).patch('/products/2').send({ price: 99.5 }).expect(200);
    expect(updated.body).toMatchObject({ id: '2', name: 'Burr grinder', price: 99.5 });

    const one = await request(url).get('/products/2').expect(200);
    expect(one.body).toMatchObject({ id: '2', name: 'Burr grinder', price: 99.5 });
    const list = await request(url).get('/products').expect(200);
    expect(list.body).toContainEqual(expect.objectContaining({ id: '2', price: 99.5 }));
    expect(repository.calls.findOne - calls.findOne).toBe(1);
    expect(repository.calls.findAll - calls.findAll).toBe(1);

    // Cached again afterwards.
    await request(url).get('/products/2').expect(200);
    await request(url).get('/products').expect(200);
    expect(repository.calls.findOne - calls.findOne).toBe(1);
    expect(repository.calls.findAll - calls.findAll).toBe(1);
  });

  test('the list is cached under the products tag: a PATCH invalidates the tag (no delete, no flush) and the next GET recomputes', async () => {
    await request(url).get('/products').expect(200);
    const servers = [cacheA, cacheB];
    const listHome = (await storedOn(cacheA, 'catalog:products:all')) ? cacheA : cacheB;
    // The list is a tagged envelope (flags 128); the tag's version key lives on one server.
    const listReply = await rawRequest(listHome, 'get catalog:products:all\r\n');
    expect(listReply).toMatch(
      /^VALUE catalog:products:all 128 \d+\r\nMCTAG1 32 1 __tag:products \S{16}\n/,
    );
    const versionOf = async (): Promise<string | undefined> => {
      for (const s of servers) {
        const reply = await rawRequest(s, 'get catalog:__tag:products\r\n');
        const version = /^VALUE \S+ 0 16\r\n(\S{16})\r\n/.exec(reply)?.[1];
        if (version !== undefined) return version;
      }
      return undefined;
    };
    const before = await versionOf();
    expect(before).toMatch(/^[\w-]{16}$/);
    const flushes = await Promise.all(
      servers.map(async (s) => (await serverStats(s))['cmd_flush']),
    );
    const calls = repository.calls.findAll;

    await request(url).patch('/products/2').send({ price: 89.5 }).expect(200);
    // The list entry is still there, but under an old version of the tag: a miss.
    expect(await storedOn(listHome, 'catalog:products:all')).toBe(true);
    expect(await versionOf()).not.toBe(before);
    const list = await request(url).get('/products').expect(200);
    expect(list.body).toContainEqual(expect.objectContaining({ id: '2', price: 89.5 }));
    expect(repository.calls.findAll - calls).toBe(1);
    await request(url).get('/products').expect(200);
    expect(repository.calls.findAll - calls).toBe(1);
    expect(
      await Promise.all(servers.map(async (s) => (await serverStats(s))['cmd_flush'])),
    ).toEqual(flushes);
  });

  test('an invalid update body is rejected by the DTO before anything runs or is evicted', async () => {
    await request(url).get('/products/3').expect(200);
    const calls = { ...repository.calls };
    const reply = await request(url).patch('/products/3').send({ price: -1, colour: 'red' });
    expect(reply.status).toBe(400);
    expect(JSON.stringify(reply.body)).toMatch(/price must not be less than 0/);
    expect(JSON.stringify(reply.body)).toMatch(/property colour should not exist/);
    await request(url).get('/products/3').expect(200);
    expect(repository.calls.update).toBe(calls.update);
    expect(repository.calls.findOne).toBe(calls.findOne);
  });

  test('each named client writes only to its own servers', async () => {
    await request(url).get('/products/1').expect(200);
    const productOn = await Promise.all(
      [cacheA, cacheB, counters].map((s) => storedOn(s, 'catalog:product:1')),
    );
    expect(productOn.filter(Boolean)).toHaveLength(1);
    expect(productOn[2]).toBe(false);
    const viewsOn = await Promise.all(
      [cacheA, cacheB, counters].map((s) => storedOn(s, 'counters:views:1')),
    );
    expect(viewsOn).toEqual([false, false, true]);
    expect(await storedOn(counters, 'catalog:products:all')).toBe(false);
    expect(
      (await storedOn(cacheA, 'catalog:products:all')) ||
        (await storedOn(cacheB, 'catalog:products:all')),
    ).toBe(true);
  });

  test('the CacheInterceptor route (@nestjs/cache-manager over KeyvMemcached) is served from memcached the second time', async () => {
    const before = repository.calls.stockLevels;
    const first = await request(url).get('/stock').expect(200);
    expect(first.headers['x-cache']).toBe('MISS');
    expect(first.body).toEqual({ '1': 12, '2': 30, '3': 80 });
    // The interceptor stores after answering: the value reaches the server shortly after.
    const generationKey = 'catalog:kg:http';
    const findStored = async (): Promise<string | undefined> => {
      for (const server of [cacheA, cacheB]) {
        const reply = await rawRequest(server, `get ${generationKey}\r\n`);
        const generation = /^VALUE \S+ \d+ \d+\r\n(\S+)\r\n/.exec(reply)?.[1];
        if (generation === undefined) continue;
        const key = `catalog:kv:${generation}:http:/stock`;
        for (const s of [cacheA, cacheB]) if (await storedOn(s, key)) return key;
      }
      return undefined;
    };
    let stored = await findStored();
    for (let i = 0; i < 100 && stored === undefined; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      stored = await findStored();
    }
    expect(stored).toMatch(/^catalog:kv:[\w-]{11}:http:\/stock$/);
    const second = await request(url).get('/stock').expect(200);
    expect(second.headers['x-cache']).toBe('HIT');
    expect(second.body).toEqual(first.body);
    expect(repository.calls.stockLevels - before).toBe(1);
    expect(await storedOn(counters, stored!)).toBe(false);
  });

  test('/metrics serves the Prometheus text of both clients', async () => {
    const cacheServers = [cacheA.serverId, cacheB.serverId];
    const valueIn =
      (text: string) =>
      (line: string): number => {
        const found = text.split('\n').find((l) => l.startsWith(`${line} `));
        return found === undefined ? NaN : Number(found.slice(line.length + 1));
      };
    // Traffic for every server first (products 1-3 spread over both cache servers; each view
    // is counted on the counters server). Under heavy load a 500 ms timeout may reset a
    // connection (it reopens on the next call), so a scrape that finds one closed is retried
    // after more traffic, a few times at most.
    let reply!: request.Response;
    for (let attempt = 0; attempt < 5; attempt++) {
      await request(url).get('/products').expect(200);
      for (const id of ['1', '2', '3']) await request(url).get(`/products/${id}`).expect(200);
      reply = await request(url).get('/metrics').expect(200);
      const read = valueIn(reply.text);
      const open = [...cacheServers, counters.serverId].map((server) =>
        read(`memcached_pool_connections{server="${server}"}`),
      );
      if (open.every((n) => n > 0)) break;
    }
    expect(reply.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = reply.text;
    const value = valueIn(text);
    const gets = cacheServers.map((server) =>
      value(`memcached_commands_total{command="get",server="${server}",outcome="ok"}`),
    );
    expect(gets.filter((n) => n > 0).length).toBeGreaterThan(0);
    expect(
      value(`memcached_commands_total{command="incr",server="${counters.serverId}",outcome="ok"}`),
    ).toBeGreaterThan(0);
    expect(value('memcached_cache_requests_total{outcome="hit"}')).toBeGreaterThan(0);
    expect(value('memcached_cache_requests_total{outcome="miss"}')).toBeGreaterThan(0);
    for (const server of [...cacheServers, counters.serverId]) {
      expect(value(`memcached_servers_up{server="${server}"}`)).toBe(1);
      expect(value(`memcached_pool_connections{server="${server}"}`)).toBeGreaterThan(0);
    }
    expect(text).toContain('# TYPE memcached_command_duration_seconds histogram');
    expect(text).not.toContain('catalog:');
  });

  test('OTEL=console prints a span per memcached command', async () => {
    const printed: unknown[] = [];
    const dir = console.dir;
    console.dir = (item: unknown) => void printed.push(item);
    const { setupTracing } = await import('../../sample/tracing.js');
    const stop = setupTracing({ OTEL: 'console' });
    try {
      await request(url).get('/products/3').expect(200);
    } finally {
      await stop();
      console.dir = dir;
    }
    const spans = printed as Array<{ name: string; attributes: Record<string, unknown> }>;
    expect(spans.length).toBeGreaterThan(0);
    expect(spans.map((s) => s.name)).toContain('get');
    expect(spans.find((s) => s.name === 'get')!.attributes).toMatchObject({
      'db.system.name': 'memcached',
      'db.operation.name': 'get',
      'server.address': '127.0.0.1',
    });
    expect(setupTracing({})).toBeInstanceOf(Function); // off without OTEL=console
  });

  test('the product page (meta client, lease): 20 concurrent requests render it once, later ones are cached', async () => {
    const before = pages.renders;
    const replies = await Promise.all(
      Array.from({ length: 20 }, () => request(url).get('/products/1/page').expect(200)),
    );
    for (const reply of replies) expect(reply.body).toEqual(replies[0]!.body);
    expect(replies[0]!.body).toMatchObject({ id: '1', title: 'Espresso machine', price: 249 });
    await request(url).get('/products/1/page').expect(200);
    expect(pages.renders - before).toBe(1);
    await request(url).get('/products/404/page').expect(404);
  });

  test('an update marks the page stale: the next request gets the old page at once while one re-render runs, then the new page is served', async () => {
    const old = (await request(url).get('/products/3/page').expect(200)).body as {
      price: number;
    };
    const before = pages.renders;
    await request(url).patch('/products/3').send({ price: 19.9 }).expect(200);
    // Served stale: had it waited for the re-render, it would carry the new price.
    const stale = await request(url).get('/products/3/page').expect(200);
    expect(stale.body).toMatchObject({ price: old.price });
    let fresh: { price: number } = stale.body as { price: number };
    for (let i = 0; i < 50 && fresh.price !== 19.9; i++) {
      await new Promise((r) => setTimeout(r, 50));
      fresh = (await request(url).get('/products/3/page').expect(200)).body as { price: number };
    }
    expect(fresh.price).toBe(19.9);
    expect(pages.renders - before).toBe(1);
  });

  test('the TCP message handler is cached itself (under the products tag): a second message is a hit, a PATCH over HTTP invalidates it', async () => {
    const ask = (): Promise<{ id: string; price: number }> =>
      lastValueFrom(tcp.send<{ id: string; price: number }>('product.price', '1'));
    const calls = repository.calls.findOne;
    const first = await ask();
    expect(repository.calls.findOne - calls).toBe(1);
    const home = (await storedOn(cacheA, 'catalog:price:1')) ? cacheA : cacheB;
    expect(await storedOn(home, 'catalog:price:1')).toBe(true);
    const hits = Number((await serverStats(home))['get_hits']);
    expect(await ask()).toEqual(first);
    expect(repository.calls.findOne - calls).toBe(1);
    expect(Number((await serverStats(home))['get_hits'])).toBeGreaterThan(hits);

    const price = first.price + 10;
    await request(url).patch('/products/1').send({ price }).expect(200);
    const afterPatch = repository.calls.findOne;
    expect(await ask()).toEqual({ id: '1', price });
    expect(repository.calls.findOne - afterPatch).toBe(1);
  });

  test('/health is 200 ok when every server is up', async () => {
    const reply = await request(url).get('/health').expect(200);
    const body = reply.body as HealthBody;
    expect(body.status).toBe('ok');
    const memcached = body.details['memcached']!;
    expect(memcached.status).toBe('up');
    expect(Object.keys(memcached.servers).sort()).toEqual(
      [cacheA.serverId, cacheB.serverId].sort(),
    );
    for (const server of Object.values(memcached.servers)) {
      expect(server.status).toBe('up');
      expect(typeof server.latencyMs).toBe('number');
    }
    expect(body.details['memcached-counters']!.servers).toEqual({
      [counters.serverId]: expect.objectContaining({ status: 'up' }),
    });
  });

  test('/health is 200 degraded (terminus 12) when one of the two cache servers is down', async () => {
    await cacheB.kill();
    const reply = await request(url).get('/health').expect(200);
    const body = reply.body as HealthBody;
    expect(body.status).toBe('degraded');
    const memcached = body.details['memcached']!;
    expect(memcached.status).toBe('degraded');
    expect(memcached.message).toBe('1 of 2 memcached servers do not answer');
    expect(memcached.servers[cacheA.serverId]).toMatchObject({ status: 'up' });
    expect(memcached.servers[cacheB.serverId]).toMatchObject({ status: 'down' });
    expect(memcached.servers[cacheB.serverId]!.error).toEqual(expect.any(String));
    expect(body.details['memcached-counters']!.status).toBe('up');
    // The app keeps serving, cached or not.
    for (const id of ['1', '2', '3']) await request(url).get(`/products/${id}`).expect(200);
  });

  test('/health is 503 when no cache server answers; requests still succeed without the cache', async () => {
    await cacheA.kill();
    const reply = await request(url).get('/health').expect(503);
    const body = reply.body as HealthBody;
    expect(body.status).toBe('error');
    expect(body.error!['memcached']!.status).toBe('down');
    expect(Object.values(body.details['memcached']!.servers).map((s) => s.status)).toEqual([
      'down',
      'down',
    ]);
    expect(body.details['memcached-counters']!.status).toBe('up');
    const before = repository.calls.findOne;
    const one = await request(url).get('/products/1').expect(200);
    expect(one.body).toMatchObject({ id: '1', name: 'Espresso machine' });
    expect(repository.calls.findOne - before).toBe(1);
    // The CacheInterceptor route fails open too.
    const stock = await request(url).get('/stock').expect(200);
    expect(stock.headers['x-cache']).toBe('MISS');
  });
});

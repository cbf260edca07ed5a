// An ESM NestJS 12 app on the packed nestjs-memcached: boots with forRootAsync, serves a cached
// route and a cached service method, answers /health, then prints a JSON report and exits.
// Env: MEMCACHED_SERVERS (the cache), PAIR_MEMCACHED_SERVERS (one live and one dead server).
import 'reflect-metadata';
import { createRequire } from 'node:module';
import { Controller, Get, Injectable, Module, Param } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { Cacheable, MemcachedModule, MemcachedService } from 'nestjs-memcached';
import { MemcachedHealthIndicator } from 'nestjs-memcached/health';
import { MemcachedClient, MemcachedKeyError } from 'nestjs-memcached/client';
import { instrumentMemcached } from 'nestjs-memcached/otel';
import { collectMemcachedMetrics } from 'nestjs-memcached/prometheus';
import { Registry } from 'prom-client';

@Injectable()
class ItemsService {
  calls = 0;
  constructor(readonly cache: MemcachedService) {}

  @Cacheable({ key: (id: string) => `item:${id}`, ttl: 60 })
  async find(id: string): Promise<{ id: string; by: string }> {
    this.calls++;
    await new Promise((resolve) => setTimeout(resolve, 50));
    return { id, by: 'esm-nest12' };
  }
}

@Controller('items')
class ItemsController {
  calls = 0;
  constructor(private readonly items: ItemsService) {}

  @Get(':id')
  @Cacheable({ key: (id: string) => `route:${id}`, ttl: 60 })
  async find(@Param('id') id: string): Promise<{ id: string; by: string }> {
    this.calls++;
    return this.items.find(id);
  }
}

@Controller('health')
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly memcached: MemcachedHealthIndicator,
  ) {}

  @Get()
  @HealthCheck()
  check() {
    return this.health.check([
      () => this.memcached.pingCheck('memcached'),
      () => this.memcached.pingCheck('pair', { name: 'pair', timeout: 500 }),
    ]);
  }
}

@Module({
  imports: [
    MemcachedModule.forRootAsync({
      isGlobal: true,
      useFactory: async () => ({ servers: process.env['MEMCACHED_SERVERS'], keyPrefix: 'esm12:' }),
    }),
    MemcachedModule.forRootAsync({
      name: 'pair',
      useFactory: () => ({ servers: process.env['PAIR_MEMCACHED_SERVERS'], connectTimeout: 300 }),
    }),
    TerminusModule,
  ],
  controllers: [ItemsController, HealthController],
  providers: [ItemsService, MemcachedHealthIndicator],
})
class AppModule {}

async function main(): Promise<void> {
  const app = await NestFactory.create(AppModule, { logger: ['error'] });
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as { port: number };
  // Metrics of the default client, and the OpenTelemetry bridge on the global (no-op) providers.
  const register = new Registry();
  const stopMetrics = collectMemcachedMetrics({ register, clients: [app.get(MemcachedService)] });
  const stopTracing = instrumentMemcached();
  const get = async (path: string): Promise<{ status: number; body: unknown }> => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`);
    return { status: response.status, body: await response.json() };
  };
  const route = [
    await get('/items/1'),
    ...(await Promise.all([1, 2, 3, 4].map(() => get('/items/1')))),
  ];
  const items = app.get(ItemsService);
  const direct = await Promise.all([items.find('2'), items.find('2'), items.find('2')]);
  const health = await get('/health');
  const metrics = (await register.metrics())
    .split('\n')
    .filter((line) => line.startsWith('memcached_cache_requests_total{'));
  stopTracing();
  stopMetrics();
  const report = {
    entry: import.meta.resolve('nestjs-memcached'),
    health: import.meta.resolve('nestjs-memcached/health'),
    client: import.meta.resolve('nestjs-memcached/client'),
    // The client entry point's classes are the main entry point's.
    sameClient: items.cache.client instanceof MemcachedClient,
    keyError:
      (await items.cache.get('bad key').catch((e: unknown) => e)) instanceof MemcachedKeyError,
    nest: createRequire(import.meta.url)('@nestjs/core/package.json').version as string,
    route,
    direct,
    calls: { controller: app.get(ItemsController).calls, service: items.calls },
    healthCheck: health,
    metrics,
  };
  await app.close();
  console.log(`REPORT ${JSON.stringify(report)}`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

import { Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { MemcachedModule } from '../lib/index.js';
import { HealthModule } from './health/health.module.js';
import { MetricsModule } from './metrics/metrics.module.js';
import { ProductsModule } from './products/products.module.js';

const servers = (config: ConfigService, name: string): string =>
  config.get<string>(name) ?? config.get<string>('MEMCACHED_SERVERS') ?? '127.0.0.1:11211';

@Module({
  imports: [
    ConfigModule.forRoot({ isGlobal: true }),
    // The default client: the product cache.
    MemcachedModule.forRootAsync({
      isGlobal: true,
      inject: [ConfigService],
      useFactory: (config: ConfigService) => ({
        servers: servers(config, 'MEMCACHED_SERVERS'),
        keyPrefix: 'catalog:',
        timeout: 500,
        connectTimeout: 500,
      }),
    }),
    // A named client for view counters, on its own servers when COUNTERS_MEMCACHED_SERVERS is set.
    MemcachedModule.forRootAsync({
      name: 'counters',
      isGlobal: true,
      inject: [ConfigService],
      useFactory: (config: ConfigService) => ({
        servers: servers(config, 'COUNTERS_MEMCACHED_SERVERS'),
        keyPrefix: 'counters:',
        timeout: 500,
        connectTimeout: 500,
      }),
    }),
    // A named client for rendered product pages, on memcached's meta protocol (memcached 1.6.10+):
    // leases and stale-while-revalidate (PAGES_MEMCACHED_SERVERS, else the default servers).
    MemcachedModule.forRootAsync({
      name: 'pages',
      isGlobal: true,
      inject: [ConfigService],
      useFactory: (config: ConfigService) => ({
        servers: servers(config, 'PAGES_MEMCACHED_SERVERS'),
        protocol: 'meta' as const,
        keyPrefix: 'pages:',
        timeout: 500,
        connectTimeout: 500,
      }),
    }),
    ProductsModule,
    HealthModule,
    MetricsModule,
  ],
})
export class AppModule {}

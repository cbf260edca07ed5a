import { Module } from '@nestjs/common';
import { ConfigurableMemcachedModule } from './memcached.module-definition.js';

/**
 * The memcached module: registers a `MemcachedService` (default, or named) and wires
 * `@Cacheable` / `@CacheEvict`.
 *
 * ```ts
 * @Module({
 *   imports: [
 *     MemcachedModule.forRootAsync({
 *       isGlobal: true,
 *       imports: [ConfigModule],
 *       inject: [ConfigService],
 *       useFactory: (cfg: ConfigService) => ({ servers: cfg.get('MEMCACHED_SERVERS'), keyPrefix: 'shop:' }),
 *     }),
 *     MemcachedModule.forRoot({ name: 'sessions', servers: ['127.0.0.1:11212'] }),
 *   ],
 * })
 * export class AppModule {}
 * ```
 *
 * `forRoot(options)` / `forRootAsync({ imports, inject, useFactory | useClass | useExisting })`
 * take the client options plus `isGlobal` and `name`. Options are validated when the client is
 * created; invalid ones fail the boot with a message naming the option.
 */
@Module({})
export class MemcachedModule extends ConfigurableMemcachedModule {}

/**
 * `nestjs-memcached/health`: the terminus health indicator. Kept out of the main entry point so
 * that `@nestjs/terminus` stays an optional peer dependency.
 */
export { MemcachedHealthIndicator } from './memcached.health.js';
export type {
  MemcachedHealthDetails,
  MemcachedPingCheckOptions,
  MemcachedServerHealth,
} from './memcached.health.js';
export { MemcachedHealthModule } from './memcached-health.module.js';

export { MemcachedClient } from './client/memcached-client.js';
export type {
  CasValue,
  MemcachedClientEvents,
  PingResult,
  SetManyEntries,
  StorageOptions,
} from './client/memcached-client.js';
export type { CommandContext, Interceptor } from './client/interceptors.js';
export type {
  FailoverOptions,
  HashingScheme,
  MemcachedOptions,
  RetryOptions,
  RetryableCommand,
} from './options.js';
export type { ServerSpec } from './cluster/servers.js';
export { parseServer } from './cluster/servers.js';
export type { Serde, SerializedValue } from './serde/serde.js';
export {
  FLAG_BYTES,
  FLAG_COMPRESSED,
  FLAG_INTEGER,
  FLAG_JSON,
  FLAG_LONG,
  FLAG_TEXT,
} from './serde/serde.js';
export { DefaultSerde, defaultSerde } from './serde/default-serde.js';
export type { CompressionOptions } from './serde/compression.js';
export {
  MemcachedAuthError,
  MemcachedBackpressureError,
  MemcachedClientError,
  MemcachedConnectionError,
  MemcachedError,
  MemcachedKeyError,
  MemcachedOptionsError,
  MemcachedProtocolError,
  MemcachedSerdeError,
  MemcachedServerError,
  MemcachedTimeoutError,
  MemcachedUnknownCommandError,
  MemcachedValueError,
} from './errors.js';
export type { MemcachedErrorOptions } from './errors.js';

// Nest integration
export { MemcachedModule } from './memcached.module.js';
export type {
  MemcachedModuleAsyncOptions,
  MemcachedModuleExtras,
  MemcachedModuleForRootOptions,
  MemcachedModuleOptions,
  MemcachedOptionsFactory,
} from './memcached.module-definition.js';
export { MemcachedService } from './memcached.service.js';
export type { GetOrSetOptions } from './memcached.service.js';
export { getMemcachedToken } from './memcached.utils.js';
export type { MemcachedToken } from './memcached.utils.js';
export {
  CACHEABLE_METADATA,
  CACHE_EVICT_METADATA,
  DEFAULT_MEMCACHED_NAME,
  MEMCACHED_MODULE_OPTIONS,
} from './memcached.constants.js';
export { Cacheable, CacheEvict, InjectMemcached } from './decorators/index.js';
export type {
  CacheArgsFunction,
  CacheEvictOptions,
  CacheUnlessFunction,
  CacheableOptions,
} from './decorators/index.js';
export { defaultCacheKey } from './utils/cache-key.js';

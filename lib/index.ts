// The framework-free part (also the `nestjs-memcached/client` entry point).
export * from './client/index.js';

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
  CacheDecoratorCheck,
  CacheDecoratorMismatch,
  CacheEvictOptions,
  CacheEvictTags,
  CacheMethodDecorator,
  CheckedMethodDecorator,
  CacheUnlessFunction,
  CacheableOptions,
} from './decorators/index.js';
export { cacheScope, defaultCacheKey } from './cache/method-key.js';

// The Keyv store adapter (also the framework-free `nestjs-memcached/keyv` entry point).
export { KeyvMemcached } from './keyv/index.js';
export type {
  KeyvEnvelope,
  KeyvMemcachedEntry,
  KeyvMemcachedOpts,
  KeyvMemcachedSource,
  KeyvStored,
  MemcachedClientHolder,
} from './keyv/index.js';

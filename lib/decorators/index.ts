export { Cacheable } from './cacheable.decorator.js';
export { CacheEvict } from './cache-evict.decorator.js';
export { InjectMemcached } from './inject-memcached.decorator.js';
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
} from './cache-options.js';

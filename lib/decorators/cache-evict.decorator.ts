import { CACHE_EVICT_METADATA } from '../memcached.constants.js';
import type { CacheEvictOptions } from './cache-options.js';
import { methodMetadataDecorator } from './method-metadata.js';

/**
 * Deletes cache entries when the method is called: after it completed successfully (default),
 * or before it runs with `beforeInvocation: true`. Only writes metadata; `MemcachedModule` wraps
 * the method when the application initializes. Eviction failures are logged, never thrown; the
 * wrapped method always returns a Promise.
 *
 * ```ts
 * @CacheEvict({ keys: (id: string) => [`product:${id}`, 'products:all'] })
 * async update(id: string, dto: UpdateProductDto) { ... }
 * ```
 */
export function CacheEvict(options: CacheEvictOptions): MethodDecorator {
  return methodMetadataDecorator('CacheEvict', CACHE_EVICT_METADATA, { ...options });
}

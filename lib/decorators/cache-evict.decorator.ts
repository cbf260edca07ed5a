import { CACHE_EVICT_METADATA } from '../memcached.constants.js';
import type { CacheEvictOptions, CacheMethodDecorator } from './cache-options.js';
import { methodMetadataDecorator } from './method-metadata.js';

/**
 * Deletes cache entries when the method is called: after it completed successfully (default),
 * or before it runs with `beforeInvocation: true`. Works on the same handlers and scopes as
 * `@Cacheable` (the method is wrapped on the prototype). Eviction failures are logged, never
 * thrown; the wrapped method returns a Promise.
 *
 * ```ts
 * @CacheEvict({ keys: (id: string) => [`product:${id}`, 'products:all'] })
 * async update(id: string, dto: UpdateProductDto) { ... }
 * ```
 */
export function CacheEvict<A extends unknown[] = unknown[]>(
  options: CacheEvictOptions<A>,
): CacheMethodDecorator<A> {
  return methodMetadataDecorator('CacheEvict', CACHE_EVICT_METADATA, {
    ...options,
  }) as CacheMethodDecorator<A>;
}

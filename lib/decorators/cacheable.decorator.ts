import { CACHEABLE_METADATA } from '../memcached.constants.js';
import type { CacheableOptions } from './cache-options.js';
import { methodMetadataDecorator } from './method-metadata.js';

/**
 * Caches the method's result in memcached. Only writes metadata: `MemcachedModule` wraps the
 * methods of controllers and providers when the application initializes.
 *
 * - Key: `key` (string or function of the arguments) or a stable default from class, method and
 *   arguments.
 * - Concurrent calls that miss the same key run the method once and share its result.
 * - `condition(...args)` false bypasses the cache; `unless(result, ...args)` true skips storing.
 * - `undefined` results, Observables and streams are never stored.
 * - A cache failure never fails the call: the method runs and the failure is logged (at most
 *   once per error kind per client per 30 s).
 * - The wrapped method always returns a Promise, also when the original is synchronous.
 *
 * ```ts
 * @Cacheable({ key: (id: string) => `product:${id}`, ttl: 60 })
 * async findOne(id: string): Promise<Product> { ... }
 * ```
 */
export function Cacheable(options: CacheableOptions = {}): MethodDecorator {
  return methodMetadataDecorator('Cacheable', CACHEABLE_METADATA, { ...options });
}

import { CACHEABLE_METADATA } from '../memcached.constants.js';
import type { CacheableOptions, CacheMethodDecorator } from './cache-options.js';
import { methodMetadataDecorator } from './method-metadata.js';

/**
 * Caches the method's result in memcached. The decorator replaces the method on the class
 * prototype with a wrapper (keeping every metadata key of the method), so it works on every
 * handler Nest calls: HTTP controllers, microservice handlers, WebSocket gateways, GraphQL
 * resolvers, and on providers of any scope. The wrapper finds its client through the
 * application that holds the instance; without one (before init, a plain `new`) the method runs
 * uncached. Options are checked when the application starts.
 *
 * - Key: `key` (string or function of the arguments) or a stable default from host module,
 *   class, method and arguments (`defaultCacheKey`).
 * - Concurrent calls that miss the same key run the method once and share its result.
 * - `condition(...args)` false bypasses the cache; `unless(result, ...args)` true skips storing.
 * - `undefined` results, Observables and streams are never stored.
 * - A cache failure never fails the call: the method runs and the failure is logged (at most
 *   once per error kind per client per 30 s).
 * - The wrapped method returns a Promise, also when the original is synchronous.
 * - The functions are type-checked against the method: `key: (id: number) => ...` on
 *   `findOne(id: string)` does not compile.
 *
 * ```ts
 * @Cacheable({ key: (id: string) => `product:${id}`, ttl: 60 })
 * async findOne(id: string): Promise<Product> { ... }
 * ```
 */
export function Cacheable<A extends unknown[] = unknown[], T = unknown>(
  options: CacheableOptions<A, T> = {},
): CacheMethodDecorator<A, T> {
  return methodMetadataDecorator('Cacheable', CACHEABLE_METADATA, {
    ...options,
  }) as CacheMethodDecorator<A, T>;
}

import type { CacheAside } from './cache-aside.js';

const registry = new WeakMap<object, CacheAside>();

/** @internal Records the cache-aside flow of a client (so that its MemcachedService shares it). */
export function registerCacheAside(client: object, cache: CacheAside): void {
  registry.set(client, cache);
}

/** @internal The cache-aside flow of a client built by this package, if it is one. */
export function cacheAsideOf(client: object): CacheAside | undefined {
  return registry.get(client);
}

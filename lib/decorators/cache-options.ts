/**
 * A function of a decorated method's arguments. Declared bivariantly, so a function typed for
 * the method's parameters (`(id: string) => ...`) is accepted.
 */
export type CacheArgsFunction<R> = {
  bivarianceHack(...args: unknown[]): R;
}['bivarianceHack'];

/** `unless` of {@link CacheableOptions}: the method's result, then its arguments. */
export type CacheUnlessFunction = {
  bivarianceHack(result: unknown, ...args: unknown[]): boolean;
}['bivarianceHack'];

import type { LeaseOptions } from '../cache/options.js';

/** Options of `@Cacheable`. */
export interface CacheableOptions {
  /**
   * The cache key: a string, or a function of the method's arguments returning one. Default: a
   * stable key derived from class, method and arguments (see `defaultCacheKey`).
   */
  key?: string | CacheArgsFunction<string>;
  /** TTL in seconds (memcached semantics); default: the client's `defaultTtl`. */
  ttl?: number;
  /** Name of the memcached client to use; default: the default client. */
  client?: string;
  /** Called with the arguments; `false` bypasses the cache for this call (no read, no write). */
  condition?: CacheArgsFunction<boolean>;
  /** Called with the result and the arguments; `true` keeps this result out of the cache. */
  unless?: CacheUnlessFunction;
  /**
   * Seconds after `ttl` during which the old result is still returned at once while one call
   * (across every process) recomputes it in the background. Needs a client with
   * `protocol: 'meta'` (the application fails to start otherwise).
   */
  staleWhileRevalidate?: number;
  /**
   * On a miss, one call across every process computes; the others wait for its result (see
   * `getOrSet`). `true` = `{ ttl: 30, wait: 2000 }`. Needs a client with `protocol: 'meta'`.
   */
  lease?: boolean | LeaseOptions;
}

interface CacheEvictCommon {
  /** Name of the memcached client to use; default: the default client. */
  client?: string;
  /**
   * Evict before the method runs (whatever its outcome). Default `false`: evict after it
   * completed successfully (a throwing method evicts nothing).
   */
  beforeInvocation?: boolean;
  /**
   * Mark the entries stale (`invalidate`) instead of deleting them: calls with
   * `staleWhileRevalidate` keep being served the old result while one of them refreshes it.
   * Needs a client with `protocol: 'meta'` (the application fails to start otherwise).
   */
  stale?: boolean;
}

/** Options of `@CacheEvict`: one `key`, or several `keys`, plus the common options. */
export type CacheEvictOptions = CacheEvictCommon &
  (
    | {
        /** The key to delete: a string or a function of the method's arguments. */
        key: string | CacheArgsFunction<string>;
        keys?: undefined;
      }
    | {
        /** The keys to delete: a string array or a function of the arguments returning one. */
        keys: readonly string[] | CacheArgsFunction<readonly string[]>;
        key?: undefined;
      }
  );

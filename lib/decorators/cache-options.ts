import type { LeaseOptions } from '../cache/options.js';

/**
 * A function of a decorated method's arguments. `A` is inferred from the function you write
 * (`(id: string) => ...`) and checked against the method's parameters: the decorator does not
 * compile on a method whose arguments the function cannot take.
 */
export type CacheArgsFunction<R, A extends unknown[] = unknown[]> = (...args: A) => R;

/** `unless` of {@link CacheableOptions}: the method's (awaited) result, then its arguments. */
export type CacheUnlessFunction<T = unknown, A extends unknown[] = unknown[]> = (
  result: T,
  ...args: A
) => boolean;

/**
 * Options of `@Cacheable`. `A` is the method's parameter list as the functions declare it, `T`
 * the result type `unless` expects; both are inferred and checked against the method.
 */
export interface CacheableOptions<A extends unknown[] = unknown[], T = unknown> {
  /**
   * The cache key: a string, or a function of the method's arguments returning one. Default: a
   * stable key from host module, class, method and arguments (see `defaultCacheKey`).
   */
  key?: string | CacheArgsFunction<string, A>;
  /** TTL in seconds (memcached semantics); default: the client's `defaultTtl`. */
  ttl?: number;
  /** Name of the memcached client to use; default: the default client. */
  client?: string;
  /** Called with the arguments; `false` bypasses the cache for this call (no read, no write). */
  condition?: CacheArgsFunction<boolean, A>;
  /** Called with the result and the arguments; `true` keeps this result out of the cache. */
  unless?: CacheUnlessFunction<T, A>;
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
  /**
   * Tags of the result: a string array, or a function of the method's arguments returning one.
   * `@CacheEvict({ tags })` or `invalidateTags` of any of them makes it a miss, in every
   * process. A tagged read costs one round trip per server for the key and its tags' version
   * keys (see the README, "Tag invalidation"). A bad constant tag fails the boot; a function that
   * returns a bad list makes that call bypass the cache (logged).
   */
  tags?: readonly string[] | CacheArgsFunction<readonly string[], A>;
}

/** `tags` of {@link CacheEvictOptions}. */
export type CacheEvictTags<A extends unknown[] = unknown[]> =
  readonly string[] | CacheArgsFunction<readonly string[], A>;

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

/**
 * Options of `@CacheEvict`: one `key` or several `keys`, and/or `tags` (whose values all become
 * misses), plus the common options.
 */
export type CacheEvictOptions<A extends unknown[] = unknown[]> = CacheEvictCommon &
  (
    | {
        /** The key to delete: a string or a function of the method's arguments. */
        key: string | CacheArgsFunction<string, A>;
        keys?: undefined;
        /** Tags to invalidate as well: a string array or a function of the arguments. */
        tags?: CacheEvictTags<A>;
      }
    | {
        /** The keys to delete: a string array or a function of the arguments returning one. */
        keys: readonly string[] | CacheArgsFunction<readonly string[], A>;
        key?: undefined;
        /** Tags to invalidate as well: a string array or a function of the arguments. */
        tags?: CacheEvictTags<A>;
      }
    | {
        /**
         * Tags to invalidate: a string array or a function of the arguments returning one; every
         * value stored under any of them becomes a miss, in every process.
         */
        tags: CacheEvictTags<A>;
        key?: undefined;
        keys?: undefined;
      }
  );

/** Marks a decorator whose functions do not take the method's arguments (or result). */
export interface CacheDecoratorMismatch {
  "the decorator's key/keys/tags/condition/unless functions do not take this method's arguments (or result)": never;
}

/**
 * `unknown` when functions taking `A` (and a result `T`) can be called with the arguments (and
 * the awaited result) of method `M`; {@link CacheDecoratorMismatch} otherwise.
 */
export type CacheDecoratorCheck<A extends unknown[], T, M> = M extends (...args: infer P) => infer R
  ? ((...args: A) => unknown) extends (...args: P) => unknown
    ? [Awaited<R>] extends [T]
      ? unknown
      : CacheDecoratorMismatch
    : CacheDecoratorMismatch
  : CacheDecoratorMismatch;

/** A method decorator that compiles only on methods its option functions accept. */
export type CheckedMethodDecorator<A extends unknown[], T = unknown> = <M>(
  target: object,
  propertyKey: string | symbol,
  descriptor: TypedPropertyDescriptor<M> & CacheDecoratorCheck<A, T, M>,
) => void;

/**
 * What `@Cacheable(...)` / `@CacheEvict(...)` return. With typed functions (`key: (id: string)
 * => ...`) a {@link CheckedMethodDecorator}: it compiles only on a method whose arguments (and
 * result) they accept. Without (`A` is `unknown[]`, `T` is `unknown`) a plain `MethodDecorator`,
 * which `applyDecorators` takes.
 */
export type CacheMethodDecorator<A extends unknown[], T = unknown> = unknown[] extends A
  ? unknown extends T
    ? MethodDecorator
    : CheckedMethodDecorator<A, T>
  : CheckedMethodDecorator<A, T>;

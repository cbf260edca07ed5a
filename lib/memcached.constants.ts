/**
 * Injection tokens and metadata keys of the Nest integration.
 *
 * Every token and key is either a registered symbol (`Symbol.for`) or a string, so that they
 * stay the same even when a process ends up with this package installed twice (two versions in
 * one `node_modules` tree).
 */

/** The name of the client registered without `name`. */
export const DEFAULT_MEMCACHED_NAME = 'default';

/** Token of the (validated) options of one `MemcachedModule` registration. */
export const MEMCACHED_MODULE_OPTIONS: unique symbol = Symbol.for(
  'nestjs-memcached:module-options',
) as never;

/** Token of the client name of one `MemcachedModule` registration. */
export const MEMCACHED_CLIENT_NAME: unique symbol = Symbol.for(
  'nestjs-memcached:client-name',
) as never;

/** Metadata key written by `@Cacheable`. */
export const CACHEABLE_METADATA = 'nestjs-memcached:cacheable';

/** Metadata key written by `@CacheEvict`. */
export const CACHE_EVICT_METADATA = 'nestjs-memcached:cache-evict';

/** @internal Prefix of the tokens of named clients. */
export const NAMED_CLIENT_TOKEN_PREFIX = 'nestjs-memcached:client:';

/**
 * `nestjs-memcached/client`: the framework-free client, its options, the serde and the errors.
 * Nothing reachable from here imports `@nestjs/*`, `reflect-metadata` or `class-validator`, so
 * this entry point works in any Node.js program, with or without Nest installed.
 */
export { MemcachedClient } from './memcached-client.js';
export type {
  CasValue,
  MemcachedClientEvents,
  PingResult,
  SetManyEntries,
  StorageOptions,
  UpdateOptions,
} from './memcached-client.js';
export type { CommandContext, Interceptor } from './interceptors.js';
export type { GetOrSetOptions, InvalidateOptions, LeaseOptions } from '../cache/options.js';
export { TaggedValue, FLAG_TAGGED, MAX_TAGS } from '../cache/tags.js';
export type {
  MemcachedCacheEvent,
  MemcachedCacheOutcome,
  MemcachedCommandContext,
  MemcachedServerEvent,
  ServerPoolStats,
} from '../observability/index.js';
export type {
  DiscoveryOptions,
  FailoverOptions,
  HashingScheme,
  MemcachedOptionName,
  MemcachedOptions,
  MemcachedProtocol,
  RetryOptions,
  RetryableCommand,
} from '../options.js';
export { MEMCACHED_OPTION_NAMES, RETRYABLE_COMMANDS } from '../options.js';
export type { ServerSpec } from '../cluster/servers.js';
export { parseServer } from '../cluster/servers.js';
export type { ClusterConfig, ClusterNode } from '../cluster/discovery.js';
export type { Serde, SerializedValue } from '../serde/serde.js';
export {
  FLAG_BYTES,
  FLAG_COMPRESSED,
  FLAG_INTEGER,
  FLAG_JSON,
  FLAG_LONG,
  FLAG_LZ4,
  FLAG_TEXT,
} from '../serde/serde.js';
export { DefaultSerde, defaultSerde } from '../serde/default-serde.js';
export type { CompressionOptions } from '../serde/compression.js';
export {
  MemcachedAuthError,
  MemcachedBackpressureError,
  MemcachedClientError,
  MemcachedConflictError,
  MemcachedConnectionError,
  MemcachedError,
  MemcachedKeyError,
  MemcachedOptionsError,
  MemcachedProtocolError,
  MemcachedSerdeError,
  MemcachedServerError,
  MemcachedTimeoutError,
  MemcachedUnknownCommandError,
  MemcachedValueError,
} from '../errors.js';
export type { MemcachedErrorOptions } from '../errors.js';

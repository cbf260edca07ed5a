export { MemcachedClient } from './client/memcached-client.js';
export type {
  CasValue,
  MemcachedClientEvents,
  PingResult,
  SetManyEntries,
  StorageOptions,
} from './client/memcached-client.js';
export type { CommandContext, Interceptor } from './client/interceptors.js';
export type {
  FailoverOptions,
  HashingScheme,
  MemcachedOptions,
  RetryOptions,
  RetryableCommand,
} from './options.js';
export type { ServerSpec } from './cluster/servers.js';
export { parseServer } from './cluster/servers.js';
export type { Serde, SerializedValue } from './serde/serde.js';
export {
  FLAG_BYTES,
  FLAG_COMPRESSED,
  FLAG_INTEGER,
  FLAG_JSON,
  FLAG_LONG,
  FLAG_TEXT,
} from './serde/serde.js';
export { DefaultSerde, defaultSerde } from './serde/default-serde.js';
export type { CompressionOptions } from './serde/compression.js';
export {
  MemcachedAuthError,
  MemcachedBackpressureError,
  MemcachedClientError,
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
} from './errors.js';
export type { MemcachedErrorOptions } from './errors.js';

/**
 * The `node:diagnostics_channel` channels the client publishes on. Channels are global by name,
 * so every copy of the package in a process publishes on the same ones, and a subscriber needs
 * nothing from this package but the names.
 *
 * Nothing is built for a channel nobody listens to: every publisher checks `hasSubscribers`
 * first, so with no subscriber a command costs one property check more.
 */
import * as dc from 'node:diagnostics_channel';
import type { MemcachedError } from '../errors.js';

/** The channel names. */
export const MEMCACHED_CHANNELS = {
  /** TracingChannel: `tracing:memcached:command:start | end | asyncStart | asyncEnd | error`. */
  command: 'memcached:command',
  /** A server was marked dead: {@link MemcachedServerEvent} with `error`. */
  serverDown: 'memcached:server:down',
  /** A dead server answered its probe and rejoined: {@link MemcachedServerEvent}. */
  serverUp: 'memcached:server:up',
  /** Outcome of a cache-aside read (`getOrSet`, `@Cacheable`): {@link MemcachedCacheEvent}. */
  cache: 'memcached:cache',
} as const;

/**
 * The context of one command on `memcached:command`: one request to one server (see the README,
 * "Observability", for what counts as one). The same object is passed to every event of the
 * command, so subscribers may keep state on it (under a `Symbol` of their own). It never holds a
 * value: only names, keys, counts and the server.
 */
export interface MemcachedCommandContext {
  /**
   * The memcached command, the same on every protocol: `get`, `gets`, `gat`, `gats`, `set`,
   * `add`, `replace`, `append`, `prepend`, `cas`, `delete`, `touch`, `incr`, `decr`,
   * `flush_all`, `stats`, `version`.
   */
  readonly command: string;
  /** The client method that sent it: `get`, `getMany`, `setMany`, `getAndTouch`, `flushAll`, ... */
  readonly method: string;
  /** The keys as sent (with `keyPrefix`), in request order; a copy, `[]` for whole-server commands. */
  readonly keys: readonly string[];
  /** `keys.length`: above 1 for a multi-get. */
  readonly keyCount: number;
  /** The server id (`host:port`, `[v6]:port` or the socket path), as in `client.servers`. */
  readonly server: string;
  /** The host name or IP (without brackets), or the unix socket path. */
  readonly serverAddress: string;
  /** The TCP port; absent for a unix socket. */
  readonly serverPort?: number;
  /** The wire protocol of the client. */
  readonly protocol: 'text' | 'meta' | 'binary';
  /** Sent with `noreply`: it completes once written. */
  readonly noreply: boolean;
  /** Set before `asyncStart` of a retrieval that succeeded: how many of `keys` were found. */
  hits?: number;
  /** Set before `error`: why the command failed. */
  error?: unknown;
}

/** The message of `memcached:server:down` and `memcached:server:up`. */
export interface MemcachedServerEvent {
  /** The server id. */
  readonly server: string;
  /** `memcached:server:down` only: the failure that made the client mark it dead. */
  readonly error?: MemcachedError;
}

/** What a cache-aside read found. */
export type MemcachedCacheOutcome = 'hit' | 'miss' | 'stale' | 'coalesced' | 'error';

/** The message of `memcached:cache`. */
export interface MemcachedCacheEvent {
  /** The cache key as the application gave it (without `keyPrefix`). */
  readonly key: string;
  /**
   * `hit`: served from memcached; `miss`: computed and stored; `stale`: a stale value served
   * while it is recomputed; `coalesced`: joined a computation already running for the key;
   * `error`: memcached could not be read, the value was computed.
   */
  readonly outcome: MemcachedCacheOutcome;
}

/** `memcached:command` (held here, so the channels live as long as the module). */
export const commandChannel = dc.tracingChannel<unknown, MemcachedCommandContext>(
  MEMCACHED_CHANNELS.command,
);
export const serverDownChannel = dc.channel(MEMCACHED_CHANNELS.serverDown);
export const serverUpChannel = dc.channel(MEMCACHED_CHANNELS.serverUp);
export const cacheChannel = dc.channel(MEMCACHED_CHANNELS.cache);

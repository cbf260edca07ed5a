import { Logger, type OnApplicationShutdown } from '@nestjs/common';
import {
  MemcachedClient,
  type CasValue,
  type PingResult,
  type SetManyEntries,
  type StorageOptions,
  type UpdateOptions,
} from './client/memcached-client.js';
import { publishCacheOutcome } from './observability/events.js';
import type { ServerPoolStats } from './observability/pool-stats.js';
import type { ServerSpec } from './cluster/servers.js';
import type { MemcachedOptions } from './options.js';
import { DEFAULT_MEMCACHED_NAME } from './memcached.constants.js';
import { CacheErrorReporter } from './utils/error-reporter.js';

/** Options of {@link MemcachedService.getOrSet}. */
export interface GetOrSetOptions<T> {
  /** TTL of the stored value in seconds (memcached semantics); default: the client's `defaultTtl`. */
  ttl?: number;
  /** Return `true` to keep a computed value out of the cache (it is still returned). */
  unless?: (value: T) => boolean;
}

/** @internal What the explorer passes to {@link MemcachedService.cacheAside}. */
export interface CacheAsideOptions {
  ttl?: number;
  /** `true` → do not store this result. */
  unless?: (value: unknown) => boolean;
  /** What is being cached, for log messages (e.g. `ProductsService.findOne`). */
  label?: string;
  /** Called when the result is an Observable, a stream or similar (never stored). */
  onUncacheable?: (value: unknown) => void;
}

interface Flight {
  promise: Promise<unknown>;
  /** Set when the key was written or evicted meanwhile: the result must not be stored. */
  stale: boolean;
}

/**
 * Whether `value` is something that cannot be cached: an Observable/Subject (`subscribe`), a
 * stream (`pipe`) or a Nest `StreamableFile` (`getStream`).
 * @internal
 */
export function isUncacheable(value: unknown): boolean {
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v['subscribe'] === 'function' ||
    typeof v['pipe'] === 'function' ||
    typeof v['getStream'] === 'function'
  );
}

function isClient(value: unknown): value is MemcachedClient {
  if (value instanceof MemcachedClient) return true;
  const v = value as Partial<Record<keyof MemcachedClient, unknown>> | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.getMany === 'function' &&
    typeof v.close === 'function' &&
    typeof v.version === 'function'
  );
}

/**
 * The injectable memcached client of a Nest app: every method of {@link MemcachedClient} with the
 * same signature (it delegates to {@link MemcachedService.client}), plus
 * {@link MemcachedService.getOrSet}. `MemcachedModule` creates one per registration; the default
 * one is injected by its class, named ones with `@InjectMemcached(name)`. Its sockets close in
 * `onApplicationShutdown`.
 *
 * Writes through the service (`set`, `delete`, ...) also cancel the storing of a value that a
 * concurrent `getOrSet` / `@Cacheable` call is still computing for the same key, so a value
 * computed from older data never overwrites a newer write or an eviction.
 */
export class MemcachedService implements OnApplicationShutdown {
  /** The framework-free client this service delegates to. */
  readonly client: MemcachedClient;
  /** The registration name (`'default'` for the client registered without `name`). */
  readonly name: string;
  /** @internal */
  readonly reporter: CacheErrorReporter;
  private readonly flights = new Map<string, Flight>();
  private closing: Promise<void> | undefined;

  /**
   * @param clientOrOptions - an existing client (the service then owns it and closes it on
   *   shutdown) or options for a new one.
   * @param name - the registration name, used in log messages.
   */
  constructor(
    clientOrOptions: MemcachedClient | MemcachedOptions = {},
    name: string = DEFAULT_MEMCACHED_NAME,
  ) {
    this.client = isClient(clientOrOptions)
      ? clientOrOptions
      : new MemcachedClient(clientOrOptions);
    this.name = name;
    const logger = new Logger('MemcachedService');
    this.reporter = new CacheErrorReporter(logger, name);
    // Failover transitions are rare and worth a line each.
    const client = this.client as Partial<Pick<MemcachedClient, 'on'>>;
    if (typeof client.on === 'function') {
      client.on('serverDown', ({ server, error }) =>
        logger.warn(`memcached client "${name}": ${server} marked dead (${error.message})`),
      );
      client.on('serverUp', ({ server }) =>
        logger.log(`memcached client "${name}": ${server} is back`),
      );
    }
  }

  /** Server ids (`host:port`, `[v6]:port` or socket path) in configuration order. */
  get servers(): string[] {
    return this.client.servers;
  }

  /** The id of the server `key` (without prefix) goes to now, taking dead servers into account. */
  serverFor(key: string): string {
    return this.client.serverFor(key);
  }

  /** Replaces the server list at run time; see {@link MemcachedClient.setServers}. */
  setServers(servers: string | readonly ServerSpec[]): Promise<void> {
    return this.client.setServers(servers);
  }

  /** Forgets every dead mark at once; see {@link MemcachedClient.resetDeadServers}. */
  resetDeadServers(): void {
    this.client.resetDeadServers();
  }

  // ------------------------------------------------------------------------------------------
  // Cache-aside

  /**
   * The value of `key`; on a miss, `factory()`'s result, which is then stored (unless it is
   * `undefined`, an Observable or a stream, or `unless(value)` is true).
   *
   * Concurrent calls for one missing key share one run of `factory` (single flight, per key and
   * per service). Cache failures never fail the call: they are logged (at most once per error
   * kind per 30 s) and the factory's value is returned. Errors thrown by `factory` reject every
   * waiting caller and nothing is stored.
   *
   * A hit returns the value as the serde read it back (a `Date` comes back as its ISO string,
   * class instances as plain objects); a miss returns the factory's value itself.
   */
  getOrSet<T>(
    key: string,
    factory: () => T | Promise<T>,
    opts: GetOrSetOptions<T> = {},
  ): Promise<T> {
    const unless = opts.unless;
    return this.cacheAside(key, factory, {
      ttl: opts.ttl,
      unless: unless === undefined ? undefined : (value) => unless(value as T),
      label: 'getOrSet',
    }) as Promise<T>;
  }

  /** @internal The cache-aside flow behind getOrSet and @Cacheable. */
  cacheAside(key: string, compute: () => unknown, opts: CacheAsideOptions = {}): Promise<unknown> {
    const existing = this.flights.get(key);
    if (existing !== undefined) {
      publishCacheOutcome(key, 'coalesced');
      return existing.promise;
    }
    const flight: Flight = { promise: Promise.resolve(), stale: false };
    const what = opts.label === undefined ? `"${key}"` : `"${key}" (${opts.label})`;
    flight.promise = (async () => {
      try {
        let hit: unknown;
        let readFailed = false;
        try {
          hit = await this.client.get(key);
        } catch (error) {
          readFailed = true;
          this.reporter.report(`reading ${what}`, error);
        }
        if (hit !== undefined) {
          publishCacheOutcome(key, 'hit');
          return hit;
        }
        publishCacheOutcome(key, readFailed ? 'error' : 'miss');
        const value: unknown = await compute();
        if (value === undefined || flight.stale) return value;
        if (isUncacheable(value)) {
          opts.onUncacheable?.(value);
          return value;
        }
        if (opts.unless !== undefined) {
          let skip: boolean;
          try {
            skip = opts.unless(value);
          } catch (error) {
            this.reporter.report(`evaluating "unless" for ${what}`, error);
            skip = true;
          }
          if (skip) return value;
        }
        try {
          await this.client.set(key, value, opts.ttl === undefined ? undefined : { ttl: opts.ttl });
        } catch (error) {
          this.reporter.report(`writing ${what}`, error);
        }
        return value;
      } finally {
        if (this.flights.get(key) === flight) this.flights.delete(key);
      }
    })();
    this.flights.set(key, flight);
    return flight.promise;
  }

  /**
   * @internal Deletes `keys` for `@CacheEvict`; failures are logged, never thrown. Values being
   * computed for these keys are not stored.
   */
  async evict(keys: readonly string[], label?: string): Promise<void> {
    if (keys.length === 0) return;
    try {
      if (keys.length === 1) await this.delete(keys[0]!);
      else await this.deleteMany(keys);
    } catch (error) {
      const what = keys.map((k) => `"${k}"`).join(', ');
      this.reporter.report(`evicting ${what}${label === undefined ? '' : ` (${label})`}`, error);
    }
  }

  /** Marks values being computed for `key` (or for every key) as not to be stored. */
  private invalidate(key?: string): void {
    if (key === undefined) {
      for (const flight of this.flights.values()) flight.stale = true;
      this.flights.clear();
      return;
    }
    const flight = this.flights.get(key);
    if (flight !== undefined) {
      flight.stale = true;
      this.flights.delete(key);
    }
  }

  // ------------------------------------------------------------------------------------------
  // Retrieval

  /** The value of `key`, or `undefined` on a miss. */
  get<T = unknown>(key: string): Promise<T | undefined> {
    return this.client.get<T>(key);
  }

  /** The value and its cas token, or `undefined` on a miss. */
  gets<T = unknown>(key: string): Promise<CasValue<T> | undefined> {
    return this.client.gets<T>(key);
  }

  /** `gat`: the value of `key` (or `undefined`), setting its TTL to `ttl` seconds. */
  getAndTouch<T = unknown>(key: string, ttl: number): Promise<T | undefined> {
    return this.client.getAndTouch<T>(key, ttl);
  }

  /** The hits among `keys` (one request per server, in parallel). */
  getMany<T = unknown>(keys: Iterable<string>): Promise<Map<string, T>> {
    return this.client.getMany<T>(keys);
  }

  /** The hits among `keys` with their cas tokens. */
  getsMany<T = unknown>(keys: Iterable<string>): Promise<Map<string, CasValue<T>>> {
    return this.client.getsMany<T>(keys);
  }

  // ------------------------------------------------------------------------------------------
  // Storage

  /** Stores `value` under `key`. */
  set(key: string, value: unknown, opts?: StorageOptions): Promise<boolean> {
    this.invalidate(key);
    return this.client.set(key, value, opts);
  }

  /** Stores only if the key does not exist; `false` when it does. */
  add(key: string, value: unknown, opts?: StorageOptions): Promise<boolean> {
    return this.client.add(key, value, opts);
  }

  /** Stores only if the key exists; `false` when it does not. */
  replace(key: string, value: unknown, opts?: StorageOptions): Promise<boolean> {
    this.invalidate(key);
    return this.client.replace(key, value, opts);
  }

  /** Appends raw bytes (string as UTF-8, or a Buffer) to an existing value; `false` when missing. */
  append(key: string, value: string | Buffer, opts?: StorageOptions): Promise<boolean> {
    this.invalidate(key);
    return this.client.append(key, value, opts);
  }

  /** Prepends raw bytes to an existing value; `false` when missing. */
  prepend(key: string, value: string | Buffer, opts?: StorageOptions): Promise<boolean> {
    this.invalidate(key);
    return this.client.prepend(key, value, opts);
  }

  /** Stores only if the item is unchanged since `gets` returned `cas`; `false` when stale or gone. */
  cas(key: string, value: unknown, cas: string, opts?: StorageOptions): Promise<boolean> {
    this.invalidate(key);
    return this.client.cas(key, value, cas, opts);
  }

  /** Read-modify-write with cas, retried on conflict; see {@link MemcachedClient.update}. */
  update<T>(
    key: string,
    fn: (current: T | undefined) => T | Promise<T>,
    opts?: UpdateOptions,
  ): Promise<T> {
    this.invalidate(key);
    return this.client.update<T>(key, fn, opts);
  }

  /** Stores many entries (pipelined per server); resolves to the keys that were NOT stored. */
  setMany(entries: SetManyEntries, opts?: StorageOptions): Promise<string[]> {
    if (this.flights.size > 0) {
      const keys =
        entries instanceof Map
          ? [...(entries as ReadonlyMap<string, unknown>).keys()]
          : typeof entries === 'object' && entries !== null && !(Symbol.iterator in entries)
            ? Object.keys(entries)
            : undefined;
      if (keys === undefined) this.invalidate();
      else for (const key of keys) this.invalidate(key);
    }
    return this.client.setMany(entries, opts);
  }

  // ------------------------------------------------------------------------------------------
  // Other key commands

  /** Deletes `key`; `false` when it was missing. */
  delete(key: string): Promise<boolean> {
    this.invalidate(key);
    return this.client.delete(key);
  }

  /** Deletes many keys (pipelined per server); resolves to how many existed. */
  deleteMany(keys: Iterable<string>): Promise<number> {
    const list = [...keys];
    for (const key of list) this.invalidate(key);
    return this.client.deleteMany(list);
  }

  /** Sets the TTL of `key`; `false` when it is missing. */
  touch(key: string, ttl: number): Promise<boolean> {
    return this.client.touch(key, ttl);
  }

  /**
   * Adds `delta` to a decimal value (unsigned 64-bit, wraps at 2^64). `undefined` when missing.
   * A `bigint` delta resolves to an exact `bigint`; see {@link MemcachedClient.incr}.
   */
  incr(key: string, delta?: number): Promise<number | undefined>;
  incr(key: string, delta: bigint): Promise<bigint | undefined>;
  incr(key: string, delta: number | bigint = 1): Promise<number | bigint | undefined> {
    this.invalidate(key);
    return typeof delta === 'bigint' ? this.client.incr(key, delta) : this.client.incr(key, delta);
  }

  /** Subtracts `delta` (stops at 0). `undefined` when missing. See {@link MemcachedClient.decr}. */
  decr(key: string, delta?: number): Promise<number | undefined>;
  decr(key: string, delta: bigint): Promise<bigint | undefined>;
  decr(key: string, delta: number | bigint = 1): Promise<number | bigint | undefined> {
    this.invalidate(key);
    return typeof delta === 'bigint' ? this.client.decr(key, delta) : this.client.decr(key, delta);
  }

  // ------------------------------------------------------------------------------------------
  // Whole-cluster commands

  /** Invalidates every item on every server, optionally after `delaySeconds`. */
  flushAll(delaySeconds?: number): Promise<void> {
    this.invalidate();
    return this.client.flushAll(delaySeconds);
  }

  /** `stats [group]` of every server, keyed by server id. */
  stats(group?: string): Promise<Record<string, Record<string, string>>> {
    return this.client.stats(group);
  }

  /** The version of every server, keyed by server id. */
  version(): Promise<Record<string, string>> {
    return this.client.version();
  }

  /**
   * Asks every server for its version and reports per server whether it answered and how fast
   * (see {@link MemcachedClient.ping}). Never rejects.
   */
  ping(timeout?: number): Promise<Record<string, PingResult>> {
    return this.client.ping(timeout);
  }

  /** The pool and failover state of every server (see {@link MemcachedClient.poolStats}). */
  poolStats(): Record<string, ServerPoolStats> {
    return this.client.poolStats();
  }

  /**
   * Closes the client (see {@link MemcachedClient.close}); later calls reject. Safe to call more
   * than once. Nest calls it on application shutdown.
   */
  close(graceMs = 0): Promise<void> {
    this.closing ??= this.client.close(graceMs);
    return this.closing;
  }

  /** Closes the sockets when the Nest application shuts down (`app.close()`). */
  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }
}

import { Logger, type OnApplicationShutdown } from '@nestjs/common';
import {
  MemcachedClient,
  type CasValue,
  type PingResult,
  type SetManyEntries,
  type StorageOptions,
  type UpdateOptions,
} from './client/memcached-client.js';
import type { ServerPoolStats } from './observability/pool-stats.js';
import type { ServerSpec } from './cluster/servers.js';
import { CacheAside } from './cache/cache-aside.js';
import {
  resolveCachePolicy,
  type CachePolicy,
  type GetOrSetOptions,
  type InvalidateOptions,
} from './cache/options.js';
import { cacheAsideOf } from './cache/registry.js';
import {
  registerMethodCacheTarget,
  runCached,
  type MethodCacheTarget,
} from './cache/method-cache.js';
import type { MemcachedOptions, MemcachedProtocol } from './options.js';
import { DEFAULT_MEMCACHED_NAME } from './memcached.constants.js';
import { CacheErrorReporter } from './utils/error-reporter.js';

export type { GetOrSetOptions, InvalidateOptions, LeaseOptions } from './cache/options.js';
export { isUncacheable } from './cache/cache-aside.js';

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
 * same signature (it delegates to {@link MemcachedService.client}), `getOrSet` and `invalidate`
 * included. `MemcachedModule` creates one per registration; the default one is injected by its
 * class, named ones with `@InjectMemcached(name)`. Its sockets close in `onApplicationShutdown`.
 *
 * `getOrSet` and `@Cacheable` share the client's single flights; writes (`set`, `delete`, ...)
 * cancel the storing of a value that a concurrent call is still computing for the same key, so a
 * value computed from older data never overwrites a newer write or an eviction.
 */
export class MemcachedService implements OnApplicationShutdown {
  /** The framework-free client this service delegates to. */
  readonly client: MemcachedClient;
  /** The registration name (`'default'` for the client registered without `name`). */
  readonly name: string;
  /** Logs cache failures of getOrSet and the decorators (rate-limited). */
  private readonly reporter: CacheErrorReporter;
  /** The client's cache-aside flow (shared with `client.getOrSet`). */
  private readonly cache: CacheAside;
  /** What getOrSet and the decorated methods using this client run through. */
  private readonly target: MethodCacheTarget;
  /** Set when the client is not one of this package's own: the service then marks writes itself. */
  private readonly ownCache: CacheAside | undefined;
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
    const shared = cacheAsideOf(this.client);
    if (shared === undefined) {
      // A client from elsewhere (another copy of the package, a stand-in): plain cache-aside over
      // its public get and set.
      const client = this.client;
      this.ownCache = new CacheAside({
        protocol: 'text',
        defaultTtl: 0,
        get: (key) => client.get(key),
        set: (key, value, ttl) => client.set(key, value, ttl === undefined ? undefined : { ttl }),
        lease: () => Promise.resolve(undefined),
        decode: () => undefined,
        fill: () => Promise.resolve(false),
        rearm: () => Promise.resolve(false),
        release: () => Promise.resolve(false),
        invalidate: () => Promise.resolve(false),
        sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      });
    }
    this.cache = shared ?? this.ownCache!;
    const logger = new Logger('MemcachedService');
    this.reporter = new CacheErrorReporter(logger, name);
    const cache = this.cache;
    const reporter = this.reporter;
    this.target = {
      description:
        name === DEFAULT_MEMCACHED_NAME
          ? 'the default memcached client'
          : `memcached client "${name}"`,
      protocol: this.protocol,
      keyPrefix:
        (this.client as Partial<Pick<MemcachedClient, 'options'>>).options?.keyPrefix ?? '',
      run: (key, compute, policy, call) => {
        const foreign = this.ownCache === undefined ? undefined : this.client;
        if (
          foreign !== undefined &&
          policy.tags !== undefined &&
          policy.tags.length > 0 &&
          typeof (foreign as Partial<MemcachedClient>).getOrSet === 'function'
        ) {
          // Tags need the client's own reads of the version keys: its getOrSet does them.
          return foreign.getOrSet(key, compute, {
            ttl: policy.ttl,
            tags: policy.tags,
            ...(policy.lease === undefined ? {} : { lease: policy.lease }),
            ...(policy.staleWhileRevalidate > 0
              ? { staleWhileRevalidate: policy.staleWhileRevalidate }
              : {}),
            ...(call.unless === undefined ? {} : { unless: call.unless }),
          });
        }
        return cache.run(key, compute, policy, {
          ...call,
          report: (doing, error) => reporter.report(doing, error),
        });
      },
      report: (doing, error) => reporter.report(doing, error),
      delete: (keys) => (keys.length === 1 ? this.delete(keys[0]!) : this.deleteMany(keys)),
      invalidate: (key) => this.invalidate(key),
      invalidateTags: (tags) => this.invalidateTags(tags),
    };
    registerMethodCacheTarget(this, this.target);
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

  /** Polls the `discovery` endpoint now; see {@link MemcachedClient.refreshServers}. */
  refreshServers(): Promise<void> {
    return this.client.refreshServers();
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
   * per client). On `protocol: 'meta'`, `lease` and `staleWhileRevalidate` work across processes
   * (see {@link MemcachedClient.getOrSet}). Cache failures never fail the call: they are logged
   * (at most once per error kind per 30 s) and the factory's value is returned. Errors thrown by
   * `factory` reject every waiting caller and nothing is stored. Invalid options reject at once.
   *
   * A hit returns the value as the serde read it back (a `Date` comes back as its ISO string,
   * class instances as plain objects); a miss returns the factory's value itself.
   */
  getOrSet<T>(
    key: string,
    factory: () => T | Promise<T>,
    opts: GetOrSetOptions<T> = {},
  ): Promise<T> {
    let policy: CachePolicy;
    try {
      policy = resolveCachePolicy(opts, this.protocol, `getOrSet "${String(key)}"`);
    } catch (error) {
      return Promise.reject(error);
    }
    const unless = opts.unless;
    return runCached(this.target, key, factory, policy, {
      unless: unless === undefined ? undefined : (value) => unless(value as T),
      label: 'getOrSet',
    }) as Promise<T>;
  }

  /**
   * Marks the value of `key` stale instead of deleting it (`protocol: 'meta'` only); see
   * {@link MemcachedClient.invalidate}. `false` when the key is missing.
   */
  invalidate(key: string, opts?: InvalidateOptions): Promise<boolean> {
    this.written(key);
    return this.client.invalidate(key, opts);
  }

  /**
   * Invalidates tags: every value stored under any of them (by `getOrSet` or `@Cacheable` with
   * `tags`) becomes a miss on every server and for every process; see
   * {@link MemcachedClient.invalidateTags}.
   */
  invalidateTags(tags: readonly string[]): Promise<void> {
    return this.client.invalidateTags(tags);
  }

  /** The client's protocol (a stand-in client without options counts as text). */
  private get protocol(): MemcachedProtocol {
    const options = (this.client as Partial<Pick<MemcachedClient, 'options'>>).options;
    return options?.protocol ?? 'text';
  }

  /** Marks values being computed for `key` (or every key) as not to be stored. */
  private written(key?: string): void {
    this.ownCache?.written(key);
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
    this.written(key);
    return this.client.set(key, value, opts);
  }

  /** Stores only if the key does not exist; `false` when it does. */
  add(key: string, value: unknown, opts?: StorageOptions): Promise<boolean> {
    this.written(key);
    return this.client.add(key, value, opts);
  }

  /** Stores only if the key exists; `false` when it does not. */
  replace(key: string, value: unknown, opts?: StorageOptions): Promise<boolean> {
    this.written(key);
    return this.client.replace(key, value, opts);
  }

  /** Appends raw bytes (string as UTF-8, or a Buffer) to an existing value; `false` when missing. */
  append(key: string, value: string | Buffer, opts?: StorageOptions): Promise<boolean> {
    this.written(key);
    return this.client.append(key, value, opts);
  }

  /** Prepends raw bytes to an existing value; `false` when missing. */
  prepend(key: string, value: string | Buffer, opts?: StorageOptions): Promise<boolean> {
    this.written(key);
    return this.client.prepend(key, value, opts);
  }

  /** Stores only if the item is unchanged since `gets` returned `cas`; `false` when stale or gone. */
  cas(key: string, value: unknown, cas: string, opts?: StorageOptions): Promise<boolean> {
    this.written(key);
    return this.client.cas(key, value, cas, opts);
  }

  /** Read-modify-write with cas, retried on conflict; see {@link MemcachedClient.update}. */
  update<T>(
    key: string,
    fn: (current: T | undefined) => T | Promise<T>,
    opts?: UpdateOptions,
  ): Promise<T> {
    this.written(key);
    return this.client.update<T>(key, fn, opts);
  }

  /** Stores many entries (pipelined per server); resolves to the keys that were NOT stored. */
  setMany(entries: SetManyEntries, opts?: StorageOptions): Promise<string[]> {
    if (this.ownCache !== undefined && this.ownCache.inFlight > 0) {
      const keys =
        entries instanceof Map
          ? [...(entries as ReadonlyMap<string, unknown>).keys()]
          : typeof entries === 'object' && entries !== null && !(Symbol.iterator in entries)
            ? Object.keys(entries)
            : undefined;
      if (keys === undefined) this.written();
      else for (const key of keys) this.written(key);
    }
    return this.client.setMany(entries, opts);
  }

  // ------------------------------------------------------------------------------------------
  // Other key commands

  /** Deletes `key`; `false` when it was missing. */
  delete(key: string): Promise<boolean> {
    this.written(key);
    return this.client.delete(key);
  }

  /** Deletes many keys (pipelined per server); resolves to how many existed. */
  deleteMany(keys: Iterable<string>): Promise<number> {
    const list = [...keys];
    for (const key of list) this.written(key);
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
    this.written(key);
    return typeof delta === 'bigint' ? this.client.incr(key, delta) : this.client.incr(key, delta);
  }

  /** Subtracts `delta` (stops at 0). `undefined` when missing. See {@link MemcachedClient.decr}. */
  decr(key: string, delta?: number): Promise<number | undefined>;
  decr(key: string, delta: bigint): Promise<bigint | undefined>;
  decr(key: string, delta: number | bigint = 1): Promise<number | bigint | undefined> {
    this.written(key);
    return typeof delta === 'bigint' ? this.client.decr(key, delta) : this.client.decr(key, delta);
  }

  // ------------------------------------------------------------------------------------------
  // Whole-cluster commands

  /** Invalidates every item on every server, optionally after `delaySeconds`. */
  flushAll(delaySeconds?: number): Promise<void> {
    this.written();
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

import { EventEmitter } from 'node:events';
import { CacheAside, type CacheBackend, type TagBackend } from '../cache/cache-aside.js';
import { checkTags, newVersion, readVersion, tagKey } from '../cache/tags.js';
import {
  resolveCachePolicy,
  resolveStaleTtl,
  type GetOrSetOptions,
  type InvalidateOptions,
} from '../cache/options.js';
import { registerCacheAside } from '../cache/registry.js';
import { Cluster, type ServerNode } from '../cluster/cluster.js';
import {
  MemcachedConflictError,
  MemcachedError,
  MemcachedOptionsError,
  MemcachedValueError,
} from '../errors.js';
import { serverPoolStats, type ServerPoolStats } from '../observability/pool-stats.js';
import {
  DEFAULTS,
  redactOptions,
  resolveOptions,
  type MemcachedOptions,
  type ResolvedOptions,
} from '../options.js';
import type { ServerSpec } from '../cluster/servers.js';
import type { ProtocolDriver } from '../protocol/driver.js';
import { binaryDriver } from '../protocol/binary/driver.js';
import { createMetaDriver } from '../protocol/meta/driver.js';
import type { LeasedItem, RetrievedItem, StoreOp, StoreStatus } from '../protocol/request.js';
import { textDriver } from '../protocol/text/driver.js';
import { GetBatcher } from './batcher.js';
import { ValueCodec, type Encoded } from './codec.js';
import { Dispatcher } from './dispatcher.js';
import {
  buildInterceptors,
  isIgnorableError,
  runIntercepted,
  type CommandContext,
  type Interceptor,
} from './interceptors.js';
import { Lifecycle } from './lifecycle.js';
import { ClusterDiscovery } from '../cluster/discovery.js';
import { retrieveMany } from './retrieve-many.js';
import { checkCas, checkDelta, checkNoreply, checkTtl, wireKey } from './validation.js';

/** Options of a storage call. */
export interface StorageOptions {
  /** Seconds (memcached semantics): 0 = never, up to 30 days relative, larger = unix time. */
  ttl?: number;
  /** Do not wait for the server's answer; the call resolves `true` once written. */
  noreply?: boolean;
}

/** A value with its cas token, as returned by `gets`. */
export interface CasValue<T> {
  value: T;
  /** Opaque token for {@link MemcachedClient.cas}. */
  cas: string;
}

/** Options of {@link MemcachedClient.update}. */
export interface UpdateOptions {
  /** Read-modify-write rounds before giving up with MemcachedConflictError (default 10). */
  attempts?: number;
  /** TTL of the stored value, seconds, as for `set` (default: the client's defaultTtl). */
  ttl?: number;
}

/** Entries for setMany: a plain object, a Map, or an iterable of `[key, value]` pairs. */
export type SetManyEntries<T = unknown> =
  Readonly<Record<string, T>> | ReadonlyMap<string, T> | Iterable<readonly [string, T]>;

/** One server's answer to {@link MemcachedClient.ping}. */
export interface PingResult {
  ok: boolean;
  latencyMs: number;
  error?: MemcachedError;
}

/** Events a client emits. */
export interface MemcachedClientEvents {
  /** A server was marked dead (failover). */
  serverDown: [{ server: string; error: MemcachedError }];
  /** A dead server answered its probe and rejoined. */
  serverUp: [{ server: string }];
  /**
   * With `ignoreErrors`, an error that was turned into a miss / `false`; and a cache failure that
   * `getOrSet` went on without the cache for (command `getOrSet`).
   */
  ignoredError: [{ command: string; error: MemcachedError }];
  /** The server answered a noreply request with an error (no call failed for it). */
  noreplyError: [{ server: string; error: MemcachedError }];
  /**
   * `discovery`: a poll of the configuration endpoint failed (unreachable, timeout, malformed
   * reply); the previous server list stays in force and no call fails for it.
   */
  discoveryError: [{ endpoint: string; error: MemcachedError }];
  /** `discovery`: a new node list (or configuration version) was applied with setServers. */
  serversDiscovered: [{ endpoint: string; version: number; servers: string[] }];
}

const isStored = (status: StoreStatus): boolean => status === 'stored';
const DEFAULT_UPDATE_ATTEMPTS = 10;
const identity = <T>(value: T): T => value;

/**
 * A memcached client: pooled connections to one or many servers, keys placed by consistent
 * hashing, typed values through a pluggable serde. Works without Nest.
 *
 * ```ts
 * const mc = new MemcachedClient({ servers: ['10.0.0.1:11211:2', '10.0.0.2:11211'] });
 * await mc.set('user:1', { name: 'Ada' }, { ttl: 60 });
 * const user = await mc.get<{ name: string }>('user:1');
 * await mc.close();
 * ```
 */
export class MemcachedClient extends EventEmitter<MemcachedClientEvents> {
  /** The options in force, validated and with defaults applied (the auth password redacted). */
  readonly options: Readonly<ResolvedOptions>;
  private readonly cluster: Cluster;
  private readonly dispatcher: Dispatcher;
  private readonly codec: ValueCodec;
  private readonly prefix: string;
  private readonly prefixBytes: number;
  private readonly defaultTtl: number;
  private readonly interceptors: readonly Interceptor[];
  /** The chain without ignoreErrors: for `update`, which handles those errors itself. */
  private readonly strictInterceptors: readonly Interceptor[];
  private readonly lifecycle = new Lifecycle();
  private readonly batcher: GetBatcher | undefined;
  /** getOrSet's single flights and lease logic. */
  private readonly cache: CacheAside;
  /** ElastiCache auto-discovery (the `discovery` option). */
  private readonly discovery: ClusterDiscovery | undefined;

  constructor(options: MemcachedOptions = {}) {
    super();
    const o = resolveOptions(options);
    this.options = redactOptions(o);
    this.prefix = o.keyPrefix;
    this.prefixBytes = o.keyPrefixBytes;
    this.defaultTtl = o.defaultTtl;
    const driver: ProtocolDriver =
      o.protocol === 'meta'
        ? createMetaDriver({
            onUnusedToken: (server, wire, cas) => this.giveBackToken(server, wire, cas),
          })
        : o.protocol === 'binary'
          ? binaryDriver
          : textDriver;
    const failover = o.failover
      ? { enabled: true, ...o.failover }
      : {
          enabled: false,
          failureThreshold: DEFAULTS.failureThreshold,
          deadTimeout: DEFAULTS.deadTimeout,
          retryTimeout: DEFAULTS.retryTimeout,
        };
    this.cluster = new Cluster(
      o.servers,
      {
        hashing: o.hashing,
        poolSize: o.poolSize,
        failover,
        maxPending: o.maxPending.total,
        timeout: o.timeout,
        routeBy: o.routeBy,
        connection: {
          driver,
          connectTimeout: o.connectTimeout,
          timeout: o.timeout,
          tls: o.tls,
          auth: o.auth,
          keepAlive: o.keepAlive,
          limits: { maxLineLength: 8192, maxValueLength: o.maxValueSize },
          backoffMin: 50,
          backoffMax: Math.min(1000, o.failover ? o.failover.retryTimeout : 1000),
          maxPending: o.maxPending.perConnection,
        },
      },
      {
        serverDown: (server, error) => this.emit('serverDown', { server, error }),
        serverUp: (server) => this.emit('serverUp', { server }),
        noreplyError: (server, error) => this.emit('noreplyError', { server, error }),
      },
    );
    const report = (command: string, error: MemcachedError): void =>
      void this.emit('ignoredError', { command, error });
    this.dispatcher = new Dispatcher(this.cluster, driver, o.ignoreErrors, report);
    this.codec = new ValueCodec(o.serde, o.compression, o.maxValueSize);
    const sleep = (ms: number, command: string): Promise<void> => this.lifecycle.sleep(ms, command);
    this.interceptors = buildInterceptors(o, report, sleep);
    this.strictInterceptors = o.ignoreErrors
      ? buildInterceptors({ ...o, ignoreErrors: false }, report, sleep)
      : this.interceptors;
    this.batcher = o.autoBatch
      ? new GetBatcher(driver, (node, request) => this.cluster.dispatch(node, request))
      : undefined;
    this.cache = new CacheAside(this.cacheBackend());
    registerCacheAside(this, this.cache);
    if (o.discovery !== undefined) {
      const discovery: ClusterDiscovery = new ClusterDiscovery({
        ...o.discovery,
        timeout: o.connectTimeout + o.timeout,
        tls: o.tls,
        apply: async (servers, config) => {
          await this.setServers(servers);
          this.emit('serversDiscovered', {
            endpoint: discovery.endpoint,
            version: config.version,
            servers,
          });
        },
        failed: (error) =>
          void this.emit('discoveryError', { endpoint: discovery.endpoint, error }),
      });
      this.discovery = discovery;
      discovery.start();
    }
  }

  /**
   * With the `discovery` option: polls the configuration endpoint now (or joins the poll in
   * progress) and applies a changed node list; resolves when done, never rejects (a failure is a
   * `discoveryError` event). Resolves at once without `discovery` or after close().
   */
  refreshServers(): Promise<void> {
    return this.discovery?.pollNow() ?? Promise.resolve();
  }

  /** Server ids (`host:port`, `[v6]:port` or socket path) in configuration order. */
  get servers(): string[] {
    return this.cluster.all.map((n) => n.id);
  }

  /**
   * The id of the server that `key` (without prefix) goes to now, taking dead servers into
   * account. Throws MemcachedKeyError for an invalid key, MemcachedConnectionError when no server
   * can take it.
   */
  serverFor(key: string): string {
    this.wire(key, 'serverFor');
    return this.cluster.nodeFor(key).id;
  }

  /**
   * Replaces the server list at run time (the forms of the `servers` option). With `ketama` or
   * `rendezvous` only the keys of removed or added servers move. Calls in flight settle
   * normally; connections to removed servers close once their calls settled, and the promise
   * resolves then. An empty or invalid list rejects with MemcachedOptionsError and changes
   * nothing.
   */
  async setServers(servers: string | readonly ServerSpec[]): Promise<void> {
    if (this.lifecycle.closed) throw this.lifecycle.closedError('setServers');
    await this.cluster.setServers(servers);
  }

  /**
   * Forgets every dead mark at once (python-memcached's `forget_dead_hosts`): dead servers take
   * their keys back with the next call, without waiting for a probe.
   */
  resetDeadServers(): void {
    this.cluster.resetDeadServers();
  }

  // ------------------------------------------------------------------------------------------
  // Retrieval

  /** The value of `key`, or `undefined` on a miss. */
  get<T = unknown>(key: string): Promise<T | undefined> {
    if (this.interceptors.length > 0 || this.lifecycle.closed) {
      return this.intercept('get', [key], undefined, () => this.getOne<T>(key));
    }
    return this.getOne<T>(key);
  }

  /** The value and its cas token, or `undefined` on a miss. */
  gets<T = unknown>(key: string): Promise<CasValue<T> | undefined> {
    return this.getsVia<T>(this.interceptors, key);
  }

  private getsVia<T>(chain: readonly Interceptor[], key: string): Promise<CasValue<T> | undefined> {
    return this.intercept(
      'gets',
      [key],
      undefined,
      () => {
        const wire = this.wire(key, 'gets');
        return this.dispatcher.send(
          this.cluster.nodeFor(key),
          'gets',
          { op: 'gets', keys: [wire] },
          (items) => {
            const item = items[0];
            if (item === undefined) return undefined;
            const cas = item.cas!;
            const value = this.codec.decode(key, item, 'gets');
            return value instanceof Promise
              ? value.then((v) => ({ value: v as T, cas }))
              : { value: value as T, cas };
          },
        );
      },
      chain,
    );
  }

  /** `gat`: the value of `key` (or `undefined`), setting its TTL to `ttl` seconds. */
  getAndTouch<T = unknown>(key: string, ttl: number): Promise<T | undefined> {
    return this.intercept('getAndTouch', [key], undefined, () => {
      const wire = this.wire(key, 'getAndTouch');
      const t = checkTtl(ttl, 'getAndTouch', key);
      return this.dispatcher.send(
        this.cluster.nodeFor(key),
        'getAndTouch',
        { op: 'gat', keys: [wire], ttl: t },
        (items) =>
          items[0] === undefined
            ? undefined
            : (this.codec.decode(key, items[0], 'getAndTouch') as T | Promise<T>),
      );
    });
  }

  /** The hits among `keys` (one request per server, in parallel). */
  getMany<T = unknown>(keys: Iterable<string>): Promise<Map<string, T>> {
    const list = [...keys];
    return this.intercept('getMany', list, new Map<string, T>(), () =>
      retrieveMany(
        this.dispatcher,
        this.codec,
        'get',
        'getMany',
        list,
        this.wires(list, 'getMany'),
        (v) => v as T,
      ),
    );
  }

  /** The hits among `keys` with their cas tokens. */
  getsMany<T = unknown>(keys: Iterable<string>): Promise<Map<string, CasValue<T>>> {
    const list = [...keys];
    return this.intercept('getsMany', list, new Map<string, CasValue<T>>(), () =>
      retrieveMany(
        this.dispatcher,
        this.codec,
        'gets',
        'getsMany',
        list,
        this.wires(list, 'getsMany'),
        (value, item) => ({ value: value as T, cas: item.cas! }),
      ),
    );
  }

  // ------------------------------------------------------------------------------------------
  // Storage

  /** Stores `value` under `key`. */
  set(key: string, value: unknown, opts?: StorageOptions): Promise<boolean> {
    this.cache.written(key);
    return this.store('set', key, value, opts);
  }

  /** Stores only if the key does not exist; `false` when it does. */
  add(key: string, value: unknown, opts?: StorageOptions): Promise<boolean> {
    this.cache.written(key);
    return this.store('add', key, value, opts);
  }

  /** Stores only if the key exists; `false` when it does not. */
  replace(key: string, value: unknown, opts?: StorageOptions): Promise<boolean> {
    this.cache.written(key);
    return this.store('replace', key, value, opts);
  }

  /** Appends raw bytes (string as UTF-8, or a Buffer) to an existing value; `false` when missing. */
  append(key: string, value: string | Buffer, opts?: StorageOptions): Promise<boolean> {
    this.cache.written(key);
    return this.store('append', key, value, opts);
  }

  /** Prepends raw bytes to an existing value; `false` when missing. */
  prepend(key: string, value: string | Buffer, opts?: StorageOptions): Promise<boolean> {
    this.cache.written(key);
    return this.store('prepend', key, value, opts);
  }

  /** Stores only if the item is unchanged since `gets` returned `cas`; `false` when stale or gone. */
  cas(key: string, value: unknown, cas: string, opts?: StorageOptions): Promise<boolean> {
    this.cache.written(key);
    return this.store('cas', key, value, opts, cas);
  }

  /** Stores many entries (pipelined per server); resolves to the keys that were NOT stored. */
  setMany(entries: SetManyEntries, opts?: StorageOptions): Promise<string[]> {
    const pairs = toPairs(entries);
    const keys = pairs.map((p) => p[0]);
    for (const key of keys) this.cache.written(key);
    return this.intercept('setMany', keys, keys, async () => {
      if (pairs.length === 0) return [];
      const ttl = this.ttlOf(opts, 'setMany');
      const noreply = checkNoreply(opts?.noreply, 'setMany');
      // Everything is validated and encoded before anything is sent.
      const wires = this.wires(keys, 'setMany');
      const encoded = await Promise.all(
        pairs.map(([key, value]) => this.codec.encode('setMany', key, value)),
      );
      const results = await this.dispatcher.fanOut(
        'setMany',
        pairs.map(([key], i) => ({
          key,
          spec: {
            op: 'set' as const,
            key: wires[i]!,
            flags: encoded[i]!.flags,
            ttl,
            value: encoded[i]!.data,
            noreply,
          },
        })),
      );
      const notStored: string[] = [];
      // A plain loop: entries of a failed server are holes in the array.
      for (let i = 0; i < pairs.length; i++) {
        if (results[i] !== 'stored') notStored.push(keys[i]!);
      }
      return notStored;
    });
  }

  // ------------------------------------------------------------------------------------------
  // Read-modify-write

  /**
   * Replaces the value of `key` with `fn(current)` without lost updates: reads it with `gets`,
   * stores `fn`'s result with `cas` (or `add` when the key is missing, `fn` then receives
   * `undefined`), and when another writer got in between, starts over — after a short random
   * pause — up to `attempts` times, then rejects with MemcachedConflictError. Resolves to the
   * value stored. `fn` may be async and runs once per attempt; an error it throws rejects the
   * call (nothing is stored).
   *
   * A server or connection error is never a conflict: it ends the call at once. Without
   * `ignoreErrors` the call rejects with it; with `ignoreErrors` it is emitted as `ignoredError`
   * (command `update`) and the call resolves to `fn`'s result, not stored — a failed read counts
   * as a miss (`fn(undefined)`, nothing written), a failed write as not stored.
   */
  async update<T>(
    key: string,
    fn: (current: T | undefined) => T | Promise<T>,
    opts?: UpdateOptions,
  ): Promise<T> {
    if (this.lifecycle.closed) throw this.lifecycle.closedError('update');
    // Everything is checked before the first read.
    this.wire(key, 'update');
    if (typeof fn !== 'function') {
      throw new MemcachedValueError(
        `update "${key}": fn must be a function (current value or undefined) => new value, got ${fn === null ? 'null' : typeof fn}`,
        { command: 'update' },
      );
    }
    const attempts = opts?.attempts ?? DEFAULT_UPDATE_ATTEMPTS;
    if (!Number.isSafeInteger(attempts) || attempts < 1 || attempts > 1000) {
      throw new MemcachedValueError(
        `update "${key}": attempts must be an integer from 1 to 1000, got ${String(attempts)}`,
        { command: 'update' },
      );
    }
    const ttl = this.ttlOf(opts, 'update', key);
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (attempt > 1) {
        // Writers that collided spread out instead of colliding again in lock step.
        await this.lifecycle.sleep(Math.random() * Math.min(20, 2 ** (attempt - 1)), 'update');
      }
      const chain = this.strictInterceptors;
      let current: CasValue<T> | undefined;
      let readFailed = false;
      try {
        current = await this.getsVia<T>(chain, key);
      } catch (err) {
        if (!this.ignored(err)) throw err;
        readFailed = true;
      }
      const next = await fn(current?.value);
      if (readFailed) return next;
      this.cache.written(key);
      let stored: boolean;
      try {
        stored =
          current === undefined
            ? await this.store('add', key, next, { ttl }, undefined, chain)
            : await this.store('cas', key, next, { ttl }, current.cas, chain);
      } catch (err) {
        if (!this.ignored(err)) throw err;
        return next;
      }
      if (stored) return next;
    }
    throw new MemcachedConflictError(
      `update "${key}": the value changed between read and write on each of ${attempts} attempts (other writers kept winning); try again later or raise attempts`,
      { command: 'update' },
    );
  }

  // ------------------------------------------------------------------------------------------
  // Other key commands

  /** Deletes `key`; `false` when it was missing. */
  delete(key: string): Promise<boolean> {
    this.cache.written(key);
    return this.intercept('delete', [key], false, () => {
      const wire = this.wire(key, 'delete');
      return this.dispatcher.send(
        this.cluster.nodeFor(key),
        'delete',
        { op: 'delete', key: wire },
        identity,
      );
    });
  }

  /** Deletes many keys (pipelined per server); resolves to how many existed. */
  deleteMany(keys: Iterable<string>): Promise<number> {
    const list = [...new Set(keys)];
    for (const key of list) this.cache.written(key);
    return this.intercept('deleteMany', list, 0, async () => {
      const wires = this.wires(list, 'deleteMany');
      const results = await this.dispatcher.fanOut(
        'deleteMany',
        list.map((key, i) => ({ key, spec: { op: 'delete' as const, key: wires[i]! } })),
      );
      let existed = 0;
      for (let i = 0; i < results.length; i++) if (results[i] === true) existed++;
      return existed;
    });
  }

  /** Sets the TTL of `key`; `false` when it is missing. */
  touch(key: string, ttl: number): Promise<boolean> {
    return this.intercept('touch', [key], false, () => {
      const wire = this.wire(key, 'touch');
      const t = checkTtl(ttl, 'touch', key);
      return this.dispatcher.send(
        this.cluster.nodeFor(key),
        'touch',
        { op: 'touch', key: wire, ttl: t },
        identity,
      );
    });
  }

  /**
   * Adds `delta` to a decimal value (unsigned 64-bit, wraps at 2^64). `undefined` when missing.
   * A `bigint` delta resolves to an exact `bigint`; with a `number` delta a result above 2^53 - 1
   * rejects with MemcachedValueError carrying the exact value (the server did apply it).
   */
  incr(key: string, delta?: number): Promise<number | undefined>;
  incr(key: string, delta: bigint): Promise<bigint | undefined>;
  incr(key: string, delta: number | bigint = 1): Promise<number | bigint | undefined> {
    return this.arith('incr', key, delta);
  }

  /** Subtracts `delta` (stops at 0). `undefined` when missing. See {@link incr} for number types. */
  decr(key: string, delta?: number): Promise<number | undefined>;
  decr(key: string, delta: bigint): Promise<bigint | undefined>;
  decr(key: string, delta: number | bigint = 1): Promise<number | bigint | undefined> {
    return this.arith('decr', key, delta);
  }

  // ------------------------------------------------------------------------------------------
  // Cache-aside

  /**
   * The value of `key`; on a miss, `factory()`'s result, which is then stored (unless it is
   * `undefined`, an Observable or a stream, or `unless(value)` is true).
   *
   * Concurrent calls for one key in this process share one run (single flight). On
   * `protocol: 'meta'`, `lease` makes that one run across every process and client, and
   * `staleWhileRevalidate` serves an expired or invalidated value while one caller refreshes it
   * in the background. With `tags`, `invalidateTags` of any of them makes the value a miss
   * everywhere; a tagged read costs one round trip per server for the key and its tags' version
   * keys. A write, delete or invalidation of the key (or of one of its tags) while the factory runs wins:
   * the factory's result is returned but not stored over it. Cache failures never fail the call
   * (they are emitted as `ignoredError`, command `getOrSet`); errors of `factory` reject every
   * caller waiting for it. Invalid options reject before anything is sent.
   */
  getOrSet<T>(
    key: string,
    factory: () => T | Promise<T>,
    opts: GetOrSetOptions<T> = {},
  ): Promise<T> {
    let policy;
    try {
      policy = resolveCachePolicy(opts, this.options.protocol, `getOrSet "${String(key)}"`);
    } catch (error) {
      return Promise.reject(error);
    }
    const unless = opts.unless;
    return this.cache.run(key, factory, policy, {
      report: (_doing, error) =>
        void this.emit('ignoredError', { command: 'getOrSet', error: asMemcachedError(error) }),
      unless: unless === undefined ? undefined : (value) => unless(value as T),
    }) as Promise<T>;
  }

  /**
   * Marks the value of `key` stale instead of deleting it (`protocol: 'meta'` only): callers of
   * `getOrSet` with `staleWhileRevalidate` are still served it (for `staleTtl` seconds, default
   * 30) while one of them refreshes it; every other read sees a miss. `false` when the key is
   * missing.
   */
  invalidate(key: string, opts?: InvalidateOptions): Promise<boolean> {
    this.cache.written(key);
    return this.intercept('invalidate', [key], false, () => {
      if (this.options.protocol !== 'meta') {
        throw new MemcachedOptionsError(
          'protocol',
          `invalidate needs protocol: 'meta' (memcached's meta commands, memcached 1.6.10 or newer); this client uses protocol '${this.options.protocol}' (use delete)`,
        );
      }
      const wire = this.wire(key, 'invalidate');
      const ttl = resolveStaleTtl(opts, `invalidate "${key}"`);
      return this.dispatcher.send(
        this.cluster.nodeFor(key),
        'invalidate',
        { op: 'invalidate', key: wire, ttl },
        identity,
      );
    });
  }

  /**
   * Invalidates tags: every value stored by a `getOrSet` with any of these tags becomes a miss,
   * on every server and for every process (each tag's version key gets a new random version;
   * one round trip per server, no flush, no listing of keys). A value being computed under one
   * of them when this is called is returned to its callers but reads back as a miss. Bad tags
   * (not an array, a tag that is not a non-empty string, or has whitespace or control
   * characters) reject with MemcachedKeyError before anything is sent; `[]` sends nothing.
   */
  invalidateTags(tags: readonly string[]): Promise<void> {
    let keys: string[];
    try {
      keys = checkTags(tags, 'invalidateTags').map((tag) => tagKey(tag, this.prefixBytes));
    } catch (error) {
      return Promise.reject(error);
    }
    this.cache.tagsInvalidated(keys);
    return this.intercept('invalidateTags', keys, undefined, async () => {
      if (keys.length === 0) return;
      const wires = this.wires(keys, 'invalidateTags');
      await this.dispatcher.fanOut(
        'invalidateTags',
        keys.map((key, i) => ({
          key,
          spec: {
            op: 'set' as const,
            key: wires[i]!,
            flags: 0,
            ttl: 0,
            value: Buffer.from(newVersion(), 'latin1'),
            noreply: false,
          },
        })),
      );
    });
  }

  // ------------------------------------------------------------------------------------------
  // Whole-cluster commands

  /** Invalidates every item on every server, optionally after `delaySeconds`. */
  flushAll(delaySeconds?: number): Promise<void> {
    this.cache.written();
    return this.intercept('flushAll', [], undefined, async () => {
      if (delaySeconds !== undefined) {
        checkTtl(delaySeconds, 'flushAll');
        if (delaySeconds < 0) {
          throw new MemcachedValueError('flushAll: delaySeconds must not be negative', {
            command: 'flushAll',
          });
        }
      }
      const delay = delaySeconds === 0 ? undefined : delaySeconds;
      await this.dispatcher.everyServer('flushAll', { op: 'flush_all', delay }, identity);
    });
  }

  /** `stats [group]` of every server, keyed by server id. */
  stats(group?: string): Promise<Record<string, Record<string, string>>> {
    return this.intercept('stats', [], {}, () => {
      if (group !== undefined && (typeof group !== 'string' || !/^[a-z_]{1,32}$/.test(group))) {
        throw new MemcachedValueError(
          `stats: group must be a stats group name such as 'items', 'slabs', 'settings', 'sizes' or 'conns', got ${JSON.stringify(group)}`,
          { command: 'stats' },
        );
      }
      return this.dispatcher.everyServer('stats', { op: 'stats', group }, identity);
    });
  }

  /** The version of every server, keyed by server id. */
  version(): Promise<Record<string, string>> {
    return this.intercept('version', [], {}, () =>
      this.dispatcher.everyServer('version', { op: 'version' }, identity),
    );
  }

  /**
   * Asks every server for its version (bypassing failover state and interceptors) and reports
   * per server whether it answered and how fast. Never rejects. `timeout` defaults to the
   * client's `timeout`.
   */
  ping(timeout?: number): Promise<Record<string, PingResult>> {
    return this.cluster.ping(timeout ?? this.options.timeout);
  }

  /**
   * The pool and failover state of every server, keyed by server id: open connections, requests
   * waiting for a reply, and whether (and since when) the client treats the server as dead. Read
   * from memory: nothing is sent. For metrics and health checks.
   */
  poolStats(): Record<string, ServerPoolStats> {
    const out: Record<string, ServerPoolStats> = {};
    for (const node of this.cluster.all) out[node.id] = serverPoolStats(node);
    return out;
  }

  /**
   * Closes every socket. Calls still waiting get `graceMs` (default 0) to finish; the rest are
   * rejected with MemcachedConnectionError, and so are calls waiting to be retried, at once.
   * Later calls reject too. Leaves no timers behind.
   */
  async close(graceMs = 0): Promise<void> {
    this.lifecycle.close();
    this.discovery?.stop();
    // Gets already issued but still waiting for the tick's batch go out first.
    this.batcher?.flush();
    await this.cluster.close(graceMs);
  }

  // ------------------------------------------------------------------------------------------
  // Internals

  /**
   * What getOrSet's flow needs, on this client's internal calls (which mark nothing written).
   * They run without the ignoreErrors interceptor: the flow itself turns cache failures into
   * misses and reports them (command `getOrSet`, outcome `error`), with or without ignoreErrors.
   */
  private cacheBackend(): CacheBackend {
    const strict = this.strictInterceptors;
    const send = <T>(
      key: string,
      run: (wire: string, node: ServerNode) => Promise<T>,
      fallback: T,
    ): Promise<T> =>
      this.intercept(
        'getOrSet',
        [key],
        fallback,
        () => run(this.wire(key, 'getOrSet'), this.cluster.nodeFor(key)),
        strict,
      );
    return {
      protocol: this.options.protocol,
      defaultTtl: this.defaultTtl,
      get: (key) =>
        strict.length > 0 || this.lifecycle.closed
          ? this.intercept('get', [key], undefined, () => this.getOne(key), strict)
          : this.getOne(key),
      set: (key, value, ttl) =>
        this.store('set', key, value, ttl === undefined ? {} : { ttl }, undefined, strict),
      lease: (key, vivify, recache) =>
        send<LeasedItem | undefined>(
          key,
          (wire, node) =>
            this.dispatcher.send(
              node,
              'getOrSet',
              { op: 'lease', key: wire, vivify, recache },
              identity,
            ),
          undefined,
        ),
      decode: (key, item) =>
        this.codec.decode(
          key,
          {
            key,
            flags: item.flags,
            data: item.data,
            cas: item.cas,
            index: 0,
            tooLarge: item.tooLarge,
          },
          'getOrSet',
        ),
      fill: (key, value, ttl, mode, cas) =>
        this.store(mode, key, value, { ttl }, mode === 'cas' ? cas : undefined, strict),
      rearm: (key, item, ttl) =>
        send<boolean>(
          key,
          (wire, node) =>
            this.dispatcher.send(
              node,
              'getOrSet',
              {
                op: 'cas',
                key: wire,
                flags: item.flags,
                ttl,
                value: item.data,
                cas: item.cas,
                noreply: false,
              },
              isStored,
            ),
          false,
        ),
      release: (key, cas) =>
        send<boolean>(
          key,
          (wire, node) =>
            this.dispatcher.send(node, 'getOrSet', { op: 'release', key: wire, cas }, identity),
          false,
        ),
      invalidate: (key, ttl, cas) =>
        send<boolean>(
          key,
          (wire, node) =>
            this.dispatcher.send(
              node,
              'getOrSet',
              { op: 'invalidate', key: wire, ttl, cas },
              identity,
            ),
          false,
        ),
      sleep: (ms) => this.lifecycle.sleep(ms, 'getOrSet'),
      tags: this.tagBackend(),
    };
  }

  /** Tagged getOrSet on this client's internal calls (see lib/cache/tags.ts). */
  private tagBackend(): TagBackend {
    // Without the ignoreErrors interceptor, as the rest of getOrSet's flow.
    const strict = this.strictInterceptors;
    /**
     * Raw items of `keys` (gets), one request per server — with autoBatch, in the tick's
     * multi-get of each server, shared with the other reads of the tick. A failed server's keys
     * are missing (with ignoreErrors), or the read rejects.
     */
    const readRaw = async (keys: readonly string[]): Promise<Array<RetrievedItem | undefined>> => {
      const wires = this.wires(keys, 'getOrSet');
      const nodes = keys.map((key) => this.cluster.nodeFor(key));
      // Not a sparse array: every entry is visited by map / every / some.
      const out = new Array<RetrievedItem | undefined>(keys.length).fill(undefined);
      const failed = new Map<ServerNode, unknown>();
      const batcher = this.batcher;
      if (batcher !== undefined) {
        // One promise for the whole read: settled when the last key's item (or error) is in.
        await new Promise<void>((resolve) => {
          let left = keys.length;
          const done = (): void => {
            if (--left === 0) resolve();
          };
          for (let i = 0; i < keys.length; i++) {
            const node = nodes[i]!;
            batcher.get(
              node,
              wires[i]!,
              (item) => {
                out[i] = item;
                done();
              },
              (error) => {
                if (!failed.has(node)) failed.set(node, error);
                done();
              },
              'gets',
            );
          }
        });
      } else {
        const groups = new Map<ServerNode, number[]>();
        for (let i = 0; i < keys.length; i++) {
          const list = groups.get(nodes[i]!);
          if (list === undefined) groups.set(nodes[i]!, [i]);
          else list.push(i);
        }
        await Promise.all(
          [...groups].map(([node, indexes]) =>
            this.dispatcher
              .send(
                node,
                'getOrSet',
                { op: 'gets', keys: indexes.map((i) => wires[i]!) },
                (items) => {
                  for (const item of items) out[indexes[item.index]!] = item;
                },
              )
              .catch((error: unknown) => void failed.set(node, error)),
          ),
        );
      }
      // A failed server fails the read (the flow reports it and goes on without the cache).
      for (const error of failed.values()) throw error;
      return out;
    };
    const versionOf = (item: RetrievedItem | undefined): string | undefined =>
      item === undefined || item.tooLarge !== 0 ? undefined : readVersion(item.data);
    return {
      keys: (tags) => tags.map((tag) => tagKey(tag, this.prefixBytes)),
      read: (key, tagKeys) => {
        const keys = key === undefined ? tagKeys : [key, ...tagKeys];
        const missed = { item: undefined, versions: tagKeys.map(() => undefined) };
        return this.intercept(
          'getOrSet',
          keys,
          missed,
          async () => {
            const items = await readRaw(keys);
            if (key === undefined) return { item: undefined, versions: items.map(versionOf) };
            return { item: items[0], versions: items.slice(1).map(versionOf) };
          },
          strict,
        );
      },
      create: (tagKeys) =>
        this.intercept(
          'getOrSet',
          tagKeys,
          tagKeys.map(() => undefined),
          async () => {
            const wires = this.wires(tagKeys, 'getOrSet');
            const fresh = tagKeys.map(() => newVersion());
            const results = await this.dispatcher.fanOut(
              'getOrSet',
              tagKeys.map((key, i) => ({
                key,
                spec: {
                  op: 'add' as const,
                  key: wires[i]!,
                  flags: 0,
                  ttl: 0,
                  value: Buffer.from(fresh[i]!, 'latin1'),
                  noreply: false,
                },
              })),
            );
            // Dense (a failed server leaves holes in results).
            const versions = Array.from({ length: tagKeys.length }, (_, i) =>
              results[i] === 'stored' ? fresh[i] : undefined,
            );
            // Created by someone else meanwhile: theirs is the version in force.
            const again = tagKeys.filter((_, i) => results[i] === 'not_stored');
            if (again.length > 0) {
              const items = await readRaw(again);
              let j = 0;
              for (let i = 0; i < tagKeys.length; i++) {
                if (results[i] === 'not_stored') versions[i] = versionOf(items[j++]);
              }
            }
            return versions;
          },
          strict,
        ),
      decode: (key, flags, data) => this.codec.decodeBytes(key, flags, data, 'getOrSet'),
      fill: (key, value, ttl, mode, cas, versions) =>
        this.intercept(
          'getOrSet',
          [key],
          false,
          async () => {
            const wire = this.wire(key, 'getOrSet');
            const inner = await this.codec.encode('getOrSet', key, value);
            const e = this.codec.envelope('getOrSet', key, inner, versions);
            return this.dispatcher.send(
              this.cluster.nodeFor(key),
              'getOrSet',
              {
                op: mode,
                key: wire,
                flags: e.flags,
                ttl,
                value: e.data,
                cas: mode === 'cas' ? cas : undefined,
                noreply: false,
              },
              isStored,
            );
          },
          strict,
        ),
    };
  }

  /**
   * A plain read was handed the refresh token of a stale item (memcached gives it to the first
   * reader of an invalidated item, whatever it asked): hand it on, so that a getOrSet with
   * staleWhileRevalidate refreshes the item. Only while the item is unchanged (`C<cas>`). A read
   * that did not ask for the cas reads it first, and gives the token back only if the item is
   * still stale (a value stored since is fresh, and stays so).
   */
  private giveBackToken(server: string, wire: string, cas: string | undefined): void {
    queueMicrotask(() => {
      const node = this.cluster.all.find((n) => n.id === server);
      if (node === undefined || this.lifecycle.closed) return;
      const invalidate = (token: string): Promise<unknown> =>
        this.dispatcher.send(node, 'get', { op: 'invalidate', key: wire, cas: token }, identity);
      const done =
        cas !== undefined
          ? invalidate(cas)
          : this.dispatcher
              .send(node, 'get', { op: 'lease', key: wire }, identity)
              .then((item) => (item?.stale === true ? invalidate(item.cas) : undefined));
      done.catch(() => undefined);
    });
  }

  private intercept<T>(
    command: string,
    keys: readonly string[],
    fallback: T,
    run: () => Promise<T>,
    chain: readonly Interceptor[] = this.interceptors,
  ): Promise<T> {
    if (this.lifecycle.closed) return Promise.reject(this.lifecycle.closedError(command));
    const ctx: CommandContext = { command, keys, attempt: 1, fallback };
    return runIntercepted(chain, ctx, run);
  }

  /**
   * With `ignoreErrors`, whether `error` is one it turns into a miss / `false` for `update`
   * (reported as `ignoredError`, command `update`); never once the client is closed.
   */
  private ignored(error: unknown): boolean {
    if (!this.options.ignoreErrors || this.lifecycle.closed || !isIgnorableError(error)) {
      return false;
    }
    void this.emit('ignoredError', { command: 'update', error });
    return true;
  }

  private wire(key: string, command: string): string {
    return wireKey(key, this.prefix, this.prefixBytes, command);
  }

  /** Wire keys of every key; throws on the first bad one before anything is sent. */
  private wires(keys: readonly string[], command: string): string[] {
    return keys.map((k) => wireKey(k, this.prefix, this.prefixBytes, command));
  }

  private ttlOf(opts: StorageOptions | undefined, command: string, key?: string): number {
    return opts?.ttl === undefined ? this.defaultTtl : checkTtl(opts.ttl, command, key);
  }

  private getOne<T>(key: string): Promise<T | undefined> {
    return new Promise<T | undefined>((resolve, reject) => {
      let wire: string;
      let node: ServerNode;
      try {
        wire = this.wire(key, 'get');
        node = this.cluster.nodeFor(key);
      } catch (err) {
        reject(err);
        return;
      }
      const onItem = (item: RetrievedItem | undefined): void => {
        if (item === undefined) {
          resolve(undefined);
          return;
        }
        try {
          resolve(this.codec.decode(key, item, 'get') as T | Promise<T>);
        } catch (err) {
          reject(err);
        }
      };
      if (this.batcher !== undefined) {
        // One Promise per get: the batcher calls back with the item, decoded here.
        this.batcher.get(node, wire, onItem, reject);
      } else {
        this.dispatcher
          .send(node, 'get', { op: 'get', keys: [wire] }, (items) => items[0])
          .then(onItem, reject);
      }
    });
  }

  private store(
    command: StoreOp,
    key: string,
    value: unknown,
    opts: StorageOptions | undefined,
    cas?: string,
    chain: readonly Interceptor[] = this.interceptors,
  ): Promise<boolean> {
    return this.intercept(
      command,
      [key],
      false,
      () => {
        // Everything is checked and encoded before anything is sent; synchronous unless the value
        // is compressed off-thread.
        const wire = this.wire(key, command);
        const ttl = this.ttlOf(opts, command, key);
        const noreply = checkNoreply(opts?.noreply, command);
        const token = cas === undefined ? undefined : checkCas(cas, command, key);
        const raw = command === 'append' || command === 'prepend';
        const encoded = raw
          ? this.codec.raw(command, key, value)
          : this.codec.encode(command, key, value);
        const write = (e: Encoded): Promise<boolean> =>
          this.dispatcher.send(
            this.cluster.nodeFor(key),
            command,
            { op: command, key: wire, flags: e.flags, ttl, value: e.data, cas: token, noreply },
            isStored,
          );
        return encoded instanceof Promise ? encoded.then(write) : write(encoded);
      },
      chain,
    );
  }

  private arith(
    command: 'incr' | 'decr',
    key: string,
    delta: number | bigint,
  ): Promise<number | bigint | undefined> {
    this.cache.written(key);
    return this.intercept(command, [key], undefined, () => {
      const wire = this.wire(key, command);
      const d = checkDelta(delta, command, key);
      return this.dispatcher.send(
        this.cluster.nodeFor(key),
        command,
        { op: command, key: wire, delta: BigInt(d) },
        (result) => {
          if (result === undefined || typeof delta === 'bigint') return result;
          if (result > BigInt(Number.MAX_SAFE_INTEGER)) {
            throw new MemcachedValueError(
              `${command} "${key}": the new value ${result} is above Number.MAX_SAFE_INTEGER and cannot be returned as a number (the server applied it); pass a bigint delta to get exact bigint results`,
              { command, value: result },
            );
          }
          return Number(result);
        },
      );
    });
  }
}

function asMemcachedError(error: unknown): MemcachedError {
  if (error instanceof MemcachedError) return error;
  return new MemcachedError(error instanceof Error ? error.message : String(error), {
    command: 'getOrSet',
    cause: error,
  });
}

function toPairs(entries: SetManyEntries): Array<readonly [string, unknown]> {
  if (entries instanceof Map) return [...(entries as ReadonlyMap<string, unknown>)];
  if (entries !== null && typeof entries === 'object' && Symbol.iterator in entries) {
    const pairs: Array<readonly [string, unknown]> = [];
    for (const pair of entries as Iterable<readonly [string, unknown]>) {
      if (!Array.isArray(pair) || pair.length !== 2) {
        throw new MemcachedValueError('setMany: entries must be [key, value] pairs', {
          command: 'setMany',
        });
      }
      pairs.push(pair as readonly [string, unknown]);
    }
    return pairs;
  }
  if (entries !== null && typeof entries === 'object') return Object.entries(entries);
  throw new MemcachedValueError(
    'setMany: entries must be an object, a Map or an iterable of pairs',
    { command: 'setMany' },
  );
}

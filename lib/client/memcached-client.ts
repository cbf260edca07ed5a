import { EventEmitter } from 'node:events';
import { Cluster, type ServerNode } from '../cluster/cluster.js';
import type { ConnectionSettings } from '../connection/connection.js';
import {
  MemcachedBackpressureError,
  MemcachedConnectionError,
  MemcachedError,
  MemcachedSerdeError,
  MemcachedValueError,
} from '../errors.js';
import {
  DEFAULTS,
  resolveOptions,
  type MemcachedOptions,
  type ResolvedOptions,
} from '../options.js';
import {
  encodeArith,
  encodeDelete,
  encodeFlushAll,
  encodeRetrieval,
  encodeStats,
  encodeStorage,
  encodeTouch,
  encodeVersion,
  type StorageCommand,
} from '../protocol/encoder.js';
import type { ReplyKind, RetrievedItem } from '../protocol/replies.js';
import { compress, decompress } from '../serde/compression.js';
import { FLAG_COMPRESSED } from '../serde/serde.js';
import { GetBatcher } from './batcher.js';
import { checkCas, checkDelta, checkNoreply, checkTtl, wireKey } from './validation.js';
import {
  buildInterceptors,
  isIgnorableError,
  type CommandContext,
  type Interceptor,
} from './interceptors.js';

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
  /** With `ignoreErrors`, an error that was turned into a miss / `false`. */
  ignoredError: [{ command: string; error: MemcachedError }];
}

/** Keys per get request line; larger multi-gets are pipelined in several requests. */
const MULTI_GET_CHUNK = 100;
/** Decompressed values larger than this are refused (zip-bomb guard), unless maxValueSize is larger. */
const MAX_DECOMPRESSED = 64 * 1024 * 1024;

interface Encoded {
  data: Buffer;
  flags: number;
}

/**
 * A memcached client on the text protocol: pooled connections to one or many servers, keys
 * placed by consistent hashing, typed values through a pluggable serde. Works without Nest.
 *
 * ```ts
 * const mc = new MemcachedClient({ servers: ['10.0.0.1:11211:2', '10.0.0.2:11211'] });
 * await mc.set('user:1', { name: 'Ada' }, { ttl: 60 });
 * const user = await mc.get<{ name: string }>('user:1');
 * await mc.close();
 * ```
 */
export class MemcachedClient extends EventEmitter<MemcachedClientEvents> {
  /** The options in force, validated and with defaults applied. */
  readonly options: Readonly<ResolvedOptions>;
  private readonly cluster: Cluster;
  private readonly prefix: string;
  private readonly prefixBytes: number;
  private readonly interceptors: readonly Interceptor[];
  private closed = false;
  private readonly batcher: GetBatcher | undefined;
  /** Calls waiting for a reply, across every server (bounded by maxPending.total). */
  private inFlight = 0;

  constructor(options: MemcachedOptions = {}) {
    super();
    const o = resolveOptions(options);
    this.options = o;
    this.prefix = o.keyPrefix;
    this.prefixBytes = o.keyPrefixBytes;
    const settings: ConnectionSettings = {
      connectTimeout: o.connectTimeout,
      tls: o.tls,
      auth: o.auth,
      keepAlive: o.keepAlive,
      parserLimits: { maxLineLength: 8192, maxValueLength: o.maxValueSize },
      backoffMin: 50,
      backoffMax: Math.min(1000, o.failover ? o.failover.retryTimeout : 1000),
      maxPending: o.maxPending.perConnection,
    };
    const failover = o.failover
      ? { enabled: true, ...o.failover }
      : {
          enabled: false,
          failureThreshold: DEFAULTS.failureThreshold,
          deadTimeout: DEFAULTS.deadTimeout,
          retryTimeout: DEFAULTS.retryTimeout,
        };
    this.cluster = new Cluster(o.servers, o.hashing, o.poolSize, settings, failover, {
      serverDown: (server, error) => this.emit('serverDown', { server, error }),
      serverUp: (server) => this.emit('serverUp', { server }),
    });
    this.interceptors = buildInterceptors(o, (command, error) =>
      this.emit('ignoredError', { command, error }),
    );
    this.batcher = o.autoBatch
      ? new GetBatcher((node, command, data, keys, resolve, reject) =>
          this.dispatch(
            node,
            'retrieval',
            command,
            data,
            keys,
            false,
            resolve as (value: unknown) => void,
            reject,
          ),
        )
      : undefined;
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
    wireKey(key, this.prefix, this.prefixBytes, 'serverFor');
    return this.cluster.nodeFor(key).id;
  }

  // ------------------------------------------------------------------------------------------
  // Retrieval

  /** The value of `key`, or `undefined` on a miss. */
  get<T = unknown>(key: string): Promise<T | undefined> {
    if (this.interceptors.length > 0 || this.closed) {
      return this.intercept('get', [key], undefined, () => this.getOne<T>(key));
    }
    return this.getOne<T>(key);
  }

  /** The value and its cas token, or `undefined` on a miss. */
  gets<T = unknown>(key: string): Promise<CasValue<T> | undefined> {
    return this.intercept('gets', [key], undefined, async () => {
      const found = await this.retrieveOne('gets', key, undefined);
      if (found === undefined) return undefined;
      return { value: (await this.decode(key, found)) as T, cas: found.cas! };
    });
  }

  /** `gat`: the value of `key` (or `undefined`), setting its TTL to `ttl` seconds. */
  getAndTouch<T = unknown>(key: string, ttl: number): Promise<T | undefined> {
    return this.intercept('getAndTouch', [key], undefined, async () => {
      const found = await this.retrieveOne('gat', key, checkTtl(ttl, 'getAndTouch', key));
      return found === undefined ? undefined : ((await this.decode(key, found)) as T);
    });
  }

  /** The hits among `keys` (one request per server, in parallel). */
  getMany<T = unknown>(keys: Iterable<string>): Promise<Map<string, T>> {
    const list = [...keys];
    return this.intercept('getMany', list, new Map<string, T>(), () =>
      this.retrieveMany('get', 'getMany', list, (value) => value as T),
    );
  }

  /** The hits among `keys` with their cas tokens. */
  getsMany<T = unknown>(keys: Iterable<string>): Promise<Map<string, CasValue<T>>> {
    const list = [...keys];
    return this.intercept('getsMany', list, new Map<string, CasValue<T>>(), () =>
      this.retrieveMany('gets', 'getsMany', list, (value, item) => ({
        value: value as T,
        cas: item.cas!,
      })),
    );
  }

  // ------------------------------------------------------------------------------------------
  // Storage

  /** Stores `value` under `key`. */
  set(key: string, value: unknown, opts?: StorageOptions): Promise<boolean> {
    return this.store('set', key, value, opts);
  }

  /** Stores only if the key does not exist; `false` when it does. */
  add(key: string, value: unknown, opts?: StorageOptions): Promise<boolean> {
    return this.store('add', key, value, opts);
  }

  /** Stores only if the key exists; `false` when it does not. */
  replace(key: string, value: unknown, opts?: StorageOptions): Promise<boolean> {
    return this.store('replace', key, value, opts);
  }

  /** Appends raw bytes (string as UTF-8, or a Buffer) to an existing value; `false` when missing. */
  append(key: string, value: string | Buffer, opts?: StorageOptions): Promise<boolean> {
    return this.store('append', key, value, opts);
  }

  /** Prepends raw bytes to an existing value; `false` when missing. */
  prepend(key: string, value: string | Buffer, opts?: StorageOptions): Promise<boolean> {
    return this.store('prepend', key, value, opts);
  }

  /** Stores only if the item is unchanged since `gets` returned `cas`; `false` when stale or gone. */
  cas(key: string, value: unknown, cas: string, opts?: StorageOptions): Promise<boolean> {
    return this.store('cas', key, value, opts, cas);
  }

  /** Stores many entries (pipelined per server); resolves to the keys that were NOT stored. */
  setMany(entries: SetManyEntries, opts?: StorageOptions): Promise<string[]> {
    const pairs = toPairs(entries);
    return this.intercept(
      'setMany',
      pairs.map((p) => p[0]),
      pairs.map((p) => p[0]),
      () => this.storeMany(pairs, opts),
    );
  }

  // ------------------------------------------------------------------------------------------
  // Other key commands

  /** Deletes `key`; `false` when it was missing. */
  delete(key: string): Promise<boolean> {
    return this.intercept('delete', [key], false, async () => {
      const k = wireKey(key, this.prefix, this.prefixBytes, 'delete');
      return (await this.send(key, 'delete', 'delete', encodeDelete(k))) as boolean;
    });
  }

  /** Deletes many keys (pipelined per server); resolves to how many existed. */
  deleteMany(keys: Iterable<string>): Promise<number> {
    const list = [...new Set(keys)];
    return this.intercept('deleteMany', list, 0, async () => {
      const wire = list.map((k) => wireKey(k, this.prefix, this.prefixBytes, 'deleteMany'));
      const results = await this.fanOut(
        'deleteMany',
        list.map((key, i) => ({ key, kind: 'delete' as const, data: encodeDelete(wire[i]!) })),
      );
      let existed = 0;
      for (let i = 0; i < results.length; i++) if (results[i] === true) existed++;
      return existed;
    });
  }

  /** Sets the TTL of `key`; `false` when it is missing. */
  touch(key: string, ttl: number): Promise<boolean> {
    return this.intercept('touch', [key], false, async () => {
      const k = wireKey(key, this.prefix, this.prefixBytes, 'touch');
      const t = checkTtl(ttl, 'touch', key);
      return (await this.send(key, 'touch', 'touch', encodeTouch(k, t))) as boolean;
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
  // Whole-cluster commands

  /** Invalidates every item on every server, optionally after `delaySeconds`. */
  async flushAll(delaySeconds?: number): Promise<void> {
    if (delaySeconds !== undefined) checkTtl(delaySeconds, 'flushAll');
    if (delaySeconds !== undefined && delaySeconds < 0) {
      throw new MemcachedValueError('flushAll: delaySeconds must not be negative', {
        command: 'flushAll',
      });
    }
    await this.intercept('flushAll', [], undefined, async () => {
      await this.onEveryServer('flushAll', 'ok', encodeFlushAll(delaySeconds));
    });
  }

  /** `stats [group]` of every server, keyed by server id. */
  stats(group?: string): Promise<Record<string, Record<string, string>>> {
    if (group !== undefined && (typeof group !== 'string' || !/^[a-z_]{1,32}$/.test(group))) {
      return Promise.reject(
        new MemcachedValueError(
          `stats: group must be a stats group name such as 'items', 'slabs', 'settings', 'sizes' or 'conns', got ${JSON.stringify(group)}`,
          { command: 'stats' },
        ),
      );
    }
    return this.intercept('stats', [], {}, async () => {
      return (await this.onEveryServer('stats', 'stats', encodeStats(group))) as Record<
        string,
        Record<string, string>
      >;
    });
  }

  /** The version of every server, keyed by server id. */
  version(): Promise<Record<string, string>> {
    return this.intercept('version', [], {}, async () => {
      return (await this.onEveryServer('version', 'version', encodeVersion())) as Record<
        string,
        string
      >;
    });
  }

  /**
   * Asks every server for its version (bypassing failover state and interceptors) and reports
   * per server whether it answered and how fast. Never rejects. `timeout` defaults to the
   * client's `timeout`.
   */
  async ping(timeout?: number): Promise<Record<string, PingResult>> {
    const limit = timeout ?? this.options.timeout;
    const out: Record<string, PingResult> = {};
    await Promise.all(
      this.cluster.all.map(async (node) => {
        const started = performance.now();
        try {
          if (this.closed) {
            throw new MemcachedConnectionError('the memcached client is closed', {
              server: node.id,
              command: 'version',
            });
          }
          await node.pool.acquire().send('version', 'version', encodeVersion(), limit);
          out[node.id] = { ok: true, latencyMs: performance.now() - started };
        } catch (err) {
          const error =
            err instanceof MemcachedError
              ? err
              : new MemcachedError(String(err), { server: node.id, command: 'version' });
          out[node.id] = { ok: false, latencyMs: performance.now() - started, error };
        }
      }),
    );
    return out;
  }

  /**
   * Closes every socket. Calls still waiting get `graceMs` (default 0) to finish; the rest are
   * rejected with MemcachedConnectionError. Later calls reject too. Leaves no timers behind.
   */
  async close(graceMs = 0): Promise<void> {
    this.closed = true;
    // Gets already issued but still waiting for the tick's batch go out first.
    this.batcher?.flush();
    await this.cluster.close(graceMs);
  }

  // ------------------------------------------------------------------------------------------
  // Internals

  private intercept<T>(
    command: string,
    keys: readonly string[],
    onIgnoredError: T,
    run: () => Promise<T>,
  ): Promise<T> {
    if (this.closed) {
      return Promise.reject(
        new MemcachedConnectionError(
          `${command}: the memcached client is closed; create a new client`,
          { command },
        ),
      );
    }
    const start = (): Promise<T> => {
      try {
        return run();
      } catch (err) {
        return Promise.reject(err);
      }
    };
    const chain = this.interceptors;
    if (chain.length === 0) return start();
    const ctx: CommandContext = { command, keys, attempt: 1, fallback: onIgnoredError };
    // Each interceptor's `next` runs the rest of the chain; it may be called again (retry).
    const call = (index: number): Promise<unknown> =>
      index === chain.length ? start() : chain[index]!(ctx, () => call(index + 1));
    return call(0) as Promise<T>;
  }

  /** Sends one request to the server for `key` and records the outcome for failover. */
  private async send(
    key: string,
    kind: ReplyKind,
    command: string,
    data: Buffer | Buffer[],
    keys?: readonly string[],
    noreply = false,
  ): Promise<unknown> {
    const node = this.cluster.nodeFor(key);
    return this.sendTo(node, kind, command, data, keys, noreply);
  }

  /** Sends one request to a node, records the outcome for failover. Never throws synchronously. */
  private sendTo(
    node: ServerNode,
    kind: ReplyKind,
    command: string,
    data: Buffer | Buffer[],
    keys?: readonly string[],
    noreply = false,
  ): Promise<unknown> {
    return new Promise((resolve, reject) =>
      this.dispatch(node, kind, command, data, keys, noreply, resolve, reject),
    );
  }

  /**
   * {@link sendTo} with callbacks (the hot path: no Promise per layer). Exactly one callback is
   * called once, synchronously when the request is refused at once.
   */
  private dispatch(
    node: ServerNode,
    kind: ReplyKind,
    command: string,
    data: Buffer | Buffer[],
    keys: readonly string[] | undefined,
    noreply: boolean,
    resolve: (value: unknown) => void,
    reject: (error: unknown) => void,
  ): void {
    if (node.dead) {
      try {
        this.cluster.checkUsable(node);
      } catch (err) {
        reject(err);
        return;
      }
    }
    if (this.inFlight >= this.options.maxPending.total) {
      reject(
        new MemcachedBackpressureError(
          `${this.inFlight} calls are already waiting for memcached replies (maxPending = ${this.options.maxPending.total}); a server is stalled or slower than the request rate`,
          { server: node.id, command },
        ),
      );
      return;
    }
    this.inFlight++;
    node.pool.acquire().enqueue(
      kind,
      command,
      data,
      this.options.timeout,
      keys,
      noreply,
      (result) => {
        this.inFlight--;
        this.cluster.record(node, undefined);
        resolve(result);
      },
      (err) => {
        this.inFlight--;
        this.cluster.record(node, err);
        reject(err);
      },
    );
  }

  private getOne<T>(key: string): Promise<T | undefined> {
    if (this.batcher === undefined) {
      return this.retrieveOne('get', key, undefined).then((item) =>
        item === undefined ? undefined : (this.decode(key, item) as T | Promise<T>),
      );
    }
    return new Promise<T | undefined>((resolve, reject) => {
      let wire: string;
      let node: ServerNode;
      try {
        wire = wireKey(key, this.prefix, this.prefixBytes, 'get');
        node = this.cluster.nodeFor(key);
      } catch (err) {
        reject(err);
        return;
      }
      // One Promise per get: the batcher calls back with the item, decoded here.
      this.batcher!.get(
        node,
        wire,
        (item) => {
          if (item === undefined) {
            resolve(undefined);
            return;
          }
          try {
            resolve(this.decode(key, item) as T | Promise<T>);
          } catch (err) {
            reject(err);
          }
        },
        reject,
      );
    });
  }

  private async retrieveOne(
    command: 'get' | 'gets' | 'gat',
    key: string,
    ttl: number | undefined,
  ): Promise<RetrievedItem | undefined> {
    const k = wireKey(key, this.prefix, this.prefixBytes, command);
    const keys = [k];
    const items = (await this.send(
      key,
      'retrieval',
      command,
      encodeRetrieval(command, keys, ttl),
      keys,
    )) as RetrievedItem[];
    return items[0];
  }

  /** Validates all keys, then one pipelined batch per server; returns user key → item. */
  /**
   * Validates all keys, then one pipelined batch per server (chunks of MULTI_GET_CHUNK keys),
   * and decodes the hits into a Map as they arrive (waiting only for values that decompress
   * off-thread). A key listed twice is asked twice; the Map keeps one entry.
   */
  private async retrieveMany<V>(
    command: 'get' | 'gets',
    method: string,
    keys: readonly string[],
    wrap: (value: unknown, item: RetrievedItem) => V,
  ): Promise<Map<string, V>> {
    const out = new Map<string, V>();
    if (keys.length === 0) return out;
    // Wire keys grouped by server; `users` holds the user key for each wire key.
    const groups = new Map<ServerNode, { wires: string[]; users: string[] }>();
    for (const key of keys) {
      const wire = wireKey(key, this.prefix, this.prefixBytes, method);
      const node = this.cluster.nodeFor(key);
      const group = groups.get(node);
      if (group === undefined) groups.set(node, { wires: [wire], users: [key] });
      else {
        group.wires.push(wire);
        group.users.push(key);
      }
    }
    const failures: Array<[ServerNode, unknown]> = [];
    let waits: Array<Promise<void>> | undefined;
    const take = (key: string, item: RetrievedItem): void => {
      const value = this.decode(key, item);
      if (value instanceof Promise) {
        (waits ??= []).push(value.then((v: unknown) => void out.set(key, wrap(v, item))));
      } else {
        out.set(key, wrap(value, item));
      }
    };
    await Promise.all(
      [...groups].map(async ([node, { wires, users }]) => {
        const requests: Array<Promise<unknown>> = [];
        for (let i = 0; i < wires.length; i += MULTI_GET_CHUNK) {
          const chunk =
            wires.length <= MULTI_GET_CHUNK ? wires : wires.slice(i, i + MULTI_GET_CHUNK);
          requests.push(
            this.sendTo(node, 'retrieval', command, encodeRetrieval(command, chunk), chunk),
          );
        }
        try {
          const replies = (await Promise.all(requests)) as RetrievedItem[][];
          for (let r = 0; r < replies.length; r++) {
            const base = r * MULTI_GET_CHUNK;
            for (const item of replies[r]!) take(users[base + item.index]!, item);
          }
        } catch (err) {
          failures.push([node, err]);
        }
      }),
    );
    this.settleFailures(method, failures);
    if (waits !== undefined) await Promise.all(waits);
    return out;
  }

  private store(
    command: StorageCommand,
    key: string,
    value: unknown,
    opts: StorageOptions | undefined,
    cas?: string,
  ): Promise<boolean> {
    return this.intercept(command, [key], false, () => {
      // Everything is checked and encoded before anything is sent; synchronous unless the value
      // is compressed off-thread.
      const k = wireKey(key, this.prefix, this.prefixBytes, command);
      const ttl =
        opts?.ttl === undefined ? this.options.defaultTtl : checkTtl(opts.ttl, command, key);
      const noreply = checkNoreply(opts?.noreply, command);
      const token = cas === undefined ? undefined : checkCas(cas, command, key);
      const raw = command === 'append' || command === 'prepend';
      const encoded = raw ? this.rawBytes(command, key, value) : this.encode(command, key, value);
      const write = (e: Encoded): Promise<boolean> =>
        this.sendTo(
          this.cluster.nodeFor(key),
          'storage',
          command,
          encodeStorage(command, k, e.flags, ttl, e.data, token, noreply),
          undefined,
          noreply,
        ).then(isStored);
      return encoded instanceof Promise ? encoded.then(write) : write(encoded);
    });
  }

  private async storeMany(
    pairs: ReadonlyArray<readonly [string, unknown]>,
    opts: StorageOptions | undefined,
  ): Promise<string[]> {
    if (pairs.length === 0) return [];
    const ttl = opts?.ttl === undefined ? this.options.defaultTtl : checkTtl(opts.ttl, 'setMany');
    const noreply = checkNoreply(opts?.noreply, 'setMany');
    // Everything is validated and encoded before anything is sent.
    const wire = pairs.map(([key]) => wireKey(key, this.prefix, this.prefixBytes, 'setMany'));
    const encoded = await Promise.all(
      pairs.map(([key, value]) => this.encode('setMany', key, value)),
    );
    const results = await this.fanOut(
      'setMany',
      pairs.map(([key], i) => ({
        key,
        kind: 'storage' as const,
        data: encodeStorage(
          'set',
          wire[i]!,
          encoded[i]!.flags,
          ttl,
          encoded[i]!.data,
          undefined,
          noreply,
        ),
        noreply,
      })),
    );
    const notStored: string[] = [];
    // A plain loop: entries of a failed server are holes in the array, which forEach skips.
    for (let i = 0; i < pairs.length; i++) {
      const r = results[i];
      if (r !== 'STORED' && r !== true) notStored.push(pairs[i]![0]);
    }
    return notStored;
  }

  /**
   * Sends one request per key, grouped by server (pipelined, servers in parallel). Results come
   * back in input order; a failed server's entries stay `undefined` when its errors are ignored
   * (`ignoreErrors`), otherwise the call rejects naming the failed servers.
   */
  private async fanOut(
    method: string,
    requests: ReadonlyArray<{
      key: string;
      kind: ReplyKind;
      data: Buffer | Buffer[];
      noreply?: boolean;
    }>,
  ): Promise<unknown[]> {
    const results = new Array<unknown>(requests.length);
    const failures: Array<[ServerNode, unknown]> = [];
    const byNode = new Map<ServerNode, number[]>();
    requests.forEach((r, i) => {
      const node = this.cluster.nodeFor(r.key);
      const list = byNode.get(node);
      if (list === undefined) byNode.set(node, [i]);
      else list.push(i);
    });
    await Promise.all(
      [...byNode].map(async ([node, indexes]) => {
        const settled = await Promise.allSettled(
          indexes.map((i) => {
            const r = requests[i]!;
            const command = r.kind === 'delete' ? 'delete' : 'set';
            return this.sendTo(node, r.kind, command, r.data, undefined, r.noreply ?? false);
          }),
        );
        let failed: unknown;
        settled.forEach((s, j) => {
          if (s.status === 'fulfilled') results[indexes[j]!] = s.value;
          else failed ??= s.reason;
        });
        if (failed !== undefined) failures.push([node, failed]);
      }),
    );
    this.settleFailures(method, failures);
    return results;
  }

  /**
   * Failed servers of a multi-server call: with `ignoreErrors` their part counts as missed / not
   * stored (and is reported); otherwise the call rejects naming them.
   */
  private settleFailures(method: string, failures: Array<[ServerNode, unknown]>): void {
    if (failures.length === 0) return;
    if (!this.options.ignoreErrors || !failures.every(([, err]) => isIgnorableError(err))) {
      throw this.multiServerError(method, failures);
    }
    for (const [, err] of failures) {
      this.emit('ignoredError', { command: method, error: err as MemcachedError });
    }
  }

  private multiServerError(method: string, failures: Array<[ServerNode, unknown]>): MemcachedError {
    if (failures.length === 1 && failures[0]![1] instanceof MemcachedError) {
      return failures[0]![1];
    }
    const first = failures[0]![1];
    const detail = failures
      .map(([node, err]) => `${node.id}: ${err instanceof Error ? err.message : String(err)}`)
      .join('; ');
    const Ctor = (first instanceof MemcachedError ? first.constructor : MemcachedError) as new (
      message: string,
      options: { command: string; cause: unknown; server?: string },
    ) => MemcachedError;
    return new Ctor(`${method} failed on ${failures.length} servers: ${detail}`, {
      command: method,
      cause: first,
    });
  }

  private async onEveryServer(
    method: string,
    kind: ReplyKind,
    data: Buffer,
  ): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = {};
    const failures: Array<[ServerNode, unknown]> = [];
    const command = method === 'flushAll' ? 'flush_all' : method;
    await Promise.all(
      this.cluster.all.map(async (node) => {
        try {
          out[node.id] = await this.sendTo(node, kind, command, data);
        } catch (err) {
          failures.push([node, err]);
        }
      }),
    );
    this.settleFailures(method, failures);
    return out;
  }

  private async arith(
    command: 'incr' | 'decr',
    key: string,
    delta: number | bigint,
  ): Promise<number | bigint | undefined> {
    return this.intercept(command, [key], undefined, async () => {
      const k = wireKey(key, this.prefix, this.prefixBytes, command);
      const d = checkDelta(delta, command, key);
      const result = (await this.send(key, 'arith', command, encodeArith(command, k, d))) as
        bigint | undefined;
      if (result === undefined) return undefined;
      if (typeof delta === 'bigint') return result;
      if (result > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new MemcachedValueError(
          `${command} "${key}": the new value ${result} is above Number.MAX_SAFE_INTEGER and cannot be returned as a number (the server applied it); pass a bigint delta to get exact bigint results`,
          { command, value: result },
        );
      }
      return Number(result);
    });
  }

  private rawBytes(command: string, key: string, value: unknown): Encoded {
    let data: Buffer;
    if (typeof value === 'string') data = Buffer.from(value, 'utf8');
    else if (Buffer.isBuffer(value)) data = value;
    else {
      throw new MemcachedValueError(
        `${command} "${key}": value must be a string or a Buffer (raw bytes are appended), got ${value === null ? 'null' : typeof value}`,
        { command },
      );
    }
    this.checkSize(command, key, data.length);
    return { data, flags: 0 };
  }

  /** Serializes (and maybe compresses) a value; a Promise only when compression runs off-thread. */
  private encode(command: string, key: string, value: unknown): Encoded | Promise<Encoded> {
    let serialized;
    try {
      serialized = this.options.serde.serialize(key, value);
    } catch (err) {
      if (err instanceof MemcachedError) throw err;
      throw new MemcachedValueError(
        `${command} "${key}": the serde could not serialize the value: ${err instanceof Error ? err.message : String(err)}`,
        { command, cause: err },
      );
    }
    const { value: data, flags } = serialized ?? ({} as { value: undefined; flags: undefined });
    if (!Buffer.isBuffer(data) || !Number.isInteger(flags) || flags! < 0 || flags! > 0xffffffff) {
      throw new MemcachedSerdeError(
        `${command} "${key}": serde.serialize must return { value: Buffer, flags: 32-bit unsigned integer }`,
        { command },
      );
    }
    const compression = this.options.compression;
    if (compression !== undefined && data.length >= compression.threshold) {
      const packed = compress(data, compression);
      const finish = (result: Buffer | undefined): Encoded =>
        this.sized(
          command,
          key,
          result ?? data,
          result === undefined ? flags! : flags! | FLAG_COMPRESSED,
        );
      return packed instanceof Promise ? packed.then(finish) : finish(packed);
    }
    return this.sized(command, key, data, flags!);
  }

  private sized(command: string, key: string, data: Buffer, flags: number): Encoded {
    this.checkSize(command, key, data.length);
    return { data, flags };
  }

  private checkSize(command: string, key: string, size: number): void {
    if (size > this.options.maxValueSize) {
      throw new MemcachedValueError(
        `${command} "${key}": value is ${size} bytes${this.options.compression ? ' (after compression)' : ''}, over maxValueSize (${this.options.maxValueSize} bytes); store smaller values or raise maxValueSize and the server's -I`,
        { command },
      );
    }
  }

  /** Deserializes an item; synchronous unless the value must be decompressed off-thread. */
  private decode(key: string, item: RetrievedItem): unknown {
    const flags = item.flags;
    if ((flags & FLAG_COMPRESSED) !== 0) {
      const inflated = decompress(
        key,
        item.data,
        Math.max(MAX_DECOMPRESSED, this.options.maxValueSize),
      );
      const rest = flags & ~FLAG_COMPRESSED;
      return inflated instanceof Promise
        ? inflated.then((data) => this.deserialize(key, data, rest, flags))
        : this.deserialize(key, inflated, rest, flags);
    }
    return this.deserialize(key, item.data, flags, flags);
  }

  private deserialize(key: string, data: Buffer, flags: number, storedFlags: number): unknown {
    try {
      return this.options.serde.deserialize(key, data, flags);
    } catch (err) {
      if (err instanceof MemcachedError) throw err;
      throw new MemcachedSerdeError(
        `could not deserialize the value of "${key}" (flags ${storedFlags}): ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
  }
}

function isStored(status: unknown): boolean {
  return status === true || status === 'STORED';
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
    {
      command: 'setMany',
    },
  );
}

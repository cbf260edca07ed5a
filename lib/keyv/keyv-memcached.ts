import { EventEmitter } from 'node:events';
import { MemcachedClient } from '../client/memcached-client.js';
import { MemcachedError, MemcachedKeyError, MemcachedOptionsError } from '../errors.js';
import type { MemcachedOptions } from '../options.js';
import { KeyForms, isGeneration, newGeneration } from './keys.js';
import { toExptime } from './ttl.js';

/** Something that holds a {@link MemcachedClient}, such as `MemcachedService`. */
export interface MemcachedClientHolder {
  readonly client: MemcachedClient;
}

/** What {@link KeyvMemcached} takes: a client, a `MemcachedService`, or options for a new client. */
export type KeyvMemcachedSource = MemcachedClient | MemcachedClientHolder | MemcachedOptions;

/** Keyv's stored envelope when its serialization is turned off. */
export interface KeyvEnvelope<Value> {
  value?: Value;
  expires?: number | undefined;
}

/** What Keyv stores: its serialized string, or the envelope itself without serialization. */
export type KeyvStored<Value> = Value | KeyvEnvelope<Value>;

/** One entry of {@link KeyvMemcached.setMany}; `ttl` in milliseconds, as Keyv passes it. */
export interface KeyvMemcachedEntry {
  key: string;
  value: unknown;
  ttl?: number | undefined;
}

/** {@link KeyvMemcached.opts}: what Keyv reads from a store. */
export interface KeyvMemcachedOpts {
  /** `memcache://` and the client's servers, comma-separated. */
  url: string;
  dialect: 'memcache';
  [option: string]: unknown;
}

function isHolder(source: unknown): source is MemcachedClientHolder {
  return (
    typeof source === 'object' &&
    source !== null &&
    'client' in source &&
    (source as { client: unknown }).client instanceof MemcachedClient
  );
}

/** A client or service of another copy of this package (instanceof fails across copies). */
function looksLikeClient(source: object): boolean {
  const v = source as Record<string, unknown>;
  const inner = v['client'] as Record<string, unknown> | undefined;
  return (
    (typeof v['getMany'] === 'function' && typeof v['close'] === 'function') ||
    (typeof inner === 'object' && inner !== null && typeof inner['getMany'] === 'function')
  );
}

/**
 * Whether the value Keyv stored is a hit now: present, and not past the `expires` of Keyv's
 * envelope when that can be read (the envelope itself, or a JSON text with a numeric top-level
 * `expires`, which is what Keyv's serializers write). Memcached keeps an item up to a second
 * longer than its TTL in milliseconds (TTLs are rounded up), so the envelope decides.
 */
function unexpired(stored: unknown, now: number): boolean {
  if (stored === undefined || stored === null) return false;
  let envelope: unknown = stored;
  if (typeof stored === 'string') {
    try {
      envelope = JSON.parse(stored);
    } catch {
      return true;
    }
  }
  if (typeof envelope === 'object' && envelope !== null) {
    const expires = (envelope as { expires?: unknown }).expires;
    if (typeof expires === 'number') return !(now > expires);
  }
  return true;
}

/**
 * A Keyv 5 store adapter over a {@link MemcachedClient}:
 *
 * ```ts
 * import Keyv from 'keyv';
 * import { KeyvMemcached } from 'nestjs-memcached/keyv';
 *
 * const keyv = new Keyv({ store: new KeyvMemcached({ servers: '127.0.0.1:11211' }) });
 * ```
 *
 * - `new KeyvMemcached(client | service)` shares that client: `disconnect()` leaves it open (its
 *   owner closes it). `new KeyvMemcached(options)` creates a client and `disconnect()` closes it.
 * - Values are stored as Keyv hands them over (its serialized string) and returned as stored.
 * - TTLs are Keyv's milliseconds, rounded up to whole seconds; over 30 days they are sent as
 *   absolute unix times. A negative or non-finite TTL rejects with MemcachedValueError.
 * - `clear()` clears this store's namespace only, with no `flush_all`: every namespace has a
 *   generation (the key `kg:<namespace>`) that is part of the key of each of its values;
 *   `clear()` replaces it, so the old values are never read again (memcached drops them by TTL
 *   or LRU). Every operation reads the generation alongside its own keys (in the same
 *   multi-get, or in parallel), so a `clear()` by any process is seen at once.
 * - `getMany`, `setMany`, `deleteMany`, `hasMany`: one pipelined request per server.
 * - Keys memcached cannot take (over 250 bytes with the prefixes, or with whitespace or control
 *   characters) are stored under their SHA-256 (see the README).
 */
export class KeyvMemcached extends EventEmitter {
  /** Set by Keyv (`'keyv'` unless configured); the namespace `clear()` clears. */
  namespace?: string | undefined;
  /** What Keyv reads from a store; there is no `iterator` (memcached cannot list keys). */
  readonly opts: KeyvMemcachedOpts;
  /** The client this store talks through. */
  readonly client: MemcachedClient;
  /** Whether this store created its client, and so closes it in `disconnect()`. */
  readonly ownsClient: boolean;
  private readonly keys: KeyForms;
  /** The last generation seen per namespace. */
  private readonly generations = new Map<string, string>();
  /** Generation reads in flight per namespace, shared by concurrent first calls. */
  private readonly loading = new Map<string, Promise<string>>();
  private closing: Promise<void> | undefined;

  constructor(source: KeyvMemcachedSource = {}) {
    super();
    if (source instanceof MemcachedClient) {
      this.client = source;
      this.ownsClient = false;
    } else if (isHolder(source)) {
      this.client = source.client;
      this.ownsClient = false;
    } else if (typeof source === 'object' && source !== null && !looksLikeClient(source)) {
      this.client = new MemcachedClient(source);
      this.ownsClient = true;
    } else {
      throw new MemcachedOptionsError(
        'KeyvMemcached',
        typeof source === 'object' && source !== null
          ? 'got a client or service that is not a MemcachedClient of this copy of nestjs-memcached (is the package installed twice?)'
          : `must be a MemcachedClient, a MemcachedService or client options, got ${source === null ? 'null' : typeof source}`,
      );
    }
    this.keys = new KeyForms(this.client.options.keyPrefixBytes);
    this.opts = { url: `memcache://${this.client.servers.join(',')}`, dialect: 'memcache' };
  }

  // ------------------------------------------------------------------------------------------
  // Keyv store methods

  /** The stored value of `key`, or `undefined`. Failures also emit `error` (Keyv hides them). */
  async get<Value = unknown>(key: string): Promise<KeyvStored<Value> | undefined> {
    try {
      const [value] = await this.read('get', [this.keyOf(key, 'get')]);
      return value as KeyvStored<Value> | undefined;
    } catch (error) {
      if (this.listenerCount('error') > 0) this.emit('error', error);
      throw error;
    }
  }

  /** The stored values of `keys` (`undefined` for misses), in order; one request per server. */
  async getMany<Value = unknown>(keys: string[]): Promise<Array<KeyvStored<Value> | undefined>> {
    const list = keys.map((key) => this.keyOf(key, 'getMany'));
    return (await this.read('getMany', list)) as Array<KeyvStored<Value> | undefined>;
  }

  /** Stores `value` under `key` for `ttl` milliseconds (`undefined` or 0: no expiry). */
  async set(key: string, value: unknown, ttl?: number): Promise<boolean> {
    const k = this.keyOf(key, 'set');
    const exptime = toExptime(ttl, 'set');
    return this.write('set', (generation) =>
      this.client.set(this.keys.valueKey(generation, k), value, { ttl: exptime }),
    );
  }

  /**
   * Stores every entry: one pipelined request per server (entries with different TTLs are
   * separate requests in the same write). Every key and TTL is checked before anything is sent.
   * Resolves when every entry is stored (Keyv 5's contract: `Promise<void>`); rejects when one
   * was not (with the client's `ignoreErrors`, a failed server's entries are not stored), and
   * Keyv then reports `false` for each entry and emits the error.
   */
  async setMany(entries: KeyvMemcachedEntry[]): Promise<void> {
    const prepared = entries.map((entry) => ({
      key: this.keyOf(entry?.key, 'setMany'),
      value: entry.value,
      exptime: toExptime(entry.ttl, 'setMany'),
    }));
    if (prepared.length === 0) return;
    const notStored = await this.write('setMany', async (generation) => {
      // The last entry of a key wins, as if they were stored one after the other.
      const last = new Map<string, number>();
      prepared.forEach((entry, i) => last.set(this.keys.valueKey(generation, entry.key), i));
      const byTtl = new Map<number, Map<string, unknown>>();
      for (const [key, i] of last) {
        const { exptime, value } = prepared[i]!;
        let group = byTtl.get(exptime);
        if (group === undefined) byTtl.set(exptime, (group = new Map()));
        group.set(key, value);
      }
      const results = await Promise.all(
        [...byTtl].map(([ttl, group]) => this.client.setMany(group, { ttl })),
      );
      return results.flat();
    });
    if (notStored.length > 0) {
      throw new MemcachedError(
        `setMany: ${notStored.length} of ${prepared.length} entries were not stored (${notStored.slice(0, 3).join(', ')}${notStored.length > 3 ? ', …' : ''})`,
        { command: 'setMany' },
      );
    }
  }

  /** Deletes `key`; `false` when it was not there. */
  async delete(key: string): Promise<boolean> {
    const k = this.keyOf(key, 'delete');
    return this.write('delete', (generation) =>
      this.client.delete(this.keys.valueKey(generation, k)),
    );
  }

  /**
   * Deletes `keys` (one request per server); `true` when every one of them was there, as Keyv
   * answers for stores without `deleteMany`.
   */
  async deleteMany(keys: string[]): Promise<boolean> {
    const list = keys.map((key) => this.keyOf(key, 'deleteMany'));
    return this.write('deleteMany', async (generation) => {
      const unique = new Set(list.map((key) => this.keys.valueKey(generation, key)));
      return (await this.client.deleteMany(unique)) === unique.size;
    });
  }

  /**
   * Empties this store's namespace: a new generation replaces the namespace's generation, so no
   * value stored before is read again. Other namespaces, and keys not written through Keyv, are
   * untouched; `flush_all` is never sent.
   */
  async clear(): Promise<void> {
    const namespace = this.namespaceOf();
    const key = this.keys.generationKey(namespace);
    const generation = newGeneration();
    if (!(await this.client.set(key, generation))) {
      throw new MemcachedError(
        `clear: the server did not store the new generation of namespace ${JSON.stringify(namespace)} (key "${key}")`,
        { command: 'clear' },
      );
    }
    this.generations.set(namespace, generation);
  }

  /** Whether `key` holds a value that has not expired (read with a get: memcached has no exists). */
  async has(key: string): Promise<boolean> {
    const [stored] = await this.read('has', [this.keyOf(key, 'has')]);
    return unexpired(stored, Date.now());
  }

  /** {@link has} for many keys, one request per server. */
  async hasMany(keys: string[]): Promise<boolean[]> {
    const stored = await this.read(
      'hasMany',
      keys.map((key) => this.keyOf(key, 'hasMany')),
    );
    const now = Date.now();
    return stored.map((value) => unexpired(value, now));
  }

  /**
   * Closes the client if this store created it (from options); a client or service it was given
   * stays open for its owner to close. Nest's CacheModule calls this on module destroy.
   */
  disconnect(): Promise<void> {
    if (!this.ownsClient) return Promise.resolve();
    this.closing ??= this.client.close();
    return this.closing;
  }

  // ------------------------------------------------------------------------------------------
  // Internals

  private namespaceOf(): string {
    return typeof this.namespace === 'string' ? this.namespace : '';
  }

  /**
   * The Keyv key with this store's namespace: Keyv 5 prefixes `namespace:` itself; a key without
   * it (Keyv's `useKeyPrefix: false`, or a caller of the store itself) gets it here, so that
   * equal keys of two namespaces never share a memcached key.
   */
  private keyOf(key: unknown, command: string): string {
    if (typeof key !== 'string') {
      throw new MemcachedKeyError(
        `${command}: key must be a string, got ${key === null ? 'null' : typeof key}`,
        key,
        { command },
      );
    }
    const namespace = this.namespace;
    if (typeof namespace !== 'string' || namespace === '' || key.startsWith(`${namespace}:`)) {
      return key;
    }
    return `${namespace}:${key}`;
  }

  /** Reads the generation of `namespace`, creating it when there is none. */
  private loadGeneration(namespace: string, command: string): Promise<string> {
    let pending = this.loading.get(namespace);
    if (pending === undefined) {
      const key = this.keys.generationKey(namespace);
      pending = this.client
        .get(key)
        .then((found) => this.checkGeneration(found, key, command) ?? this.create(key, command))
        .then((generation) => {
          this.generations.set(namespace, generation);
          return generation;
        })
        .finally(() => this.loading.delete(namespace));
      this.loading.set(namespace, pending);
    }
    return pending;
  }

  /**
   * Creates the generation key (with `add`, so a generation another process created meanwhile is
   * kept). A namespace whose generation key was evicted gets a new generation: it reads as
   * cleared, never as old values.
   */
  private async create(key: string, command: string): Promise<string> {
    const generation = newGeneration();
    if (await this.client.add(key, generation)) return generation;
    const found = this.checkGeneration(await this.client.get(key), key, command);
    if (found !== undefined) return found;
    throw new MemcachedError(
      `${command}: could neither read nor create the generation key "${key}"`,
      { command },
    );
  }

  private checkGeneration(found: unknown, key: string, command: string): string | undefined {
    if (found === undefined || isGeneration(found)) return found;
    throw new MemcachedError(
      `${command}: the generation key "${key}" holds a value this store did not write; call clear() to replace it`,
      { command },
    );
  }

  /** The generation now in force, given what a read of its key found. */
  private async current(
    namespace: string,
    found: unknown,
    key: string,
    command: string,
  ): Promise<string> {
    const generation =
      this.checkGeneration(found, key, command) ?? (await this.create(key, command));
    this.generations.set(namespace, generation);
    return generation;
  }

  /**
   * The stored values of `keys`: one multi-get that also reads the namespace's generation. When
   * the generation differs from the one the keys were built with (a `clear()` meanwhile), the
   * keys are read again in the current one.
   */
  private async read(command: string, keys: readonly string[]): Promise<unknown[]> {
    const namespace = this.namespaceOf();
    const known = this.generations.get(namespace);
    let generation: string;
    if (known === undefined) {
      generation = await this.loadGeneration(namespace, command);
    } else {
      const generationKey = this.keys.generationKey(namespace);
      const valueKeys = keys.map((key) => this.keys.valueKey(known, key));
      const found = await this.client.getMany(new Set([generationKey, ...valueKeys]));
      generation = await this.current(namespace, found.get(generationKey), generationKey, command);
      if (generation === known) return valueKeys.map((key) => found.get(key));
    }
    const valueKeys = keys.map((key) => this.keys.valueKey(generation, key));
    const found = await this.client.getMany(new Set(valueKeys));
    return valueKeys.map((key) => found.get(key));
  }

  /**
   * Runs a write in the namespace's generation while reading the generation in parallel; runs
   * it again in the current generation when they differ (what was written in the old one is
   * never read).
   */
  private async write<T>(command: string, run: (generation: string) => Promise<T>): Promise<T> {
    const namespace = this.namespaceOf();
    const known = this.generations.get(namespace);
    if (known === undefined) return run(await this.loadGeneration(namespace, command));
    const generationKey = this.keys.generationKey(namespace);
    const [result, found] = await Promise.all([run(known), this.client.get(generationKey)]);
    const generation = await this.current(namespace, found, generationKey, command);
    return generation === known ? result : run(generation);
  }
}

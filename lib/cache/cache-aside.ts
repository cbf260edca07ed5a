import type { LeasedItem, RetrievedItem } from '../protocol/request.js';
import type { MemcachedProtocol } from '../options.js';
import { LEASE_DEFAULTS, type CachePolicy } from './options.js';
import type { MemcachedCacheOutcome } from '../observability/channels.js';
import { publishCacheOutcome } from '../observability/events.js';
import { isEnvelope, parseEnvelope, TaggedValue, type Envelope } from './tags.js';

/**
 * What the cache-aside flow needs from a client. The client implements it with its internal
 * calls (they neither mark flights written, nor go through its public methods), so the flow's
 * own writes never cancel themselves.
 */
export interface CacheBackend {
  readonly protocol: MemcachedProtocol;
  /** The client's defaultTtl, used when a call gives no ttl. */
  readonly defaultTtl: number;
  /** A plain read (text protocol). */
  get(key: string): Promise<unknown>;
  /** A plain write (text protocol). */
  set(key: string, value: unknown, ttl: number | undefined): Promise<boolean>;
  /** `mg <key> v f c k [N<vivify>] [R<recache>] t`: the item and its lease state, or a miss. */
  lease(
    key: string,
    vivify: number | undefined,
    recache: number | undefined,
  ): Promise<LeasedItem | undefined>;
  /** The value of a leased item (may decompress off-thread). */
  decode(key: string, item: LeasedItem): unknown;
  /** Stores a computed value: `cas` (only while the item is unchanged), `add` or `set`. */
  fill(
    key: string,
    value: unknown,
    ttl: number,
    mode: 'cas' | 'add' | 'set',
    cas: string | undefined,
  ): Promise<unknown>;
  /** Stores an item's bytes again (same flags) while its cas matches: clears a refresh token. */
  rearm(key: string, item: LeasedItem, ttl: number): Promise<unknown>;
  /** `md <key> C<cas>`: deletes a placeholder while it is still the one we hold. */
  release(key: string, cas: string): Promise<boolean>;
  /** `md <key> I [T<ttl>] [C<cas>]`: marks stale, bumps the cas and clears the token. */
  invalidate(key: string, ttl: number | undefined, cas: string | undefined): Promise<boolean>;
  /** Waits `ms`; rejects when the client closes. */
  sleep(ms: number): Promise<void>;
  /** Tag invalidation (absent: tagged calls bypass the cache, reported). */
  readonly tags?: TagBackend;
}

/** What tagged getOrSet calls need (see lib/cache/tags.ts). */
export interface TagBackend {
  /** The version key of each tag (without keyPrefix). */
  keys(tags: readonly string[]): string[];
  /**
   * Reads `key` (with its cas; none when undefined) and the version keys in one round trip per
   * server; `versions[i]` is the current version of `tagKeys[i]`, undefined when it is missing.
   */
  read(
    key: string | undefined,
    tagKeys: readonly string[],
  ): Promise<{ item: RetrievedItem | undefined; versions: Array<string | undefined> }>;
  /**
   * Creates the missing version keys with new random versions (`add`, one round trip per
   * server); a key someone else created meanwhile is read again. Resolves to the version in
   * force of each key, undefined when it could not be had.
   */
  create(tagKeys: readonly string[]): Promise<Array<string | undefined>>;
  /** The value of an envelope's inner item (may decompress off-thread). */
  decode(key: string, flags: number, data: Buffer): unknown;
  /** Stores `value` in an envelope with `versions`: `add`, `cas` (with `cas`) or `set`. */
  fill(
    key: string,
    value: unknown,
    ttl: number,
    mode: 'cas' | 'add' | 'set',
    cas: string | undefined,
    versions: ReadonlyArray<readonly [string, string]>,
  ): Promise<unknown>;
}

/** One call's side of the flow: how to report failures, and what not to store. */
export interface CacheCall {
  /** Reports a cache failure (the call goes on without the cache). */
  report(doing: string, error: unknown): void;
  /** `true` → the result is returned but not stored. */
  unless?: (value: unknown) => boolean;
  /** What is cached, for messages (e.g. `ProductsService.findOne`). */
  label?: string;
  /** Called for a result that cannot be cached (an Observable, a stream); it is not stored. */
  onUncacheable?: (value: unknown) => void;
}

interface Flight {
  promise: Promise<unknown>;
  /** Set when the key was written or evicted meanwhile: the result must not be stored. */
  stale: boolean;
  /** The version keys of its tags (tagged calls). */
  tagKeys: readonly string[] | undefined;
}

/** One run of the flow. */
interface Job {
  readonly key: string;
  readonly compute: () => unknown;
  readonly policy: CachePolicy;
  readonly call: CacheCall;
  /** Undefined for a background refresh (it is not part of a flight). */
  readonly flight: Flight | undefined;
  /**
   * Tagged calls on the meta flow: the version of each tag read before computing, stored with
   * the value (an envelope); null when one could not be had (nothing is stored).
   */
  readonly versions?: ReadonlyArray<readonly [string, string]> | null;
}

/** What a caller that computes holds, and so must give back when it stores nothing. */
type Held =
  /** The empty placeholder of a lease (`md <key> C<cas>` deletes it). */
  | 'placeholder'
  /** The refresh token of a stale item (`md <key> I C<cas>` hands it on). */
  | 'stale'
  /** The recache token of a live item (storing its bytes again clears it). */
  | 'recache'
  | undefined;

/**
 * Waits between two polls of a lease, ms: from the first, ×1.5 each time (±20% jitter) up to the
 * longest. A value is seen at most about half its computing time late, for one small `mg` per
 * poll and process (the callers of one process share one poll).
 */
const POLL_FIRST_MS = 20;
const POLL_GROWTH = 1.5;
const POLL_MAX_MS = 500;

/**
 * Whether `value` is something that cannot be cached: an Observable/Subject (`subscribe`), a
 * stream (`pipe`) or a Nest `StreamableFile` (`getStream`).
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

/**
 * Cache-aside with single flight: concurrent calls of one key in this process share one run of
 * the flow, and writes of the key (through the client) mark a running flow so that its result
 * is not stored.
 *
 * - Text protocol: read; on a miss compute, then store.
 * - Meta protocol: one `mg` tells a value from a lease placeholder or a stale item. With `lease`
 *   a miss creates a placeholder (`N`) and only its creator — across every process — computes;
 *   the others poll with backoff up to `wait`, then compute themselves. With
 *   `staleWhileRevalidate`, values live `ttl + swr` seconds and the first reader past `ttl`
 *   (`R`), or of an invalidated value, refreshes it in the background while everyone gets the
 *   old value. Computed values are stored with the placeholder's cas (`ms … C<cas>`), or in add
 *   mode after a plain miss, so a write, delete or invalidation made meanwhile wins. A factory
 *   that throws, or a result that is not stored, gives the token back at once.
 * - Tags (every protocol): the key and its tags' version keys are read together, and a value
 *   is a hit only while its envelope carries the current versions (see taggedFlow; with a
 *   lease or stale-while-revalidate, the meta flow above with the same check).
 */
export class CacheAside {
  private readonly flights = new Map<string, Flight>();

  constructor(private readonly backend: CacheBackend) {}

  /** Runs the flow for `key`, joining the flight in progress for it, if any. */
  run(key: string, compute: () => unknown, policy: CachePolicy, call: CacheCall): Promise<unknown> {
    const existing = this.flights.get(key);
    if (existing !== undefined) {
      publishCacheOutcome(key, 'coalesced');
      return existing.promise;
    }
    const tags = policy.tags;
    let tagKeys: readonly string[] | undefined;
    if (tags !== undefined && tags.length > 0) {
      tagKeys = this.backend.tags?.keys(tags) ?? [];
    }
    const flight: Flight = { promise: Promise.resolve(), stale: false, tagKeys };
    const job: Job = { key, compute, policy, call, flight };
    flight.promise = (async () => {
      try {
        const leases = policy.lease !== undefined || policy.staleWhileRevalidate > 0;
        if (tagKeys !== undefined && !(leases && this.backend.protocol === 'meta')) {
          return await this.taggedFlow(job, tagKeys);
        }
        return this.backend.protocol === 'meta'
          ? await this.metaFlow(job, tagKeys)
          : await this.textFlow(job);
      } finally {
        if (this.flights.get(key) === flight) this.flights.delete(key);
      }
    })();
    this.flights.set(key, flight);
    return flight.promise;
  }

  /**
   * `key` was written, deleted or invalidated (every key when undefined): a value being computed
   * for it must not be stored, and later calls start a new flight.
   */
  written(key?: string): void {
    if (this.flights.size === 0) return;
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

  /**
   * Tags were invalidated (their version keys given): values being computed under any of them
   * are not stored, and later calls start a new flight.
   */
  tagsInvalidated(tagKeys: readonly string[]): void {
    if (this.flights.size === 0) return;
    const set = new Set(tagKeys);
    for (const [key, flight] of this.flights) {
      if (flight.tagKeys !== undefined && flight.tagKeys.some((k) => set.has(k))) {
        flight.stale = true;
        this.flights.delete(key);
      }
    }
  }

  /** Number of flights in progress (for tests and introspection). */
  get inFlight(): number {
    return this.flights.size;
  }

  // -------------------------------------------------------------------------------------------

  private async textFlow(job: Job): Promise<unknown> {
    const { key, call } = job;
    let hit: unknown;
    let readFailed = false;
    try {
      hit = await this.backend.get(key);
    } catch (error) {
      readFailed = true;
      call.report(`reading ${what(job)}`, error);
    }
    // A tagged value is no hit for an untagged call (its tags cannot be checked): recomputed.
    if (hit instanceof TaggedValue) hit = undefined;
    if (hit !== undefined) {
      publishCacheOutcome(key, 'hit');
      return hit;
    }
    publishCacheOutcome(key, readFailed ? 'error' : 'miss');
    const value: unknown = await job.compute();
    if (!this.storable(value, job)) return value;
    try {
      await this.backend.set(key, value, job.policy.ttl);
    } catch (error) {
      call.report(`writing ${what(job)}`, error);
    }
    return value;
  }

  /**
   * A tagged call, on every protocol: one read of the key and its tags' version keys (one round
   * trip per server); a hit only when the value's envelope carries exactly these tags, each with
   * its current version. On a miss, missing version keys are created first, then the factory
   * runs, and its result is stored with the versions read BEFORE it ran: a tag invalidated
   * meanwhile (a new version) makes it read back as a miss. It is stored in add mode after a
   * plain miss and with the cas of the item read otherwise, so a write made meanwhile wins.
   */
  private async taggedFlow(job: Job, tagKeys: readonly string[]): Promise<unknown> {
    const { key, call } = job;
    const tags = this.backend.tags;
    if (tags === undefined || tagKeys.length === 0) {
      publishCacheOutcome(key, 'error');
      call.report(
        `reading ${what(job)}`,
        new Error('tags need a MemcachedClient of this package; the cache is bypassed'),
      );
      return job.compute();
    }
    let read: Awaited<ReturnType<TagBackend['read']>>;
    try {
      read = await tags.read(key, tagKeys);
    } catch (error) {
      // Without the versions nothing can be checked nor stored.
      publishCacheOutcome(key, 'error');
      call.report(`reading ${what(job)}`, error);
      return job.compute();
    }
    const { item } = read;
    let versions = read.versions;
    if (item !== undefined && versions.every((v) => v !== undefined)) {
      let envelope: Envelope | undefined;
      try {
        envelope = isEnvelope(item.flags, item.data) ? parseEnvelope(key, item.data) : undefined;
      } catch (error) {
        call.report(`reading ${what(job)}`, error);
      }
      if (envelope !== undefined && sameVersions(envelope.versions, tagKeys, versions)) {
        let value: unknown = FAILED;
        try {
          value = await tags.decode(key, envelope.flags, envelope.data);
        } catch (error) {
          call.report(`reading ${what(job)}`, error);
        }
        if (value !== FAILED) {
          publishCacheOutcome(key, 'hit');
          return value;
        }
      }
    }
    publishCacheOutcome(key, 'miss');
    if (versions.some((v) => v === undefined)) {
      const missing = tagKeys.filter((_, i) => versions[i] === undefined);
      try {
        const created = await tags.create(missing);
        let j = 0;
        versions = versions.map((v) => v ?? created[j++]);
      } catch (error) {
        call.report(`creating the tag versions of ${what(job)}`, error);
      }
    }
    const value: unknown = await job.compute();
    // A version that could not be had: the value cannot be stored so that it is ever checked.
    if (versions.some((v) => v === undefined) || !this.storable(value, job)) return value;
    const cas = item?.cas;
    const mode = item === undefined ? 'add' : cas === undefined || cas === '0' ? 'set' : 'cas';
    try {
      await tags.fill(
        key,
        value,
        this.storedTtl(job.policy),
        mode,
        cas,
        tagKeys.map((k, i) => [k, versions[i]!] as const),
      );
    } catch (error) {
      call.report(`writing ${what(job)}`, error);
    }
    return value;
  }

  /** The meta protocol: see the class comment; every branch follows META.md's reply table. */
  private async metaFlow(untagged: Job, tagKeys?: readonly string[]): Promise<unknown> {
    const { key, call, policy } = untagged;
    let job = untagged;
    // Tagged: a fresh item whose envelope does not carry the current versions is marked stale
    // once (`md I C<cas>`), so that exactly one reader across every process wins its token and
    // recomputes while the others wait (lease) — the value itself is never served.
    let invalidated = false;
    const swr = policy.staleWhileRevalidate;
    const lease = policy.lease;
    const deadline = lease === undefined ? 0 : performance.now() + lease.wait;
    let delay = POLL_FIRST_MS;
    // What the first read found is published once (memcached:cache), whatever follows.
    let outcome: MemcachedCacheOutcome | undefined;
    const note = (found: MemcachedCacheOutcome): void => {
      if (outcome !== undefined) return;
      outcome = found;
      publishCacheOutcome(key, found);
    };
    for (;;) {
      let item: LeasedItem | undefined;
      let valid = true;
      try {
        if (tagKeys === undefined) {
          item = await this.backend.lease(key, lease?.ttl, swr > 0 ? swr : undefined);
        } else {
          // The item and the versions, sent together.
          const tags = this.backend.tags!;
          const [leased, read] = await Promise.all([
            this.backend.lease(key, lease?.ttl, swr > 0 ? swr : undefined),
            tags.read(undefined, tagKeys),
          ]);
          item = leased;
          const versions = await this.currentVersions(untagged, tagKeys, read.versions);
          job = { ...untagged, versions };
          valid =
            versions !== null && item !== undefined && envelopeMatches(item, tagKeys, versions);
        }
      } catch (error) {
        note('error');
        call.report(`reading ${what(job)}`, error);
        return this.computeAndFill(
          tagKeys === undefined ? job : { ...untagged, versions: null },
          'add',
          undefined,
          undefined,
        );
      }
      // A plain miss (no placeholder was asked for, or the server could not make one).
      if (item === undefined) {
        note('miss');
        return this.computeAndFill(job, 'add', undefined, undefined);
      }
      const placeholder =
        item.data.length === 0 &&
        item.tooLarge === 0 &&
        item.flags === 0 &&
        (item.win || item.contended || item.stale);
      if (placeholder && item.win) {
        // We created (or inherited) the lease: compute, store with its cas.
        note('miss');
        return this.computeAndFill(job, 'cas', item.cas, 'placeholder');
      }
      if (!placeholder && !valid) {
        // A value stored under an older version of a tag: never served.
        if (item.win) {
          note('miss');
          return this.computeAndFill(job, 'cas', item.cas, item.stale ? 'stale' : 'recache', item);
        }
        // Marked stale only once, and never again when it is already stale: a second `md I`
        // would hand the token out again (a second computation).
        if (!invalidated && !item.stale) {
          invalidated = true;
          try {
            await this.backend.invalidate(key, lease?.ttl ?? LEASE_DEFAULTS.ttl, item.cas);
          } catch (error) {
            call.report(`invalidating ${what(job)}`, error);
          }
          continue;
        }
        // Someone else holds its token: wait for the value as for a lease, or compute.
      } else if (!placeholder && (!item.stale || swr > 0)) {
        note(item.stale || item.win ? 'stale' : 'hit');
        const value = await this.decoded(job, item);
        if (value === FAILED) {
          const held = item.win ? (item.stale ? 'stale' : 'recache') : undefined;
          return this.computeAndFill(job, 'cas', item.cas, held, item);
        }
        // Past ttl within the stale window (recache token), or invalidated (stale token): the
        // token holder refreshes in the background; everyone gets this value now.
        if (item.win) this.refresh(job, item, item.stale ? 'stale' : 'recache');
        return value;
      }
      if (item.win) {
        // Invalidated, and stale values are not wanted: compute now (we hold the token).
        note('miss');
        return this.computeAndFill(job, 'cas', item.cas, 'stale');
      }
      // Someone else computes: a lease placeholder, or a stale value being refreshed.
      note(lease === undefined ? 'miss' : 'coalesced');
      const left = deadline - performance.now();
      if (lease === undefined || left <= 0) {
        // No lease to wait for, or waited long enough: compute, and store only if the item is
        // still the one we saw (a holder that died leaves its placeholder behind).
        return this.computeAndFill(job, 'cas', item.cas, undefined);
      }
      try {
        await this.backend.sleep(Math.min(left, delay * (0.8 + Math.random() * 0.4)));
      } catch (error) {
        call.report(`waiting for the lease of ${what(job)}`, error);
        return this.computeAndFill(job, 'cas', item.cas, undefined);
      }
      delay = Math.min(POLL_MAX_MS, delay * POLL_GROWTH);
    }
  }

  /**
   * The versions of `tagKeys` in force (`read`, plus new ones for those missing — created before
   * anything is computed), or null when one could not be had (reported).
   */
  private async currentVersions(
    job: Job,
    tagKeys: readonly string[],
    read: ReadonlyArray<string | undefined>,
  ): Promise<Array<readonly [string, string]> | null> {
    let versions = read;
    if (versions.some((v) => v === undefined)) {
      const missing = tagKeys.filter((_, i) => versions[i] === undefined);
      try {
        const created = await this.backend.tags!.create(missing);
        let j = 0;
        versions = versions.map((v) => v ?? created[j++]);
      } catch (error) {
        job.call.report(`creating the tag versions of ${what(job)}`, error);
      }
    }
    if (versions.some((v) => v === undefined)) return null;
    return tagKeys.map((k, i) => [k, versions[i]!] as const);
  }

  /** The decoded value of an item, or FAILED (reported) when it cannot be read. */
  private async decoded(job: Job, item: LeasedItem): Promise<unknown> {
    try {
      const value = await this.backend.decode(job.key, item);
      // A tagged value is no hit for an untagged call (its tags cannot be checked); a tagged
      // call checked them already.
      if (value instanceof TaggedValue) return job.versions == null ? FAILED : value.value;
      return value;
    } catch (error) {
      job.call.report(`reading ${what(job)}`, error);
      return FAILED;
    }
  }

  /**
   * Runs the factory and stores its result (`cas` with the item's cas, `add` after a plain miss);
   * gives back what it held when the factory throws or the result is not stored.
   */
  private async computeAndFill(
    job: Job,
    mode: 'cas' | 'add',
    cas: string | undefined,
    held: Held,
    item?: LeasedItem,
  ): Promise<unknown> {
    let value: unknown;
    try {
      value = await job.compute();
    } catch (error) {
      await this.giveBack(job, cas, held, item);
      throw error;
    }
    if (!this.storable(value, job)) {
      await this.giveBack(job, cas, held, item);
      return value;
    }
    // A server running with -C (no cas) reports cas 0, which never matches: store plainly.
    const fillMode = mode === 'cas' && (cas === undefined || cas === '0') ? 'set' : mode;
    try {
      const ttl = this.storedTtl(job.policy);
      if (job.versions != null) {
        await this.backend.tags!.fill(job.key, value, ttl, fillMode, cas, job.versions);
      } else {
        await this.backend.fill(job.key, value, ttl, fillMode, cas);
      }
    } catch (error) {
      job.call.report(`writing ${what(job)}`, error);
    }
    return value;
  }

  /** A background refresh by the holder of a recache or stale token; never rejects. */
  private refresh(job: Job, item: LeasedItem, held: 'recache' | 'stale'): void {
    // Not part of the flight: a write meanwhile changes the cas, so the refresh does not store.
    const background: Job = { ...job, flight: undefined };
    this.computeAndFill(background, 'cas', item.cas, held, item).catch((error: unknown) =>
      job.call.report(`refreshing ${what(job)} in the background`, error),
    );
  }

  /** Gives back a token or placeholder that will not be used; failures are reported. */
  private async giveBack(
    job: Job,
    cas: string | undefined,
    held: Held,
    item: LeasedItem | undefined,
  ): Promise<void> {
    if (held === undefined || cas === undefined) return;
    const b = this.backend;
    try {
      if (held === 'placeholder') await b.release(job.key, cas);
      else if (held === 'stale') await b.invalidate(job.key, undefined, cas);
      else if (item !== undefined) await b.rearm(job.key, item, Math.max(1, item.ttl));
    } catch (error) {
      job.call.report(`giving back the lease of ${what(job)}`, error);
    }
  }

  /**
   * Whether a computed value may be stored: not undefined, not a stream, not `unless`, and its
   * key not written meanwhile.
   */
  private storable(value: unknown, job: Job): boolean {
    const call = job.call;
    if (value === undefined || (job.flight !== undefined && job.flight.stale)) return false;
    // A tagged value without its versions could never be checked: not stored.
    if (job.versions === null) return false;
    if (isUncacheable(value)) {
      call.onUncacheable?.(value);
      return false;
    }
    if (call.unless !== undefined) {
      try {
        return !call.unless(value);
      } catch (error) {
        call.report(`evaluating "unless" for ${what(job)}`, error);
        return false;
      }
    }
    return true;
  }

  /** The TTL a computed value is stored with: ttl, plus the stale window. */
  private storedTtl(policy: CachePolicy): number {
    const ttl = policy.ttl ?? this.backend.defaultTtl;
    const swr = policy.staleWhileRevalidate;
    // 0 never expires (nothing goes stale); a negative ttl expires at once.
    return swr > 0 && ttl > 0 ? ttl + swr : ttl;
  }
}

const FAILED: unique symbol = Symbol('failed');

/** Whether a leased item is an envelope that carries exactly these tags and versions. */
function envelopeMatches(
  item: LeasedItem,
  tagKeys: readonly string[],
  versions: ReadonlyArray<readonly [string, string]> | null,
): boolean {
  if (versions === null || item.tooLarge !== 0 || !isEnvelope(item.flags, item.data)) return false;
  try {
    const envelope = parseEnvelope('', item.data);
    return sameVersions(
      envelope.versions,
      tagKeys,
      versions.map((v) => v[1]),
    );
  } catch {
    return false;
  }
}

/** Whether an envelope carries exactly `tagKeys`, each with the version in `versions`. */
function sameVersions(
  stored: ReadonlyMap<string, string>,
  tagKeys: readonly string[],
  versions: ReadonlyArray<string | undefined>,
): boolean {
  if (stored.size !== tagKeys.length) return false;
  for (let i = 0; i < tagKeys.length; i++) {
    const version = versions[i];
    if (version === undefined || stored.get(tagKeys[i]!) !== version) return false;
  }
  return true;
}

function what(job: Job): string {
  return job.call.label === undefined ? `"${job.key}"` : `"${job.key}" (${job.call.label})`;
}

import { MemcachedOptionsError, MemcachedValueError } from '../errors.js';
import type { MemcachedProtocol } from '../options.js';
import { checkTags } from './tags.js';

/** A lease across processes: `ttl` seconds of lifetime if its holder dies, `wait` ms for others. */
export interface LeaseOptions {
  /**
   * Seconds the lease lives if its holder dies before writing (default 30). Make it longer than
   * the factory's slowest run.
   */
  ttl?: number;
  /**
   * How long the other callers wait for the holder's value, ms (default 2000), polling with
   * backoff; then they run the factory themselves. About the factory's p99 is a good value.
   */
  wait?: number;
}

/** Options of `getOrSet` (on MemcachedClient and MemcachedService). */
export interface GetOrSetOptions<T> {
  /** TTL of the stored value in seconds (memcached semantics); default: the client's `defaultTtl`. */
  ttl?: number;
  /** Return `true` to keep a computed value out of the cache (it is still returned). */
  unless?: (value: T) => boolean;
  /**
   * Seconds after `ttl` during which the old value is still returned at once while exactly one
   * caller (across every process) recomputes it in the background. Needs `protocol: 'meta'`.
   */
  staleWhileRevalidate?: number;
  /**
   * On a miss, exactly one caller across every process and client runs the factory; the others
   * wait for its value. `true` = `{ ttl: 30, wait: 2000 }`. Needs `protocol: 'meta'`.
   */
  lease?: boolean | LeaseOptions;
  /**
   * Tags of the value: `invalidateTags(tags)` with any of them makes it a miss, on every server
   * and for every process. A tagged read fetches the value and the tags' version keys in one
   * round trip per server. Works with `lease` and `staleWhileRevalidate` (meta): a value stored
   * under an older version of a tag is never served, not even as stale.
   */
  tags?: readonly string[];
}

/** Options of `invalidate`. */
export interface InvalidateOptions {
  /**
   * Seconds the stale value may still be served (to callers with `staleWhileRevalidate`) while
   * one of them refreshes it; default 30. It bounds how long a stale value can live.
   */
  staleTtl?: number;
}

/** The lease defaults of `lease: true`. */
export const LEASE_DEFAULTS = { ttl: 30, wait: 2000 } as const;

/** Default of {@link InvalidateOptions.staleTtl}. */
export const DEFAULT_STALE_TTL = 30;

/** memcached reads a TTL above 30 days as a unix time. */
export const MAX_RELATIVE_TTL = 2_592_000;

/** getOrSet options, validated. */
export interface CachePolicy {
  /** Undefined: the client's defaultTtl. */
  ttl: number | undefined;
  /** 0 = off. */
  staleWhileRevalidate: number;
  lease: { ttl: number; wait: number } | undefined;
  /** Checked tag names (no duplicates); undefined or empty: untagged. */
  tags?: readonly string[];
}

/** The option names of getOrSet (and of the decorators that pass them on). */
const POLICY_KEYS = ['ttl', 'unless', 'staleWhileRevalidate', 'lease', 'tags'];

/**
 * Checks getOrSet options before anything is sent: numbers must be whole and in range, and
 * `lease` / `staleWhileRevalidate` need the meta protocol (MemcachedOptionsError naming
 * `protocol` otherwise). `where` prefixes messages (`getOrSet "product:1"`,
 * `@Cacheable on ProductsService.findOne`).
 */
export function resolveCachePolicy(
  opts: {
    ttl?: unknown;
    staleWhileRevalidate?: unknown;
    lease?: unknown;
    tags?: unknown;
  },
  protocol: MemcachedProtocol,
  where: string,
  keys: readonly string[] = POLICY_KEYS,
): CachePolicy {
  if (opts === null || typeof opts !== 'object') {
    throw new MemcachedValueError(`${where}: options must be an object`);
  }
  for (const name of Object.keys(opts)) {
    if (!keys.includes(name)) {
      throw new MemcachedValueError(
        `${where}: unknown option "${name}" (expected ${keys.join(', ')})`,
      );
    }
  }
  const { ttl, staleWhileRevalidate: swr, lease } = opts;
  const wantsLease = lease !== undefined && lease !== false;
  const wantsSwr = swr !== undefined && swr !== 0;
  const tags = checkTags(opts.tags, where);
  if ((wantsLease || wantsSwr) && protocol !== 'meta') {
    const what =
      wantsLease && wantsSwr
        ? 'lease and staleWhileRevalidate'
        : wantsLease
          ? 'lease'
          : 'staleWhileRevalidate';
    throw new MemcachedOptionsError(
      'protocol',
      `${where} asks for ${what}, which needs protocol: 'meta' (memcached's meta commands, memcached 1.6.10 or newer); this client uses protocol '${protocol}'`,
    );
  }
  if (
    ttl !== undefined &&
    (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < -(2 ** 31) || ttl > 2 ** 31 - 1)
  ) {
    throw new MemcachedValueError(
      `${where}: ttl must be an integer number of seconds (0 = never expires), got ${show(ttl)}`,
    );
  }
  const staleWhileRevalidate =
    swr === undefined ? 0 : whole(swr, `${where}: staleWhileRevalidate`, 0, MAX_RELATIVE_TTL, 's');
  if (
    staleWhileRevalidate > 0 &&
    typeof ttl === 'number' &&
    ttl > 0 &&
    ttl <= MAX_RELATIVE_TTL &&
    ttl + staleWhileRevalidate > MAX_RELATIVE_TTL
  ) {
    throw new MemcachedValueError(
      `${where}: ttl + staleWhileRevalidate is ${ttl + staleWhileRevalidate} s, over memcached's 30-day limit for relative TTLs (${MAX_RELATIVE_TTL} s); a longer one would be read as a unix time`,
    );
  }
  let resolvedLease: CachePolicy['lease'];
  if (lease === true) resolvedLease = { ...LEASE_DEFAULTS };
  else if (lease !== undefined && lease !== false) {
    if (lease === null || typeof lease !== 'object' || Array.isArray(lease)) {
      throw new MemcachedValueError(
        `${where}: lease must be true, false or { ttl?, wait? }, got ${show(lease)}`,
      );
    }
    for (const name of Object.keys(lease)) {
      if (name !== 'ttl' && name !== 'wait') {
        throw new MemcachedValueError(
          `${where}: unknown lease option "${name}" (expected ttl, wait)`,
        );
      }
    }
    const l = lease as LeaseOptions;
    resolvedLease = {
      // Never 0: memcached would create a placeholder that never expires.
      ttl:
        l.ttl === undefined
          ? LEASE_DEFAULTS.ttl
          : whole(l.ttl, `${where}: lease.ttl`, 1, MAX_RELATIVE_TTL, 's'),
      wait:
        l.wait === undefined
          ? LEASE_DEFAULTS.wait
          : whole(l.wait, `${where}: lease.wait`, 0, 600_000, 'ms'),
    };
  }
  return {
    ttl: ttl as number | undefined,
    staleWhileRevalidate,
    lease: resolvedLease,
    ...(tags.length > 0 ? { tags } : {}),
  };
}

/** Checks the staleTtl of invalidate. */
export function resolveStaleTtl(opts: InvalidateOptions | undefined, where: string): number {
  if (opts === undefined) return DEFAULT_STALE_TTL;
  if (opts === null || typeof opts !== 'object') {
    throw new MemcachedValueError(`${where}: options must be an object`);
  }
  for (const name of Object.keys(opts)) {
    if (name !== 'staleTtl') {
      throw new MemcachedValueError(`${where}: unknown option "${name}" (expected staleTtl)`);
    }
  }
  return opts.staleTtl === undefined
    ? DEFAULT_STALE_TTL
    : whole(opts.staleTtl, `${where}: staleTtl`, 1, MAX_RELATIVE_TTL, 's');
}

function whole(value: unknown, what: string, min: number, max: number, unit: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new MemcachedValueError(
      `${what} must be a whole number of ${unit === 's' ? 'seconds' : 'milliseconds'} from ${min} to ${max}, got ${show(value)}`,
    );
  }
  return value;
}

function show(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

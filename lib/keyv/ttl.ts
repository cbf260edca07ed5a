import { MemcachedValueError } from '../errors.js';

/** Memcached reads an exptime above this (30 days, in seconds) as an absolute unix time. */
export const MAX_RELATIVE_EXPTIME = 60 * 60 * 24 * 30;

/** The largest exptime the protocol carries (a signed 32-bit unix time: 2038-01-19). */
const MAX_EXPTIME = 2 ** 31 - 1;

/**
 * The memcached exptime for a Keyv TTL in milliseconds:
 *
 * - `undefined` (and `0`, Keyv's "no TTL") → `0`, never expires;
 * - otherwise rounded UP to whole seconds, so an item never expires in memcached before Keyv
 *   considers it expired (1 ms → 1 s; 1001 ms → 2 s; never 0, which would mean "never");
 * - up to 30 days → relative seconds; longer → the absolute unix time `now + ttl`, rounded up;
 * - negative, `NaN`, `±Infinity`, a non-number, or an expiry after 2038-01-19 (what the
 *   protocol can carry) → {@link MemcachedValueError}; nothing is sent.
 */
export function toExptime(ttl: unknown, command: string, now: number = Date.now()): number {
  if (ttl === undefined) return 0;
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl < 0) {
    throw new MemcachedValueError(
      `${command}: a Keyv ttl must be a finite, non-negative number of milliseconds (0 or undefined = never expires), got ${typeof ttl === 'number' ? String(ttl) : typeof ttl}`,
      { command },
    );
  }
  if (ttl === 0) return 0;
  // At least 1: a TTL so small that ttl / 1000 underflows to 0 must not become "never".
  const seconds = Math.max(1, Math.ceil(ttl / 1000));
  if (seconds <= MAX_RELATIVE_EXPTIME) return seconds;
  const at = Math.ceil((now + ttl) / 1000);
  if (at > MAX_EXPTIME) {
    throw new MemcachedValueError(
      `${command}: a ttl of ${ttl} ms expires after 2038-01-19, which memcached cannot express; use 0 or undefined for "never expires"`,
      { command },
    );
  }
  return at;
}

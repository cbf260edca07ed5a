import { MemcachedKeyError, MemcachedValueError } from '../errors.js';

/** Longest key memcached accepts, in bytes (prefix included). */
export const MAX_KEY_LENGTH = 250;

/**
 * Returns the wire key (`prefix + key`) or throws MemcachedKeyError naming the key and the rule.
 * Keys are 1–250 bytes of UTF-8 after the prefix, with no whitespace or control characters (so a
 * key can never smuggle a second command onto the wire), and must be well-formed Unicode.
 */
export function wireKey(
  key: unknown,
  prefix: string,
  prefixBytes: number,
  command: string,
): string {
  if (typeof key !== 'string') {
    throw new MemcachedKeyError(
      `${command}: key must be a string, got ${key === null ? 'null' : typeof key}`,
      key,
      { command },
    );
  }
  const n = key.length;
  if (n === 0) {
    throw new MemcachedKeyError(`${command}: key must not be empty`, key, { command });
  }
  let bytes = prefixBytes;
  let ascii = true;
  for (let i = 0; i < n; i++) {
    const c = key.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f || (c >= 0x80 && c <= 0x9f)) {
      throw new MemcachedKeyError(
        `${command}: key ${JSON.stringify(key.length > 60 ? key.slice(0, 60) + '…' : key)} contains ${c === 0x20 ? 'a space' : 'a control character'} (U+${c.toString(16).toUpperCase().padStart(4, '0')} at index ${i}); keys must not contain whitespace or control characters`,
        key,
        { command },
      );
    }
    if (c >= 0x80) ascii = false;
  }
  if (ascii) bytes += n;
  else {
    if (!key.isWellFormed()) {
      throw new MemcachedKeyError(
        `${command}: key ${JSON.stringify(key.slice(0, 60))} contains a lone UTF-16 surrogate; keys must be well-formed Unicode`,
        key,
        { command },
      );
    }
    bytes += Buffer.byteLength(key, 'utf8');
  }
  if (bytes > MAX_KEY_LENGTH) {
    throw new MemcachedKeyError(
      `${command}: key ${JSON.stringify(key.slice(0, 40) + '…')} is ${bytes} bytes with the key prefix; memcached keys are at most ${MAX_KEY_LENGTH} bytes (hash long keys first)`,
      key,
      { command },
    );
  }
  return prefix === '' ? key : prefix + key;
}

/** Checks a TTL in seconds (memcached exptime semantics) and returns it. */
export function checkTtl(ttl: unknown, command: string, key?: string): number {
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < -(2 ** 31) || ttl > 2 ** 31 - 1) {
    throw new MemcachedValueError(
      `${command}${key === undefined ? '' : ` "${key}"`}: ttl must be an integer number of seconds (0 = never expires, up to 2592000 = relative, larger = unix time, negative = expired), got ${String(ttl)}`,
      { command },
    );
  }
  return ttl;
}

const CAS_TOKEN = /^[0-9]{1,20}$/;

/** Checks a cas token (an unsigned 64-bit decimal, as returned by `gets`). */
export function checkCas(cas: unknown, command: string, key: string): string {
  if (typeof cas === 'bigint' && cas >= 0n && cas <= 0xffffffffffffffffn) return cas.toString();
  if (typeof cas !== 'string' || !CAS_TOKEN.test(cas) || BigInt(cas) > 0xffffffffffffffffn) {
    throw new MemcachedValueError(
      `${command} "${key}": cas token must be the opaque token returned by gets (an unsigned 64-bit decimal string), got ${JSON.stringify(String(cas)).slice(0, 60)}`,
      { command },
    );
  }
  return cas;
}

/** Checks an incr/decr delta: a non-negative safe integer `number` or a `bigint` below 2^64. */
export function checkDelta(delta: unknown, command: string, key: string): bigint | number {
  if (typeof delta === 'number') {
    if (Number.isSafeInteger(delta) && delta >= 0) return delta;
  } else if (typeof delta === 'bigint') {
    if (delta >= 0n && delta <= 0xffffffffffffffffn) return delta;
  }
  throw new MemcachedValueError(
    `${command} "${key}": delta must be a non-negative integer (a safe integer number, or a bigint below 2^64); use ${command === 'incr' ? 'decr' : 'incr'} to go the other way. Got ${String(delta)}`,
    { command },
  );
}

/** Checks `noreply`. */
export function checkNoreply(noreply: unknown, command: string): boolean {
  if (noreply === undefined) return false;
  if (typeof noreply !== 'boolean') {
    throw new MemcachedValueError(`${command}: noreply must be a boolean, got ${String(noreply)}`, {
      command,
    });
  }
  return noreply;
}

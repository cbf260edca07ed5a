/**
 * Pure encoders of meta-protocol requests (memcached ≥ 1.6.10). Inputs are validated by the
 * client (keys, numbers); every function returns the exact bytes to write. Commands without a
 * meta form (`stats`, `flush_all`, `version`, the ASCII authentication) use their text form, which
 * memcached accepts on the same connection.
 *
 * Every line stays within memcached's limits: fewer than 20 tokens, no flag twice, opaques of at
 * most 32 bytes, keys of at most 250 bytes as sent.
 */
import { MemcachedKeyError } from '../../errors.js';
import type { CommandSpec, StoreOp } from '../request.js';
import {
  encodeAuth,
  encodeFlushAll,
  encodeStats,
  encodeTouch,
  encodeVersion,
} from '../text/encoder.js';

/** Longest key memcached's meta commands accept, in bytes as sent (base64 counts encoded). */
export const META_MAX_KEY_LENGTH = 250;

/**
 * Whether a retrieval goes out as a batch: one `mg <key> … O<index>` per key, each answered in
 * order (a hit, `EN`, or an error line), matched by position with the opaque as a check. A
 * single-key read asks for the key back (`k`) instead. The reply matcher decides with the same
 * rule.
 */
export function isBatchRead(keys: readonly string[]): boolean {
  return keys.length > 1;
}

/**
 * Whether `key` cannot be sent as is on a meta command line: it holds a space or a control
 * character (the line would split or break). Such a key is sent base64-encoded with the `b` flag.
 * The client refuses these characters in keys before anything is sent, so this only guards the
 * encoder itself.
 */
export function needsBase64(key: string): boolean {
  return UNSAFE_KEY.test(key);
}

// eslint-disable-next-line no-control-regex
const UNSAFE_KEY = /[\x00-\x20\x7f]/;

/**
 * The key token and its flags: the key itself, or its base64 form (standard alphabet, `=` padded)
 * followed by ` b`. memcached checks the 250-byte limit on the key as sent, so a base64 key may
 * hold at most 186 bytes; a longer one is refused here, before anything is sent.
 */
export function metaKey(key: string): string {
  if (!needsBase64(key)) return key;
  const encoded = Buffer.from(key, 'utf8').toString('base64');
  if (encoded.length > META_MAX_KEY_LENGTH) {
    throw new MemcachedKeyError(
      `key ${JSON.stringify(key.slice(0, 40))} must be sent base64-encoded on the meta protocol, and its ${encoded.length}-byte encoding is over memcached's ${META_MAX_KEY_LENGTH}-byte limit (at most 186 bytes of key)`,
      key,
    );
  }
  return `${encoded} b`;
}

/**
 * Flags of a lease read: value, client flags, cas (to fill or release the lease with) and the
 * key, checked against the request. A plain read asks for the cas only where its caller wants it
 * (`gets`/`gats`): a plain read handed the refresh token of a stale item reads the cas again
 * before it gives the token back (`md <key> I C<cas>`), which is rare.
 */
const LEASE_READ = 'v f c k';
const MN = Buffer.from('mn\r\n');
const CRLF = Buffer.from('\r\n');
/** Values up to this size are copied into one buffer with their header (as the text encoder does). */
const INLINE_VALUE_MAX = 16 * 1024;

/** `ms` mode flags of the storage ops (`set` is the default mode). */
const MODE: { readonly [O in StoreOp]: string } = {
  set: '',
  add: ' ME',
  replace: ' MR',
  append: ' MA',
  prepend: ' MP',
  cas: '',
};

/** The bytes of a request on the meta protocol. */
export function encodeMetaRequest(spec: CommandSpec): Buffer | Buffer[] {
  switch (spec.op) {
    case 'get':
      return encodeMetaGet(spec.keys, false, '');
    case 'gets':
      return encodeMetaGet(spec.keys, true, '');
    case 'gat':
      return encodeMetaGet(spec.keys, false, ` T${spec.ttl ?? 0}`);
    case 'gats':
      return encodeMetaGet(spec.keys, true, ` T${spec.ttl ?? 0}`);
    case 'set':
    case 'add':
    case 'replace':
    case 'append':
    case 'prepend':
    case 'cas':
      return encodeMetaSet(
        spec.op,
        spec.key,
        spec.flags,
        spec.ttl,
        spec.value,
        spec.cas,
        spec.noreply,
      );
    case 'delete':
      return line(`md ${metaKey(spec.key)}${spec.noreply === true ? ' q' : ''}`);
    case 'touch':
      // `mg … q` still answers a hit, so a quiet touch uses the text form (answered by nothing).
      if (spec.noreply === true) return encodeTouch(spec.key, spec.ttl, true);
      return line(`mg ${metaKey(spec.key)} k T${spec.ttl}`);
    case 'incr':
    case 'decr':
      return line(`ma ${metaKey(spec.key)}${spec.op === 'decr' ? ' MD' : ''} D${spec.delta} v`);
    case 'lease': {
      // N and R before t: `t` then reports the TTL as the flags left it.
      let flags = LEASE_READ;
      if (spec.vivify !== undefined) flags += ` N${spec.vivify}`;
      if (spec.recache !== undefined) flags += ` R${spec.recache}`;
      return line(`mg ${metaKey(spec.key)} ${flags} t`);
    }
    case 'invalidate': {
      let flags = ' I';
      if (spec.ttl !== undefined) flags += ` T${spec.ttl}`;
      if (spec.cas !== undefined) flags += ` C${spec.cas}`;
      return line(`md ${metaKey(spec.key)}${flags}`);
    }
    case 'release':
      return line(`md ${metaKey(spec.key)} C${spec.cas}`);
    case 'flush_all':
      return encodeFlushAll(spec.delay);
    case 'stats':
      return encodeStats(spec.group);
    case 'version':
      return encodeVersion();
    case 'fence':
      return MN;
    case 'auth':
      return encodeAuth(spec.username, spec.password);
  }
}

/**
 * One key: `mg <key> v f[ c] k[ T<ttl>]`. Several: `mg <key> v f[ c][ T<ttl>] O<index>` per key,
 * in one buffer: each is answered in order, a hit with its position, a miss with `EN`. `withCas`
 * asks for the cas (`gets`/`gats`); `extra` is the touch flag (` T<ttl>`) or empty.
 */
export function encodeMetaGet(keys: readonly string[], withCas: boolean, extra: string): Buffer {
  const flags = withCas ? ` v f c${extra}` : ` v f${extra}`;
  if (!isBatchRead(keys)) {
    const key = keys[0]!;
    const tail =
      extra === '' ? (withCas ? SINGLE_TAIL_CAS : SINGLE_TAIL) : Buffer.from(`${flags} k\r\n`);
    return encodeKeyLine(key, tail) ?? Buffer.from(`mg ${metaKey(key)}${flags} k\r\n`, 'utf8');
  }
  return encodeBatchGet(keys, flags) ?? encodeBatchGetSlow(keys, flags);
}

const M = 109; // m
const G = 103; // g
const SP = 32;
const O = 79; // O
const CR = 13;
const LF = 10;
const SINGLE_TAIL = Buffer.from(' v f k\r\n', 'latin1');
const SINGLE_TAIL_CAS = Buffer.from(' v f c k\r\n', 'latin1');

/**
 * The batched read written straight into one buffer, for keys of printable ASCII only (`!`..`~`,
 * one byte per character): undefined as soon as a key holds anything else (it then goes through
 * {@link encodeBatchGetSlow}, which sends such a key in base64 or as UTF-8). `flags` is the same
 * for every key (` v f[ c][ T<ttl>]`).
 */
function encodeBatchGet(keys: readonly string[], flags: string): Buffer | undefined {
  const n = keys.length;
  const flagsLength = flags.length;
  let total = 0;
  for (let i = 0; i < n; i++) {
    // `mg ` key flags ` O` index `\r\n`
    total += 3 + keys[i]!.length + flagsLength + 2 + decimalLength(i) + 2;
  }
  const out = Buffer.allocUnsafe(total);
  let o = 0;
  for (let i = 0; i < n; i++) {
    const key = keys[i]!;
    out[o] = M;
    out[o + 1] = G;
    out[o + 2] = SP;
    o += 3;
    for (let j = 0; j < key.length; j++) {
      const c = key.charCodeAt(j);
      if (c <= 0x20 || c >= 0x7f) return undefined;
      out[o++] = c;
    }
    for (let j = 0; j < flagsLength; j++) out[o++] = flags.charCodeAt(j);
    out[o] = SP;
    out[o + 1] = O;
    o = writeDecimal(out, o + 2, i);
    out[o] = CR;
    out[o + 1] = LF;
    o += 2;
  }
  return out;
}

/** `mg <key><tail>` in one buffer for a printable-ASCII key, else undefined. */
function encodeKeyLine(key: string, tail: Buffer): Buffer | undefined {
  const n = key.length;
  const out = Buffer.allocUnsafe(3 + n + tail.length);
  out[0] = M;
  out[1] = G;
  out[2] = SP;
  for (let j = 0; j < n; j++) {
    const c = key.charCodeAt(j);
    if (c <= 0x20 || c >= 0x7f) return undefined;
    out[3 + j] = c;
  }
  for (let j = 0, o = 3 + n; j < tail.length; j++) out[o + j] = tail[j]!;
  return out;
}

/** {@link encodeBatchGet} for any keys: base64 where a key cannot go on the line as it is. */
function encodeBatchGetSlow(keys: readonly string[], flags: string): Buffer {
  let out = '';
  for (let i = 0; i < keys.length; i++) out += `mg ${metaKey(keys[i]!)}${flags} O${i}\r\n`;
  return Buffer.from(out, 'utf8');
}

/** Whether every character of `key` is printable ASCII (`!`..`~`): it goes on the line as is. */
function isPrintableAscii(key: string): boolean {
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

/** Digits of the non-negative integer `n`. */
function decimalLength(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}

/** Writes the digits of the non-negative integer `n` at `o`; returns the offset after them. */
function writeDecimal(out: Buffer, o: number, n: number): number {
  if (n < 10) {
    out[o] = 48 + n;
    return o + 1;
  }
  const end = o + decimalLength(n);
  let p = end;
  while (n > 0) {
    out[--p] = 48 + (n % 10);
    n = Math.floor(n / 10);
  }
  return end;
}

/**
 * `ms <key> <bytes> F<flags> T<ttl>[ M<mode>][ C<cas>][ q]\r\n<data>\r\n`. One buffer for small
 * values, `[header, value, CRLF]` for large ones.
 */
export function encodeMetaSet(
  op: StoreOp,
  key: string,
  flags: number,
  ttl: number,
  value: Buffer,
  cas: string | undefined,
  noreply: boolean,
): Buffer[] {
  // A printable-ASCII key (the usual one) makes the whole line one byte per character.
  const ascii = isPrintableAscii(key);
  let header = `ms ${ascii ? key : metaKey(key)} ${value.length} F${flags} T${ttl}${MODE[op]}`;
  if (cas !== undefined) header += ` C${cas}`;
  header += noreply ? ' q\r\n' : '\r\n';
  if (value.length > INLINE_VALUE_MAX) return [Buffer.from(header, 'utf8'), value, CRLF];
  const headerLength = ascii ? header.length : Buffer.byteLength(header, 'utf8');
  const out = Buffer.allocUnsafe(headerLength + value.length + 2);
  out.write(header, 0, ascii ? 'latin1' : 'utf8');
  value.copy(out, headerLength);
  out[out.length - 2] = 13;
  out[out.length - 1] = 10;
  return [out];
}

function line(text: string): Buffer {
  return Buffer.from(text + '\r\n', 'utf8');
}

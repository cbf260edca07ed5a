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
 * Whether a multi-key retrieval goes out quiet (`q` on every `mg`, then `mn`): misses then cost
 * no reply at all. The reply matcher decides with the same rule.
 */
export function isQuietRetrieval(keys: readonly string[]): boolean {
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

/** Flags of a value read: value, client flags, cas, key (checked against the request). */
const READ = 'v f c k';
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
    case 'gets':
      return encodeMetaGet(spec.keys, '');
    case 'gat':
    case 'gats':
      return encodeMetaGet(spec.keys, ` T${spec.ttl ?? 0}`);
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
      let flags = READ;
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
 * One key: `mg <key> v f c k[ T<ttl>]`. Several: the same line per key with `O<index> q`, then
 * `mn`: hits come back with their index, misses say nothing, and `MN` closes the reply.
 */
export function encodeMetaGet(keys: readonly string[], extra: string): Buffer {
  if (!isQuietRetrieval(keys)) {
    return Buffer.from(`mg ${metaKey(keys[0]!)} ${READ}${extra}\r\n`, 'utf8');
  }
  let out = '';
  for (let i = 0; i < keys.length; i++) {
    out += `mg ${metaKey(keys[i]!)} ${READ}${extra} O${i} q\r\n`;
  }
  return Buffer.from(out + 'mn\r\n', 'utf8');
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
  let header = `ms ${metaKey(key)} ${value.length} F${flags} T${ttl}${MODE[op]}`;
  if (cas !== undefined) header += ` C${cas}`;
  header += noreply ? ' q\r\n' : '\r\n';
  if (value.length > INLINE_VALUE_MAX) return [Buffer.from(header, 'utf8'), value, CRLF];
  const headerLength = Buffer.byteLength(header, 'utf8');
  const out = Buffer.allocUnsafe(headerLength + value.length + 2);
  out.write(header, 0, 'utf8');
  value.copy(out, headerLength);
  out[out.length - 2] = 13;
  out[out.length - 1] = 10;
  return [out];
}

function line(text: string): Buffer {
  return Buffer.from(text + '\r\n', 'utf8');
}

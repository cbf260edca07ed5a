/**
 * Pure encoders of text-protocol requests. Inputs are assumed validated (keys, numbers); the
 * client layer checks them before calling here. Every encoder returns the exact bytes to write.
 */
import { MemcachedOptionsError } from '../../errors.js';
import type { ArithOp, CommandSpec, RetrieveOp, StoreOp } from '../request.js';

export type StorageCommand = StoreOp;
export type RetrievalCommand = RetrieveOp;
export type ArithCommand = ArithOp;

/** The bytes of a request on the text protocol. */
export function encodeTextRequest(spec: CommandSpec): Buffer | Buffer[] {
  switch (spec.op) {
    case 'get':
    case 'gets':
    case 'gat':
    case 'gats':
      return encodeRetrieval(spec.op, spec.keys, spec.ttl);
    case 'set':
    case 'add':
    case 'replace':
    case 'append':
    case 'prepend':
    case 'cas':
      return encodeStorage(
        spec.op,
        spec.key,
        spec.flags,
        spec.ttl,
        spec.value,
        spec.cas,
        spec.noreply,
      );
    case 'delete':
      return encodeDelete(spec.key, spec.noreply);
    case 'touch':
      return encodeTouch(spec.key, spec.ttl, spec.noreply);
    case 'incr':
    case 'decr':
      return encodeArith(spec.op, spec.key, spec.delta);
    case 'flush_all':
      return encodeFlushAll(spec.delay);
    case 'stats':
      return encodeStats(spec.group);
    case 'version':
      return VERSION;
    case 'fence':
      return MN;
    case 'auth':
      return encodeAuth(spec.username, spec.password);
    case 'lease':
    case 'invalidate':
    case 'release':
      // The client checks the protocol before building these; this is the last line of defence.
      throw new MemcachedOptionsError(
        'protocol',
        `${spec.op} needs protocol: 'meta' (memcached's meta commands); the text protocol has no such command`,
      );
  }
}

const VERSION = Buffer.from('version\r\n');
/** `mn`: the meta no-op (memcached 1.6+), answered `MN`. */
const MN = Buffer.from('mn\r\n');

const CRLF = Buffer.from('\r\n');
/** Values up to this size are copied into one buffer with their header; larger ones are written as separate chunks (no copy). */
const INLINE_VALUE_MAX = 16 * 1024;

/**
 * `<cmd> <key> <flags> <exptime> <bytes> [<cas>] [noreply]\r\n<data>\r\n`.
 * Returns one buffer for small values, or `[header, value, CRLF]` for large ones.
 */
export function encodeStorage(
  command: StorageCommand,
  key: string,
  flags: number,
  exptime: number,
  value: Buffer,
  cas?: string,
  noreply = false,
): Buffer[] {
  let header = `${command} ${key} ${flags} ${exptime} ${value.length}`;
  if (cas !== undefined) header += ` ${cas}`;
  header += noreply ? ' noreply\r\n' : '\r\n';
  if (value.length > INLINE_VALUE_MAX) {
    return [Buffer.from(header, 'utf8'), value, CRLF];
  }
  const headerLength = Buffer.byteLength(header, 'utf8');
  const out = Buffer.allocUnsafe(headerLength + value.length + 2);
  out.write(header, 0, 'utf8');
  value.copy(out, headerLength);
  out[out.length - 2] = 13;
  out[out.length - 1] = 10;
  return [out];
}

/** `get|gets <key>*\r\n` or `gat|gats <exptime> <key>*\r\n`. */
export function encodeRetrieval(
  command: RetrievalCommand,
  keys: readonly string[],
  exptime?: number,
): Buffer {
  let line: string = command;
  if (command === 'gat' || command === 'gats') line += ` ${exptime ?? 0}`;
  for (const key of keys) line += ` ${key}`;
  return Buffer.from(line + '\r\n', 'utf8');
}

/** `delete <key> [noreply]\r\n` */
export function encodeDelete(key: string, noreply = false): Buffer {
  return Buffer.from(`delete ${key}${noreply ? ' noreply' : ''}\r\n`, 'utf8');
}

/** `touch <key> <exptime> [noreply]\r\n` */
export function encodeTouch(key: string, exptime: number, noreply = false): Buffer {
  return Buffer.from(`touch ${key} ${exptime}${noreply ? ' noreply' : ''}\r\n`, 'utf8');
}

/** `incr|decr <key> <delta> [noreply]\r\n`; delta is an unsigned 64-bit decimal. */
export function encodeArith(
  command: ArithCommand,
  key: string,
  delta: bigint | number,
  noreply = false,
): Buffer {
  return Buffer.from(`${command} ${key} ${delta}${noreply ? ' noreply' : ''}\r\n`, 'utf8');
}

/** `flush_all [delay]\r\n` */
export function encodeFlushAll(delay?: number): Buffer {
  return Buffer.from(
    delay === undefined || delay === 0 ? 'flush_all\r\n' : `flush_all ${delay}\r\n`,
  );
}

/** `version\r\n` */
export function encodeVersion(): Buffer {
  return VERSION;
}

/** `stats [group]\r\n` */
export function encodeStats(group?: string): Buffer {
  return Buffer.from(group === undefined ? 'stats\r\n' : `stats ${group}\r\n`);
}

/** `verbosity <level>\r\n` */
export function encodeVerbosity(level: number): Buffer {
  return Buffer.from(`verbosity ${level}\r\n`);
}

/**
 * ASCII authentication (memcached `-Y`): a `set` of any key whose data is `<user> <pass>`.
 * Must be the first command on a connection. The exptime is -1 so that a server running
 * without `-Y` stores nothing readable: the credentials never land in the cache.
 */
export function encodeAuth(username: string, password: string): Buffer {
  const data = Buffer.from(`${username} ${password}`, 'utf8');
  return Buffer.concat([Buffer.from(`set _auth 0 -1 ${data.length}\r\n`), data, CRLF]);
}

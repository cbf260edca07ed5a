/**
 * Pure encoders of binary-protocol requests. Inputs are assumed validated (keys, numbers); the
 * client layer checks them before calling here. Every encoder returns the exact bytes to write.
 *
 * - A retrieval of one key is one `getk` / `gatk`; of several keys, one quiet `getkq` / `gatkq`
 *   per key (the opaque is the key's index) closed by a `noop`: the server answers the hits, then
 *   the `noop`, so the `noop` marks the end of the reply.
 * - A noreply write uses the quiet opcode (`setq`, `deleteq`, ...): the server answers only
 *   errors; a `noop` (the connection's fence) written after it proves it was processed.
 */
import { MemcachedOptionsError } from '../../errors.js';
import type { CommandSpec, RetrieveOp, StoreOp } from '../request.js';
import { ARITH_NO_CREATE, EXPIRED_NOW, HEADER_LENGTH, MAGIC_REQUEST, Opcode } from './constants.js';

/** The bytes of a request on the binary protocol. */
export function encodeBinaryRequest(spec: CommandSpec): Buffer | Buffer[] {
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
      return encodeKeyOnly(spec.noreply === true ? Opcode.deleteq : Opcode.delete, spec.key);
    case 'touch':
      // There is no quiet touch: a noreply touch is a plain one whose reply the fence drops.
      return encodeTouch(spec.key, spec.ttl);
    case 'incr':
    case 'decr':
      return encodeArith(spec.op, spec.key, spec.delta);
    case 'flush_all':
      return encodeFlush(spec.delay);
    case 'stats':
      return encodeStats(spec.group);
    case 'version':
      return VERSION;
    case 'fence':
      return NOOP;
    case 'auth':
      return encodeSaslPlain(spec.username, spec.password);
    case 'lease':
    case 'invalidate':
    case 'release':
      // The client checks the protocol before building these; this is the last line of defence.
      throw new MemcachedOptionsError(
        'protocol',
        `${spec.op} needs protocol: 'meta' (memcached's meta commands); the binary protocol has no such command`,
      );
  }
}

/** Writes a request header at `off`. */
function writeHeader(
  buf: Buffer,
  off: number,
  opcode: number,
  keyLength: number,
  extrasLength: number,
  bodyLength: number,
  opaque: number,
): void {
  buf[off] = MAGIC_REQUEST;
  buf[off + 1] = opcode;
  buf.writeUInt16BE(keyLength, off + 2);
  buf[off + 4] = extrasLength;
  buf[off + 5] = 0; // data type: raw bytes
  buf[off + 6] = 0; // vbucket
  buf[off + 7] = 0;
  buf.writeUInt32BE(bodyLength, off + 8);
  buf.writeUInt32BE(opaque, off + 12);
  buf.writeUInt32BE(0, off + 16); // cas
  buf.writeUInt32BE(0, off + 20);
}

/** A request without extras or value. */
function bare(opcode: number): Buffer {
  const buf = Buffer.alloc(HEADER_LENGTH);
  writeHeader(buf, 0, opcode, 0, 0, 0, 0);
  return buf;
}

const NOOP = bare(Opcode.noop);
const VERSION = bare(Opcode.version);

/** `noop`: answered in order; the fence after noreply runs and the end of a multi-get. */
export function encodeNoop(): Buffer {
  return NOOP;
}

/** Unsigned 32-bit exptime for a TTL in memcached's text semantics (negative: expired now). */
export function binaryExptime(ttl: number): number {
  return ttl < 0 ? EXPIRED_NOW : ttl;
}

/**
 * `getk` / `gatk` for one key; `getkq`… + `noop` (or `gatkq`… + `noop`) for several. The opaque of
 * each quiet get is the key's index in `keys`.
 */
export function encodeRetrieval(op: RetrieveOp, keys: readonly string[], ttl?: number): Buffer {
  const touching = op === 'gat' || op === 'gats';
  const extras = touching ? 4 : 0;
  const exptime = touching ? binaryExptime(ttl ?? 0) : 0;
  if (keys.length === 1) {
    const key = keys[0]!;
    const keyLength = Buffer.byteLength(key, 'utf8');
    const buf = Buffer.allocUnsafe(HEADER_LENGTH + extras + keyLength);
    writeHeader(
      buf,
      0,
      touching ? Opcode.gatk : Opcode.getk,
      keyLength,
      extras,
      extras + keyLength,
      0,
    );
    if (touching) buf.writeUInt32BE(exptime, HEADER_LENGTH);
    buf.write(key, HEADER_LENGTH + extras, 'utf8');
    return buf;
  }
  const lengths = new Array<number>(keys.length);
  let total = HEADER_LENGTH; // the closing noop
  for (let i = 0; i < keys.length; i++) {
    const n = Buffer.byteLength(keys[i]!, 'utf8');
    lengths[i] = n;
    total += HEADER_LENGTH + extras + n;
  }
  const buf = Buffer.allocUnsafe(total);
  const opcode = touching ? Opcode.gatkq : Opcode.getkq;
  let off = 0;
  for (let i = 0; i < keys.length; i++) {
    const n = lengths[i]!;
    writeHeader(buf, off, opcode, n, extras, extras + n, i);
    off += HEADER_LENGTH;
    if (touching) {
      buf.writeUInt32BE(exptime, off);
      off += 4;
    }
    buf.write(keys[i]!, off, 'utf8');
    off += n;
  }
  writeHeader(buf, off, Opcode.noop, 0, 0, 0, 0);
  return buf;
}

const STORE_OPCODES: { readonly [O in StoreOp]: readonly [loud: number, quiet: number] } = {
  set: [Opcode.set, Opcode.setq],
  add: [Opcode.add, Opcode.addq],
  replace: [Opcode.replace, Opcode.replaceq],
  append: [Opcode.append, Opcode.appendq],
  prepend: [Opcode.prepend, Opcode.prependq],
  // A cas is a set carrying the cas value in its header.
  cas: [Opcode.set, Opcode.setq],
};

/** Values up to this size are copied into one buffer with their header; larger ones are written as separate chunks (no copy). */
const INLINE_VALUE_MAX = 16 * 1024;

/**
 * A storage request: flags and exptime as extras (none for append/prepend), the cas value in the
 * header for `cas`. Returns `[packet]` for small values, `[header+extras+key, value]` for large ones.
 */
export function encodeStorage(
  op: StoreOp,
  key: string,
  flags: number,
  ttl: number,
  value: Buffer,
  cas?: string,
  noreply = false,
): Buffer[] {
  const opcode = STORE_OPCODES[op][noreply ? 1 : 0];
  const extras = op === 'append' || op === 'prepend' ? 0 : 8;
  const keyLength = Buffer.byteLength(key, 'utf8');
  const head = HEADER_LENGTH + extras + keyLength;
  const inline = value.length <= INLINE_VALUE_MAX;
  const buf = Buffer.allocUnsafe(inline ? head + value.length : head);
  writeHeader(buf, 0, opcode, keyLength, extras, extras + keyLength + value.length, 0);
  if (cas !== undefined) buf.writeBigUInt64BE(BigInt(cas), 16);
  if (extras !== 0) {
    buf.writeUInt32BE(flags >>> 0, HEADER_LENGTH);
    buf.writeUInt32BE(binaryExptime(ttl), HEADER_LENGTH + 4);
  }
  buf.write(key, HEADER_LENGTH + extras, 'utf8');
  if (!inline) return [buf, value];
  value.copy(buf, head);
  return [buf];
}

/** A request whose body is just the key (`delete`, `deleteq`). */
export function encodeKeyOnly(opcode: number, key: string): Buffer {
  const keyLength = Buffer.byteLength(key, 'utf8');
  const buf = Buffer.allocUnsafe(HEADER_LENGTH + keyLength);
  writeHeader(buf, 0, opcode, keyLength, 0, keyLength, 0);
  buf.write(key, HEADER_LENGTH, 'utf8');
  return buf;
}

/** `touch`: exptime as extras. */
export function encodeTouch(key: string, ttl: number): Buffer {
  const keyLength = Buffer.byteLength(key, 'utf8');
  const buf = Buffer.allocUnsafe(HEADER_LENGTH + 4 + keyLength);
  writeHeader(buf, 0, Opcode.touch, keyLength, 4, 4 + keyLength, 0);
  buf.writeUInt32BE(binaryExptime(ttl), HEADER_LENGTH);
  buf.write(key, HEADER_LENGTH + 4, 'utf8');
  return buf;
}

/**
 * `increment` / `decrement`: extras are the delta, an initial value and an exptime; the exptime
 * 0xffffffff makes a missing key fail with key-not-found instead of being created (as `incr`
 * does on the text protocol).
 */
export function encodeArith(op: 'incr' | 'decr', key: string, delta: bigint): Buffer {
  const keyLength = Buffer.byteLength(key, 'utf8');
  const buf = Buffer.allocUnsafe(HEADER_LENGTH + 20 + keyLength);
  const opcode = op === 'incr' ? Opcode.increment : Opcode.decrement;
  writeHeader(buf, 0, opcode, keyLength, 20, 20 + keyLength, 0);
  buf.writeBigUInt64BE(delta, HEADER_LENGTH);
  buf.writeBigUInt64BE(0n, HEADER_LENGTH + 8);
  buf.writeUInt32BE(ARITH_NO_CREATE, HEADER_LENGTH + 16);
  buf.write(key, HEADER_LENGTH + 20, 'utf8');
  return buf;
}

/** `flush` with an optional delay (seconds) as extras. */
export function encodeFlush(delay?: number): Buffer {
  if (delay === undefined || delay === 0) return bare(Opcode.flush);
  const buf = Buffer.allocUnsafe(HEADER_LENGTH + 4);
  writeHeader(buf, 0, Opcode.flush, 0, 4, 4, 0);
  buf.writeUInt32BE(delay, HEADER_LENGTH);
  return buf;
}

/** `stat` with an optional group (`items`, `slabs`, `settings`, ...) as the key. */
export function encodeStats(group?: string): Buffer {
  if (group === undefined) return bare(Opcode.stat);
  return encodeKeyOnly(Opcode.stat, group);
}

/** SASL PLAIN: mechanism `PLAIN` as the key, `\0username\0password` as the value. */
export function encodeSaslPlain(username: string, password: string): Buffer {
  const mech = 'PLAIN';
  const value = Buffer.from(`\0${username}\0${password}`, 'utf8');
  const buf = Buffer.allocUnsafe(HEADER_LENGTH + mech.length + value.length);
  writeHeader(buf, 0, Opcode.saslAuth, mech.length, 0, mech.length + value.length, 0);
  buf.write(mech, HEADER_LENGTH, 'latin1');
  value.copy(buf, HEADER_LENGTH + mech.length);
  return buf;
}

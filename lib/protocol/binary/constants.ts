/**
 * memcached's binary protocol: packet layout, opcodes and status codes (memcached's
 * `protocol_binary.h`). Every packet is a 24-byte header, then extras, key and value.
 */

/** Header length, bytes. */
export const HEADER_LENGTH = 24;

export const MAGIC_REQUEST = 0x80;
export const MAGIC_RESPONSE = 0x81;

export const Opcode = {
  get: 0x00,
  set: 0x01,
  add: 0x02,
  replace: 0x03,
  delete: 0x04,
  increment: 0x05,
  decrement: 0x06,
  quit: 0x07,
  flush: 0x08,
  getq: 0x09,
  noop: 0x0a,
  version: 0x0b,
  getk: 0x0c,
  getkq: 0x0d,
  append: 0x0e,
  prepend: 0x0f,
  stat: 0x10,
  setq: 0x11,
  addq: 0x12,
  replaceq: 0x13,
  deleteq: 0x14,
  incrementq: 0x15,
  decrementq: 0x16,
  quitq: 0x17,
  flushq: 0x18,
  appendq: 0x19,
  prependq: 0x1a,
  touch: 0x1c,
  gat: 0x1d,
  gatq: 0x1e,
  saslListMechs: 0x20,
  saslAuth: 0x21,
  saslStep: 0x22,
  gatk: 0x23,
  gatkq: 0x24,
} as const;

export const Status = {
  ok: 0x0000,
  keyNotFound: 0x0001,
  keyExists: 0x0002,
  tooLarge: 0x0003,
  invalidArguments: 0x0004,
  notStored: 0x0005,
  nonNumeric: 0x0006,
  wrongVbucket: 0x0007,
  authError: 0x0020,
  authContinue: 0x0021,
  unknownCommand: 0x0081,
  outOfMemory: 0x0082,
  notSupported: 0x0083,
  internalError: 0x0084,
  busy: 0x0085,
  temporaryFailure: 0x0086,
} as const;

/** incr/decr expiration that means "fail with key-not-found instead of creating the item". */
export const ARITH_NO_CREATE = 0xffffffff;

/**
 * memcached's REALTIME_MAXDELTA + 1 (30 days and a second): an absolute time in 1970, before any
 * server started, so the item is expired at once. The text protocol maps a negative exptime to
 * this inside the server; the binary protocol carries exptime unsigned, so the client maps it.
 */
export const EXPIRED_NOW = 60 * 60 * 24 * 30 + 1;

/** Opcode names for error messages. */
export const OPCODE_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(Opcode).map(([name, code]) => [code, name]),
);

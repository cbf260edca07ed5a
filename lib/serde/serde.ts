/** A serialized value: the bytes stored in memcached and the 32-bit client flags stored beside them. */
export interface SerializedValue {
  value: Buffer;
  flags: number;
}

/**
 * Turns application values into bytes + flags and back. `deserialize` receives the flags as stored
 * (with the compression bit 8 already removed when the client decompressed the value).
 */
export interface Serde {
  serialize(key: string, value: unknown): SerializedValue;
  deserialize(key: string, value: Buffer, flags: number): unknown;
}

/** Flag bits of the default serde (pymemcache / python-memcached compatible, JSON 32). */
export const FLAG_BYTES = 0;
export const FLAG_INTEGER = 2;
export const FLAG_LONG = 4;
export const FLAG_COMPRESSED = 8;
export const FLAG_TEXT = 16;
export const FLAG_JSON = 32;
/** Set by the client on values it lz4-compressed (`compression: { algorithm: 'lz4' }`). */
export const FLAG_LZ4 = 64;

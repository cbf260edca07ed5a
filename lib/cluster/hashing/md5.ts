/**
 * A small allocation-free MD5 (RFC 1321) for hashing keys on the hot path: for the short inputs
 * key placement hashes, `crypto.createHash('md5')` spends far more time creating the hash object
 * than hashing. Only used for placement, never for security.
 */

const encoder = new TextEncoder();
let buffer = new Uint8Array(512);
const state = new Int32Array(4);

function ensureCapacity(bytes: number): void {
  if (buffer.length < bytes) buffer = new Uint8Array(Math.max(bytes, buffer.length * 2));
}

/** Little-endian 32-bit word of `buf` at `offset`. */
function word(buf: Uint8Array, offset: number): number {
  return (
    buf[offset]! | (buf[offset + 1]! << 8) | (buf[offset + 2]! << 16) | (buf[offset + 3]! << 24)
  );
}

/** Runs the MD5 compression function over the 64-byte block of `buf` at `o`, updating `state`. */
function compress(buf: Uint8Array, o: number): void {
  const m0 = word(buf, o + 0);
  const m1 = word(buf, o + 4);
  const m2 = word(buf, o + 8);
  const m3 = word(buf, o + 12);
  const m4 = word(buf, o + 16);
  const m5 = word(buf, o + 20);
  const m6 = word(buf, o + 24);
  const m7 = word(buf, o + 28);
  const m8 = word(buf, o + 32);
  const m9 = word(buf, o + 36);
  const m10 = word(buf, o + 40);
  const m11 = word(buf, o + 44);
  const m12 = word(buf, o + 48);
  const m13 = word(buf, o + 52);
  const m14 = word(buf, o + 56);
  const m15 = word(buf, o + 60);
  let a = state[0]!;
  let b = state[1]!;
  let c = state[2]!;
  let d = state[3]!;
  let x: number;
  // Rounds 1-4, 16 steps each; constants are RFC 1321's T[i] as signed 32-bit integers.
  x = (a + ((b & c) | (~b & d)) + m0 - 680876936) | 0;
  a = (((x << 7) | (x >>> 25)) + b) | 0;
  x = (d + ((a & b) | (~a & c)) + m1 - 389564586) | 0;
  d = (((x << 12) | (x >>> 20)) + a) | 0;
  x = (c + ((d & a) | (~d & b)) + m2 + 606105819) | 0;
  c = (((x << 17) | (x >>> 15)) + d) | 0;
  x = (b + ((c & d) | (~c & a)) + m3 - 1044525330) | 0;
  b = (((x << 22) | (x >>> 10)) + c) | 0;
  x = (a + ((b & c) | (~b & d)) + m4 - 176418897) | 0;
  a = (((x << 7) | (x >>> 25)) + b) | 0;
  x = (d + ((a & b) | (~a & c)) + m5 + 1200080426) | 0;
  d = (((x << 12) | (x >>> 20)) + a) | 0;
  x = (c + ((d & a) | (~d & b)) + m6 - 1473231341) | 0;
  c = (((x << 17) | (x >>> 15)) + d) | 0;
  x = (b + ((c & d) | (~c & a)) + m7 - 45705983) | 0;
  b = (((x << 22) | (x >>> 10)) + c) | 0;
  x = (a + ((b & c) | (~b & d)) + m8 + 1770035416) | 0;
  a = (((x << 7) | (x >>> 25)) + b) | 0;
  x = (d + ((a & b) | (~a & c)) + m9 - 1958414417) | 0;
  d = (((x << 12) | (x >>> 20)) + a) | 0;
  x = (c + ((d & a) | (~d & b)) + m10 - 42063) | 0;
  c = (((x << 17) | (x >>> 15)) + d) | 0;
  x = (b + ((c & d) | (~c & a)) + m11 - 1990404162) | 0;
  b = (((x << 22) | (x >>> 10)) + c) | 0;
  x = (a + ((b & c) | (~b & d)) + m12 + 1804603682) | 0;
  a = (((x << 7) | (x >>> 25)) + b) | 0;
  x = (d + ((a & b) | (~a & c)) + m13 - 40341101) | 0;
  d = (((x << 12) | (x >>> 20)) + a) | 0;
  x = (c + ((d & a) | (~d & b)) + m14 - 1502002290) | 0;
  c = (((x << 17) | (x >>> 15)) + d) | 0;
  x = (b + ((c & d) | (~c & a)) + m15 + 1236535329) | 0;
  b = (((x << 22) | (x >>> 10)) + c) | 0;
  x = (a + ((b & d) | (c & ~d)) + m1 - 165796510) | 0;
  a = (((x << 5) | (x >>> 27)) + b) | 0;
  x = (d + ((a & c) | (b & ~c)) + m6 - 1069501632) | 0;
  d = (((x << 9) | (x >>> 23)) + a) | 0;
  x = (c + ((d & b) | (a & ~b)) + m11 + 643717713) | 0;
  c = (((x << 14) | (x >>> 18)) + d) | 0;
  x = (b + ((c & a) | (d & ~a)) + m0 - 373897302) | 0;
  b = (((x << 20) | (x >>> 12)) + c) | 0;
  x = (a + ((b & d) | (c & ~d)) + m5 - 701558691) | 0;
  a = (((x << 5) | (x >>> 27)) + b) | 0;
  x = (d + ((a & c) | (b & ~c)) + m10 + 38016083) | 0;
  d = (((x << 9) | (x >>> 23)) + a) | 0;
  x = (c + ((d & b) | (a & ~b)) + m15 - 660478335) | 0;
  c = (((x << 14) | (x >>> 18)) + d) | 0;
  x = (b + ((c & a) | (d & ~a)) + m4 - 405537848) | 0;
  b = (((x << 20) | (x >>> 12)) + c) | 0;
  x = (a + ((b & d) | (c & ~d)) + m9 + 568446438) | 0;
  a = (((x << 5) | (x >>> 27)) + b) | 0;
  x = (d + ((a & c) | (b & ~c)) + m14 - 1019803690) | 0;
  d = (((x << 9) | (x >>> 23)) + a) | 0;
  x = (c + ((d & b) | (a & ~b)) + m3 - 187363961) | 0;
  c = (((x << 14) | (x >>> 18)) + d) | 0;
  x = (b + ((c & a) | (d & ~a)) + m8 + 1163531501) | 0;
  b = (((x << 20) | (x >>> 12)) + c) | 0;
  x = (a + ((b & d) | (c & ~d)) + m13 - 1444681467) | 0;
  a = (((x << 5) | (x >>> 27)) + b) | 0;
  x = (d + ((a & c) | (b & ~c)) + m2 - 51403784) | 0;
  d = (((x << 9) | (x >>> 23)) + a) | 0;
  x = (c + ((d & b) | (a & ~b)) + m7 + 1735328473) | 0;
  c = (((x << 14) | (x >>> 18)) + d) | 0;
  x = (b + ((c & a) | (d & ~a)) + m12 - 1926607734) | 0;
  b = (((x << 20) | (x >>> 12)) + c) | 0;
  x = (a + (b ^ c ^ d) + m5 - 378558) | 0;
  a = (((x << 4) | (x >>> 28)) + b) | 0;
  x = (d + (a ^ b ^ c) + m8 - 2022574463) | 0;
  d = (((x << 11) | (x >>> 21)) + a) | 0;
  x = (c + (d ^ a ^ b) + m11 + 1839030562) | 0;
  c = (((x << 16) | (x >>> 16)) + d) | 0;
  x = (b + (c ^ d ^ a) + m14 - 35309556) | 0;
  b = (((x << 23) | (x >>> 9)) + c) | 0;
  x = (a + (b ^ c ^ d) + m1 - 1530992060) | 0;
  a = (((x << 4) | (x >>> 28)) + b) | 0;
  x = (d + (a ^ b ^ c) + m4 + 1272893353) | 0;
  d = (((x << 11) | (x >>> 21)) + a) | 0;
  x = (c + (d ^ a ^ b) + m7 - 155497632) | 0;
  c = (((x << 16) | (x >>> 16)) + d) | 0;
  x = (b + (c ^ d ^ a) + m10 - 1094730640) | 0;
  b = (((x << 23) | (x >>> 9)) + c) | 0;
  x = (a + (b ^ c ^ d) + m13 + 681279174) | 0;
  a = (((x << 4) | (x >>> 28)) + b) | 0;
  x = (d + (a ^ b ^ c) + m0 - 358537222) | 0;
  d = (((x << 11) | (x >>> 21)) + a) | 0;
  x = (c + (d ^ a ^ b) + m3 - 722521979) | 0;
  c = (((x << 16) | (x >>> 16)) + d) | 0;
  x = (b + (c ^ d ^ a) + m6 + 76029189) | 0;
  b = (((x << 23) | (x >>> 9)) + c) | 0;
  x = (a + (b ^ c ^ d) + m9 - 640364487) | 0;
  a = (((x << 4) | (x >>> 28)) + b) | 0;
  x = (d + (a ^ b ^ c) + m12 - 421815835) | 0;
  d = (((x << 11) | (x >>> 21)) + a) | 0;
  x = (c + (d ^ a ^ b) + m15 + 530742520) | 0;
  c = (((x << 16) | (x >>> 16)) + d) | 0;
  x = (b + (c ^ d ^ a) + m2 - 995338651) | 0;
  b = (((x << 23) | (x >>> 9)) + c) | 0;
  x = (a + (c ^ (b | ~d)) + m0 - 198630844) | 0;
  a = (((x << 6) | (x >>> 26)) + b) | 0;
  x = (d + (b ^ (a | ~c)) + m7 + 1126891415) | 0;
  d = (((x << 10) | (x >>> 22)) + a) | 0;
  x = (c + (a ^ (d | ~b)) + m14 - 1416354905) | 0;
  c = (((x << 15) | (x >>> 17)) + d) | 0;
  x = (b + (d ^ (c | ~a)) + m5 - 57434055) | 0;
  b = (((x << 21) | (x >>> 11)) + c) | 0;
  x = (a + (c ^ (b | ~d)) + m12 + 1700485571) | 0;
  a = (((x << 6) | (x >>> 26)) + b) | 0;
  x = (d + (b ^ (a | ~c)) + m3 - 1894986606) | 0;
  d = (((x << 10) | (x >>> 22)) + a) | 0;
  x = (c + (a ^ (d | ~b)) + m10 - 1051523) | 0;
  c = (((x << 15) | (x >>> 17)) + d) | 0;
  x = (b + (d ^ (c | ~a)) + m1 - 2054922799) | 0;
  b = (((x << 21) | (x >>> 11)) + c) | 0;
  x = (a + (c ^ (b | ~d)) + m8 + 1873313359) | 0;
  a = (((x << 6) | (x >>> 26)) + b) | 0;
  x = (d + (b ^ (a | ~c)) + m15 - 30611744) | 0;
  d = (((x << 10) | (x >>> 22)) + a) | 0;
  x = (c + (a ^ (d | ~b)) + m6 - 1560198380) | 0;
  c = (((x << 15) | (x >>> 17)) + d) | 0;
  x = (b + (d ^ (c | ~a)) + m13 + 1309151649) | 0;
  b = (((x << 21) | (x >>> 11)) + c) | 0;
  x = (a + (c ^ (b | ~d)) + m4 - 145523070) | 0;
  a = (((x << 6) | (x >>> 26)) + b) | 0;
  x = (d + (b ^ (a | ~c)) + m11 - 1120210379) | 0;
  d = (((x << 10) | (x >>> 22)) + a) | 0;
  x = (c + (a ^ (d | ~b)) + m2 + 718787259) | 0;
  c = (((x << 15) | (x >>> 17)) + d) | 0;
  x = (b + (d ^ (c | ~a)) + m9 - 343485551) | 0;
  b = (((x << 21) | (x >>> 11)) + c) | 0;
  state[0] = (state[0]! + a) | 0;
  state[1] = (state[1]! + b) | 0;
  state[2] = (state[2]! + c) | 0;
  state[3] = (state[3]! + d) | 0;
}

/** Pads `buffer[0..length)` in place and runs the compression function over it. */
function digestBuffer(length: number): Int32Array {
  const buf = buffer;
  const padded = (((length + 8) >>> 6) + 1) << 6;
  buf[length] = 0x80;
  for (let i = length + 1; i < padded - 8; i++) buf[i] = 0;
  const bitsLow = (length << 3) >>> 0;
  const bitsHigh = Math.floor(length / 2 ** 29);
  for (let i = 0; i < 4; i++) {
    buf[padded - 8 + i] = (bitsLow >>> (8 * i)) & 0xff;
    buf[padded - 4 + i] = (bitsHigh >>> (8 * i)) & 0xff;
  }
  state[0] = 0x67452301;
  state[1] = 0xefcdab89 | 0;
  state[2] = 0x98badcfe | 0;
  state[3] = 0x10325476;
  for (let block = 0; block < padded; block += 64) compress(buf, block);
  return state;
}

/**
 * MD5 of the UTF-8 encoding of `text`, as four little-endian 32-bit words (signed; use `>>> 0`).
 * The returned array is reused by the next call.
 */
export function md5Words(text: string): Int32Array {
  ensureCapacity(text.length * 3 + 72);
  const { written } = encoder.encodeInto(text, buffer);
  return digestBuffer(written);
}

/** First four bytes of MD5(UTF-8 `text`), little-endian, as an unsigned 32-bit integer. */
export function md5FirstWord(text: string): number {
  return md5Words(text)[0]! >>> 0;
}

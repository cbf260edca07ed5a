import { createHash } from 'node:crypto';

/**
 * What decorator keys and Keyv keys share: the rule for text memcached can take as a key, and
 * the hash used for text it cannot take.
 */

/**
 * SHA-256 in base64url (43 characters) of the text's UTF-8 bytes; a text with a lone surrogate
 * (which UTF-8 cannot carry: it would become U+FFFD, and two such texts would hash alike) hashes
 * the byte 0xFF (never part of UTF-8) and then its UTF-16LE code units.
 */
export function sha256Key(text: string): string {
  const hash = createHash('sha256');
  if (text.isWellFormed()) hash.update(text, 'utf8');
  else hash.update(LONE_SURROGATE_TAG).update(text, 'utf16le');
  return hash.digest('base64url');
}

const LONE_SURROGATE_TAG = Buffer.from([0xff]);

/**
 * Whether memcached can take `text` as (part of) a key: no space, no control character (C0,
 * DEL, C1), well-formed UTF-16; returns its UTF-8 length, or -1 when it cannot be used. The same
 * rule as the client's key validation.
 */
export function keyBytes(text: string): number {
  let ascii = true;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f || (c >= 0x80 && c <= 0x9f)) return -1;
    if (c >= 0x80) ascii = false;
  }
  if (ascii) return text.length;
  if (!text.isWellFormed()) return -1;
  return Buffer.byteLength(text, 'utf8');
}

/** Whether `text` is printable ASCII without spaces (what default decorator keys keep readable). */
export function isPrintableAscii(text: string): boolean {
  return /^[\x21-\x7e]+$/.test(text);
}

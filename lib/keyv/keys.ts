import { randomBytes } from 'node:crypto';
import { keyBytes, sha256Key as sha256 } from '../cache/key-text.js';
import { MAX_KEY_LENGTH } from '../client/validation.js';

/**
 * The memcached keys of the Keyv adapter. Three disjoint forms (they differ in their first three
 * characters), each behind the client's `keyPrefix`:
 *
 * | form                          | what                                                        |
 * | ----------------------------- | ----------------------------------------------------------- |
 * | `kv:<generation>:<key>`       | a value; `<key>` is the Keyv key (`namespace:key`)          |
 * | `kh:<generation>:<sha-256>`   | a value whose `kv:` form memcached cannot take (see below)  |
 * | `kg:<namespace>`              | the generation of a namespace (`kg#<sha-256>` if it must be |
 * |                               | hashed)                                                     |
 *
 * A generation is 11 characters of base64url (64 random bits) and never contains `:`, so the
 * first `:` after it ends it: two different (generation, key) pairs never give the same key.
 * A key is hashed when the `kv:` form would be over 250 bytes with the client's prefix, or
 * when it contains a space, a control character (C0, DEL, C1) or a lone UTF-16 surrogate; the
 * hash is the SHA-256 of the key's UTF-8 bytes in base64url (43 characters; see sha256Key()
 * in lib/cache/key-text.ts, shared with the default keys of `@Cacheable`).
 */

/** A fresh generation: 64 random bits, base64url (11 characters, no `:`). */
export function newGeneration(): string {
  return randomBytes(8).toString('base64url');
}

const GENERATION = /^[A-Za-z0-9_-]{11}$/;

/** Whether `value` (as read back from memcached) is a generation this module wrote. */
export function isGeneration(value: unknown): value is string {
  return typeof value === 'string' && GENERATION.test(value);
}

/** Builds the memcached keys of one adapter (one client, so one client key prefix). */
export class KeyForms {
  /** Bytes left for our key after the client's `keyPrefix`. */
  private readonly room: number;

  constructor(clientPrefixBytes: number) {
    this.room = MAX_KEY_LENGTH - clientPrefixBytes;
  }

  /** The key holding the generation of `namespace` (`''` when Keyv has none). */
  generationKey(namespace: string): string {
    const bytes = keyBytes(namespace);
    if (bytes >= 0 && 3 + bytes <= this.room) return `kg:${namespace}`;
    return `kg#${sha256(namespace)}`;
  }

  /** The key of the value of `key` (a Keyv key, with its namespace) in `generation`. */
  valueKey(generation: string, key: string): string {
    const bytes = keyBytes(key);
    // 'kv:' + 11 + ':' = 15 bytes before the key.
    if (bytes >= 0 && 15 + bytes <= this.room) return `kv:${generation}:${key}`;
    return `kh:${generation}:${sha256(key)}`;
  }
}

export { keyBytes };

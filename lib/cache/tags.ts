import { createHash, randomBytes } from 'node:crypto';
import { MemcachedKeyError, MemcachedSerdeError } from '../errors.js';
import { MAX_KEY_LENGTH } from '../client/validation.js';

/**
 * Tag invalidation: every tag has a version key holding a random version; a tagged value is
 * stored in an envelope with the versions of its tags at the time it was computed, and a
 * tagged read is a hit only while every one of those versions is still the current one.
 * Invalidating a tag writes a new random version, so every value stored under it becomes a
 * miss at once, on every server and for every process, without listing keys or flushing.
 * A version key that the server evicted reads as missing, and the next reader creates a new
 * random version: values stored under the evicted one are misses, never hits.
 *
 * Version keys (before `keyPrefix`, which applies as to every key):
 * - `__tag:<tag>` when it fits memcached's 250 bytes with the prefix;
 * - `__tag#<base64url sha-256 of the tag>` (49 bytes) otherwise.
 */
export const TAG_KEY_PREFIX = '__tag:';
/** The form of a version key for a tag too long for {@link TAG_KEY_PREFIX}. */
export const TAG_HASH_PREFIX = '__tag#';

/** Most tags one value can carry (each is one more key in the read). */
export const MAX_TAGS = 32;

/** Client flags of a tagged envelope (the client's own bit, as 8 and 64 are for compression). */
export const FLAG_TAGGED = 128;

/** First bytes of an envelope: `MCTAG1 <inner flags> <n> <tag key> <version> ...\n<inner bytes>`. */
const MAGIC = 'MCTAG1 ';
const MAGIC_BYTES = Buffer.from(MAGIC, 'latin1');

/**
 * Checks a list of tags: an array of at most `MAX_TAGS` distinct non-empty strings without
 * whitespace or control characters, in well-formed Unicode (the character rules of keys; a tag
 * of any length is fine). Returns the tags without duplicates, in their first order. `[]` (or
 * undefined) means untagged.
 * Throws MemcachedKeyError naming the rule.
 */
export function checkTags(tags: unknown, where: string): readonly string[] {
  if (tags === undefined) return [];
  if (!Array.isArray(tags)) {
    throw new MemcachedKeyError(
      `${where}: tags must be an array of strings, got ${tags === null ? 'null' : typeof tags}`,
      tags,
    );
  }
  const out: string[] = [];
  const seen = new Set<string>();
  for (const tag of tags as unknown[]) {
    if (typeof tag !== 'string') {
      throw new MemcachedKeyError(
        `${where}: every tag must be a string, got ${tag === null ? 'null' : typeof tag}`,
        tag,
      );
    }
    if (tag === '') throw new MemcachedKeyError(`${where}: a tag must not be empty`, tag);
    for (let i = 0; i < tag.length; i++) {
      const c = tag.charCodeAt(i);
      if (c <= 0x20 || c === 0x7f || (c >= 0x80 && c <= 0x9f)) {
        throw new MemcachedKeyError(
          `${where}: tag ${JSON.stringify(tag.length > 60 ? tag.slice(0, 60) + '…' : tag)} contains ${c === 0x20 ? 'a space' : 'a control character'} (U+${c.toString(16).toUpperCase().padStart(4, '0')} at index ${i}); tags follow the character rules of keys`,
          tag,
        );
      }
    }
    if (!tag.isWellFormed()) {
      throw new MemcachedKeyError(
        `${where}: tag ${JSON.stringify(tag.slice(0, 60))} contains a lone UTF-16 surrogate; tags must be well-formed Unicode`,
        tag,
      );
    }
    if (!seen.has(tag)) {
      seen.add(tag);
      out.push(tag);
    }
  }
  if (out.length > MAX_TAGS) {
    throw new MemcachedKeyError(
      `${where}: ${out.length} tags, at most ${MAX_TAGS} are allowed per value (each one is read with the value)`,
      tags,
    );
  }
  return out;
}

/**
 * The version key of a (checked) tag, without `keyPrefix`: `__tag:<tag>`, or `__tag#<hash>` when
 * that would not fit 250 bytes with a prefix of `prefixBytes` bytes.
 */
export function tagKey(tag: string, prefixBytes: number): string {
  const bytes = prefixBytes + TAG_KEY_PREFIX.length + Buffer.byteLength(tag, 'utf8');
  if (bytes <= MAX_KEY_LENGTH) return TAG_KEY_PREFIX + tag;
  return TAG_HASH_PREFIX + createHash('sha256').update(tag, 'utf8').digest('base64url');
}

/** A new version: 96 random bits, never reproduced (base64url, 16 characters). */
export function newVersion(): string {
  return randomBytes(12).toString('base64url');
}

const VERSION = /^[\x21-\x7e]{1,64}$/;

/**
 * A version as read from a version key (raw bytes), or undefined if the bytes are not one (then
 * no value is stored under it, and none is a hit).
 */
export function readVersion(data: Buffer): string | undefined {
  if (data.length === 0 || data.length > 64) return undefined;
  const version = data.toString('latin1');
  return VERSION.test(version) ? version : undefined;
}

/** A stored value with the versions of its tags, as a plain read (get, getMany...) returns it. */
export class TaggedValue<T = unknown> {
  constructor(
    /** The value. */
    readonly value: T,
    /** Version key of each tag (without keyPrefix) → its version when the value was computed. */
    readonly versions: ReadonlyMap<string, string>,
  ) {}
}

/** The parts of an envelope. */
export interface Envelope {
  /** Client flags of the inner value (serde flags plus the compression bits). */
  flags: number;
  versions: Map<string, string>;
  /** The inner value's bytes (as the codec stores untagged values). */
  data: Buffer;
}

/** Wraps an encoded value with the versions of its tags. */
export function wrapEnvelope(
  flags: number,
  data: Buffer,
  versions: ReadonlyArray<readonly [string, string]>,
): Buffer {
  let header = `${MAGIC}${flags} ${versions.length}`;
  for (const [key, version] of versions) header += ` ${key} ${version}`;
  header += '\n';
  return Buffer.concat([Buffer.from(header, 'utf8'), data]);
}

/** Whether an item (its flags and bytes) is a tagged envelope. */
export function isEnvelope(flags: number, data: Buffer): boolean {
  return (
    flags === FLAG_TAGGED &&
    data.length >= MAGIC_BYTES.length &&
    data.subarray(0, MAGIC_BYTES.length).equals(MAGIC_BYTES)
  );
}

/** Parses an envelope (see {@link isEnvelope}); throws MemcachedSerdeError when malformed. */
export function parseEnvelope(key: string, data: Buffer): Envelope {
  const end = data.indexOf(0x0a);
  const fields = end < 0 ? [] : data.toString('utf8', MAGIC_BYTES.length, end).split(' ');
  const flags = Number(fields[0]);
  const n = Number(fields[1]);
  if (
    end < 0 ||
    !Number.isInteger(flags) ||
    flags < 0 ||
    flags > 0xffffffff ||
    !Number.isInteger(n) ||
    n < 0 ||
    fields.length !== 2 + 2 * n
  ) {
    throw new MemcachedSerdeError(
      `could not read the value of "${key}": flags ${FLAG_TAGGED} mark a tagged value, but its envelope header is malformed`,
    );
  }
  const versions = new Map<string, string>();
  for (let i = 0; i < n; i++) versions.set(fields[2 + 2 * i]!, fields[3 + 2 * i]!);
  return { flags, versions, data: data.subarray(end + 1) };
}

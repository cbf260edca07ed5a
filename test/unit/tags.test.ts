/** The pure parts of tag invalidation: tag checks, version keys, the envelope's bytes. */
import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { MemcachedKeyError, MemcachedSerdeError } from '../../lib/errors.js';
import { wireKey } from '../../lib/client/validation.js';
import {
  FLAG_TAGGED,
  MAX_TAGS,
  checkTags,
  isEnvelope,
  newVersion,
  parseEnvelope,
  readVersion,
  tagKey,
  wrapEnvelope,
} from '../../lib/cache/tags.js';

/** A tag as checkTags accepts it: no whitespace, no control characters, well-formed. */
const tagArb = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 400 }).filter((s) => {
  try {
    checkTags([s], 't');
    return true;
  } catch {
    return false;
  }
});

describe('checkTags', () => {
  test('keeps the first of duplicates, in order; undefined and [] are untagged', () => {
    expect(checkTags(['b', 'a', 'b'], 'w')).toEqual(['b', 'a']);
    expect(checkTags(undefined, 'w')).toEqual([]);
    expect(checkTags([], 'w')).toEqual([]);
  });

  test.each([
    ['a string', 'products', /tags must be an array of strings, got string/],
    ['null', null, /got null/],
    ['a number in the list', [1], /every tag must be a string, got number/],
    ['an empty tag', [''], /a tag must not be empty/],
    ['a space', ['a b'], /contains a space \(U\+0020 at index 1\)/],
    ['a newline', ['a\r\nget x'], /contains a control character \(U\+000D at index 1\)/],
    ['DEL', ['a\x7f'], /control character/],
    ['a C1 control', ['a\u0085'], /control character/],
    ['a lone surrogate', ['\ud83d'], /lone UTF-16 surrogate/],
    ['too many', Array.from({ length: MAX_TAGS + 1 }, (_, i) => `t${i}`), /at most 32/],
  ])('rejects %s with MemcachedKeyError', (_name, tags, message) => {
    expect(() => checkTags(tags, 'invalidateTags')).toThrow(MemcachedKeyError);
    expect(() => checkTags(tags, 'invalidateTags')).toThrow(message);
  });
});

describe('tagKey', () => {
  test('`__tag:<tag>` while it fits 250 bytes with the prefix, then `__tag#<sha-256>`', () => {
    expect(tagKey('products', 0)).toBe('__tag:products');
    expect(tagKey('x'.repeat(244), 0)).toBe('__tag:' + 'x'.repeat(244));
    expect(tagKey('x'.repeat(245), 0)).toMatch(/^__tag#[A-Za-z0-9_-]{43}$/);
    expect(tagKey('x'.repeat(240), 4)).toBe('__tag:' + 'x'.repeat(240));
    expect(tagKey('x'.repeat(241), 4)).toMatch(/^__tag#/);
    // UTF-8 bytes count, not UTF-16 units: 122 × 'é' is 244 bytes.
    expect(tagKey('é'.repeat(122), 0)).toBe('__tag:' + 'é'.repeat(122));
    expect(tagKey('é'.repeat(123), 0)).toMatch(/^__tag#/);
  });

  test('property: every checked tag gives a valid key under any prefix; distinct tags, distinct keys', () => {
    fc.assert(
      fc.property(tagArb, tagArb, fc.integer({ min: 0, max: 150 }), (a, b, prefixLength) => {
        const prefix = 'p'.repeat(prefixLength);
        const ka = tagKey(a, prefixLength);
        expect(() => wireKey(ka, prefix, prefixLength, 't')).not.toThrow();
        expect(tagKey(a, prefixLength)).toBe(ka); // deterministic
        if (a !== b) expect(tagKey(b, prefixLength)).not.toBe(ka);
      }),
    );
  });
});

describe('the envelope', () => {
  test('bytes: a text header, then the inner value as stored', () => {
    const data = wrapEnvelope(34, Buffer.from('{"a":1}'), [
      ['__tag:a', 'AAAAAAAAAAAAAAAA'],
      ['__tag:b', 'BBBBBBBBBBBBBBBB'],
    ]);
    expect(data.toString()).toBe(
      'MCTAG1 34 2 __tag:a AAAAAAAAAAAAAAAA __tag:b BBBBBBBBBBBBBBBB\n{"a":1}',
    );
    expect(isEnvelope(FLAG_TAGGED, data)).toBe(true);
    expect(isEnvelope(0, data)).toBe(false);
    expect(isEnvelope(FLAG_TAGGED, Buffer.from('MCTAG'))).toBe(false);
  });

  test('property: parse(wrap(x)) === x for any inner bytes, flags and tags', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.uniqueArray(tagArb, { maxLength: 5 }),
        (bytes, flags, tags) => {
          const versions = tags.map((t) => [tagKey(t, 0), newVersion()] as const);
          const env = parseEnvelope('k', wrapEnvelope(flags, Buffer.from(bytes), versions));
          expect(env.flags).toBe(flags);
          expect([...env.versions]).toEqual(versions.map(([k, v]) => [k, v]));
          expect(Buffer.compare(env.data, Buffer.from(bytes))).toBe(0);
        },
      ),
    );
  });

  test.each([
    ['no newline', 'MCTAG1 0 1 __tag:a v'],
    ['a count that does not match', 'MCTAG1 0 2 __tag:a v\nx'],
    ['bad flags', 'MCTAG1 -1 0\nx'],
    ['flags over 32 bits', 'MCTAG1 4294967296 0\nx'],
  ])('a malformed header (%s) is a MemcachedSerdeError', (_name, text) => {
    expect(() => parseEnvelope('k', Buffer.from(text))).toThrow(MemcachedSerdeError);
  });

  test('versions: 16 characters of base64url, never repeated', () => {
    const seen = new Set(Array.from({ length: 10_000 }, () => newVersion()));
    expect(seen.size).toBe(10_000);
    expect([...seen].every((v) => /^[A-Za-z0-9_-]{16}$/.test(v))).toBe(true);
    for (const v of seen) expect(readVersion(Buffer.from(v, 'latin1'))).toBe(v);
    expect(readVersion(Buffer.from('a b'))).toBeUndefined();
    expect(readVersion(Buffer.from(''))).toBeUndefined();
  });
});

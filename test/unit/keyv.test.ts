/**
 * Pure parts of the Keyv adapter: the TTL conversion (Keyv milliseconds → memcached exptime) and
 * the key forms (which keys are hashed, and that the forms never collide).
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { wireKey } from '../../lib/client/validation.js';
import { MemcachedValueError } from '../../lib/errors.js';
import { KeyForms, isGeneration, keyBytes, newGeneration } from '../../lib/keyv/keys.js';
import { MAX_RELATIVE_EXPTIME, toExptime } from '../../lib/keyv/ttl.js';

const NOW = Date.UTC(2026, 0, 1); // a fixed clock: 1767225600 s
const DAY = 86_400_000;

describe('toExptime', () => {
  test.each([
    [undefined, 0],
    [0, 0],
    [0.001, 1],
    [1, 1],
    [999, 1],
    [1000, 1],
    [1001, 2],
    [59_999.5, 60],
    [30 * DAY, MAX_RELATIVE_EXPTIME],
  ])('%p ms → %p (relative, rounded up)', (ttl, exptime) => {
    expect(toExptime(ttl, 'set', NOW)).toBe(exptime);
  });

  test('over 30 days: the absolute unix time now + ttl, rounded up', () => {
    expect(toExptime(30 * DAY + 1, 'set', NOW)).toBe(NOW / 1000 + 30 * 86_400 + 1);
    expect(toExptime(31 * DAY, 'set', NOW)).toBe(NOW / 1000 + 31 * 86_400);
    expect(toExptime(365 * DAY, 'set', NOW + 1)).toBe(NOW / 1000 + 365 * 86_400 + 1);
  });

  test('property: the item never expires in memcached before Keyv expires it, nor a second later', () => {
    fc.assert(
      fc.property(fc.double({ min: Number.MIN_VALUE, max: 5 * 365 * DAY, noNaN: true }), (ttl) => {
        const exptime = toExptime(ttl, 'set', NOW);
        const expiresAt = exptime > MAX_RELATIVE_EXPTIME ? exptime * 1000 : NOW + exptime * 1000;
        expect(expiresAt).toBeGreaterThanOrEqual(NOW + ttl);
        expect(expiresAt).toBeLessThanOrEqual(NOW + ttl + 1000);
        expect(Number.isInteger(exptime)).toBe(true);
        expect(exptime).toBeGreaterThan(0);
      }),
    );
  });

  test.each([
    [-1, /non-negative number of milliseconds.*got -1/],
    [-0.5, /got -0.5/],
    [Number.NaN, /got NaN/],
    [Number.POSITIVE_INFINITY, /got Infinity/],
    ['1000', /got string/],
    [null, /got object/],
    [1000n, /got bigint/],
    [50 * 365 * DAY, /after 2038-01-19/],
  ])('%p → MemcachedValueError', (ttl, message) => {
    let error: unknown;
    try {
      toExptime(ttl, 'set', NOW);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(MemcachedValueError);
    expect((error as Error).message).toMatch(/^set: /);
    expect((error as Error).message).toMatch(message);
  });
});

/**
 * Strings biased towards the characters the key rules are about (space, C0, DEL, C1, NBSP, lone
 * surrogates, multi-byte, ':'), mixed with any code unit.
 */
const keyText = (constraints: { minLength?: number; maxLength: number }) =>
  fc.string({
    ...constraints,
    unit: fc.oneof(
      fc.constantFrom(' ', '\t', '\n', '\r', '\u0000', '\u001f', '\u007f', '\u0080', '\u0085'),
      fc.constantFrom('\u009f', '\u00a0', '\ud800', '\udfff', 'é', '€', '😀', ':', 'a', 'Z'),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
    ),
  });

describe('key forms', () => {
  const generation = 'AbCdEfGhIj_';
  const sha = (text: string): string =>
    createHash('sha256').update(text, 'utf8').digest('base64url');

  test('generations are 11 base64url characters, without ":"', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const g = newGeneration();
      expect(isGeneration(g)).toBe(true);
      expect(g).not.toContain(':');
      seen.add(g);
    }
    expect(seen.size).toBe(1000);
    for (const bad of ['', 'short', 'AbCdEfGhIj_x', 'AbCdEfGhIj:', 42, undefined, null]) {
      expect(isGeneration(bad)).toBe(false);
    }
  });

  test('keys memcached takes are kept readable', () => {
    const forms = new KeyForms(0);
    expect(forms.valueKey(generation, 'keyv:/products?page=2')).toBe(
      `kv:${generation}:keyv:/products?page=2`,
    );
    expect(forms.valueKey(generation, 'keyv:café')).toBe(`kv:${generation}:keyv:café`);
    expect(forms.generationKey('keyv')).toBe('kg:keyv');
    expect(forms.generationKey('')).toBe('kg:');
  });

  test('keys with whitespace, control characters or lone surrogates are hashed (SHA-256 of the UTF-8)', () => {
    const forms = new KeyForms(0);
    for (const key of [
      'keyv:a b',
      'keyv:a\r\nflush_all',
      'keyv:\t',
      'keyv:\u0000',
      'keyv:\u007f',
      'keyv:\u0085',
    ]) {
      expect(forms.valueKey(generation, key)).toBe(`kh:${generation}:${sha(key)}`);
    }
    expect(forms.generationKey('my namespace')).toBe(`kg#${sha('my namespace')}`);
  });

  test('keys with different lone surrogates get different hashes (not both U+FFFD)', () => {
    const forms = new KeyForms(0);
    const keys = ['keyv:\ud800', 'keyv:\udfff', 'keyv:\ufffd', 'keyv:\ufffd '];
    const stored = keys.map((key) => forms.valueKey(generation, key));
    expect(new Set(stored).size).toBe(keys.length);
    const tagged = createHash('sha256')
      .update(Buffer.from([0xff]))
      .update('keyv:\ud800', 'utf16le')
      .digest('base64url');
    expect(stored[0]).toBe(`kh:${generation}:${tagged}`);
    // Bytes that are the UTF-16LE of a key with a lone surrogate and the UTF-8 of another key.
    const a = '\u0000\u0600\u0000';
    const b = '\ud800\u0080';
    expect(Buffer.from(b, 'utf16le')).toEqual(Buffer.from(a, 'utf8'));
    expect(forms.valueKey(generation, a)).not.toBe(forms.valueKey(generation, b));
  });

  test('the 250-byte limit counts the client prefix, the form and the UTF-8 bytes', () => {
    // 'kv:' + generation + ':' = 15 bytes.
    const fits = 'k'.repeat(250 - 15);
    expect(new KeyForms(0).valueKey(generation, fits)).toBe(`kv:${generation}:${fits}`);
    expect(new KeyForms(0).valueKey(generation, fits + 'k')).toBe(
      `kv:${generation}:${sha(fits + 'k')}`.replace('kv:', 'kh:'),
    );
    expect(new KeyForms(5).valueKey(generation, fits)).toBe(`kh:${generation}:${sha(fits)}`);
    const twoByte = 'é'.repeat(118); // 236 bytes: 251 with the form
    expect(new KeyForms(0).valueKey(generation, twoByte)).toBe(`kh:${generation}:${sha(twoByte)}`);
    expect(new KeyForms(0).valueKey(generation, twoByte.slice(1))).toBe(
      `kv:${generation}:${twoByte.slice(1)}`,
    );
    expect(new KeyForms(0).generationKey('n'.repeat(247))).toBe(`kg:${'n'.repeat(247)}`);
    expect(new KeyForms(0).generationKey('n'.repeat(248))).toBe(`kg#${sha('n'.repeat(248))}`);
  });

  test('property: every form is a key the client accepts, with the prefix', () => {
    const text = fc.oneof(keyText({ maxLength: 40 }), keyText({ maxLength: 300 }));
    fc.assert(
      fc.property(text, fc.string({ unit: 'grapheme-ascii', maxLength: 40 }), (key, raw) => {
        const prefix = raw.replaceAll(' ', ''); // printable ASCII without the space
        const forms = new KeyForms(Buffer.byteLength(prefix));
        for (const k of [forms.valueKey(generation, key), forms.generationKey(key)]) {
          expect(() => wireKey(k, prefix, Buffer.byteLength(prefix), 'get')).not.toThrow();
        }
      }),
    );
  });

  test('property: keyBytes says a key is usable exactly when the client accepts it', () => {
    fc.assert(
      fc.property(keyText({ minLength: 1, maxLength: 60 }), (key) => {
        let accepted = true;
        try {
          wireKey(key, '', 0, 'get');
        } catch {
          accepted = false;
        }
        expect(keyBytes(key) >= 0).toBe(accepted);
        if (accepted) expect(keyBytes(key)).toBe(Buffer.byteLength(key));
      }),
      { numRuns: 2000 },
    );
  });

  test('property: different (generation, key) pairs never share a value key', () => {
    const forms = new KeyForms(0);
    const gen = fc.constantFrom(generation, 'zzzzzzzzzzz', '0123456789-');
    const key = fc.oneof(keyText({ maxLength: 20 }), fc.string({ maxLength: 240, minLength: 230 }));
    fc.assert(
      fc.property(gen, key, gen, key, (g1, k1, g2, k2) => {
        fc.pre(g1 !== g2 || k1 !== k2);
        expect(forms.valueKey(g1, k1)).not.toBe(forms.valueKey(g2, k2));
        expect(forms.generationKey(k1)).not.toBe(forms.valueKey(g2, k2));
      }),
      { numRuns: 2000 },
    );
  });
});

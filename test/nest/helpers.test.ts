/** Pure helpers of the Nest integration: stable keys and the rate-limited failure log. */
import { defaultCacheKey, stableStringify } from '../../lib/cache/method-key.js';
import { CacheErrorReporter } from '../../lib/utils/error-reporter.js';
import { MemcachedConnectionError, MemcachedTimeoutError } from '../../lib/index.js';

describe('stableStringify', () => {
  test('sorts object keys at every depth and keeps array order', () => {
    expect(stableStringify({ b: 1, a: { d: [3, 1], c: null } })).toBe(
      '{"a":{"c":null,"d":[3,1]},"b":1}',
    );
    expect(stableStringify({ a: 1, b: 2 })).toBe(stableStringify({ b: 2, a: 1 }));
  });

  test('distinguishes values JSON would confuse', () => {
    expect(stableStringify('1')).not.toBe(stableStringify(1));
    expect(stableStringify(10n)).toBe('{"$bigint":"10"}');
    expect(stableStringify(NaN)).toBe('{"$number":"NaN"}');
    expect(
      stableStringify(
        new Map([
          ['b', 1],
          ['a', 2],
        ]),
      ),
    ).toBe(
      stableStringify(
        new Map([
          ['a', 2],
          ['b', 1],
        ]),
      ),
    );
    expect(stableStringify(new Set([2, 1]))).toBe('{"$set":[1,2]}');
    expect(stableStringify(new Date(0))).toBe('"1970-01-01T00:00:00.000Z"');
    expect(stableStringify(Buffer.from('hi'))).toBe('{"$bytes":"aGk="}');
    expect(stableStringify([undefined, 1])).toBe('[null,1]');
    expect(stableStringify({ a: undefined, b: 1 })).toBe('{"b":1}');
  });

  test('refuses what has no stable text', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(() => stableStringify(cyclic)).toThrow(/arguments\.self is cyclic/);
    expect(() => stableStringify([() => 1])).toThrow(/arguments\[0\] is a function/);
    expect(() => stableStringify({ s: Symbol('x') })).toThrow(/is a symbol/);
    // A shared (non-cyclic) reference is fine.
    const shared = { x: 1 };
    expect(stableStringify([shared, shared])).toBe('[{"x":1},{"x":1}]');
  });
});

describe('defaultCacheKey', () => {
  test('readable when short and printable, hashed otherwise, always within 250 bytes', () => {
    expect(defaultCacheKey('Svc', 'find', ['a', 1])).toBe('Svc.find("a",1)');
    expect(defaultCacheKey('Svc', 'find', [])).toBe('Svc.find()');
    const spaced = defaultCacheKey('Svc', 'find', ['a b']);
    expect(spaced).toMatch(/^Svc\.find#[A-Za-z0-9_-]{43}$/);
    expect(defaultCacheKey('Svc', 'find', ['a b'])).toBe(spaced);
    expect(defaultCacheKey('Svc', 'find', ['a c'])).not.toBe(spaced);
    expect(defaultCacheKey('Svc', 'find', ['ünïcode'])).toMatch(/^Svc\.find#/);
    const long = ['x'.repeat(240)];
    expect(defaultCacheKey('Svc', 'find', long)).toMatch(/^Svc\.find#/);
    expect(defaultCacheKey('Svc', 'find', long, 'p'.repeat(10)).length).toBeLessThanOrEqual(240);
    for (const prefixLength of [0, 100, 200, 226, 227]) {
      const prefix = 'é'.repeat(Math.floor(prefixLength / 2));
      const key = defaultCacheKey('S'.repeat(300), 'm', long, prefix);
      expect(Buffer.byteLength(prefix + key)).toBeLessThanOrEqual(250);
      expect(key.length).toBeGreaterThan(0);
      expect(key).toMatch(/^[\x21-\x7e]+$/);
    }
    expect(() => defaultCacheKey('S', 'm', long, 'p'.repeat(228))).toThrow(
      /keyPrefix leaves 22 bytes for the key of S\.m: too few/,
    );
  });
});

describe('CacheErrorReporter', () => {
  test('one warning per error kind per interval, then one with the count left out', async () => {
    const warnings: string[] = [];
    const reporter = new CacheErrorReporter(
      { warn: (m: unknown) => warnings.push(String(m)) },
      'c1',
      60,
    );
    for (let i = 0; i < 4; i++)
      reporter.report(`reading "k${i}"`, new MemcachedConnectionError('down'));
    reporter.report('writing "k"', new MemcachedTimeoutError('slow'));
    reporter.report('writing "k"', new MemcachedTimeoutError('slow'));
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(
      /^memcached client "c1": cache failure while reading "k0"; the call went on without the cache: MemcachedConnectionError: down\./,
    );
    expect(warnings[1]).toMatch(/MemcachedTimeoutError: slow\./);
    await new Promise((resolve) => setTimeout(resolve, 80));
    reporter.report('reading "k9"', new MemcachedConnectionError('still down'));
    expect(warnings).toHaveLength(3);
    expect(warnings[2]).toMatch(
      /still down\. 3 more MemcachedConnectionError failure\(s\) were not logged/,
    );
  });
});

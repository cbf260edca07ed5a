import { randomBytes } from 'node:crypto';
import { deflateSync, gzipSync, inflateSync } from 'node:zlib';
import fc from 'fast-check';
import {
  MemcachedOptionsError,
  MemcachedSerdeError,
  MemcachedValueError,
} from '../../lib/errors.js';
import {
  ASYNC_COMPRESSION_THRESHOLD,
  compress,
  decompress,
  normalizeCompressionOptions,
  type CompressionOptions,
} from '../../lib/serde/compression.js';
import { DefaultSerde, defaultSerde } from '../../lib/serde/default-serde.js';
import {
  FLAG_BYTES,
  FLAG_INTEGER,
  FLAG_JSON,
  FLAG_LONG,
  FLAG_TEXT,
} from '../../lib/serde/serde.js';

const KEY = 'user:42';

function roundTrip(value: unknown): unknown {
  const { value: bytes, flags } = defaultSerde.serialize(KEY, value);
  return defaultSerde.deserialize(KEY, bytes, flags);
}

function serializeError(value: unknown): unknown {
  try {
    defaultSerde.serialize(KEY, value);
  } catch (error) {
    return error;
  }
  throw new Error('serialize did not throw');
}

function deserializeError(bytes: Buffer | string, flags: number): unknown {
  try {
    defaultSerde.deserialize(KEY, typeof bytes === 'string' ? Buffer.from(bytes) : bytes, flags);
  } catch (error) {
    return error;
  }
  throw new Error('deserialize did not throw');
}

/** Runs `fn` and returns its (awaited) result, turning a synchronous throw into a rejection. */
async function settle<T>(fn: () => T | Promise<T>): Promise<T> {
  return await fn();
}

describe('DefaultSerde', () => {
  it('exports a shared instance', () => {
    expect(defaultSerde).toBeInstanceOf(DefaultSerde);
  });

  describe('byte-exact encodings', () => {
    it.each<[string, unknown, number[] | string, number]>([
      ['a string as UTF-8', 'héllo', [0x68, 0xc3, 0xa9, 0x6c, 0x6c, 0x6f], FLAG_TEXT],
      ['an empty string', '', '', FLAG_TEXT],
      ['a safe integer', 42, '42', FLAG_INTEGER],
      ['a negative integer', -42, '-42', FLAG_INTEGER],
      ['zero', 0, '0', FLAG_INTEGER],
      ['-0 as 0', -0, '0', FLAG_INTEGER],
      ['MAX_SAFE_INTEGER', Number.MAX_SAFE_INTEGER, '9007199254740991', FLAG_INTEGER],
      ['MIN_SAFE_INTEGER', Number.MIN_SAFE_INTEGER, '-9007199254740991', FLAG_INTEGER],
      ['a bigint', 2n ** 70n, '1180591620717411303424', FLAG_LONG],
      ['a negative bigint', -(2n ** 70n), '-1180591620717411303424', FLAG_LONG],
      ['a small bigint', 7n, '7', FLAG_LONG],
      ['a non-integer number as JSON', 1.5, '1.5', FLAG_JSON],
      ['an unsafe integer number as JSON', 2 ** 60, '1152921504606847000', FLAG_JSON],
      ['a huge number as JSON', 1e21, '1e+21', FLAG_JSON],
      ['an object as JSON', { a: 1 }, '{"a":1}', FLAG_JSON],
      ['an array as JSON', [1, 'x', null], '[1,"x",null]', FLAG_JSON],
      ['true', true, 'true', FLAG_JSON],
      ['false', false, 'false', FLAG_JSON],
      ['null', null, 'null', FLAG_JSON],
      [
        'a Date via toJSON',
        new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 6)),
        '"2024-01-02T03:04:05.006Z"',
        FLAG_JSON,
      ],
      [
        'an object with undefined properties (left out)',
        { a: undefined, b: 2 },
        '{"b":2}',
        FLAG_JSON,
      ],
      [
        'a string containing null',
        { s: 'nullable', n: null },
        '{"s":"nullable","n":null}',
        FLAG_JSON,
      ],
      ['a non-ASCII object', { é: '€' }, '{"é":"€"}', FLAG_JSON],
    ])('%s', (_name, value, expected, flags) => {
      const serialized = defaultSerde.serialize(KEY, value);
      const bytes =
        typeof expected === 'string' ? Buffer.from(expected, 'utf8') : Buffer.from(expected);
      expect(serialized.flags).toBe(flags);
      expect(Buffer.isBuffer(serialized.value)).toBe(true);
      expect(serialized.value.equals(bytes)).toBe(true);
    });

    it('stores a Buffer as is, without copying (flags 0)', () => {
      const buf = Buffer.from([0, 1, 2, 255]);
      const serialized = defaultSerde.serialize(KEY, buf);
      expect(serialized.flags).toBe(FLAG_BYTES);
      expect(serialized.value).toBe(buf);
    });

    it('stores a Uint8Array view as a Buffer over the same memory (flags 0)', () => {
      const backing = new Uint8Array([9, 8, 7, 6, 5, 4]);
      const view = new Uint8Array(backing.buffer, 2, 3);
      const serialized = defaultSerde.serialize(KEY, view);
      expect(serialized.flags).toBe(FLAG_BYTES);
      expect(Buffer.isBuffer(serialized.value)).toBe(true);
      expect([...serialized.value]).toEqual([7, 6, 5]);
      expect(serialized.value.buffer).toBe(backing.buffer);
      expect(serialized.value.byteOffset).toBe(2);
    });
  });

  describe('round trips', () => {
    it.each<[string, unknown]>([
      ['string', 'héllo wörld ✓ 𝄞'],
      ['empty string', ''],
      ['integer', 123456789],
      ['negative integer', -5],
      ['MAX_SAFE_INTEGER', Number.MAX_SAFE_INTEGER],
      ['MIN_SAFE_INTEGER', Number.MIN_SAFE_INTEGER],
      ['float', 3.141592653589793],
      ['tiny float', 5e-324],
      ['unsafe integer number', 2 ** 60],
      ['bigint above 2^53', 2n ** 70n],
      ['bigint just above MAX_SAFE_INTEGER', 2n ** 53n],
      ['negative bigint below MIN_SAFE_INTEGER', -(2n ** 53n)],
      ['small bigint', 5n],
      ['zero bigint', 0n],
      ['negative small bigint', -5n],
      ['bigint MAX_SAFE_INTEGER', 2n ** 53n - 1n],
      ['true', true],
      ['false', false],
      ['null', null],
      ['object', { a: 1, b: [true, null, 'x'], c: { d: 1.5 } }],
      ['array', [1, 2, [3, { four: 4 }]]],
      ['empty object', {}],
      ['empty array', []],
    ])('%s', (_name, value) => {
      expect(roundTrip(value)).toEqual(value);
    });

    it('a Buffer reads back as the same bytes', () => {
      const buf = Buffer.from([0, 0xff, 0x80, 10, 13]);
      expect(roundTrip(buf)).toEqual(buf);
    });

    it('a plain Uint8Array reads back as a Buffer of the same bytes', () => {
      const result = roundTrip(new Uint8Array([1, 2, 3]));
      expect(Buffer.isBuffer(result)).toBe(true);
      expect([...(result as Buffer)]).toEqual([1, 2, 3]);
    });

    it('flags 0 returns the given buffer itself', () => {
      const buf = Buffer.from('raw');
      expect(defaultSerde.deserialize(KEY, buf, FLAG_BYTES)).toBe(buf);
    });

    it('-0 reads back as 0', () => {
      expect(Object.is(roundTrip(-0), 0)).toBe(true);
    });

    it('a bigint within the safe range reads back as a bigint, not a number', () => {
      expect(roundTrip(5n)).toBe(5n);
      expect(typeof roundTrip(5n)).toBe('bigint');
      expect(roundTrip(-(2n ** 53n - 1n))).toBe(-(2n ** 53n - 1n));
    });

    it('a Date reads back as its JSON (ISO string)', () => {
      const date = new Date(Date.UTC(2024, 0, 2));
      expect(roundTrip(date)).toBe('2024-01-02T00:00:00.000Z');
      expect(roundTrip({ at: date })).toEqual({ at: '2024-01-02T00:00:00.000Z' });
    });

    it('a class instance reads back as a plain object', () => {
      class Point {
        constructor(
          readonly x: number,
          readonly y: number,
        ) {}
        norm(): number {
          return Math.hypot(this.x, this.y);
        }
      }
      const result = roundTrip(new Point(3, 4));
      expect(result).toEqual({ x: 3, y: 4 });
      expect(Object.getPrototypeOf(result)).toBe(Object.prototype);
    });
  });

  describe('reading integers (flags 2 and 4, as written by pymemcache / python-memcached)', () => {
    it.each<[string, number, number | bigint]>([
      ['42', FLAG_INTEGER, 42],
      ['-42', FLAG_INTEGER, -42],
      ['0', FLAG_INTEGER, 0],
      ['007', FLAG_INTEGER, 7],
      ['0000000000000000000042', FLAG_INTEGER, 42],
      ['999999999999999', FLAG_INTEGER, 999999999999999],
      ['-999999999999999', FLAG_INTEGER, -999999999999999],
      ['1000000000000000', FLAG_INTEGER, 1000000000000000],
      ['9007199254740991', FLAG_INTEGER, Number.MAX_SAFE_INTEGER],
      ['-9007199254740991', FLAG_INTEGER, Number.MIN_SAFE_INTEGER],
      ['9007199254740992', FLAG_INTEGER, 9007199254740992n],
      ['-9007199254740992', FLAG_INTEGER, -9007199254740992n],
      ['123456789012345678901234567890', FLAG_INTEGER, 123456789012345678901234567890n],
      ['5', FLAG_LONG, 5n],
      ['-5', FLAG_LONG, -5n],
      ['0', FLAG_LONG, 0n],
      ['-0', FLAG_LONG, 0n],
      ['007', FLAG_LONG, 7n],
      ['9007199254740991', FLAG_LONG, 9007199254740991n],
      ['9007199254740992', FLAG_LONG, 9007199254740992n],
      ['123456789012345678901234567890', FLAG_LONG, 123456789012345678901234567890n],
    ])('%s with flags %d', (text, flags, expected) => {
      const result = defaultSerde.deserialize(KEY, Buffer.from(text, 'latin1'), flags);
      expect(typeof result).toBe(typeof expected);
      expect(result).toBe(expected);
    });

    it('python-memcached style: "5" with flags 2 reads as the number 5, above 2^53 as a bigint', () => {
      expect(defaultSerde.deserialize(KEY, Buffer.from('5'), FLAG_INTEGER)).toBe(5);
      expect(defaultSerde.deserialize(KEY, Buffer.from(String(2n ** 60n)), FLAG_INTEGER)).toBe(
        2n ** 60n,
      );
    });

    it('trailing spaces (memcached pads a decr result in place) are ignored', () => {
      expect(defaultSerde.deserialize(KEY, Buffer.from('5   '), FLAG_INTEGER)).toBe(5);
      expect(defaultSerde.deserialize(KEY, Buffer.from('5   '), FLAG_LONG)).toBe(5n);
      expect(defaultSerde.deserialize(KEY, Buffer.from('12345678901234567890  '), FLAG_LONG)).toBe(
        12345678901234567890n,
      );
    });

    it('"-0" reads as 0', () => {
      expect(Object.is(defaultSerde.deserialize(KEY, Buffer.from('-0'), FLAG_INTEGER), 0)).toBe(
        true,
      );
    });

    it.each([
      '',
      '-',
      '+1',
      ' 1',
      ' ',
      '1\r\n',
      '1.5',
      '1e3',
      '0x10',
      '12a',
      '--1',
      '1-',
      '١٢',
      '12345678901234567890a',
      '-12345678901234567890.5',
    ])('malformed integer text %j → MemcachedSerdeError', (text) => {
      for (const flags of [FLAG_INTEGER, FLAG_LONG]) {
        const error = deserializeError(Buffer.from(text, 'utf8'), flags);
        expect(error).toBeInstanceOf(MemcachedSerdeError);
        expect((error as Error).message).toContain(JSON.stringify(KEY));
        expect((error as Error).message).toContain(`flags ${flags}`);
      }
    });
  });

  describe('reading text and JSON', () => {
    it('flags 16 decodes UTF-8', () => {
      expect(defaultSerde.deserialize(KEY, Buffer.from([0x68, 0xc3, 0xa9]), FLAG_TEXT)).toBe('hé');
    });

    it('invalid UTF-8 becomes U+FFFD (and a lone surrogate is stored as U+FFFD)', () => {
      expect(defaultSerde.deserialize(KEY, Buffer.from([0x61, 0xff]), FLAG_TEXT)).toBe('a\ufffd');
      expect(roundTrip('x\ud800')).toBe('x\ufffd');
    });

    it('invalid JSON → MemcachedSerdeError naming key and flags', () => {
      for (const text of ['{', '', 'undefined', "{'a':1}", 'NaN', '{"a":1}x']) {
        const error = deserializeError(text, FLAG_JSON);
        expect(error).toBeInstanceOf(MemcachedSerdeError);
        expect((error as Error).message).toContain(JSON.stringify(KEY));
        expect((error as Error).message).toContain('flags 32');
        expect((error as Error).cause).toBeInstanceOf(SyntaxError);
      }
    });

    it('JSON with a __proto__ key does not pollute prototypes', () => {
      const result = defaultSerde.deserialize(
        KEY,
        Buffer.from('{"__proto__":{"polluted":1},"a":{"__proto__":{"polluted":2}}}'),
        FLAG_JSON,
      ) as Record<string, unknown>;
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();
      expect(Object.getPrototypeOf(result)).toBe(Object.prototype);
      expect(Object.prototype.hasOwnProperty.call(result, '__proto__')).toBe(true);
      expect((result as { polluted?: unknown }).polluted).toBeUndefined();
      const inner = result.a as Record<string, unknown>;
      expect(Object.getPrototypeOf(inner)).toBe(Object.prototype);
      expect((inner as { polluted?: unknown }).polluted).toBeUndefined();
    });

    it('a constructor/prototype payload stays inert data', () => {
      const result = defaultSerde.deserialize(
        KEY,
        Buffer.from('{"constructor":{"prototype":{"polluted":1}},"toString":"x"}'),
        FLAG_JSON,
      );
      expect(result).toEqual({ constructor: { prototype: { polluted: 1 } }, toString: 'x' });
      expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();
    });
  });

  describe('unknown flags', () => {
    it.each([1, 3, 64, 8, 24, 48, 6, 17, 0x80000000, -1])(
      'flags %d → MemcachedSerdeError',
      (flags) => {
        const error = deserializeError('x', flags);
        expect(error).toBeInstanceOf(MemcachedSerdeError);
        const message = (error as Error).message;
        expect(message).toContain(JSON.stringify(KEY));
        expect(message).toContain(`flags ${flags}`);
        expect(message).toContain('serde');
      },
    );

    it('mentions compression when bit 8 is still set', () => {
      expect((deserializeError('x', 8 | FLAG_TEXT) as Error).message).toContain('compression');
    });
  });

  describe('values that cannot be stored → MemcachedValueError', () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;

    it.each<[string, unknown, string]>([
      ['undefined', undefined, 'undefined'],
      ['a function', () => 1, 'function'],
      ['a symbol', Symbol('s'), 'symbol'],
      ['NaN', NaN, 'NaN'],
      ['Infinity', Infinity, 'Infinity'],
      ['-Infinity', -Infinity, '-Infinity'],
      ['a cycle', cyclic, 'JSON.stringify failed'],
      ['a bigint inside an object', { n: 1n }, 'BigInt'],
      ['NaN inside an object', { a: { b: NaN } }, 'NaN at property "b"'],
      ['Infinity inside an array', [1, Infinity], 'Infinity at property "1"'],
      ['undefined inside an array', [1, undefined], 'undefined at array index 1'],
      ['a function inside an array', [() => 1], 'function at array index 0'],
      ['a sparse array', [1, , 3], 'undefined at array index 1'], // eslint-disable-line no-sparse-arrays
      ['an invalid Date', new Date(NaN), 'invalid Date'],
      [
        'an invalid Date inside an object',
        { at: new Date('nope') },
        'invalid Date at property "at"',
      ],
      ['toJSON returning undefined', { toJSON: () => undefined }, 'returned undefined'],
      ['toJSON returning NaN', { a: { toJSON: () => NaN } }, 'NaN'],
      [
        'a throwing toJSON',
        {
          toJSON() {
            throw new Error('boom');
          },
        },
        'boom',
      ],
      ['a Map', new Map([['a', 1]]), 'Map'],
      ['a Set', new Set([1]), 'Set'],
      ['an Int32Array', new Int32Array([1, 2]), 'Int32Array'],
      ['a DataView', new DataView(new ArrayBuffer(2)), 'DataView'],
      ['an ArrayBuffer', new ArrayBuffer(4), 'ArrayBuffer'],
    ])('%s', (_name, value, mention) => {
      const error = serializeError(value);
      expect(error).toBeInstanceOf(MemcachedValueError);
      const message = (error as Error).message;
      expect(message).toContain(JSON.stringify(KEY));
      expect(message).toContain(mention);
    });

    it('keeps the JSON.stringify error as cause', () => {
      const error = serializeError({ n: 1n }) as Error;
      expect(error.cause).toBeInstanceOf(TypeError);
    });
  });

  describe('properties', () => {
    it('any JSON value round-trips as JSON gives it', () => {
      fc.assert(
        fc.property(fc.jsonValue(), (value) => {
          expect(roundTrip(value)).toEqual(JSON.parse(JSON.stringify(value)));
        }),
        { numRuns: 500 },
      );
    });

    it('any string round-trips with flags 16', () => {
      fc.assert(
        fc.property(fc.string({ unit: 'binary' }), (value) => {
          const serialized = defaultSerde.serialize(KEY, value);
          expect(serialized.flags).toBe(FLAG_TEXT);
          expect(serialized.value.equals(Buffer.from(value, 'utf8'))).toBe(true);
          expect(defaultSerde.deserialize(KEY, serialized.value, serialized.flags)).toBe(value);
        }),
        { numRuns: 500 },
      );
    });

    it('any bytes round-trip with flags 0', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 256 }), (array) => {
          const buf = Buffer.from(array);
          const serialized = defaultSerde.serialize(KEY, buf);
          expect(serialized.flags).toBe(FLAG_BYTES);
          expect(defaultSerde.deserialize(KEY, serialized.value, serialized.flags)).toEqual(buf);
        }),
        { numRuns: 300 },
      );
    });

    it('any safe integer round-trips with flags 2 as its decimal text', () => {
      fc.assert(
        fc.property(fc.maxSafeInteger(), (n) => {
          const serialized = defaultSerde.serialize(KEY, n);
          expect(serialized.flags).toBe(FLAG_INTEGER);
          expect(serialized.value.toString('latin1')).toBe(String(n));
          expect(defaultSerde.deserialize(KEY, serialized.value, serialized.flags)).toBe(
            n === 0 ? 0 : n,
          );
        }),
        { numRuns: 1000 },
      );
    });

    it('any bigint round-trips with flags 4 as a bigint (read with flags 2: a number when safe)', () => {
      fc.assert(
        fc.property(fc.bigInt({ min: -(2n ** 200n), max: 2n ** 200n }), (n) => {
          const serialized = defaultSerde.serialize(KEY, n);
          expect(serialized.flags).toBe(FLAG_LONG);
          expect(serialized.value.toString('latin1')).toBe(n.toString());
          const safe = n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER);
          expect(defaultSerde.deserialize(KEY, serialized.value, FLAG_LONG)).toBe(n);
          expect(defaultSerde.deserialize(KEY, serialized.value, FLAG_INTEGER)).toBe(
            safe ? Number(n) : n,
          );
        }),
        { numRuns: 1000 },
      );
    });

    it('any finite double round-trips exactly (integers as 2, others as JSON)', () => {
      fc.assert(
        fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (n) => {
          expect(roundTrip(n)).toBe(Object.is(n, -0) ? 0 : n);
        }),
        { numRuns: 1000 },
      );
    });
  });
});

describe('compression', () => {
  const options: Required<CompressionOptions> = normalizeCompressionOptions({ threshold: 100 })!;
  const compressible = Buffer.from(
    JSON.stringify({ items: Array.from({ length: 100 }, (_, i) => ({ id: i, name: 'item' })) }),
  );

  describe('normalizeCompressionOptions', () => {
    it('undefined and false turn compression off', () => {
      expect(normalizeCompressionOptions(undefined)).toBeUndefined();
      expect(normalizeCompressionOptions(false)).toBeUndefined();
    });

    it('fills in the defaults', () => {
      expect(normalizeCompressionOptions({ threshold: 1024 })).toEqual({
        threshold: 1024,
        algorithm: 'zlib',
        level: 6,
      });
      expect(normalizeCompressionOptions({ threshold: 0, algorithm: 'zlib', level: 9 })).toEqual({
        threshold: 0,
        algorithm: 'zlib',
        level: 9,
      });
      expect(normalizeCompressionOptions({ threshold: 1, level: -1 })?.level).toBe(-1);
    });

    it.each<[string, unknown, string]>([
      ['true', true, 'compression'],
      ['null', null, 'compression'],
      ['a number', 1024, 'compression'],
      ['an array', [], 'compression'],
      ['a missing threshold', {}, 'compression.threshold'],
      ['a negative threshold', { threshold: -1 }, 'compression.threshold'],
      ['a fractional threshold', { threshold: 1.5 }, 'compression.threshold'],
      ['a NaN threshold', { threshold: NaN }, 'compression.threshold'],
      ['an infinite threshold', { threshold: Infinity }, 'compression.threshold'],
      ['a string threshold', { threshold: '1024' }, 'compression.threshold'],
      ['an unknown algorithm', { threshold: 1, algorithm: 'gzip' }, 'compression.algorithm'],
      ['a level above 9', { threshold: 1, level: 10 }, 'compression.level'],
      ['a level below -1', { threshold: 1, level: -2 }, 'compression.level'],
      ['a fractional level', { threshold: 1, level: 1.5 }, 'compression.level'],
      ['a string level', { threshold: 1, level: '6' }, 'compression.level'],
      ['an unknown key', { threshold: 1, treshold: 2 }, 'compression.treshold'],
    ])('rejects %s', (_name, input, option) => {
      let error: unknown;
      try {
        normalizeCompressionOptions(input);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(MemcachedOptionsError);
      expect((error as MemcachedOptionsError).option).toBe(option);
      expect((error as Error).message).toContain(`"${option}"`);
    });
  });

  describe('compress', () => {
    it('returns undefined below the threshold', () => {
      expect(compress(compressible.subarray(0, 99), options)).toBeUndefined();
      expect(compress(compressible.subarray(0, 100), options)).toBeInstanceOf(Buffer);
    });

    it('returns undefined when compressing does not shrink the value', () => {
      expect(compress(randomBytes(4096), options)).toBeUndefined();
      expect(compress(Buffer.alloc(0), { ...options, threshold: 0 })).toBeUndefined();
    });

    it('makes valid RFC 1950 data that zlib.inflateSync decodes, synchronously', () => {
      for (const level of [-1, 0, 1, 6, 9]) {
        const out = compress(compressible, { ...options, level });
        if (level === 0) {
          // Level 0 only stores: never smaller.
          expect(out).toBeUndefined();
          continue;
        }
        expect(out).toBeInstanceOf(Buffer);
        const bytes = out as Buffer;
        expect(bytes.length).toBeLessThan(compressible.length);
        expect(bytes[0]).toBe(0x78); // deflate, 32 KiB window
        expect((bytes[0]! * 256 + bytes[1]!) % 31).toBe(0); // RFC 1950 FCHECK
        expect(inflateSync(bytes).equals(compressible)).toBe(true);
      }
    });

    it('round-trips through decompress', () => {
      const out = compress(compressible, options) as Buffer;
      const back = decompress(KEY, out, 1024 * 1024);
      expect(back).toBeInstanceOf(Buffer);
      expect((back as Buffer).equals(compressible)).toBe(true);
    });

    it('round-trips serialized values of every kind', () => {
      fc.assert(
        fc.property(fc.jsonValue(), (value) => {
          const serialized = defaultSerde.serialize(KEY, value);
          const out = compress(serialized.value, { ...options, threshold: 0 }) as
            Buffer | undefined;
          const bytes =
            out === undefined ? serialized.value : (decompress(KEY, out, 1 << 20) as Buffer);
          expect(defaultSerde.deserialize(KEY, bytes, serialized.flags)).toEqual(
            defaultSerde.deserialize(KEY, serialized.value, serialized.flags),
          );
        }),
        { numRuns: 200 },
      );
    });

    it(`works on the thread pool (a Promise) from ${ASYNC_COMPRESSION_THRESHOLD} bytes`, async () => {
      expect(ASYNC_COMPRESSION_THRESHOLD).toBe(64 * 1024);
      const big = Buffer.from('abcdefgh'.repeat(ASYNC_COMPRESSION_THRESHOLD / 8));
      expect(big.length).toBe(ASYNC_COMPRESSION_THRESHOLD);
      const justBelow = compress(big.subarray(1), options);
      expect(justBelow).toBeInstanceOf(Buffer);
      const pending = compress(big, options);
      expect(pending).toBeInstanceOf(Promise);
      const out = await pending;
      expect(out).toBeInstanceOf(Buffer);
      expect(out![0]).toBe(0x78);
      expect(inflateSync(out!).equals(big)).toBe(true);
    });

    it('the async path returns undefined for incompressible data', async () => {
      const pending = compress(randomBytes(ASYNC_COMPRESSION_THRESHOLD * 2), options);
      expect(pending).toBeInstanceOf(Promise);
      await expect(pending).resolves.toBeUndefined();
    });
  });

  describe('decompress', () => {
    it('reads what Python zlib.compress makes', () => {
      // python3 -c "import zlib; print(zlib.compress(b'hello world').hex())"
      const fromPython = Buffer.from('789ccb48cdc9c95728cf2fca4901001a0b045d', 'hex');
      expect(decompress(KEY, fromPython, 100)).toEqual(Buffer.from('hello world'));
      // python3 -c "import zlib; print(zlib.compress('héllo wörld'.encode()*3, 9).hex())"
      const level9 = Buffer.from('78dacb38bc3227275fa1fcf0b6a29c940c9c1c0084fb1348', 'hex');
      const text = (decompress(KEY, level9, 100) as Buffer).toString('utf8');
      expect(text).toBe('héllo wörld'.repeat(3));
    });

    it('accepts output of exactly maxOutputLength bytes', () => {
      const data = Buffer.alloc(1000, 7);
      expect((decompress(KEY, deflateSync(data), 1000) as Buffer).equals(data)).toBe(true);
      expect(() => decompress(KEY, deflateSync(data), 999)).toThrow(MemcachedSerdeError);
    });

    it('a small result does not pin a 16 KiB zlib chunk', () => {
      const out = decompress(KEY, deflateSync(Buffer.from('hello hello hello hello')), 1 << 20);
      expect((out as Buffer).buffer.byteLength).toBeLessThanOrEqual(Buffer.poolSize);
    });

    it('inflates a small input with a large output on the thread pool', async () => {
      const big = Buffer.alloc(ASYNC_COMPRESSION_THRESHOLD * 4, 'x');
      const input = deflateSync(big);
      expect(input.length).toBeLessThan(ASYNC_COMPRESSION_THRESHOLD);
      const pending = decompress(KEY, input, 1 << 20);
      expect(pending).toBeInstanceOf(Promise);
      expect((await pending).equals(big)).toBe(true);
    });

    it('inflates a large input on the thread pool', async () => {
      const big = Buffer.from(randomBytes(ASYNC_COMPRESSION_THRESHOLD).toString('hex'));
      const input = (await compress(big, options))!;
      expect(input.length).toBeGreaterThanOrEqual(ASYNC_COMPRESSION_THRESHOLD);
      const pending = decompress(KEY, input, 1 << 20);
      expect(pending).toBeInstanceOf(Promise);
      expect((await pending).equals(big)).toBe(true);
    });

    describe('zip bomb (50 MB of zeros)', () => {
      const bomb = deflateSync(Buffer.alloc(50 * 1024 * 1024), { level: 9 });

      it('is rejected with MemcachedSerdeError at maxOutputLength 1 MiB', async () => {
        expect(bomb.length).toBeLessThan(100 * 1024);
        const error = await settle(() => decompress(KEY, bomb, 1024 * 1024)).catch(
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(MemcachedSerdeError);
        expect((error as Error).message).toContain(JSON.stringify(KEY));
        expect((error as Error).message).toContain('1048576 bytes (maxOutputLength)');
      });

      it('is rejected synchronously when maxOutputLength is small', () => {
        expect(() => decompress(KEY, bomb, 4096)).toThrow(MemcachedSerdeError);
        expect(() => decompress(KEY, bomb, 4096)).toThrow(/maxOutputLength/);
      });
    });

    it('corrupt data → MemcachedSerdeError', async () => {
      const good = compress(compressible, options) as Buffer;
      const corrupt: Buffer[] = [
        Buffer.from('not zlib at all'),
        Buffer.alloc(0),
        good.subarray(0, good.length - 6), // truncated
        Buffer.concat([good.subarray(0, 10), Buffer.alloc(20, 0xff), good.subarray(30)]),
        gzipSync(compressible), // gzip, not zlib
      ];
      for (const input of corrupt) {
        const error = await settle(() => decompress(KEY, input, 1 << 20)).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(MemcachedSerdeError);
        expect((error as Error).message).toContain(JSON.stringify(KEY));
        expect((error as Error).message).toContain('corrupt');
      }
    });

    it('corrupt large data rejects with MemcachedSerdeError on the async path', async () => {
      const input = Buffer.concat([
        Buffer.from([0x78, 0x9c]),
        randomBytes(ASYNC_COMPRESSION_THRESHOLD),
      ]);
      const pending = decompress(KEY, input, 1 << 20);
      expect(pending).toBeInstanceOf(Promise);
      await expect(pending).rejects.toBeInstanceOf(MemcachedSerdeError);
    });

    it('rejects a bad maxOutputLength', () => {
      const input = deflateSync(Buffer.from('x'));
      for (const max of [0, -1, 1.5, NaN]) {
        expect(() => decompress(KEY, input, max)).toThrow(RangeError);
      }
    });
  });
});

/**
 * The two lz4 packages (`lz4`, liblz4 compiled at install; `lz4-napi`, prebuilt) write and read
 * the same stored format: a 4-byte little-endian size, then an LZ4 block. Whatever one
 * compresses the other decompresses, byte for byte, and both refuse bad data the same way.
 */
import { afterAll, describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import { MemcachedSerdeError } from '../../lib/errors.js';
import {
  LZ4_PACKAGES,
  lz4Compress,
  lz4Decompress,
  lz4Package,
  useLz4Package,
  type Lz4Package,
} from '../../lib/serde/lz4.js';

const initial = lz4Package();
afterAll(() => {
  if (initial !== undefined) useLz4Package(initial);
});

async function packWith(name: Lz4Package, data: Buffer): Promise<Buffer> {
  useLz4Package(name);
  return await lz4Compress(data);
}

async function unpackWith(name: Lz4Package, packed: Buffer, limit = 1 << 26): Promise<Buffer> {
  useLz4Package(name);
  return await lz4Decompress('k', packed, limit);
}

/** Bytes with repeats (so matches are found) and some noise. */
const compressible = fc
  .array(
    fc.oneof(
      fc.uint8Array({ minLength: 0, maxLength: 40 }),
      fc
        .tuple(fc.uint8Array({ minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 300 }))
        .map(([unit, times]) =>
          Uint8Array.from({ length: unit.length * times }, (_, i) => unit[i % unit.length]!),
        ),
    ),
    { maxLength: 30 },
  )
  .map((parts) => Buffer.concat(parts));

describe('lz4 packages', () => {
  test('the preferred package is lz4 when it is installed', () => {
    expect(LZ4_PACKAGES).toEqual(['lz4', 'lz4-napi']);
    expect(initial).toBe('lz4');
  });

  test.each([
    ['lz4', 'lz4-napi'],
    ['lz4-napi', 'lz4'],
    ['lz4', 'lz4'],
    ['lz4-napi', 'lz4-napi'],
  ] as const)('what %s compresses, %s decompresses (property)', async (writer, reader) => {
    await fc.assert(
      fc.asyncProperty(compressible, async (data) => {
        const packed = await packWith(writer, data);
        expect(packed.readUInt32LE(0)).toBe(data.length);
        expect((await unpackWith(reader, packed)).equals(data)).toBe(true);
      }),
      { numRuns: 150 },
    );
  });

  test.each(LZ4_PACKAGES)(
    '%s: values from 64 KiB on (lz4-napi: off the event loop) round-trip both ways',
    async (writer) => {
      const big = Buffer.from('lorem ipsum dolor sit amet, '.repeat(8000)); // 224 KB
      const packed = await packWith(writer, big);
      expect(packed.length).toBeLessThan(big.length / 10);
      for (const reader of LZ4_PACKAGES) {
        expect((await unpackWith(reader, packed)).equals(big)).toBe(true);
      }
    },
  );

  test.each(LZ4_PACKAGES)(
    '%s: a wrong declared size, a truncated or corrupt block is MemcachedSerdeError',
    async (reader) => {
      const data = Buffer.from('abcabcabcabcabcabcabcabcabcabc hello hello hello hello');
      const packed = await packWith('lz4-napi', data);
      const lying = Buffer.from(packed);
      lying.writeUInt32LE(data.length + 5, 0);
      const short = Buffer.from(packed);
      short.writeUInt32LE(data.length - 5, 0);
      const cases: Array<[Buffer, RegExp]> = [
        [lying, /corrupt lz4 data|not the \d+ it declares/],
        [short, /corrupt lz4 data|not the \d+ it declares/],
        [packed.subarray(0, packed.length - 3), /corrupt lz4 data|not the \d+ it declares/],
        [Buffer.from([10, 0, 0, 0, 0xff, 0xff, 0xff]), /corrupt lz4 data|not the \d+ it declares/],
        [Buffer.from([1, 2]), /shorter than its 4-byte length prefix/],
      ];
      for (const [bytes, message] of cases) {
        const error = await unpackWith(reader, bytes).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(MemcachedSerdeError);
        expect((error as Error).message).toMatch(message);
      }
      // The limit is checked before any work.
      await expect(unpackWith(reader, packed, data.length - 1)).rejects.toThrow(
        /declares \d+ bytes, more than/,
      );
    },
  );
});

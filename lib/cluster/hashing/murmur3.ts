/**
 * MurmurHash3, x86 32-bit variant (Austin Appleby's public-domain algorithm), over raw bytes.
 *
 * @param data - bytes to hash
 * @param seed - 32-bit seed (default 0)
 * @returns the hash as an unsigned 32-bit integer
 */
export function murmur3_32(data: Uint8Array, seed = 0): number {
  return murmur3Range(data, 0, data.length, seed);
}

/**
 * {@link murmur3_32} of `data[start..end)`, without creating a view.
 *
 * @internal
 */
export function murmur3Range(data: Uint8Array, start: number, end: number, seed: number): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  const length = end - start;
  const blockEnd = start + (length & ~3);
  let h = seed | 0;

  for (let i = start; i < blockEnd; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }

  const tail = length & 3;
  if (tail !== 0) {
    let k = 0;
    if (tail === 3) k ^= data[blockEnd + 2]! << 16;
    if (tail >= 2) k ^= data[blockEnd + 1]! << 8;
    k ^= data[blockEnd]!;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }

  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

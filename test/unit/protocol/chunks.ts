/** Byte helpers shared by the protocol unit tests: fixtures and every way to split them. */

/** Concatenates strings (as UTF-8) and byte arrays. */
export function bytes(...parts: (string | Buffer | Uint8Array)[]): Buffer {
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p)));
}

/** Splits `buf` at the given (sorted or not, possibly repeated) offsets. */
export function splitAt(buf: Buffer, points: readonly number[]): Buffer[] {
  const sorted = [...new Set(points)].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const p of sorted) {
    chunks.push(buf.subarray(prev, p));
    prev = p;
  }
  chunks.push(buf.subarray(prev));
  return chunks;
}

/** One chunk per byte. */
export function byteByByte(buf: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let i = 0; i < buf.length; i++) chunks.push(buf.subarray(i, i + 1));
  return chunks;
}

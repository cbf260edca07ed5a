/**
 * lz4 compression through the optional package `lz4-napi` (loaded on first use).
 *
 * Stored format: the LZ4 block format with the uncompressed length in front, as a 4-byte
 * little-endian integer — what `lz4-napi`'s `compress` makes and Python's
 * `lz4.block.compress(data)` / `lz4.block.decompress(data)` (python-lz4, default
 * `store_size=True`) read and write. The declared length is checked against the limit before
 * anything is decompressed.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { MemcachedOptionsError, MemcachedSerdeError } from '../errors.js';

/** The part of `lz4-napi` used here. */
interface Lz4Napi {
  compressSync(data: Buffer): Buffer;
  compress(data: Uint8Array): Promise<Buffer>;
  uncompressSync(data: Uint8Array): Buffer;
  uncompress(data: Uint8Array): Promise<Buffer>;
}

export const LZ4_PACKAGE = 'lz4-napi';

let loaded: Lz4Napi | undefined;
let loadError: unknown;

/** The `lz4-napi` module, or undefined (with the reason in loadError) when it cannot be loaded. */
function load(): Lz4Napi | undefined {
  if (loaded !== undefined || loadError !== undefined) return loaded;
  try {
    // The package builds to CommonJS (`__filename`); tests run the sources as ES modules, from
    // the repository root.
    const base = typeof __filename === 'string' ? __filename : join(process.cwd(), 'index.js');
    loaded = createRequire(base)(LZ4_PACKAGE) as Lz4Napi;
  } catch (err) {
    loadError = err;
  }
  return loaded;
}

function missing(): string {
  const reason = loadError instanceof Error ? loadError.message.split('\n')[0] : String(loadError);
  return `lz4 needs the optional package "${LZ4_PACKAGE}" (npm install ${LZ4_PACKAGE}), which could not be loaded: ${reason}`;
}

/** Throws MemcachedOptionsError when `lz4-napi` cannot be loaded (the option asks for lz4). */
export function requireLz4(): void {
  if (load() === undefined) throw new MemcachedOptionsError('compression.algorithm', missing());
}

/** Size from which lz4 work runs on the thread pool (as for zlib). */
const ASYNC_LZ4_THRESHOLD = 64 * 1024;

/** lz4-compresses (size-prefixed block); a Promise for values of 64 KiB and more. */
export function lz4Compress(value: Buffer): Buffer | Promise<Buffer> {
  const lz4 = load();
  if (lz4 === undefined) throw new MemcachedOptionsError('compression.algorithm', missing());
  return value.length < ASYNC_LZ4_THRESHOLD ? lz4.compressSync(value) : lz4.compress(value);
}

/**
 * Decompresses a size-prefixed lz4 block. Throws (or rejects with) MemcachedSerdeError when
 * `lz4-napi` is missing, the declared size exceeds `maxOutputLength` (checked before any work)
 * or the data is not valid.
 */
export function lz4Decompress(
  key: string,
  value: Buffer,
  maxOutputLength: number,
): Buffer | Promise<Buffer> {
  const fail = (reason: string, cause?: unknown): MemcachedSerdeError =>
    new MemcachedSerdeError(
      `Cannot decompress the lz4 value of key ${JSON.stringify(key)}: ${reason}`,
      { cause },
    );
  const lz4 = load();
  if (lz4 === undefined) throw fail(missing(), loadError);
  if (value.length < 4) throw fail('shorter than its 4-byte length prefix');
  const declared = value.readUInt32LE(0);
  if (declared > maxOutputLength) {
    throw fail(`it declares ${declared} bytes, more than ${maxOutputLength} (maxOutputLength)`);
  }
  const check = (out: Buffer): Buffer => {
    if (out.length !== declared) {
      throw fail(`it inflated to ${out.length} bytes, not the ${declared} it declares`);
    }
    return out;
  };
  if (declared < ASYNC_LZ4_THRESHOLD) {
    let out: Buffer;
    try {
      out = lz4.uncompressSync(value);
    } catch (err) {
      throw fail(`corrupt lz4 data (${err instanceof Error ? err.message : String(err)})`, err);
    }
    return check(out);
  }
  return lz4.uncompress(value).then(check, (err: unknown) => {
    throw fail(`corrupt lz4 data (${err instanceof Error ? err.message : String(err)})`, err);
  });
}

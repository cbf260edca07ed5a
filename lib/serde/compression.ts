import { deflate, deflateSync, inflate, inflateSync, type ZlibOptions } from 'node:zlib';
import { MemcachedOptionsError, MemcachedSerdeError } from '../errors.js';
import { lz4Compress, requireLz4 } from './lz4.js';

/**
 * The `compression` option: compress values of at least `threshold` bytes, with zlib (flag bit
 * 8) or lz4 (flag bit 64). Values of either algorithm are read whatever the setting.
 */
export interface CompressionOptions {
  /** Values (serialized bytes) shorter than this many bytes are stored uncompressed. */
  threshold: number;
  /**
   * `'zlib'` (default; RFC 1950, what Python's `zlib.compress` makes) or `'lz4'` (size-prefixed
   * LZ4 block, what Python's `lz4.block.compress` makes; needs the optional package `lz4-napi`).
   */
  algorithm?: 'zlib' | 'lz4';
  /** zlib level: -1 (zlib's default, 6), 0 (store) to 9 (smallest). Default 6. zlib only. */
  level?: number;
}

/** Default {@link CompressionOptions.level}: zlib's own default. */
const DEFAULT_LEVEL = 6;

const OPTION_KEYS: ReadonlySet<string> = new Set(['threshold', 'algorithm', 'level']);

/**
 * Validates and defaults the `compression` option.
 *
 * @param input - `undefined` or `false` (compression off), or a {@link CompressionOptions} object.
 * @returns the options with every field set, or `undefined` when compression is off.
 * @throws {@link MemcachedOptionsError} naming the field at fault (`compression.threshold`, ...).
 */
export function normalizeCompressionOptions(
  input: unknown,
): Required<CompressionOptions> | undefined {
  if (input === undefined || input === false) {
    return undefined;
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new MemcachedOptionsError(
      'compression',
      `must be false or an object like { threshold: 1024 }, got ${show(input)}`,
    );
  }
  const options = input as Record<string, unknown>;
  for (const name of Object.keys(options)) {
    if (!OPTION_KEYS.has(name)) {
      throw new MemcachedOptionsError(
        `compression.${name}`,
        'unknown option (expected threshold, algorithm, level)',
      );
    }
  }
  const { threshold, algorithm, level } = options;
  if (typeof threshold !== 'number' || !Number.isSafeInteger(threshold) || threshold < 0) {
    throw new MemcachedOptionsError(
      'compression.threshold',
      `must be a non-negative integer (bytes), got ${show(threshold)}`,
    );
  }
  if (algorithm !== undefined && algorithm !== 'zlib' && algorithm !== 'lz4') {
    throw new MemcachedOptionsError(
      'compression.algorithm',
      `must be 'zlib' or 'lz4', got ${show(algorithm)}`,
    );
  }
  if (algorithm === 'lz4') {
    if (level !== undefined) {
      throw new MemcachedOptionsError('compression.level', 'applies to zlib only, not to lz4');
    }
    requireLz4();
    return { threshold, algorithm, level: DEFAULT_LEVEL };
  }
  if (
    level !== undefined &&
    (typeof level !== 'number' || !Number.isInteger(level) || level < -1 || level > 9)
  ) {
    throw new MemcachedOptionsError(
      'compression.level',
      `must be an integer from -1 to 9, got ${show(level)}`,
    );
  }
  return { threshold, algorithm: 'zlib', level: level ?? DEFAULT_LEVEL };
}

/**
 * Size in bytes (64 KiB) from which zlib work runs on the libuv thread pool instead of the event
 * loop: {@link compress} of values at least this long, and {@link decompress} of inputs at least
 * this long or whose output turns out to exceed it.
 */
export const ASYNC_COMPRESSION_THRESHOLD: number = 64 * 1024;

/**
 * zlib-compresses a serialized value (RFC 1950, what Python's `zlib.compress` makes, so
 * pymemcache and python-memcached can read it with flag bit 8).
 *
 * @returns the compressed bytes; `undefined` when the value is shorter than `options.threshold`
 *   or compressing does not make it smaller (store it uncompressed then). Synchronous below
 *   {@link ASYNC_COMPRESSION_THRESHOLD} bytes, a Promise (work on the thread pool) from it on.
 */
export function compress(
  value: Buffer,
  options: Required<CompressionOptions>,
): Buffer | undefined | Promise<Buffer | undefined> {
  const length = value.length;
  if (length < options.threshold) {
    return undefined;
  }
  if (options.algorithm === 'lz4') {
    const packed = lz4Compress(value);
    return packed instanceof Promise
      ? packed.then((result) => smaller(result, length))
      : smaller(packed, length);
  }
  const zlibOptions: ZlibOptions = { level: options.level };
  if (length < ASYNC_COMPRESSION_THRESHOLD) {
    return smaller(deflateSync(value, zlibOptions), length);
  }
  return new Promise((resolve, reject) => {
    deflate(value, zlibOptions, (error, result) => {
      if (error) {
        reject(error);
      } else {
        resolve(smaller(result, length));
      }
    });
  });
}

function smaller(compressed: Buffer, originalLength: number): Buffer | undefined {
  return compressed.length < originalLength ? compressed : undefined;
}

/**
 * Inflates a value stored with flag bit 8 (zlib, RFC 1950).
 *
 * At most {@link ASYNC_COMPRESSION_THRESHOLD} bytes are inflated on the event loop: inputs of at
 * least that size are inflated on the thread pool, and a small input whose output exceeds it is
 * inflated again there (the wasted work is bounded by that size).
 *
 * @param key - the key, for error messages.
 * @param value - the compressed bytes.
 * @param maxOutputLength - the largest inflated size accepted (a positive integer).
 * @returns the inflated bytes, synchronously when the input and output are small, else a Promise.
 * @throws {@link MemcachedSerdeError} (or rejects with it) when the output would exceed
 *   `maxOutputLength` (zip-bomb guard) or the data is not valid zlib data.
 */
export function decompress(
  key: string,
  value: Buffer,
  maxOutputLength: number,
): Buffer | Promise<Buffer> {
  if (!Number.isSafeInteger(maxOutputLength) || maxOutputLength < 1) {
    throw new RangeError(
      `decompress: maxOutputLength must be a positive integer, got ${String(maxOutputLength)}`,
    );
  }
  if (value.length >= ASYNC_COMPRESSION_THRESHOLD) {
    return inflateAsync(key, value, maxOutputLength);
  }
  const syncLimit = Math.min(maxOutputLength, ASYNC_COMPRESSION_THRESHOLD);
  let result: Buffer;
  try {
    result = inflateSync(value, { maxOutputLength: syncLimit });
  } catch (error) {
    if (isTooLarge(error) && maxOutputLength > syncLimit) {
      return inflateAsync(key, value, maxOutputLength);
    }
    throw inflateError(key, error, maxOutputLength);
  }
  return rightSized(result);
}

function inflateAsync(key: string, value: Buffer, maxOutputLength: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    inflate(value, { maxOutputLength }, (error, result) => {
      if (error) {
        reject(inflateError(key, error, maxOutputLength));
      } else {
        resolve(rightSized(result));
      }
    });
  });
}

/**
 * A short synchronous inflate result is a slice of a 16 KiB zlib output chunk; copy it so a
 * `Buffer` the application keeps does not pin the whole chunk (the copy is under 8 KiB). Slices
 * of Node's shared small-buffer pool are left alone, as everywhere in Node.
 */
function rightSized(result: Buffer): Buffer {
  const backing = result.buffer.byteLength;
  return backing > Buffer.poolSize && backing > 2 * result.length ? Buffer.from(result) : result;
}

function isTooLarge(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'ERR_BUFFER_TOO_LARGE';
}

function inflateError(key: string, error: unknown, maxOutputLength: number): MemcachedSerdeError {
  const reason = isTooLarge(error)
    ? `it inflates to more than ${String(maxOutputLength)} bytes (maxOutputLength)`
    : `corrupt zlib data (${error instanceof Error ? error.message : String(error)})`;
  return new MemcachedSerdeError(
    `Cannot decompress the value of key ${JSON.stringify(key)}: ${reason}`,
    { cause: error },
  );
}

function show(value: unknown): string {
  if (typeof value === 'string') {
    return JSON.stringify(value);
  }
  if (typeof value === 'object' && value !== null) {
    return Array.isArray(value) ? 'an array' : 'an object';
  }
  return String(value);
}

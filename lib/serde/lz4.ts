/**
 * lz4 compression through one of two optional packages (loaded on first use): `lz4` (liblz4 in
 * C, compiled at install; about twice as fast) when it is installed, else `lz4-napi` (prebuilt
 * binaries).
 *
 * Stored format: the LZ4 block format with the uncompressed length in front, as a 4-byte
 * little-endian integer — what `lz4-napi`'s `compress` makes and Python's
 * `lz4.block.compress(data)` / `lz4.block.decompress(data)` (python-lz4, default
 * `store_size=True`) read and write. Both packages write and read exactly this format. The
 * declared length is checked against the limit before anything is decompressed.
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

/** The part of `lz4` (node-lz4: liblz4's LZ4_compress_default / LZ4_decompress_safe) used here. */
interface NodeLz4 {
  encodeBound(size: number): number;
  /** Compresses `input` into `output` from `start`; the compressed size (0: did not fit). */
  encodeBlock(input: Buffer, output: Buffer, start: number): number;
  /** Decompresses `input` from `start` into `output`; the size written, negative when corrupt. */
  decodeBlock(input: Buffer, output: Buffer, start: number): number;
}

/** The packages lz4 can use, in order of preference. */
export const LZ4_PACKAGES = ['lz4', 'lz4-napi'] as const;
export type Lz4Package = (typeof LZ4_PACKAGES)[number];
/** The package named in the error when neither is installed (the one without a compiler). */
export const LZ4_PACKAGE = 'lz4-napi';

interface Backend {
  readonly name: Lz4Package;
  /** Size-prefixed block. */
  compress(value: Buffer): Buffer | Promise<Buffer>;
  /** The block after the 4-byte prefix, inflated to exactly `declared` bytes (else throws). */
  decompress(value: Buffer, declared: number): Buffer | Promise<Buffer>;
}

/** Size from which lz4-napi's work runs on the thread pool (as for zlib). */
const ASYNC_LZ4_THRESHOLD = 64 * 1024;

let chosen: Backend | undefined;
let loadError: unknown;
let tried = false;

function requireFromHere(name: string): unknown {
  // The package builds to CommonJS (`__filename`); tests run the sources as ES modules, from
  // the repository root.
  const base = typeof __filename === 'string' ? __filename : join(process.cwd(), 'index.js');
  return createRequire(base)(name);
}

function nodeLz4Backend(lz4: NodeLz4): Backend {
  return {
    name: 'lz4',
    compress(value) {
      const out = Buffer.allocUnsafe(4 + lz4.encodeBound(value.length));
      out.writeUInt32LE(value.length, 0);
      const written = lz4.encodeBlock(value, out, 4);
      if (written <= 0 && value.length > 0) throw new Error('lz4 encodeBlock failed');
      return out.subarray(0, 4 + written);
    },
    decompress(value, declared) {
      const out = Buffer.allocUnsafe(declared);
      const written = lz4.decodeBlock(value, out, 4);
      if (written < 0) throw new Error(`malformed block at byte ${-written}`);
      if (written !== declared) throw new SizeMismatch(written);
      return out;
    },
  };
}

function lz4NapiBackend(lz4: Lz4Napi): Backend {
  const sized = (out: Buffer, declared: number): Buffer => {
    if (out.length !== declared) throw new SizeMismatch(out.length);
    return out;
  };
  return {
    name: 'lz4-napi',
    compress: (value) =>
      value.length < ASYNC_LZ4_THRESHOLD ? lz4.compressSync(value) : lz4.compress(value),
    decompress: (value, declared) =>
      declared < ASYNC_LZ4_THRESHOLD
        ? sized(lz4.uncompressSync(value), declared)
        : lz4.uncompress(value).then((out) => sized(out, declared)),
  };
}

function backendFor(name: Lz4Package): Backend {
  return name === 'lz4'
    ? nodeLz4Backend(requireFromHere(name) as NodeLz4)
    : lz4NapiBackend(requireFromHere(name) as Lz4Napi);
}

/** The package in use, or undefined (with the reason in loadError) when none can be loaded. */
function load(): Backend | undefined {
  if (tried) return chosen;
  tried = true;
  for (const name of LZ4_PACKAGES) {
    try {
      chosen = backendFor(name);
      return chosen;
    } catch (err) {
      // The reason reported is the last one: lz4-napi's, the package the error names.
      loadError = err;
    }
  }
  return undefined;
}

/**
 * Uses `name` from now on (throws when it cannot be loaded); returns the package that was in use.
 * For tests and benchmarks that compare the two.
 */
export function useLz4Package(name: Lz4Package): Lz4Package | undefined {
  const previous = load()?.name;
  chosen = backendFor(name);
  return previous;
}

/** The package lz4 values are compressed with, or undefined when neither is installed. */
export function lz4Package(): Lz4Package | undefined {
  return load()?.name;
}

class SizeMismatch extends Error {
  constructor(readonly inflated: number) {
    super(`inflated to ${inflated} bytes`);
  }
}

function missing(): string {
  const reason = loadError instanceof Error ? loadError.message.split('\n')[0] : String(loadError);
  return `lz4 needs the optional package "${LZ4_PACKAGE}" (npm install ${LZ4_PACKAGE}; or "lz4", which compiles liblz4 at install), which could not be loaded: ${reason}`;
}

/** Throws MemcachedOptionsError when no lz4 package can be loaded (the option asks for lz4). */
export function requireLz4(): void {
  if (load() === undefined) throw new MemcachedOptionsError('compression.algorithm', missing());
}

/** lz4-compresses (size-prefixed block); with lz4-napi a Promise for values of 64 KiB and more. */
export function lz4Compress(value: Buffer): Buffer | Promise<Buffer> {
  const lz4 = load();
  if (lz4 === undefined) throw new MemcachedOptionsError('compression.algorithm', missing());
  return lz4.compress(value);
}

/**
 * Decompresses a size-prefixed lz4 block. Throws (or rejects with) MemcachedSerdeError when no
 * lz4 package is installed, the declared size exceeds `maxOutputLength` (checked before any
 * work) or the data is not valid.
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
  const failure = (err: unknown): MemcachedSerdeError =>
    err instanceof SizeMismatch
      ? fail(`it inflated to ${err.inflated} bytes, not the ${declared} it declares`)
      : fail(`corrupt lz4 data (${err instanceof Error ? err.message : String(err)})`, err);
  let out: Buffer | Promise<Buffer>;
  try {
    out = lz4.decompress(value, declared);
  } catch (err) {
    throw failure(err);
  }
  return out instanceof Promise
    ? out.catch((err: unknown) => {
        throw failure(err);
      })
    : out;
}

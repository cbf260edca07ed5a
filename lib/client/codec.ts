import { MemcachedError, MemcachedSerdeError, MemcachedValueError } from '../errors.js';
import type { RetrievedItem } from '../protocol/request.js';
import { compress, decompress, type CompressionOptions } from '../serde/compression.js';
import { lz4Decompress } from '../serde/lz4.js';
import { FLAG_COMPRESSED, FLAG_LZ4, type Serde } from '../serde/serde.js';
import {
  FLAG_TAGGED,
  isEnvelope,
  parseEnvelope,
  TaggedValue,
  wrapEnvelope,
} from '../cache/tags.js';

/** A value as stored: bytes and flags. */
export interface Encoded {
  data: Buffer;
  flags: number;
}

/** Decompressed values larger than this are refused (zip-bomb guard), unless maxValueSize is larger. */
const MAX_DECOMPRESSED = 64 * 1024 * 1024;

/**
 * Turns values into stored bytes and back: the serde, compression, and the size limit. Work is
 * synchronous unless compression or decompression runs off-thread (large values): then a
 * Promise is returned.
 */
export class ValueCodec {
  constructor(
    private readonly serde: Serde,
    private readonly compression: Required<CompressionOptions> | undefined,
    private readonly maxValueSize: number,
  ) {}

  /** Serializes (and maybe compresses) a value; throws MemcachedValueError / MemcachedSerdeError. */
  encode(command: string, key: string, value: unknown): Encoded | Promise<Encoded> {
    let serialized;
    try {
      serialized = this.serde.serialize(key, value);
    } catch (err) {
      if (err instanceof MemcachedError) throw err;
      throw new MemcachedValueError(
        `${command} "${key}": the serde could not serialize the value: ${err instanceof Error ? err.message : String(err)}`,
        { command, cause: err },
      );
    }
    const { value: data, flags } = serialized ?? ({} as { value: undefined; flags: undefined });
    if (!Buffer.isBuffer(data) || !Number.isInteger(flags) || flags! < 0 || flags! > 0xffffffff) {
      throw new MemcachedSerdeError(
        `${command} "${key}": serde.serialize must return { value: Buffer, flags: 32-bit unsigned integer }`,
        { command },
      );
    }
    const compression = this.compression;
    if (compression !== undefined && data.length >= compression.threshold) {
      const packed = compress(data, compression);
      const bit = compression.algorithm === 'lz4' ? FLAG_LZ4 : FLAG_COMPRESSED;
      const finish = (result: Buffer | undefined): Encoded =>
        this.sized(command, key, result ?? data, result === undefined ? flags! : flags! | bit);
      return packed instanceof Promise ? packed.then(finish) : finish(packed);
    }
    return this.sized(command, key, data, flags!);
  }

  /** Raw bytes for append/prepend: a string (UTF-8) or a Buffer. */
  raw(command: string, key: string, value: unknown): Encoded {
    let data: Buffer;
    if (typeof value === 'string') data = Buffer.from(value, 'utf8');
    else if (Buffer.isBuffer(value)) data = value;
    else {
      throw new MemcachedValueError(
        `${command} "${key}": value must be a string or a Buffer (raw bytes are appended), got ${value === null ? 'null' : typeof value}`,
        { command },
      );
    }
    return this.sized(command, key, data, 0);
  }

  /**
   * Deserializes an item (`key` is the user key); synchronous unless the value must be
   * decompressed off-thread. A value over maxValueSize (dropped by the reader) fails here, for
   * its caller alone.
   */
  decode(key: string, item: RetrievedItem, command: string): unknown {
    if (item.tooLarge !== 0) {
      throw new MemcachedValueError(
        `${command} "${key}": the stored value is ${item.tooLarge} bytes, over maxValueSize (${this.maxValueSize} bytes); it was not read. Raise maxValueSize to read it`,
        { command },
      );
    }
    if (isEnvelope(item.flags, item.data)) {
      // A value stored with tags: plain reads see its envelope (they cannot check the tags).
      const envelope = parseEnvelope(key, item.data);
      const value = this.decodeBytes(key, envelope.flags, envelope.data, command);
      return value instanceof Promise
        ? value.then((v) => new TaggedValue(v, envelope.versions))
        : new TaggedValue(value, envelope.versions);
    }
    return this.decodeBytes(key, item.flags, item.data, command);
  }

  /** Stored bytes and flags (not an envelope) → value; see {@link decode}. */
  decodeBytes(key: string, flags: number, data: Buffer, command: string): unknown {
    const packed = flags & (FLAG_COMPRESSED | FLAG_LZ4);
    if (packed !== 0) {
      if (packed !== FLAG_COMPRESSED && packed !== FLAG_LZ4) {
        throw new MemcachedSerdeError(
          `could not read the value of "${key}": flags ${flags} mark it both zlib- (8) and lz4-compressed (64)`,
          { command },
        );
      }
      const limit = Math.max(MAX_DECOMPRESSED, this.maxValueSize);
      const inflated =
        packed === FLAG_LZ4 ? lz4Decompress(key, data, limit) : decompress(key, data, limit);
      const rest = flags & ~packed;
      return inflated instanceof Promise
        ? inflated.then((data) => this.deserialize(key, data, rest, flags))
        : this.deserialize(key, inflated, rest, flags);
    }
    return this.deserialize(key, data, flags, flags);
  }

  /** Wraps an encoded value in a tagged envelope (flags 128), checking the size again. */
  envelope(
    command: string,
    key: string,
    encoded: Encoded,
    versions: ReadonlyArray<readonly [string, string]>,
  ): Encoded {
    return this.sized(
      command,
      key,
      wrapEnvelope(encoded.flags, encoded.data, versions),
      FLAG_TAGGED,
    );
  }

  private sized(command: string, key: string, data: Buffer, flags: number): Encoded {
    if (data.length > this.maxValueSize) {
      throw new MemcachedValueError(
        `${command} "${key}": value is ${data.length} bytes${this.compression ? ' (after compression)' : ''}, over maxValueSize (${this.maxValueSize} bytes); store smaller values or raise maxValueSize and the server's -I`,
        { command },
      );
    }
    return { data, flags };
  }

  private deserialize(key: string, data: Buffer, flags: number, storedFlags: number): unknown {
    try {
      return this.serde.deserialize(key, data, flags);
    } catch (err) {
      if (err instanceof MemcachedError) throw err;
      throw new MemcachedSerdeError(
        `could not deserialize the value of "${key}" (flags ${storedFlags}): ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
  }
}

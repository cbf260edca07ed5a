import { MemcachedProtocolError } from '../../errors.js';
import { MAX_ITEM_SIZE } from '../line-framed-parser.js';
import { HEADER_LENGTH, MAGIC_RESPONSE } from './constants.js';

/** A response header as read from the wire (one object per parser, reused for every packet). */
export interface ResponseHeader {
  opcode: number;
  keyLength: number;
  extrasLength: number;
  status: number;
  /** Extras + key + value, bytes. */
  bodyLength: number;
  opaque: number;
  /** The cas value's high and low 32 bits. */
  casHigh: number;
  casLow: number;
}

/**
 * Receives each response packet as the parser completes it. `extras`, `key` and `value` are
 * views of one buffer owned by this packet (never of the socket's chunk). A value longer than
 * `maxValueLength` is read and dropped: `value` is then empty and `tooLarge` is its length. A
 * sink method may throw to reject the stream; the parser then stops.
 */
export interface ResponseSink {
  onResponse(
    header: ResponseHeader,
    extras: Buffer,
    key: Buffer,
    value: Buffer,
    tooLarge: number,
  ): void;
}

export interface BinaryParserLimits {
  /** Largest value delivered; a larger one (up to {@link MAX_ITEM_SIZE}) is skipped and reported by its size. */
  maxValueLength: number;
}

const State = { header: 0, body: 1, skip: 2, failed: 3 } as const;

const EMPTY = Buffer.alloc(0);

/**
 * Streaming parser for memcached binary-protocol responses. Feed it chunks exactly as they
 * arrive from the socket, split anywhere; it calls the sink once per packet, in order. A packet's
 * body is allocated once from its declared length and filled by copies. A header that is not a
 * response header (magic, data type, lengths that do not add up, a body longer than any
 * memcached item) throws {@link MemcachedProtocolError} and leaves the parser failed (the
 * connection must then be reset; the stream cannot be trusted).
 */
export class BinaryResponseParser {
  private state: number = State.header;
  private readonly head = Buffer.alloc(HEADER_LENGTH);
  private headFilled = 0;
  private readonly header: ResponseHeader = {
    opcode: 0,
    keyLength: 0,
    extrasLength: 0,
    status: 0,
    bodyLength: 0,
    opaque: 0,
    casHigh: 0,
    casLow: 0,
  };
  private body: Buffer = EMPTY;
  private bodyFilled = 0;
  /** Value bytes still to discard (an over-limit value). */
  private skipLeft = 0;
  private skipped = 0;
  private readonly maxValueLength: number;
  private readonly hardLimit: number;

  constructor(
    private readonly sink: ResponseSink,
    limits: Partial<BinaryParserLimits> = {},
  ) {
    this.maxValueLength = limits.maxValueLength ?? 1024 * 1024;
    // A value up to the item ceiling, plus the largest key and extras a header can declare.
    this.hardLimit = Math.max(MAX_ITEM_SIZE, this.maxValueLength) + 0xffff + 0xff;
  }

  /** True between packets. */
  get idle(): boolean {
    return this.state === State.header && this.headFilled === 0;
  }

  /** Forgets any partial packet (after a connection reset). */
  reset(): void {
    this.state = State.header;
    this.headFilled = 0;
    this.body = EMPTY;
    this.bodyFilled = 0;
    this.skipLeft = 0;
    this.skipped = 0;
  }

  feed(chunk: Buffer): void {
    if (this.state === State.failed) {
      throw new MemcachedProtocolError('reply parser used after a protocol error; reset it first');
    }
    try {
      this.feedInner(chunk);
    } catch (err) {
      this.state = State.failed;
      this.body = EMPTY;
      throw err;
    }
  }

  private feedInner(chunk: Buffer): void {
    let off = 0;
    const len = chunk.length;
    while (off < len) {
      switch (this.state) {
        case State.header: {
          const filled = this.headFilled;
          // The magic is checked on the first byte: a text reply need not fill a header.
          if (filled === 0 && chunk[off] !== MAGIC_RESPONSE) this.badMagic(chunk[off]!);
          if (filled === 0 && len - off >= HEADER_LENGTH) {
            this.readHeader(chunk, off);
            off += HEADER_LENGTH;
          } else {
            const n = Math.min(HEADER_LENGTH - filled, len - off);
            chunk.copy(this.head, filled, off, off + n);
            off += n;
            this.headFilled = filled + n;
            if (this.headFilled < HEADER_LENGTH) return;
            this.headFilled = 0;
            this.readHeader(this.head, 0);
          }
          break;
        }
        case State.body: {
          const need = this.body.length - this.bodyFilled;
          const n = Math.min(need, len - off);
          chunk.copy(this.body, this.bodyFilled, off, off + n);
          this.bodyFilled += n;
          off += n;
          if (this.bodyFilled === this.body.length) this.bodyDone();
          break;
        }
        case State.skip: {
          const n = Math.min(this.skipLeft, len - off);
          this.skipLeft -= n;
          off += n;
          if (this.skipLeft === 0) this.emit(EMPTY);
          break;
        }
      }
    }
  }

  private readHeader(buf: Buffer, off: number): void {
    const h = this.header;
    h.opcode = buf[off + 1]!;
    h.keyLength = buf.readUInt16BE(off + 2);
    h.extrasLength = buf[off + 4]!;
    if (buf[off + 5] !== 0) {
      throw new MemcachedProtocolError(
        `reply has data type 0x${buf[off + 5]!.toString(16)} (only raw bytes, 0, exist): not a memcached binary reply`,
      );
    }
    h.status = buf.readUInt16BE(off + 6);
    h.bodyLength = buf.readUInt32BE(off + 8);
    h.opaque = buf.readUInt32BE(off + 12);
    h.casHigh = buf.readUInt32BE(off + 16);
    h.casLow = buf.readUInt32BE(off + 20);
    const fixed = h.keyLength + h.extrasLength;
    if (fixed > h.bodyLength) {
      throw new MemcachedProtocolError(
        `reply declares ${h.extrasLength} bytes of extras and a ${h.keyLength}-byte key in a ${h.bodyLength}-byte body: not a memcached binary reply`,
      );
    }
    if (h.bodyLength > this.hardLimit) {
      throw new MemcachedProtocolError(
        `reply declares a body of ${h.bodyLength} bytes: no memcached item is that large (maxValueSize and the server's -I are at most 1 GiB)`,
      );
    }
    const valueLength = h.bodyLength - fixed;
    if (valueLength > this.maxValueLength) {
      // Read and dropped: only its caller fails, the stream stays in step.
      this.skipped = valueLength;
      this.skipLeft = valueLength;
      this.body = fixed === 0 ? EMPTY : Buffer.allocUnsafe(fixed);
    } else {
      this.skipped = 0;
      this.skipLeft = 0;
      this.body = h.bodyLength === 0 ? EMPTY : Buffer.allocUnsafe(h.bodyLength);
    }
    this.bodyFilled = 0;
    if (this.body.length === 0) this.bodyDone();
    else this.state = State.body;
  }

  private badMagic(byte: number): never {
    throw new MemcachedProtocolError(
      `reply does not start with the binary response magic 0x81 (got 0x${byte.toString(16).padStart(2, '0')}): not a memcached binary reply (is this a text-only server or proxy?)`,
    );
  }

  private bodyDone(): void {
    if (this.skipLeft > 0) {
      this.state = State.skip;
      return;
    }
    const h = this.header;
    const body = this.body;
    const fixed = h.extrasLength + h.keyLength;
    this.emit(fixed === body.length ? EMPTY : body.subarray(fixed));
  }

  private emit(value: Buffer): void {
    const h = this.header;
    const body = this.body;
    const extras = h.extrasLength === 0 ? EMPTY : body.subarray(0, h.extrasLength);
    const key =
      h.keyLength === 0 ? EMPTY : body.subarray(h.extrasLength, h.extrasLength + h.keyLength);
    const skipped = this.skipped;
    this.body = EMPTY;
    this.skipped = 0;
    this.state = State.header;
    this.sink.onResponse(h, extras, key, value, skipped);
  }
}

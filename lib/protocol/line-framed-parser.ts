import { MemcachedProtocolError } from '../errors.js';

export interface ParserLimits {
  /** Longest reply line accepted, in bytes, `\r\n` excluded. */
  maxLineLength: number;
  /**
   * Largest value delivered. A larger one (up to {@link MAX_ITEM_SIZE}) is skipped and reported
   * by its size, so that only its caller fails; beyond that the length is nonsense.
   */
  maxValueLength: number;
}

export const DEFAULT_PARSER_LIMITS: ParserLimits = {
  maxLineLength: 8192,
  maxValueLength: 1024 * 1024,
};

/** memcached's own ceiling for an item (`-I` at most 1 GiB): a larger declared length is not a reply. */
export const MAX_ITEM_SIZE = 1024 * 1024 * 1024;

const CR = 13;
const LF = 10;
const SP = 32;

const State = { line: 0, data: 1, failed: 2 } as const;

const EMPTY = Buffer.alloc(0);

/**
 * The framing shared by memcached's line-based reply streams (text and meta): `\r\n`-terminated
 * lines without control characters, some followed by a data block of a declared length. Feed it
 * chunks exactly as they arrive from the socket, split anywhere. Partial lines are bounded by
 * `maxLineLength`; a data block's buffer is allocated once from its declared length and filled
 * by copies, and a block over `maxValueLength` is skipped (its size reported). Any malformed
 * input throws {@link MemcachedProtocolError} and leaves the parser failed (a connection must then
 * be reset; the stream cannot be trusted). Subclasses read the lines.
 */
export abstract class LineFramedParser {
  protected readonly limits: ParserLimits;
  /** Declared lengths above this are nonsense. */
  protected readonly hardLimit: number;
  private state: number = State.line;
  /** Bytes of an incomplete line carried over from the previous chunk. */
  private partial: Buffer | undefined;
  private valueBuf: Buffer = EMPTY;
  private valueFilled = 0;
  /** Value bytes still to discard before the closing \r\n (an over-limit value). */
  private skipLeft = 0;
  private skipped = 0;

  constructor(limits: Partial<ParserLimits> = {}) {
    this.limits = {
      maxLineLength: limits.maxLineLength ?? DEFAULT_PARSER_LIMITS.maxLineLength,
      maxValueLength: limits.maxValueLength ?? DEFAULT_PARSER_LIMITS.maxValueLength,
    };
    this.hardLimit = Math.max(MAX_ITEM_SIZE, this.limits.maxValueLength);
  }

  /** True when the parser is between replies (no partial line or value buffered). */
  get idle(): boolean {
    return this.state === State.line && this.partial === undefined;
  }

  /** Forgets any partial state (after a connection reset). */
  reset(): void {
    this.state = State.line;
    this.partial = undefined;
    this.valueBuf = EMPTY;
    this.valueFilled = 0;
    this.skipLeft = 0;
  }

  feed(chunk: Buffer): void {
    if (this.state === State.failed) {
      throw new MemcachedProtocolError('reply parser used after a protocol error; reset it first');
    }
    try {
      this.feedInner(chunk);
    } catch (err) {
      this.state = State.failed;
      this.partial = undefined;
      throw err;
    }
  }

  /** A complete line `buf[start..end)`, `\r\n` removed, checked free of control characters. */
  protected abstract onLine(buf: Buffer, start: number, end: number): void;

  /** The data block announced by the last {@link expectData} (empty when `tooLarge`). */
  protected abstract onData(data: Buffer, tooLarge: number): void;

  /** Names the data block being read, for errors (`for key "k"`). */
  protected abstract describeData(): string;

  /** The line just handled announced a data block of `length` bytes (then `\r\n`). */
  protected expectData(length: number): void {
    this.valueFilled = 0;
    this.state = State.data;
    if (length > this.limits.maxValueLength) {
      // Read and dropped: only its caller fails, the stream stays in step.
      this.skipLeft = length;
      this.skipped = length;
      this.valueBuf = Buffer.allocUnsafe(2);
    } else {
      this.skipped = 0;
      this.valueBuf = Buffer.allocUnsafe(length + 2);
    }
  }

  private feedInner(chunk: Buffer): void {
    let off = 0;
    const len = chunk.length;
    while (off < len) {
      if (this.state === State.data) {
        off = this.readData(chunk, off);
        continue;
      }
      const nl = chunk.indexOf(LF, off);
      if (nl === -1) {
        this.keepPartial(chunk, off, len);
        return;
      }
      if (this.partial !== undefined) {
        const piece = chunk.subarray(off, nl + 1);
        const total = this.partial.length + piece.length;
        if (total - 2 > this.limits.maxLineLength) this.lineTooLong();
        const line = Buffer.concat([this.partial, piece], total);
        this.partial = undefined;
        this.handleLine(line, 0, total - 1);
      } else {
        if (nl - off - 1 > this.limits.maxLineLength) this.lineTooLong();
        this.handleLine(chunk, off, nl);
      }
      off = nl + 1;
    }
  }

  private keepPartial(chunk: Buffer, off: number, len: number): void {
    const prev = this.partial === undefined ? 0 : this.partial.length;
    if (prev + (len - off) > this.limits.maxLineLength + 2) this.lineTooLong();
    const piece = chunk.subarray(off, len);
    // Copy: the chunk may be reused by the caller and must not be retained.
    this.partial =
      this.partial === undefined
        ? Buffer.from(piece)
        : Buffer.concat([this.partial, piece], prev + piece.length);
  }

  private lineTooLong(): never {
    throw new MemcachedProtocolError(
      `reply line longer than ${this.limits.maxLineLength} bytes: not a memcached reply`,
    );
  }

  /** `buf[start..lf)` is a line whose `\n` is at `lf`. */
  private handleLine(buf: Buffer, start: number, lf: number): void {
    if (lf === start || buf[lf - 1] !== CR) {
      throw new MemcachedProtocolError(
        `reply line not terminated by \\r\\n: ${printable(buf, start, lf)}`,
      );
    }
    const end = lf - 1; // exclusive, before \r
    for (let i = start; i < end; i++) {
      const c = buf[i]!;
      if (c < SP || c === 127) {
        throw new MemcachedProtocolError(
          `reply line contains control characters: ${printable(buf, start, end)}`,
        );
      }
    }
    this.onLine(buf, start, end);
  }

  /** Copies value bytes (and the closing \r\n) from `chunk[off..]`; returns the new offset. */
  private readData(chunk: Buffer, off: number): number {
    if (this.skipLeft > 0) {
      const n = Math.min(this.skipLeft, chunk.length - off);
      this.skipLeft -= n;
      return off + n;
    }
    const need = this.valueBuf.length - this.valueFilled;
    const n = Math.min(need, chunk.length - off);
    chunk.copy(this.valueBuf, this.valueFilled, off, off + n);
    this.valueFilled += n;
    if (this.valueFilled === this.valueBuf.length) {
      const total = this.valueBuf.length;
      if (this.valueBuf[total - 2] !== CR || this.valueBuf[total - 1] !== LF) {
        throw new MemcachedProtocolError(
          `value data ${this.describeData()} is not followed by \\r\\n: the declared length does not match the data`,
        );
      }
      const data = this.valueBuf.subarray(0, total - 2);
      this.valueBuf = EMPTY;
      this.state = State.line;
      this.onData(data, this.skipped);
    }
    return off + n;
  }
}

/** A short, printable rendering of bad reply bytes for error messages. */
export function printable(buf: Buffer, start: number, end: number): string {
  const max = 80;
  const slice = buf.subarray(start, Math.min(end, start + max));
  let s = JSON.stringify(slice.toString('latin1'));
  if (end - start > max) s += '…';
  return s;
}

import { MemcachedProtocolError } from '../../errors.js';

/**
 * Receives the pieces of text-protocol replies as the parser recognises them. The parser is
 * context free: every text-protocol reply is self-delimiting (a single line, or `VALUE`/`STAT`
 * lines closed by `END`), so the connection decides whether a piece fits the request at the head
 * of its queue. A sink method may throw to reject the stream; the parser then stops.
 */
export interface ReplySink {
  /**
   * One `VALUE <key> <flags> <bytes> [<cas>]` item with its data block. A value declared larger
   * than `maxValueLength` is read and dropped: `data` is then empty and `tooLarge` is its size.
   */
  onValue(
    key: string,
    flags: number,
    data: Buffer,
    cas: string | undefined,
    tooLarge: number,
  ): void;
  /** One `STAT <name> <value>` line. */
  onStat(name: string, value: string): void;
  /** `END`: closes a retrieval or stats reply (possibly empty). */
  onEnd(): void;
  /** Any other line, without its `\r\n` (`STORED`, `42`, `VERSION 1.6.18`, `SERVER_ERROR ...`). */
  onLine(line: string): void;
}

export interface ParserLimits {
  /** Longest reply line accepted, in bytes, `\r\n` excluded. */
  maxLineLength: number;
  /**
   * Largest value delivered. A larger one (up to {@link MAX_ITEM_SIZE}) is skipped and reported
   * by its size, so that only its caller fails; beyond that the length is nonsense.
   */
  maxValueLength: number;
}

/** memcached's own ceiling for an item (`-I` at most 1 GiB): a larger declared length is not a reply. */
export const MAX_ITEM_SIZE = 1024 * 1024 * 1024;

export const DEFAULT_PARSER_LIMITS: ParserLimits = {
  maxLineLength: 8192,
  maxValueLength: 1024 * 1024,
};

const CR = 13;
const LF = 10;
const SP = 32;

/** `VALUE ` */
const V0 = 86;
/** `STAT ` */
const S0 = 83;
/** `END` */
const E0 = 69;

const ParserState = { line: 0, data: 1, failed: 2 } as const;

/**
 * Streaming parser for memcached text-protocol replies. Feed it chunks exactly as they arrive
 * from the socket, split anywhere; it calls the sink in order. A value's buffer is allocated once
 * from its declared length and filled by copies; partial lines are bounded by `maxLineLength`,
 * declared lengths by `maxValueLength`. Any malformed input throws {@link MemcachedProtocolError}
 * and leaves the parser failed (a connection must then be reset; the stream cannot be trusted).
 */
export class ReplyParser {
  private readonly limits: ParserLimits;
  private state: number = ParserState.line;
  /** Bytes of an incomplete line carried over from the previous chunk. */
  private partial: Buffer | undefined;
  // Value being received (state = data).
  private valueBuf: Buffer = Buffer.alloc(0);
  private valueFilled = 0;
  private valueKey = '';
  private valueFlags = 0;
  private valueCas: string | undefined;
  /** Value bytes still to discard before the closing \r\n (an over-limit value). */
  private skipLeft = 0;
  private skipped = 0;

  private readonly hardLimit: number;

  constructor(
    private readonly sink: ReplySink,
    limits: Partial<ParserLimits> = {},
  ) {
    this.limits = {
      maxLineLength: limits.maxLineLength ?? DEFAULT_PARSER_LIMITS.maxLineLength,
      maxValueLength: limits.maxValueLength ?? DEFAULT_PARSER_LIMITS.maxValueLength,
    };
    this.hardLimit = Math.max(MAX_ITEM_SIZE, this.limits.maxValueLength);
  }

  /** True when the parser is between replies (no partial line or value buffered). */
  get idle(): boolean {
    return this.state === ParserState.line && this.partial === undefined;
  }

  /** Forgets any partial state (after a connection reset). */
  reset(): void {
    this.state = ParserState.line;
    this.partial = undefined;
    this.valueBuf = Buffer.alloc(0);
    this.valueFilled = 0;
    this.skipLeft = 0;
  }

  feed(chunk: Buffer): void {
    if (this.state === ParserState.failed) {
      throw new MemcachedProtocolError('reply parser used after a protocol error; reset it first');
    }
    try {
      this.feedInner(chunk);
    } catch (err) {
      this.state = ParserState.failed;
      this.partial = undefined;
      throw err;
    }
  }

  private feedInner(chunk: Buffer): void {
    let off = 0;
    const len = chunk.length;
    while (off < len) {
      if (this.state === ParserState.data) {
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
    const first = buf[start];
    if (
      first === V0 &&
      end - start >= 5 &&
      buf[start + 1] === 65 &&
      buf[start + 2] === 76 &&
      buf[start + 3] === 85 &&
      buf[start + 4] === 69
    ) {
      if (end - start < 7 || buf[start + 5] !== SP) this.badValueLine(buf, start + 5, end);
      this.startValue(buf, start + 6, end);
      return;
    }
    if (
      first === S0 &&
      end - start >= 4 &&
      buf[start + 1] === 84 &&
      buf[start + 2] === 65 &&
      buf[start + 3] === 84
    ) {
      if (end - start < 6 || buf[start + 4] !== SP) {
        throw new MemcachedProtocolError(`malformed STAT line: ${printable(buf, start, end)}`);
      }
      this.stat(buf, start + 5, end);
      return;
    }
    if (first === E0 && end - start === 3 && buf[start + 1] === 78 && buf[start + 2] === 68) {
      this.sink.onEnd();
      return;
    }
    this.sink.onLine(buf.toString('utf8', start, end));
  }

  /** Parses `<key> <flags> <bytes> [<cas>]` (from `start` to `end`) and enters the data state. */
  private startValue(buf: Buffer, start: number, end: number): void {
    let i = start;
    while (i < end && buf[i] !== SP) i++;
    if (i === start || i >= end) this.badValueLine(buf, start, end);
    const key = buf.toString('utf8', start, i);
    i++;
    const flagsStart = i;
    let flags = 0;
    while (i < end && buf[i] !== SP) {
      const d = buf[i]! - 48;
      if (d < 0 || d > 9) this.badValueLine(buf, start, end);
      flags = flags * 10 + d;
      i++;
    }
    if (i === flagsStart || i - flagsStart > 10 || flags > 0xffffffff || i >= end) {
      this.badValueLine(buf, start, end);
    }
    i++;
    const lenStart = i;
    let length = 0;
    while (i < end && buf[i] !== SP) {
      const d = buf[i]! - 48;
      if (d < 0 || d > 9) this.badValueLine(buf, start, end);
      length = length * 10 + d;
      if (length > this.hardLimit) {
        throw new MemcachedProtocolError(
          `reply declares a value of more than ${this.hardLimit} bytes for key "${key}": no memcached item is that large (maxValueSize and the server's -I are at most 1 GiB)`,
        );
      }
      i++;
    }
    if (i === lenStart) this.badValueLine(buf, start, end);
    let cas: string | undefined;
    if (i < end) {
      i++;
      const casStart = i;
      while (i < end) {
        const d = buf[i]! - 48;
        if (d < 0 || d > 9) this.badValueLine(buf, start, end);
        i++;
      }
      if (i === casStart || i - casStart > 20) this.badValueLine(buf, start, end);
      cas = buf.toString('latin1', casStart, end);
    }
    this.valueKey = key;
    this.valueFlags = flags;
    this.valueCas = cas;
    this.valueFilled = 0;
    this.state = ParserState.data;
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

  private badValueLine(buf: Buffer, start: number, end: number): never {
    throw new MemcachedProtocolError(`malformed VALUE line: VALUE ${printable(buf, start, end)}`);
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
          `value data for key "${this.valueKey}" is not followed by \\r\\n: the declared length does not match the data`,
        );
      }
      const data = this.valueBuf.subarray(0, total - 2);
      this.valueBuf = EMPTY;
      this.state = ParserState.line;
      this.sink.onValue(this.valueKey, this.valueFlags, data, this.valueCas, this.skipped);
    }
    return off + n;
  }

  private stat(buf: Buffer, start: number, end: number): void {
    let i = start;
    while (i < end && buf[i] !== SP) i++;
    if (i === start) {
      throw new MemcachedProtocolError(`malformed STAT line: STAT ${printable(buf, start, end)}`);
    }
    const name = buf.toString('utf8', start, i);
    const value = i < end ? buf.toString('utf8', i + 1, end) : '';
    this.sink.onStat(name, value);
  }
}

const EMPTY = Buffer.alloc(0);

/** A short, printable rendering of bad reply bytes for error messages. */
function printable(buf: Buffer, start: number, end: number): string {
  const max = 80;
  const slice = buf.subarray(start, Math.min(end, start + max));
  let s = JSON.stringify(slice.toString('latin1'));
  if (end - start > max) s += '…';
  return s;
}

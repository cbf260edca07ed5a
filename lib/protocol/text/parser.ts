import { MemcachedProtocolError } from '../../errors.js';
import { LineFramedParser, printable, type ParserLimits } from '../line-framed-parser.js';

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

export { DEFAULT_PARSER_LIMITS, MAX_ITEM_SIZE, type ParserLimits } from '../line-framed-parser.js';

const SP = 32;

/** `VALUE ` */
const V0 = 86;
/** `STAT ` */
const S0 = 83;
/** `END` */
const E0 = 69;

/**
 * Streaming parser for memcached text-protocol replies. Feed it chunks exactly as they arrive
 * from the socket, split anywhere; it calls the sink in order. A value's buffer is allocated once
 * from its declared length and filled by copies; partial lines are bounded by `maxLineLength`,
 * declared lengths by `maxValueLength`. Any malformed input throws {@link MemcachedProtocolError}
 * and leaves the parser failed (a connection must then be reset; the stream cannot be trusted).
 */
export class ReplyParser extends LineFramedParser {
  // Value being received.
  private valueKey = '';
  private valueFlags = 0;
  private valueCas: string | undefined;

  constructor(
    private readonly sink: ReplySink,
    limits: Partial<ParserLimits> = {},
  ) {
    super(limits);
  }

  /** One line, `buf[start..end)`. */
  protected onLine(buf: Buffer, start: number, end: number): void {
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
    this.expectData(length);
  }

  protected onData(data: Buffer, tooLarge: number): void {
    this.sink.onValue(this.valueKey, this.valueFlags, data, this.valueCas, tooLarge);
  }

  protected describeData(): string {
    return `for key "${this.valueKey}"`;
  }

  private badValueLine(buf: Buffer, start: number, end: number): never {
    throw new MemcachedProtocolError(`malformed VALUE line: VALUE ${printable(buf, start, end)}`);
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

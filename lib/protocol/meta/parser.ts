import { MemcachedProtocolError } from '../../errors.js';
import { LineFramedParser, printable, type ParserLimits } from '../line-framed-parser.js';

/**
 * The return flags of one meta reply line (`VA <n> <flags>*`, `HD <flags>*`, `EN <flags>*`, ...).
 * Flags may come in any order, separated by one space or more; flags this client does not know
 * are skipped (newer servers add some). Absent numeric flags are `undefined`.
 */
export interface MetaFlags {
  /** `f`: client flags. */
  flags: number | undefined;
  /** `c`: cas, as decimal text. */
  cas: string | undefined;
  /** `t`: seconds of TTL left, -1 = never expires. */
  ttl: number | undefined;
  /** `k`: the key as the server printed it (base64 when `base64`). */
  key: string | undefined;
  /** `b`: the key is base64-encoded. */
  base64: boolean;
  /**
   * `O`: the opaque token as a number (this client sends positions, `O0`…`O99`); `NaN` when it is
   * not a decimal of at most 9 digits.
   */
  opaque: number | undefined;
  /** `W`: this caller won the token (lease, recache or stale refresh). */
  win: boolean;
  /** `X`: the item is stale. */
  stale: boolean;
  /** `Z`: another caller already holds the token. */
  contended: boolean;
}

/** The meta status codes that are lines without a data block. */
export type MetaStatus = 'HD' | 'EN' | 'NF' | 'NS' | 'EX' | 'MN';

/**
 * Receives the pieces of a meta-protocol reply stream as the parser recognises them. The
 * parser is context free (every reply is self-delimiting); the matcher decides whether a piece
 * fits the request at the head of the queue. `flags` objects are reused by the parser: read them
 * before returning. A method may throw to reject the stream.
 */
export interface MetaReplySink {
  /**
   * `VA <n> <flags>*` with its data block. A value declared larger than `maxValueLength` is read
   * and dropped: `data` is then empty and `tooLarge` is its size.
   */
  onValue(flags: MetaFlags, data: Buffer, tooLarge: number): void;
  /** `HD`, `EN`, `NF`, `NS`, `EX` or `MN`, with its flags. */
  onStatus(status: MetaStatus, flags: MetaFlags): void;
  /** `STAT <name> <value>` (a text `stats` reply). */
  onStat(name: string, value: string): void;
  /** `END` (closes a `stats` reply). */
  onEnd(): void;
  /** Any other line, without `\r\n`: `OK`, `VERSION …`, `STORED`, `ERROR`, `CLIENT_ERROR …`, … */
  onLine(line: string): void;
}

const SP = 32;

/** Status codes as the two bytes of the line, `(first << 8) | second`. */
const STATUS: ReadonlyMap<number, MetaStatus> = new Map(
  (['HD', 'EN', 'NF', 'NS', 'EX', 'MN'] as const).map((s) => [
    (s.charCodeAt(0) << 8) | s.charCodeAt(1),
    s,
  ]),
);

/** Longest number a flag holds: 20 digits (a 64-bit cas), plus a sign for `t`. */
const MAX_DIGITS = 20;

function emptyFlags(): MetaFlags {
  return {
    flags: undefined,
    cas: undefined,
    ttl: undefined,
    key: undefined,
    base64: false,
    opaque: undefined,
    win: false,
    stale: false,
    contended: false,
  };
}

/**
 * Streaming parser of memcached meta-protocol replies (and the text replies a meta connection
 * also receives: `STAT`/`END`, `OK`, `VERSION`, errors). Feed it chunks exactly as they arrive,
 * split anywhere. A value's buffer is allocated once from its declared length; lines are bounded
 * by `maxLineLength`, values by `maxValueLength` (larger ones are skipped and reported by size).
 * Malformed input throws MemcachedProtocolError and leaves the parser failed: the connection must
 * then be reset.
 */
export class MetaReplyParser extends LineFramedParser {
  /** The flags of the line being handled (reused). */
  private readonly flags: MetaFlags = emptyFlags();

  constructor(
    private readonly sink: MetaReplySink,
    limits: Partial<ParserLimits> = {},
  ) {
    super(limits);
  }

  /** One line, `buf[start..end)`. */
  protected onLine(buf: Buffer, start: number, end: number): void {
    const n = end - start;
    if (n >= 2 && (n === 2 || buf[start + 2] === SP)) {
      const first = buf[start]!;
      const second = buf[start + 1]!;
      if (first === 86 && second === 65) {
        // VA <size> <flags>*
        this.startValue(buf, start + 2, end);
        return;
      }
      const status = STATUS.get((first << 8) | second);
      if (status !== undefined) {
        this.parseFlags(buf, start + 2, end);
        this.sink.onStatus(status, this.flags);
        return;
      }
    }
    if (
      n >= 5 &&
      buf[start] === 83 &&
      buf[start + 1] === 84 &&
      buf[start + 2] === 65 &&
      buf[start + 3] === 84 &&
      buf[start + 4] === SP
    ) {
      this.stat(buf, start + 5, end);
      return;
    }
    if (n === 3 && buf[start] === 69 && buf[start + 1] === 78 && buf[start + 2] === 68) {
      this.sink.onEnd();
      return;
    }
    this.sink.onLine(buf.toString('utf8', start, end));
  }

  /** `buf[start..end)` is ` <size> <flags>*` after `VA`. */
  private startValue(buf: Buffer, start: number, end: number): void {
    let i = start;
    while (i < end && buf[i] === SP) i++;
    const sizeStart = i;
    let size = 0;
    while (i < end && buf[i] !== SP) {
      const d = buf[i]! - 48;
      if (d < 0 || d > 9) this.badLine('VA', buf, start, end);
      size = size * 10 + d;
      if (size > this.hardLimit) {
        throw new MemcachedProtocolError(
          `reply declares a value of more than ${this.hardLimit} bytes: no memcached item is that large (maxValueSize and the server's -I are at most 1 GiB)`,
        );
      }
      i++;
    }
    if (i === sizeStart) this.badLine('VA', buf, start, end);
    this.parseFlags(buf, i, end);
    this.expectData(size);
  }

  protected onData(data: Buffer, tooLarge: number): void {
    this.sink.onValue(this.flags, data, tooLarge);
  }

  protected describeData(): string {
    return 'of a VA reply';
  }

  /**
   * Reads the flags of `buf[start..end)` into `this.flags`: tokens separated by spaces (any
   * number), each a flag letter and its argument. Unknown flags are skipped; a known numeric flag
   * with a malformed argument is a protocol error.
   */
  private parseFlags(buf: Buffer, start: number, end: number): void {
    const f = this.flags;
    f.flags = undefined;
    f.cas = undefined;
    f.ttl = undefined;
    f.key = undefined;
    f.base64 = false;
    f.opaque = undefined;
    f.win = false;
    f.stale = false;
    f.contended = false;
    let i = start;
    for (;;) {
      while (i < end && buf[i] === SP) i++;
      if (i >= end) return;
      const tokenStart = i;
      while (i < end && buf[i] !== SP) i++;
      const flag = buf[tokenStart]!;
      const argStart = tokenStart + 1;
      const single = i === argStart;
      switch (flag) {
        case 102: // f
          f.flags = this.unsigned(buf, argStart, i, 'f', 0xffffffff);
          break;
        case 99: // c
          this.unsigned(buf, argStart, i, 'c', Number.MAX_VALUE);
          f.cas = buf.toString('latin1', argStart, i);
          break;
        case 116: // t
          f.ttl =
            i - argStart === 2 && buf[argStart] === 45 && buf[argStart + 1] === 49
              ? -1
              : this.unsigned(buf, argStart, i, 't', 0xffffffff);
          break;
        case 107: // k
          if (single) this.badFlag('k', buf, tokenStart, i);
          f.key = buf.toString('utf8', argStart, i);
          break;
        case 79: // O
          f.opaque = smallDecimal(buf, argStart, i);
          break;
        case 98: // b
          if (single) f.base64 = true;
          break;
        case 87: // W
          if (single) f.win = true;
          break;
        case 88: // X
          if (single) f.stale = true;
          break;
        case 90: // Z
          if (single) f.contended = true;
          break;
        default:
          break; // a flag this client does not use
      }
    }
  }

  private unsigned(buf: Buffer, start: number, end: number, flag: string, max: number): number {
    if (start === end || end - start > MAX_DIGITS) this.badFlag(flag, buf, start - 1, end);
    let n = 0;
    for (let i = start; i < end; i++) {
      const d = buf[i]! - 48;
      if (d < 0 || d > 9) this.badFlag(flag, buf, start - 1, end);
      n = n * 10 + d;
    }
    if (n > max) this.badFlag(flag, buf, start - 1, end);
    return n;
  }

  private badFlag(flag: string, buf: Buffer, start: number, end: number): never {
    throw new MemcachedProtocolError(
      `malformed "${flag}" flag in a meta reply: ${printable(buf, start, end)}`,
    );
  }

  private badLine(code: string, buf: Buffer, start: number, end: number): never {
    throw new MemcachedProtocolError(
      `malformed ${code} line: ${code}${printable(buf, start, end)}`,
    );
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

/** The decimal `buf[start..end)` of 1 to 9 digits, else NaN. */
function smallDecimal(buf: Buffer, start: number, end: number): number {
  if (start === end || end - start > 9) return NaN;
  let n = 0;
  for (let i = start; i < end; i++) {
    const d = buf[i]! - 48;
    if (d < 0 || d > 9) return NaN;
    n = n * 10 + d;
  }
  return n;
}

import { MemcachedProtocolError } from '../../errors.js';
import { DEFAULT_PARSER_LIMITS, MAX_ITEM_SIZE, type ParserLimits } from '../text/parser.js';

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

const CR = 13;
const LF = 10;
const SP = 32;

const State = { line: 0, data: 1, failed: 2 } as const;

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
export class MetaReplyParser {
  private readonly limits: ParserLimits;
  private readonly hardLimit: number;
  private state: number = State.line;
  private partial: Buffer | undefined;
  private valueBuf: Buffer = EMPTY;
  private valueFilled = 0;
  private skipLeft = 0;
  private skipped = 0;
  /** The flags of the line being handled (reused). */
  private readonly flags: MetaFlags = emptyFlags();

  constructor(
    private readonly sink: MetaReplySink,
    limits: Partial<ParserLimits> = {},
  ) {
    this.limits = {
      maxLineLength: limits.maxLineLength ?? DEFAULT_PARSER_LIMITS.maxLineLength,
      maxValueLength: limits.maxValueLength ?? DEFAULT_PARSER_LIMITS.maxValueLength,
    };
    this.hardLimit = Math.max(MAX_ITEM_SIZE, this.limits.maxValueLength);
  }

  /** True between replies (nothing partial buffered). */
  get idle(): boolean {
    return this.state === State.line && this.partial === undefined;
  }

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
        const joined = Buffer.concat([this.partial, piece], total);
        this.partial = undefined;
        this.handleLine(joined, 0, total - 1);
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
    const end = lf - 1;
    for (let i = start; i < end; i++) {
      const c = buf[i]!;
      if (c < SP || c === 127) {
        throw new MemcachedProtocolError(
          `reply line contains control characters: ${printable(buf, start, end)}`,
        );
      }
    }
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
    this.valueFilled = 0;
    this.state = State.data;
    if (size > this.limits.maxValueLength) {
      this.skipLeft = size;
      this.skipped = size;
      this.valueBuf = Buffer.allocUnsafe(2);
    } else {
      this.skipped = 0;
      this.valueBuf = Buffer.allocUnsafe(size + 2);
    }
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
          'value data of a VA reply is not followed by \\r\\n: the declared length does not match the data',
        );
      }
      const data = this.valueBuf.subarray(0, total - 2);
      this.valueBuf = EMPTY;
      this.state = State.line;
      this.sink.onValue(this.flags, data, this.skipped);
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

function printable(buf: Buffer, start: number, end: number): string {
  const max = 80;
  const slice = buf.subarray(start, Math.min(end, start + max));
  let s = JSON.stringify(slice.toString('latin1'));
  if (end - start > max) s += '…';
  return s;
}

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
  /** `c`: cas, as decimal text (made only when read: a plain read does not need it). */
  readonly cas: string | undefined;
  /** `t`: seconds of TTL left, -1 = never expires. */
  ttl: number | undefined;
  /** `k`: the key as the server printed it (base64 when `base64`). */
  readonly key: string | undefined;
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
/** Keys echoed by `k` up to this many bytes are copied, not decoded (memcached's limit is 250). */
const KEY_SCRATCH = 256;

/**
 * The flags of the reply line being handled, reused from line to line. The cas digits are copied
 * out of the line as they are checked; the string is made only when someone reads `cas`.
 */
class ReplyFlags implements MetaFlags {
  flags: number | undefined = undefined;
  ttl: number | undefined = undefined;
  base64 = false;
  opaque: number | undefined = undefined;
  win = false;
  stale = false;
  contended = false;
  /** Digits of `c` (at most {@link MAX_DIGITS}), 0 when absent. */
  casLength = 0;
  readonly casDigits = Buffer.alloc(MAX_DIGITS);
  private casText: string | undefined = undefined;
  /** Bytes of `k` copied from the line (-1: absent; a longer key is kept as `keyText` at once). */
  keyLength = -1;
  readonly keyBytes = Buffer.alloc(KEY_SCRATCH);
  keyText: string | undefined = undefined;

  get cas(): string | undefined {
    if (this.casLength === 0) return undefined;
    return (this.casText ??= this.casDigits.toString('latin1', 0, this.casLength));
  }

  get key(): string | undefined {
    if (this.keyLength < 0) return undefined;
    return (this.keyText ??= this.keyBytes.toString('utf8', 0, this.keyLength));
  }

  /**
   * Whether `k` names `expected` (base64-decoded when flagged `b`). An ASCII key is compared
   * byte by byte, without making a string.
   */
  keyIs(expected: string): boolean {
    const n = this.keyLength;
    if (n < 0) return false;
    if (!this.base64 && this.keyText === undefined && expected.length === n) {
      const bytes = this.keyBytes;
      let j = 0;
      for (; j < n; j++) {
        const c = expected.charCodeAt(j);
        if (c >= 0x80 || bytes[j] !== c) break;
      }
      if (j === n) return true;
      // A non-ASCII character: its UTF-8 form is longer than n bytes, unless the reply is not
      // UTF-8; compare the decoded strings to be exact.
      if (expected.charCodeAt(j) < 0x80) return false;
    }
    const echoed = this.key!;
    return (this.base64 ? Buffer.from(echoed, 'base64').toString('utf8') : echoed) === expected;
  }

  clear(): void {
    this.flags = undefined;
    this.ttl = undefined;
    this.keyLength = -1;
    this.keyText = undefined;
    this.base64 = false;
    this.opaque = undefined;
    this.win = false;
    this.stale = false;
    this.contended = false;
    this.casLength = 0;
    this.casText = undefined;
  }
}

/**
 * Whether the `k` flag of `f` names `key` (base64-decoded when flagged `b`); false when absent.
 */
export function echoesKey(f: MetaFlags, key: string): boolean {
  if (f instanceof ReplyFlags) return f.keyIs(key);
  const echoed = f.key;
  if (echoed === undefined) return false;
  return (f.base64 ? Buffer.from(echoed, 'base64').toString('utf8') : echoed) === key;
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
  private readonly flags = new ReplyFlags();

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
    f.clear();
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
          this.casToken(buf, argStart, i);
          break;
        case 116: // t
          f.ttl =
            i - argStart === 2 && buf[argStart] === 45 && buf[argStart + 1] === 49
              ? -1
              : this.unsigned(buf, argStart, i, 't', 0xffffffff);
          break;
        case 107: // k
          if (single) this.badFlag('k', buf, tokenStart, i);
          this.keyToken(buf, argStart, i);
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

  /** `k<key>`: copied into the flags (a key too long for the scratch is decoded at once). */
  private keyToken(buf: Buffer, start: number, end: number): void {
    const f = this.flags;
    const length = end - start;
    f.keyLength = length;
    if (length > KEY_SCRATCH) {
      f.keyText = buf.toString('utf8', start, end);
      return;
    }
    const bytes = f.keyBytes;
    for (let i = 0; i < length; i++) bytes[i] = buf[start + i]!;
  }

  /** `c<digits>`: 1 to 20 decimal digits, copied into the flags. */
  private casToken(buf: Buffer, start: number, end: number): void {
    const length = end - start;
    if (length === 0 || length > MAX_DIGITS) this.badFlag('c', buf, start - 1, end);
    const digits = this.flags.casDigits;
    for (let i = 0; i < length; i++) {
      const c = buf[start + i]!;
      if (c < 48 || c > 57) this.badFlag('c', buf, start - 1, end);
      digits[i] = c;
    }
    this.flags.casLength = length;
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

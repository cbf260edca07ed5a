import fc from 'fast-check';
import { MemcachedProtocolError } from '../../../lib/errors.js';
import {
  DEFAULT_PARSER_LIMITS,
  ReplyParser,
  type ParserLimits,
  type ReplySink,
} from '../../../lib/protocol/text/parser.js';
import { byteByByte, bytes, splitAt } from './chunks.js';

// ---------------------------------------------------------------------------------------------
// Recording sink and feeding helpers

type ReplyEvent =
  | {
      t: 'value';
      key: string;
      flags: number;
      data: string;
      cas: string | undefined;
      tooLarge?: number;
    }
  | { t: 'stat'; name: string; value: string }
  | { t: 'end' }
  | { t: 'line'; line: string };

/** Logs every callback as a plain event; value data is recorded as hex (exact for binary). */
class RecordingSink implements ReplySink {
  readonly events: ReplyEvent[] = [];
  /** The Buffers handed to onValue, as delivered. */
  readonly buffers: Buffer[] = [];

  onValue(
    key: string,
    flags: number,
    data: Buffer,
    cas: string | undefined,
    tooLarge: number,
  ): void {
    const event: ReplyEvent = { t: 'value', key, flags, data: data.toString('hex'), cas };
    if (tooLarge !== 0) event.tooLarge = tooLarge;
    this.events.push(event);
    this.buffers.push(data);
  }
  onStat(name: string, value: string): void {
    this.events.push({ t: 'stat', name, value });
  }
  onEnd(): void {
    this.events.push({ t: 'end' });
  }
  onLine(line: string): void {
    this.events.push({ t: 'line', line });
  }
}

const value = (key: string, flags: number, data: Buffer | string, cas?: string): ReplyEvent => ({
  t: 'value',
  key,
  flags,
  data: (typeof data === 'string' ? Buffer.from(data, 'utf8') : data).toString('hex'),
  cas,
});
const stat = (name: string, v: string): ReplyEvent => ({ t: 'stat', name, value: v });
const end = (): ReplyEvent => ({ t: 'end' });
const line = (l: string): ReplyEvent => ({ t: 'line', line: l });

interface Outcome {
  events: ReplyEvent[];
  error: unknown;
  idle: boolean;
}

/** Feeds the chunks to a fresh parser; stops at the first throw. */
function run(chunks: readonly Buffer[], limits?: Partial<ParserLimits>): Outcome {
  const sink = new RecordingSink();
  const parser = new ReplyParser(sink, limits);
  let error: unknown;
  try {
    for (const chunk of chunks) parser.feed(chunk);
  } catch (err) {
    error = err;
  }
  return { events: sink.events, error, idle: parser.idle };
}

/** Parses a valid stream: asserts no error and that the parser ends idle. */
function parseOk(chunks: readonly Buffer[], limits?: Partial<ParserLimits>): ReplyEvent[] {
  const outcome = run(chunks, limits);
  if (outcome.error !== undefined) throw outcome.error;
  expect(outcome.idle).toBe(true);
  return outcome.events;
}

/** Compact, comparable rendering (cas undefined and absent both vanish, consistently). */
const render = (events: readonly ReplyEvent[]): string => JSON.stringify(events);

/** What a successful parse that ends idle renders to by {@link quick}. */
const summary = (events: readonly ReplyEvent[]): string => `ok idle ${render(events)}`;

/** Fast, expect-free outcome of a parse, comparable with {@link summary} (for big loops). */
function quick(chunks: readonly Buffer[], limits?: Partial<ParserLimits>): string {
  const { events, error, idle } = run(chunks, limits);
  return `${error === undefined ? 'ok' : `error ${String(error)}`} ${idle ? 'idle' : 'busy'} ${render(events)}`;
}

// ---------------------------------------------------------------------------------------------
// Recorded reply streams

/** 16 bytes of binary data containing \r\n, END\r\n, a lone \r and \n, NUL and 0xff. */
const BINARY = Buffer.from([
  0x00, 0xff, 0x0d, 0x0a, 0x45, 0x4e, 0x44, 0x0d, 0x0a, 0x80, 0x0d, 0x0d, 0x0a, 0x0a, 0x7f, 0x0d,
]);
const UTF8_KEY = 'ключ:日本:🙂';
const STREAM_IN_VALUE = 'VALUE k 0 1\r\nx\r\nEND\r\nSTAT a b\r\n';

interface Fixture {
  name: string;
  bytes: Buffer;
  events: ReplyEvent[];
}

const FIXTURES: Fixture[] = [
  {
    name: 'get hit',
    bytes: bytes('VALUE user:42 0 5\r\nhello\r\nEND\r\n'),
    events: [value('user:42', 0, 'hello'), end()],
  },
  {
    name: 'get miss',
    bytes: bytes('END\r\n'),
    events: [end()],
  },
  {
    name: 'multi-get with empty data, binary data and a UTF-8 key',
    bytes: bytes(
      'VALUE a 1 0\r\n\r\n',
      'VALUE bin 4294967295 16\r\n',
      BINARY,
      '\r\n',
      `VALUE ${UTF8_KEY} 2 6\r\nwörld\r\n`,
      'END\r\n',
    ),
    events: [
      value('a', 1, ''),
      value('bin', 4294967295, BINARY),
      value(UTF8_KEY, 2, 'wörld'),
      end(),
    ],
  },
  {
    name: 'value whose data is a reply stream',
    bytes: bytes(
      `VALUE k 0 ${Buffer.byteLength(STREAM_IN_VALUE)}\r\n`,
      STREAM_IN_VALUE,
      '\r\n',
      'VALUE crlf 0 2\r\n\r\n\r\n',
      'END\r\n',
    ),
    events: [value('k', 0, STREAM_IN_VALUE), value('crlf', 0, '\r\n'), end()],
  },
  {
    name: 'gets with cas tokens up to 20 digits',
    bytes: bytes(
      'VALUE k1 0 3 1\r\nabc\r\n',
      'VALUE k2 4294967295 0 18446744073709551615\r\n\r\n',
      'VALUE k3 65535 4 12345678901234567890\r\n\r\n\r\n\r\n',
      'END\r\n',
    ),
    events: [
      value('k1', 0, 'abc', '1'),
      value('k2', 4294967295, '', '18446744073709551615'),
      value('k3', 65535, '\r\n\r\n', '12345678901234567890'),
      end(),
    ],
  },
  {
    name: 'gat miss then gats hit',
    bytes: bytes('END\r\nVALUE session:abc 16 2 99\r\n{}\r\nEND\r\n'),
    events: [end(), value('session:abc', 16, '{}', '99'), end()],
  },
  {
    name: 'stats block',
    bytes: bytes(
      'STAT pid 1234\r\n',
      'STAT uptime 5020\r\n',
      'STAT version 1.6.18\r\n',
      'STAT libevent 2.1.12-stable\r\n',
      'STAT rusage_user 0.123456\r\n',
      'STAT items:1:number 3\r\n',
      'STAT domain_socket NULL\r\n',
      'STAT spaced a b  c\r\n',
      'STAT empty\r\n',
      'END\r\n',
    ),
    events: [
      stat('pid', '1234'),
      stat('uptime', '5020'),
      stat('version', '1.6.18'),
      stat('libevent', '2.1.12-stable'),
      stat('rusage_user', '0.123456'),
      stat('items:1:number', '3'),
      stat('domain_socket', 'NULL'),
      stat('spaced', 'a b  c'),
      stat('empty', ''),
      end(),
    ],
  },
  {
    name: 'empty stats block',
    bytes: bytes('END\r\nEND\r\n'),
    events: [end(), end()],
  },
  {
    name: 'storage, delete and touch lines',
    bytes: bytes(
      'STORED\r\nNOT_STORED\r\nEXISTS\r\nNOT_FOUND\r\nDELETED\r\nNOT_FOUND\r\nTOUCHED\r\nOK\r\n',
    ),
    events: [
      line('STORED'),
      line('NOT_STORED'),
      line('EXISTS'),
      line('NOT_FOUND'),
      line('DELETED'),
      line('NOT_FOUND'),
      line('TOUCHED'),
      line('OK'),
    ],
  },
  {
    name: 'incr/decr numbers, padded decr, VERSION',
    bytes: bytes('0\r\n42\r\n18446744073709551615\r\n5   \r\n9 \r\nVERSION 1.6.18\r\n'),
    events: [
      line('0'),
      line('42'),
      line('18446744073709551615'),
      line('5   '),
      line('9 '),
      line('VERSION 1.6.18'),
    ],
  },
  {
    name: 'error lines',
    bytes: bytes(
      'ERROR\r\n',
      'CLIENT_ERROR bad data chunk\r\n',
      'CLIENT_ERROR bad command line format\r\n',
      'SERVER_ERROR object too large for cache\r\n',
      'SERVER_ERROR out of memory storing object\r\n',
      'CLIENT_ERROR authentication failure\r\n',
    ),
    events: [
      line('ERROR'),
      line('CLIENT_ERROR bad data chunk'),
      line('CLIENT_ERROR bad command line format'),
      line('SERVER_ERROR object too large for cache'),
      line('SERVER_ERROR out of memory storing object'),
      line('CLIENT_ERROR authentication failure'),
    ],
  },
  {
    name: 'pipelined mix of everything',
    bytes: bytes(
      'STORED\r\n',
      'VALUE a 0 1\r\nx\r\nEND\r\n',
      'DELETED\r\n',
      'VALUE bin 7 16 5\r\n',
      BINARY,
      '\r\nEND\r\n',
      '11 \r\n',
      'STAT threads 4\r\nSTAT curr_items 0\r\nEND\r\n',
      `VALUE ${UTF8_KEY} 0 0\r\n\r\nEND\r\n`,
      'SERVER_ERROR out of memory storing object\r\n',
      'VERSION 1.6.18\r\n',
      'END\r\n',
      'TOUCHED\r\n',
    ),
    events: [
      line('STORED'),
      value('a', 0, 'x'),
      end(),
      line('DELETED'),
      value('bin', 7, BINARY, '5'),
      end(),
      line('11 '),
      stat('threads', '4'),
      stat('curr_items', '0'),
      end(),
      value(UTF8_KEY, 0, ''),
      end(),
      line('SERVER_ERROR out of memory storing object'),
      line('VERSION 1.6.18'),
      end(),
      line('TOUCHED'),
    ],
  },
];

/** Three-chunk splits are quadratic in the length: only for fixtures up to this size. */
const THREE_CHUNK_MAX = 200;

describe('ReplyParser on recorded reply streams', () => {
  test('some fixtures are short enough for the three-chunk test', () => {
    const short = FIXTURES.filter((f) => f.bytes.length <= THREE_CHUNK_MAX);
    expect(short.length).toBeGreaterThanOrEqual(6);
    expect(short.some((f) => f.bytes.includes(BINARY))).toBe(true);
  });

  describe.each(FIXTURES)('$name', ({ bytes: input, events }) => {
    test('whole', () => {
      expect(parseOk([input])).toStrictEqual(events);
    });

    test('split into two chunks at every point', () => {
      const want = summary(events);
      const bad: number[] = [];
      for (let i = 0; i <= input.length; i++) {
        if (quick(splitAt(input, [i])) !== want) bad.push(i);
      }
      expect(bad).toEqual([]);
    });

    // Quadratic: only for the shorter fixtures (checked to be most of them above).
    if (input.length <= THREE_CHUNK_MAX) {
      test('split into three chunks at every pair of points', () => {
        const want = summary(parseOk([input]));
        expect(want).toBe(summary(events));
        const bad: [number, number][] = [];
        for (let i = 0; i <= input.length; i++) {
          for (let j = i; j <= input.length; j++) {
            if (quick(splitAt(input, [i, j])) !== want) bad.push([i, j]);
          }
        }
        expect(bad).toEqual([]);
      });
    }

    test('byte by byte', () => {
      expect(parseOk(byteByByte(input))).toStrictEqual(events);
    });

    test('concatenated with itself, split at every point', () => {
      const doubled = Buffer.concat([input, input]);
      const want = summary([...events, ...events]);
      const bad: number[] = [];
      for (let i = 0; i <= doubled.length; i++) {
        if (quick(splitAt(doubled, [i])) !== want) bad.push(i);
      }
      expect(bad).toEqual([]);
      expect(parseOk([doubled])).toStrictEqual([...events, ...events]);
    });
  });

  test('a 200 KiB value arriving in socket-sized chunks', () => {
    const data = Buffer.alloc(200 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;
    const input = bytes('VALUE big 3 204800 77\r\n', data, '\r\nEND\r\nSTORED\r\n');
    const expected = [value('big', 3, data, '77'), end(), line('STORED')];
    for (const size of [1, 1000, 16 * 1024, 64 * 1024, 65535]) {
      const chunks: Buffer[] = [];
      for (let off = 0; off < input.length; off += size)
        chunks.push(input.subarray(off, off + size));
      expect(render(parseOk(chunks))).toBe(render(expected));
    }
  });

  test('a value of exactly maxValueLength is accepted', () => {
    const data = Buffer.alloc(100, 0x41);
    const input = bytes('VALUE k 0 100\r\n', data, '\r\nEND\r\n');
    expect(parseOk([input], { maxValueLength: 100 })).toStrictEqual([value('k', 0, data), end()]);
  });

  test('a line of exactly maxLineLength is accepted at every split point', () => {
    const text = 'SERVER_ERROR ' + 'x'.repeat(3); // 16 bytes
    const input = bytes(text, '\r\n');
    for (let i = 0; i <= input.length; i++) {
      expect(parseOk(splitAt(input, [i]), { maxLineLength: 16 })).toStrictEqual([line(text)]);
    }
  });

  test('default limits', () => {
    expect(DEFAULT_PARSER_LIMITS).toEqual({ maxLineLength: 8192, maxValueLength: 1024 * 1024 });
    const longest = 'SERVER_ERROR ' + 'y'.repeat(8192 - 13);
    expect(parseOk([bytes(longest, '\r\n')])).toStrictEqual([line(longest)]);
    expect(run([bytes(longest, 'y\r\n')]).error).toBeInstanceOf(MemcachedProtocolError);
  });
});

// ---------------------------------------------------------------------------------------------
// Property: generated reply sequences

interface ModelItem {
  key: string;
  flags: number;
  data: Buffer;
  cas: string | undefined;
}

type ModelReply =
  | { t: 'values'; items: ModelItem[] }
  | { t: 'stats'; stats: { name: string; value: string }[] }
  | { t: 'line'; line: string };

const asciiGraph = fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c));
const utf8Piece = fc.constantFrom('é', 'ü', 'ключ', '日本', '🙂', 'ß');

const keyArb = fc
  .string({
    unit: fc.oneof({ weight: 8, arbitrary: asciiGraph }, { weight: 1, arbitrary: utf8Piece }),
    minLength: 1,
    maxLength: 40,
  })
  .filter((k) => Buffer.byteLength(k) <= 250);

const flagsArb = fc.oneof(
  fc.constantFrom(0, 1, 0xffffffff),
  fc.bigInt({ min: 0n, max: 0xffffffffn }).map(Number),
);

const casArb = fc.option(
  fc.oneof(
    fc.constantFrom('0', '18446744073709551615', '99999999999999999999'),
    fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }).map(String),
  ),
  { nil: undefined },
);

const trickyData = [
  '\r\n',
  '\r\nEND\r\n',
  'END\r\n',
  '\r',
  '\n',
  'VALUE k 0 1\r\n',
  'STAT a b\r\n',
];
const dataArb = fc
  .array(
    fc.oneof(
      fc.uint8Array({ maxLength: 40 }),
      fc.constantFrom(...trickyData).map((s) => Buffer.from(s)),
    ),
    { maxLength: 5 },
  )
  .map((parts) => Buffer.concat(parts));

const itemArb: fc.Arbitrary<ModelItem> = fc.record({
  key: keyArb,
  flags: flagsArb,
  data: dataArb,
  cas: casArb,
});

const textUnit = fc.oneof(
  { weight: 10, arbitrary: asciiGraph },
  { weight: 2, arbitrary: fc.constant(' ') },
  { weight: 1, arbitrary: utf8Piece },
);
const statNameArb = fc.string({ unit: asciiGraph, minLength: 1, maxLength: 30 });
const statValueArb = fc.string({ unit: textUnit, maxLength: 40 });

/** Lines the parser treats as plain lines: no control chars, not END, not VALUE/STAT-like. */
const plainLine = (l: string): boolean =>
  l.length > 0 && l !== 'END' && !/^(VALUE|STAT)( |$)/.test(l);

const lineArb = fc.oneof(
  fc.constantFrom(
    'STORED',
    'NOT_STORED',
    'EXISTS',
    'NOT_FOUND',
    'DELETED',
    'TOUCHED',
    'OK',
    'ERROR',
    '0',
    '18446744073709551615',
    '5   ',
    'VERSION 1.6.18',
    'CLIENT_ERROR bad data chunk',
    'SERVER_ERROR out of memory storing object',
  ),
  fc.string({ unit: textUnit, minLength: 1, maxLength: 60 }).filter(plainLine),
);

const replyArb: fc.Arbitrary<ModelReply> = fc.oneof(
  fc.record({ t: fc.constant('values' as const), items: fc.array(itemArb, { maxLength: 4 }) }),
  fc.record({
    t: fc.constant('stats' as const),
    stats: fc.array(fc.record({ name: statNameArb, value: statValueArb }), { maxLength: 5 }),
  }),
  fc.record({ t: fc.constant('line' as const), line: lineArb }),
);

function encodeModel(replies: readonly ModelReply[]): Buffer {
  const parts: Buffer[] = [];
  for (const r of replies) {
    if (r.t === 'values') {
      for (const it of r.items) {
        const cas = it.cas === undefined ? '' : ` ${it.cas}`;
        parts.push(
          bytes(`VALUE ${it.key} ${it.flags} ${it.data.length}${cas}\r\n`, it.data, '\r\n'),
        );
      }
      parts.push(bytes('END\r\n'));
    } else if (r.t === 'stats') {
      for (const s of r.stats) parts.push(bytes(`STAT ${s.name} ${s.value}\r\n`));
      parts.push(bytes('END\r\n'));
    } else {
      parts.push(bytes(r.line, '\r\n'));
    }
  }
  return Buffer.concat(parts);
}

function modelEvents(replies: readonly ModelReply[]): ReplyEvent[] {
  const events: ReplyEvent[] = [];
  for (const r of replies) {
    if (r.t === 'values') {
      for (const it of r.items) events.push(value(it.key, it.flags, it.data, it.cas));
      events.push(end());
    } else if (r.t === 'stats') {
      for (const s of r.stats) events.push(stat(s.name, s.value));
      events.push(end());
    } else {
      events.push(line(r.line));
    }
  }
  return events;
}

/** Arbitrary split offsets; reduced modulo the input length when used. */
const splitsArb = fc.array(fc.nat(), { maxLength: 40 });
const toPoints = (raw: readonly number[], length: number): number[] =>
  raw.map((p) => p % (length + 1));

describe('ReplyParser property: generated reply sequences', () => {
  test('arbitrary chunking yields exactly the events of the model', () => {
    fc.assert(
      fc.property(fc.array(replyArb, { minLength: 1, maxLength: 8 }), splitsArb, (replies, raw) => {
        const input = encodeModel(replies);
        const chunks = splitAt(input, toPoints(raw, input.length));
        const outcome = run(chunks);
        expect(outcome.error).toBeUndefined();
        expect(outcome.idle).toBe(true);
        expect(outcome.events).toStrictEqual(modelEvents(replies));
      }),
      { numRuns: 1000 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Hostile and malformed input

const VALID_AFTER_RESET = bytes('VALUE k 0 2 3\r\nok\r\nEND\r\nSTORED\r\n');
const VALID_AFTER_RESET_EVENTS = [value('k', 0, 'ok', '3'), end(), line('STORED')];

/**
 * Feeds `input` whole and byte by byte: each must throw MemcachedProtocolError, refuse further
 * input, and work again after reset(). Returns the error of the whole feed.
 */
function expectRejected(input: Buffer, limits?: Partial<ParserLimits>): MemcachedProtocolError {
  let first: MemcachedProtocolError | undefined;
  for (const chunks of [[input], byteByByte(input)]) {
    const sink = new RecordingSink();
    const parser = new ReplyParser(sink, limits);
    let caught: unknown;
    try {
      for (const chunk of chunks) parser.feed(chunk);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(MemcachedProtocolError);
    first ??= caught as MemcachedProtocolError;
    expect(parser.idle).toBe(false);

    // Refuses further input, even a valid reply, and reports nothing.
    const seen = sink.events.length;
    expect(() => parser.feed(bytes('END\r\n'))).toThrow(MemcachedProtocolError);
    expect(() => parser.feed(bytes('STORED\r\n'))).toThrow(/reset/);
    expect(sink.events.length).toBe(seen);

    parser.reset();
    expect(parser.idle).toBe(true);
    parser.feed(VALID_AFTER_RESET);
    expect(sink.events.slice(seen)).toStrictEqual(VALID_AFTER_RESET_EVENTS);
    expect(parser.idle).toBe(true);
  }
  return first!;
}

describe('ReplyParser on hostile input', () => {
  test('absurd declared length', () => {
    const err = expectRejected(bytes('VALUE k 0 99999999999\r\n'));
    expect(err.message).toContain('maxValueSize');
    expectRejected(bytes('VALUE k 0 99999999999999999999999999999999999999\r\n'));
  });

  test('a value over maxValueLength is read and dropped, reported by its size', () => {
    const input = bytes(
      'VALUE big 3 101 77\r\n',
      'x'.repeat(101),
      '\r\nVALUE small 0 2\r\nok\r\nEND\r\n',
    );
    const expected: ReplyEvent[] = [
      { t: 'value', key: 'big', flags: 3, data: '', cas: '77', tooLarge: 101 },
      value('small', 0, 'ok'),
      end(),
    ];
    expect(parseOk([input], { maxValueLength: 100 })).toStrictEqual(expected);
    expect(parseOk(byteByByte(input), { maxValueLength: 100 })).toStrictEqual(expected);
    for (let split = 1; split < input.length; split++) {
      expect(
        parseOk([input.subarray(0, split), input.subarray(split)], { maxValueLength: 100 }),
      ).toStrictEqual(expected);
    }
  });

  test('a dropped value must still end with \\r\\n where its length says', () => {
    const err = expectRejected(bytes('VALUE k 0 101\r\n', 'x'.repeat(102), '\r\nEND\r\n'), {
      maxValueLength: 100,
    });
    expect(err.message).toContain('"k"');
  });

  test('a declared length over 1 GiB is not a memcached reply', () => {
    const err = expectRejected(bytes(`VALUE k 0 ${2 ** 30 + 1}\r\n`));
    expect(err.message).toContain('1 GiB');
  });

  test.each([
    ['flags', 'VALUE k x 1\r\nx\r\n'],
    ['negative flags', 'VALUE k -1 1\r\nx\r\n'],
    ['fractional flags', 'VALUE k 1.5 1\r\nx\r\n'],
    ['length', 'VALUE k 0 abc\r\nx\r\n'],
    ['negative length', 'VALUE k 0 -1\r\nx\r\n'],
    ['signed length', 'VALUE k 0 +1\r\nx\r\n'],
    ['hex length', 'VALUE k 0 0x1\r\nx\r\n'],
    ['cas', 'VALUE k 0 1 12a\r\nx\r\n'],
    ['negative cas', 'VALUE k 0 1 -1\r\nx\r\n'],
    ['cas with a space', 'VALUE k 0 1 1 2\r\nx\r\n'],
  ])('non-numeric %s', (_what, input) => {
    expect(expectRejected(bytes(input)).message).toContain('malformed VALUE line');
  });

  test('flags above 2^32-1', () => {
    expectRejected(bytes('VALUE k 4294967296 1\r\nx\r\nEND\r\n'));
    expectRejected(bytes('VALUE k 99999999999 1\r\nx\r\nEND\r\n'));
    // The largest valid flags are accepted.
    expect(parseOk([bytes('VALUE k 4294967295 1\r\nx\r\nEND\r\n')])).toStrictEqual([
      value('k', 4294967295, 'x'),
      end(),
    ]);
  });

  test('cas longer than 20 digits', () => {
    expectRejected(bytes('VALUE k 0 1 123456789012345678901\r\nx\r\nEND\r\n'));
    expect(parseOk([bytes('VALUE k 0 1 12345678901234567890\r\nx\r\nEND\r\n')])).toStrictEqual([
      value('k', 0, 'x', '12345678901234567890'),
      end(),
    ]);
  });

  test.each([
    ['key only', 'VALUE k\r\n'],
    ['no length', 'VALUE k 0\r\n'],
    ['empty length', 'VALUE k 0 \r\n'],
    ['empty cas (trailing space)', 'VALUE k 0 1 \r\nx\r\n'],
    ['empty key', 'VALUE  0 1\r\nx\r\n'],
    ['empty flags', 'VALUE k  1\r\nx\r\n'],
  ])('missing VALUE fields: %s', (_what, input) => {
    expectRejected(bytes(input));
  });

  // BUG (lib/protocol/parser.ts, handleLine): `VALUE \r\n` is not recognised as a VALUE line
  // (the check requires more than 6 bytes) and is delivered to onLine('VALUE ') instead of
  // throwing. Harmless end-to-end (no ReplyKind accepts that line), but the parser contract says
  // malformed input throws. Remove `.failing` once fixed.
  test('missing VALUE fields: nothing after "VALUE "', () => {
    expectRejected(bytes('VALUE \r\n'));
  });

  test('data shorter than declared (declared length too small)', () => {
    const err = expectRejected(bytes('VALUE k 0 3\r\nabcd\r\nEND\r\n'));
    expect(err.message).toContain('not followed by \\r\\n');
  });

  test('data longer than declared (declared length too large)', () => {
    expectRejected(bytes('VALUE k 0 5\r\nabc\r\nEND\r\n'));
    expectRejected(bytes('VALUE k 0 1\r\n\r\nEND\r\n'));
    // Data followed by \r but not \n.
    expectRejected(bytes('VALUE k 0 1\r\nx\rEND\r\n'));
    expectRejected(bytes('VALUE k 0 1\r\nx\n\rEND\r\n'));
  });

  test.each([
    ['STORED\n'],
    ['\n'],
    ['END\n'],
    ['STAT pid 1\n'],
    ['VALUE k 0 1\nx\r\nEND\r\n'],
    ['STORED\r\nDELETED\n'],
    ['VALUE k 0 1\r\nx\r\nEND\n'],
  ])('line without \\r before \\n: %j', (input) => {
    expectRejected(bytes(input));
  });

  test('a line longer than maxLineLength in one chunk', () => {
    const err = expectRejected(bytes('SERVER_ERROR ', 'x'.repeat(9000), '\r\n'));
    expect(err.message).toContain('8192');
    expectRejected(bytes('SERVER_ERROR xxxx\r\n'), { maxLineLength: 16 });
  });

  test('a line one byte over maxLineLength is rejected at every split point', () => {
    const input = bytes('SERVER_ERROR xxxx\r\n'); // 17 bytes before \r\n
    for (let i = 0; i <= input.length; i++) {
      const outcome = run(splitAt(input, [i]), { maxLineLength: 16 });
      expect(outcome.error).toBeInstanceOf(MemcachedProtocolError);
      expect(outcome.events).toEqual([]);
    }
  });

  test('an endless line is rejected once it exceeds maxLineLength (bounded memory)', () => {
    const maxLineLength = 8192;
    const chunkSize = 1024;
    const sink = new RecordingSink();
    const parser = new ReplyParser(sink, { maxLineLength });
    const chunk = Buffer.alloc(chunkSize, 0x41);
    let fed = 0;
    let caught: unknown;
    for (let i = 0; i < 1024; i++) {
      try {
        parser.feed(chunk);
      } catch (err) {
        caught = err;
        break;
      }
      fed += chunkSize;
    }
    expect(caught).toBeInstanceOf(MemcachedProtocolError);
    // Everything accepted without throwing was at most the limit plus \r\n.
    expect(fed).toBeLessThanOrEqual(maxLineLength + 2);
    expect(fed).toBeGreaterThanOrEqual(maxLineLength - chunkSize);
    expect(sink.events).toEqual([]);
    expect(() => parser.feed(bytes('\r\n'))).toThrow(MemcachedProtocolError);
  });

  test('an endless line in one huge chunk is rejected without a newline', () => {
    const outcome = run([Buffer.alloc(1024 * 1024, 0x41)]);
    expect(outcome.error).toBeInstanceOf(MemcachedProtocolError);
  });

  test('long value data is not limited by maxLineLength', () => {
    const data = Buffer.alloc(1000, 0x42);
    expect(
      parseOk([bytes('VALUE k 0 1000\r\n', data, '\r\nEND\r\n')], { maxLineLength: 32 }),
    ).toStrictEqual([value('k', 0, data), end()]);
  });

  test.each([
    ['NUL', 'STO\x00RED\r\n'],
    ['DEL', 'OK\x7f\r\n'],
    ['bare CR inside', 'SERVER_ERROR a\rb\r\n'],
    ['TAB', 'VERSION 1.6.18\t\r\n'],
    ['ESC', 'CLIENT_ERROR \x1b[31mred\r\n'],
    ['leading CR', '\rSTORED\r\n'],
  ])('control character in a line: %s', (_what, input) => {
    const err = expectRejected(bytes(input));
    expect(err.message).toContain('control characters');
  });

  // DOUBTFUL (lib/protocol/parser.ts, startValue/stat): the control-character check only runs on
  // plain lines. `VALUE k\x01 0 1` yields key "k\u0001", `VALUE k\r 0 1` key "k\r", and
  // `STAT a\x00b c` name "a\u0000b". Harmless for VALUE (the connection only accepts keys it asked
  // for) but STAT names/values reach the user unchecked. Remove `.failing` once fixed.
  test('control characters in VALUE and STAT lines', () => {
    expectRejected(bytes('VALUE k\x01 0 1\r\nx\r\nEND\r\n'));
    expectRejected(bytes('VALUE k\r 0 1\r\nx\r\nEND\r\n'));
    expectRejected(bytes('STAT a\x00b c\r\nEND\r\n'));
  });

  test('a STAT line without a name', () => {
    const err = expectRejected(bytes('STAT  value\r\nEND\r\n'));
    expect(err.message).toContain('malformed STAT line');
  });

  // BUG (lib/protocol/parser.ts, handleLine): `STAT \r\n` (nothing after "STAT ") is not
  // recognised as a STAT line (the check requires more than 5 bytes) and is delivered to
  // onLine('STAT ') instead of throwing. Remove `.failing` once fixed.
  test('a STAT line with nothing after "STAT "', () => {
    expectRejected(bytes('STAT \r\nEND\r\n'));
  });

  const tokens = [
    'VALUE ',
    'STAT ',
    'END',
    '\r\n',
    '\r',
    '\n',
    ' ',
    '0',
    '1',
    '4294967295',
    '4294967296',
    '99999999999',
    '18446744073709551615',
    'STORED',
    'k',
    'é',
  ].map((s) => Buffer.from(s));
  const soupArb = fc
    .array(fc.oneof(fc.constantFrom(...tokens), fc.uint8Array({ maxLength: 6 })), {
      maxLength: 40,
    })
    .map((parts) => Buffer.concat(parts));
  const limitsArb = fc.constantFrom<Partial<ParserLimits>>(
    {},
    { maxLineLength: 12, maxValueLength: 8 },
    { maxLineLength: 0, maxValueLength: 0 },
  );

  test('random bytes only ever throw MemcachedProtocolError', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.uint8Array({ maxLength: 300 }), soupArb),
        splitsArb,
        limitsArb,
        (input, raw, limits) => {
          const buf = Buffer.from(input);
          const { error } = run(splitAt(buf, toPoints(raw, buf.length)), limits);
          if (error !== undefined) expect(error).toBeInstanceOf(MemcachedProtocolError);
        },
      ),
      { numRuns: 1500 },
    );
  });

  test('on random bytes, the outcome does not depend on the chunking', () => {
    fc.assert(
      fc.property(soupArb, splitsArb, limitsArb, (buf, raw, limits) => {
        const whole = run([buf], limits);
        const split = run(splitAt(buf, toPoints(raw, buf.length)), limits);
        const bytewise = run(byteByByte(buf), limits);
        for (const other of [split, bytewise]) {
          expect(other.events).toStrictEqual(whole.events);
          expect(other.error === undefined).toBe(whole.error === undefined);
          expect(other.idle).toBe(whole.idle);
        }
      }),
      { numRuns: 1000 },
    );
  });

  class ThrowingSink extends RecordingSink {
    readonly error = new Error('sink rejected the reply');
    constructor(private readonly at: ReplyEvent['t']) {
      super();
    }
    override onValue(
      key: string,
      flags: number,
      data: Buffer,
      cas: string | undefined,
      tooLarge: number,
    ): void {
      if (this.at === 'value') throw this.error;
      super.onValue(key, flags, data, cas, tooLarge);
    }
    override onStat(name: string, v: string): void {
      if (this.at === 'stat') throw this.error;
      super.onStat(name, v);
    }
    override onEnd(): void {
      if (this.at === 'end') throw this.error;
      super.onEnd();
    }
    override onLine(l: string): void {
      if (this.at === 'line') throw this.error;
      super.onLine(l);
    }
  }

  test.each([
    ['onValue', 'value', 'VALUE k 0 1\r\nx\r\nSTORED\r\n', []],
    ['onStat', 'stat', 'STAT a b\r\nSTORED\r\n', []],
    ['onEnd', 'end', 'VALUE k 0 1\r\nx\r\nEND\r\nSTORED\r\n', [value('k', 0, 'x')]],
    ['onLine', 'line', 'STAT a b\r\nEND\r\nDELETED\r\nSTORED\r\n', [stat('a', 'b'), end()]],
  ] as const)('a sink throwing in %s stops parsing with that error', (_m, at, input, before) => {
    for (const chunks of [[bytes(input)], byteByByte(bytes(input))]) {
      const sink = new ThrowingSink(at);
      const parser = new ReplyParser(sink);
      let caught: unknown;
      try {
        for (const chunk of chunks) parser.feed(chunk);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBe(sink.error);
      // Nothing after the rejected piece was delivered.
      expect(sink.events).toStrictEqual(before);
      expect(() => parser.feed(bytes('OK\r\n'))).toThrow(MemcachedProtocolError);
      expect(sink.events).toStrictEqual(before);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// reset(), idle, allocation

describe('ReplyParser state', () => {
  test('idle is true between replies and false mid-line or mid-value', () => {
    const sink = new RecordingSink();
    const parser = new ReplyParser(sink);
    const steps: [string, boolean][] = [
      ['STO', false],
      ['RED\r', false],
      ['\n', true],
      ['VALUE k 0 3', false],
      ['\r\n', false], // in the data block
      ['ab', false],
      ['c', false],
      ['\r', false],
      ['\n', true], // data block complete (END still to come)
      ['E', false],
      ['ND\r\n', true],
      ['STAT a b\r\nSTAT c d\r\nEND\r\n', true],
      ['VALUE k 0 0\r\n', false],
      ['\r\nEND\r\nDELETED\r\n', true],
    ];
    expect(parser.idle).toBe(true);
    for (const [chunk, idle] of steps) {
      parser.feed(bytes(chunk));
      expect({ chunk, idle: parser.idle }).toEqual({ chunk, idle });
    }
    expect(sink.events).toStrictEqual([
      line('STORED'),
      value('k', 0, 'abc'),
      end(),
      stat('a', 'b'),
      stat('c', 'd'),
      end(),
      value('k', 0, ''),
      end(),
      line('DELETED'),
    ]);
  });

  test('reset() after an error makes the parser work again', () => {
    const sink = new RecordingSink();
    const parser = new ReplyParser(sink);
    expect(() => parser.feed(bytes('VALUE k 0 3\r\nabcdef\r\n'))).toThrow(MemcachedProtocolError);
    expect(parser.idle).toBe(false);
    parser.reset();
    expect(parser.idle).toBe(true);
    parser.feed(bytes('VALUE k2 5 1\r\nz\r\nEND\r\n'));
    expect(sink.events).toStrictEqual([value('k2', 5, 'z'), end()]);
  });

  test('reset() mid-value forgets the partial value', () => {
    const sink = new RecordingSink();
    const parser = new ReplyParser(sink);
    parser.feed(bytes('VALUE k 0 10\r\nabc'));
    expect(parser.idle).toBe(false);
    parser.reset();
    expect(parser.idle).toBe(true);
    parser.feed(bytes('STORED\r\n'));
    expect(sink.events).toStrictEqual([line('STORED')]);
  });

  test('reset() mid-line forgets the partial line', () => {
    const sink = new RecordingSink();
    const parser = new ReplyParser(sink);
    parser.feed(bytes('NOT_STO'));
    parser.reset();
    parser.feed(bytes('DELETED\r\n'));
    expect(sink.events).toStrictEqual([line('DELETED')]);
  });

  test('reset() on a fresh or idle parser is harmless', () => {
    const sink = new RecordingSink();
    const parser = new ReplyParser(sink);
    parser.reset();
    parser.feed(bytes('OK\r\n'));
    parser.reset();
    parser.feed(bytes('OK\r\n'));
    expect(sink.events).toStrictEqual([line('OK'), line('OK')]);
  });

  test('a value does not share memory with the input chunk', () => {
    const sink = new RecordingSink();
    const parser = new ReplyParser(sink);
    const input = bytes('VALUE k 0 5\r\nhello\r\nEND\r\n');
    // Not from the allocation pool, so that nothing else can share its memory.
    const chunk = Buffer.alloc(input.length);
    input.copy(chunk);
    parser.feed(chunk);
    chunk.fill(0x5a);
    expect(sink.buffers).toHaveLength(1);
    expect(sink.buffers[0]!.toString()).toBe('hello');
    expect(sink.buffers[0]!.buffer).not.toBe(chunk.buffer);
  });

  test('partial lines and partial values are copied, not retained', () => {
    const sink = new RecordingSink();
    const parser = new ReplyParser(sink);
    const first = Buffer.alloc(16);
    bytes('STO').copy(first);
    parser.feed(first.subarray(0, 3));
    first.fill(0x21);
    const second = Buffer.alloc(32);
    const rest = bytes('RED\r\nVALUE k 0 6\r\nab');
    rest.copy(second);
    parser.feed(second.subarray(0, rest.length));
    second.fill(0x21);
    parser.feed(bytes('cdef\r\nEND\r\n'));
    expect(sink.events).toStrictEqual([line('STORED'), value('k', 0, 'abcdef'), end()]);
    expect(sink.buffers[0]!.toString()).toBe('abcdef');
  });

  test('successive values get distinct buffers of their declared length', () => {
    const sink = new RecordingSink();
    const parser = new ReplyParser(sink);
    parser.feed(bytes('VALUE a 0 3\r\naaa\r\nVALUE b 0 3\r\nbbb\r\nVALUE c 0 0\r\n\r\nEND\r\n'));
    const [a, b, c] = sink.buffers;
    expect(a!.toString()).toBe('aaa');
    expect(b!.toString()).toBe('bbb');
    expect(c!.length).toBe(0);
    b!.fill(0x30);
    expect(a!.toString()).toBe('aaa');
    expect(a!.length).toBe(3);
  });
});

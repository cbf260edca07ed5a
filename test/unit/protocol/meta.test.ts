/**
 * The meta protocol driver in pieces, without a server: the encoder's exact bytes and limits,
 * the streaming parser on byte fixtures split at every point, and the matcher pairing replies
 * with a queue of requests (a SessionHost over an array) — including fast-check properties over
 * generated request/reply sequences and chunkings.
 */
import fc from 'fast-check';
import {
  MemcachedClientError,
  MemcachedError,
  MemcachedKeyError,
  MemcachedProtocolError,
  MemcachedServerError,
} from '../../../lib/errors.js';
import type { SessionHost } from '../../../lib/protocol/driver.js';
import { encodeMetaRequest, metaKey, needsBase64 } from '../../../lib/protocol/meta/encoder.js';
import { metaFeatures, BASE_FEATURES } from '../../../lib/protocol/meta/features.js';
import { MetaReplyMatcher, isPlaceholder } from '../../../lib/protocol/meta/matcher.js';
import {
  MetaReplyParser,
  type MetaFlags,
  type MetaReplySink,
  type MetaStatus,
} from '../../../lib/protocol/meta/parser.js';
import {
  Request,
  type AnyRequest,
  type CommandSpec,
  type KindOf,
  type Replies,
} from '../../../lib/protocol/request.js';

const SERVER = '10.0.0.9:11211';

function bytes(...parts: (string | Buffer)[]): Buffer {
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p)));
}

function splitAt(buf: Buffer, points: readonly number[]): Buffer[] {
  const sorted = [...new Set(points)].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const p of sorted) {
    chunks.push(buf.subarray(prev, p));
    prev = p;
  }
  chunks.push(buf.subarray(prev));
  return chunks;
}

const wire = (spec: CommandSpec): string => {
  const out = encodeMetaRequest(spec);
  return (Array.isArray(out) ? Buffer.concat(out) : out).toString('utf8');
};

// -----------------------------------------------------------------------------------------------
// Encoder

describe('encodeMetaRequest', () => {
  test.each<[string, CommandSpec, string]>([
    ['get (no cas: a plain read has no use for it)', { op: 'get', keys: ['a'] }, 'mg a v f k\r\n'],
    ['gets', { op: 'gets', keys: ['a'] }, 'mg a v f c k\r\n'],
    [
      'a multi-key get: one mg per key with its position, every one answered (no q, no mn)',
      { op: 'get', keys: ['a', 'b', 'a'] },
      'mg a v f O0\r\nmg b v f O1\r\nmg a v f O2\r\n',
    ],
    [
      'a multi-key gets: with the cas',
      { op: 'gets', keys: ['a', 'b'] },
      'mg a v f c O0\r\nmg b v f c O1\r\n',
    ],
    [
      'a multi-key gats: the touch before the position',
      { op: 'gats', keys: ['a', 'b'], ttl: 7 },
      'mg a v f c T7 O0\r\nmg b v f c T7 O1\r\n',
    ],
    [
      'a multi-key get with a key that needs base64 and a UTF-8 key',
      { op: 'get', keys: ['x', 'a b', 'café'] },
      'mg x v f O0\r\nmg YSBi b v f O1\r\nmg café v f O2\r\n',
    ],
    ['a single key that needs base64', { op: 'get', keys: ['a b'] }, 'mg YSBi b v f k\r\n'],
    ['gat', { op: 'gat', keys: ['a'], ttl: 30 }, 'mg a v f T30 k\r\n'],
    ['gats', { op: 'gats', keys: ['a'], ttl: 30 }, 'mg a v f c T30 k\r\n'],
    [
      'set',
      { op: 'set', key: 'a', flags: 16, ttl: 0, value: Buffer.from('hi'), noreply: false },
      'ms a 2 F16 T0\r\nhi\r\n',
    ],
    [
      'set noreply',
      { op: 'set', key: 'a', flags: 0, ttl: -1, value: Buffer.from(''), noreply: true },
      'ms a 0 F0 T-1 q\r\n\r\n',
    ],
    [
      'add',
      { op: 'add', key: 'a', flags: 2, ttl: 5, value: Buffer.from('1'), noreply: false },
      'ms a 1 F2 T5 ME\r\n1\r\n',
    ],
    [
      'replace',
      { op: 'replace', key: 'a', flags: 2, ttl: 5, value: Buffer.from('1'), noreply: false },
      'ms a 1 F2 T5 MR\r\n1\r\n',
    ],
    [
      'append',
      { op: 'append', key: 'a', flags: 0, ttl: 0, value: Buffer.from('x'), noreply: false },
      'ms a 1 F0 T0 MA\r\nx\r\n',
    ],
    [
      'prepend',
      { op: 'prepend', key: 'a', flags: 0, ttl: 0, value: Buffer.from('x'), noreply: false },
      'ms a 1 F0 T0 MP\r\nx\r\n',
    ],
    [
      'cas',
      { op: 'cas', key: 'a', flags: 0, ttl: 0, value: Buffer.from('x'), cas: '42', noreply: false },
      'ms a 1 F0 T0 C42\r\nx\r\n',
    ],
    ['delete', { op: 'delete', key: 'a' }, 'md a\r\n'],
    ['delete noreply', { op: 'delete', key: 'a', noreply: true }, 'md a q\r\n'],
    ['touch', { op: 'touch', key: 'a', ttl: 9 }, 'mg a k T9\r\n'],
    [
      'touch noreply (text form: mg q would still answer a hit)',
      { op: 'touch', key: 'a', ttl: 9, noreply: true },
      'touch a 9 noreply\r\n',
    ],
    [
      'incr',
      { op: 'incr', key: 'a', delta: 18446744073709551615n },
      'ma a D18446744073709551615 v\r\n',
    ],
    ['decr', { op: 'decr', key: 'a', delta: 3n }, 'ma a MD D3 v\r\n'],
    ['lease', { op: 'lease', key: 'a', vivify: 30, recache: 10 }, 'mg a v f c k N30 R10 t\r\n'],
    ['lease without flags', { op: 'lease', key: 'a' }, 'mg a v f c k t\r\n'],
    ['invalidate', { op: 'invalidate', key: 'a', ttl: 30 }, 'md a I T30\r\n'],
    ['invalidate with cas', { op: 'invalidate', key: 'a', cas: '7' }, 'md a I C7\r\n'],
    ['release', { op: 'release', key: 'a', cas: '7' }, 'md a C7\r\n'],
    ['flush_all (text form)', { op: 'flush_all', delay: 5 }, 'flush_all 5\r\n'],
    ['stats (text form)', { op: 'stats', group: 'settings' }, 'stats settings\r\n'],
    ['version (text form)', { op: 'version' }, 'version\r\n'],
    ['fence', { op: 'fence' }, 'mn\r\n'],
  ])('%s', (_label, spec, expected) => {
    expect(wire(spec)).toBe(expected);
  });

  test('non-ASCII keys go as is (memcached meta keys are bytes), values of any bytes', () => {
    expect(wire({ op: 'get', keys: ['café'] })).toBe('mg café v f k\r\n');
    const value = Buffer.from([0, 13, 10, 255]);
    const out = encodeMetaRequest({ op: 'set', key: 'k', flags: 0, ttl: 0, value, noreply: false });
    expect(Buffer.concat(out as Buffer[])).toEqual(bytes('ms k 4 F0 T0\r\n', value, '\r\n'));
  });

  test('a large value is sent as [header, value, CRLF] without a copy', () => {
    const value = Buffer.alloc(20_000, 1);
    const out = encodeMetaRequest({ op: 'set', key: 'k', flags: 0, ttl: 0, value, noreply: false });
    expect(Array.isArray(out) && out.length).toBe(3);
    expect((out as Buffer[])[1]).toBe(value);
  });

  test('keys that cannot go on a line as they are are sent base64 with b; over 250 encoded bytes is refused', () => {
    expect(needsBase64('plain')).toBe(false);
    expect(needsBase64('é')).toBe(false);
    expect(needsBase64('a b')).toBe(true);
    expect(needsBase64('a\nb')).toBe(true);
    expect(metaKey('a b')).toBe(`${Buffer.from('a b').toString('base64')} b`);
    expect(wire({ op: 'delete', key: 'a b' })).toBe('md YSBi b\r\n');
    expect(metaKey(' '.repeat(186)).length).toBe(248 + 2);
    expect(() => metaKey(' '.repeat(187))).toThrow(MemcachedKeyError);
  });

  const keyArb = fc
    .string({
      unit: fc.oneof(
        fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)),
        fc.constantFrom('é', '日本', '🙂'),
      ),
      minLength: 1,
      maxLength: 60,
    })
    .filter((k) => Buffer.byteLength(k) <= 250);
  const specArb: fc.Arbitrary<CommandSpec> = fc.oneof(
    fc.record({
      op: fc.constantFrom('get' as const, 'gets' as const),
      keys: fc.array(keyArb, { minLength: 1, maxLength: 120 }),
    }),
    fc.record({
      op: fc.constantFrom('gat' as const, 'gats' as const),
      keys: fc.array(keyArb, { minLength: 1, maxLength: 5 }),
      ttl: fc.integer({ min: -1, max: 2 ** 31 - 1 }),
    }),
    fc.record({
      op: fc.constantFrom(
        'set' as const,
        'add' as const,
        'replace' as const,
        'append' as const,
        'prepend' as const,
      ),
      key: keyArb,
      flags: fc.nat({ max: 0xffffffff }),
      ttl: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
      value: fc.uint8Array({ maxLength: 30 }).map((a) => Buffer.from(a)),
      noreply: fc.boolean(),
    }),
    fc.record({
      op: fc.constant('cas' as const),
      key: keyArb,
      flags: fc.nat({ max: 0xffffffff }),
      ttl: fc.integer({ min: 0, max: 100 }),
      value: fc.uint8Array({ maxLength: 30 }).map((a) => Buffer.from(a)),
      cas: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String),
      noreply: fc.boolean(),
    }),
    fc.record({ op: fc.constant('delete' as const), key: keyArb, noreply: fc.boolean() }),
    fc.record({
      op: fc.constant('touch' as const),
      key: keyArb,
      ttl: fc.integer({ min: 0, max: 100 }),
    }),
    fc.record({
      op: fc.constantFrom('incr' as const, 'decr' as const),
      key: keyArb,
      delta: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    }),
    fc.record(
      {
        op: fc.constant('lease' as const),
        key: keyArb,
        vivify: fc.integer({ min: 1, max: 2_592_000 }),
        recache: fc.integer({ min: 1, max: 2_592_000 }),
      },
      { requiredKeys: ['op', 'key'] },
    ),
    fc.record(
      {
        op: fc.constant('invalidate' as const),
        key: keyArb,
        ttl: fc.integer({ min: 1, max: 100 }),
        cas: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String),
      },
      { requiredKeys: ['op', 'key'] },
    ),
    fc.record({
      op: fc.constant('release' as const),
      key: keyArb,
      cas: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String),
    }),
  );

  test('property: reads written straight into a buffer are the bytes of the plain string form, for any keys', () => {
    // The reference: how the lines read in the protocol description, built as strings.
    const reference = (op: string, keys: readonly string[], ttl: number | undefined): string => {
      const key = (k: string): string =>
        [...k].some((c) => c <= ' ' || c === '\x7f') ? `${Buffer.from(k).toString('base64')} b` : k;
      const touch = op === 'gat' || op === 'gats' ? ` T${ttl ?? 0}` : '';
      const cas = op === 'gets' || op === 'gats' ? ' c' : '';
      if (keys.length === 1) return `mg ${key(keys[0]!)} v f${cas}${touch} k\r\n`;
      return keys.map((k, i) => `mg ${key(k)} v f${cas}${touch} O${i}\r\n`).join('');
    };
    const printable = fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c));
    const other = fc.constantFrom(' ', '\t', '\x7f', '\x00', 'é', '日', '🙂', '\u0080');
    const asciiKey = fc.string({ unit: printable, minLength: 1, maxLength: 40 });
    const anyKey = fc.string({
      unit: fc.oneof({ weight: 8, arbitrary: printable }, { weight: 1, arbitrary: other }),
      minLength: 1,
      maxLength: 40,
    });
    // Printable ASCII keys only (the buffer path), or a few others among them (the string path).
    const keyLists = fc.oneof(
      fc.array(asciiKey, { minLength: 1, maxLength: 130, size: 'max' }),
      fc
        .tuple(fc.array(asciiKey, { minLength: 1, maxLength: 130, size: 'max' }), anyKey, fc.nat())
        .map(([keys, k, at]) => {
          const out = [...keys];
          out.splice(at % (out.length + 1), 0, k);
          return out;
        }),
    );
    fc.assert(
      fc.property(
        fc.constantFrom('get' as const, 'gets' as const, 'gat' as const, 'gats' as const),
        keyLists,
        fc.integer({ min: -1, max: 2 ** 31 - 1 }),
        (op, keys, ttl) => {
          const spec: CommandSpec =
            op === 'gat' || op === 'gats' ? { op, keys, ttl } : { op, keys };
          expect(wire(spec)).toBe(reference(op, keys, ttl));
        },
      ),
      { numRuns: 400 },
    );
  });

  test('property: a write is the bytes of its plain string form, for any keys, values and flags', () => {
    const printable = fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c));
    const other = fc.constantFrom(' ', '\t', '\x7f', 'é', '日', '🙂');
    const key = fc.oneof(
      fc.string({ unit: printable, minLength: 1, maxLength: 40 }),
      fc.string({
        unit: fc.oneof({ weight: 4, arbitrary: printable }, { weight: 1, arbitrary: other }),
        minLength: 1,
        maxLength: 40,
      }),
    );
    const mode = { set: '', add: ' ME', replace: ' MR', append: ' MA', prepend: ' MP', cas: '' };
    fc.assert(
      fc.property(
        fc.constantFrom('set', 'add', 'replace', 'append', 'prepend', 'cas'),
        key,
        fc.nat({ max: 0xffffffff }),
        fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
        fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String),
        fc.boolean(),
        (op, k, flags, ttl, value, cas, noreply) => {
          const spec: CommandSpec =
            op === 'cas'
              ? { op, key: k, flags, ttl, value, cas, noreply }
              : { op, key: k, flags, ttl, value, noreply };
          const out = encodeMetaRequest(spec);
          const sent = Array.isArray(out) ? Buffer.concat(out) : out;
          const line = `ms ${metaKey(k)} ${value.length} F${flags} T${ttl}${mode[op]}${op === 'cas' ? ` C${cas}` : ''}${noreply ? ' q' : ''}\r\n`;
          expect(sent).toEqual(
            Buffer.concat([Buffer.from(line, 'utf8'), value, Buffer.from('\r\n')]),
          );
        },
      ),
      { numRuns: 400 },
    );
  });

  test('property: every command line stays within memcached limits (< 20 tokens, no flag twice, opaque ≤ 32 bytes, key ≤ 250 bytes); data blocks are length-exact', () => {
    fc.assert(
      fc.property(specArb, (spec) => {
        const out = encodeMetaRequest(spec);
        const buf = Array.isArray(out) ? Buffer.concat(out) : out;
        let off = 0;
        while (off < buf.length) {
          const nl = buf.indexOf('\r\n', off);
          expect(nl).toBeGreaterThanOrEqual(0);
          const line = buf.toString('utf8', off, nl);
          off = nl + 2;
          const tokens = line.split(' ');
          expect(tokens.every((t) => t.length > 0)).toBe(true);
          // memcached counts the terminator as a token: at most 20 in all.
          expect(tokens.length + 1).toBeLessThanOrEqual(20);
          const cmd = tokens[0]!;
          if (cmd === 'mn' || cmd === 'touch') continue;
          expect(['mg', 'ms', 'md', 'ma']).toContain(cmd);
          expect(Buffer.byteLength(tokens[1]!)).toBeLessThanOrEqual(250);
          const flags = tokens.slice(cmd === 'ms' ? 3 : 2);
          const letters = flags.map((f) => f[0]);
          expect(new Set(letters).size).toBe(letters.length);
          for (const f of flags) if (f[0] === 'O') expect(f.length).toBeLessThanOrEqual(33);
          if (cmd === 'ms') {
            const n = Number(tokens[2]);
            expect(buf.subarray(off + n, off + n + 2).toString()).toBe('\r\n');
            off += n + 2;
          }
        }
        expect(off).toBe(buf.length);
      }),
      { numRuns: 400 },
    );
  });
});

// -----------------------------------------------------------------------------------------------
// Parser

type Event =
  | { t: 'value'; flags: Partial<MetaFlags>; data: string; tooLarge?: number }
  | { t: 'status'; status: MetaStatus; flags: Partial<MetaFlags> }
  | { t: 'stat'; name: string; value: string }
  | { t: 'end' }
  | { t: 'line'; line: string };

/** The flags that were set (defaults left out), for readable expectations. */
function setFlags(f: MetaFlags): Partial<MetaFlags> {
  const out: Partial<MetaFlags> = {};
  const names: Array<keyof MetaFlags> = [
    'flags',
    'cas',
    'ttl',
    'key',
    'base64',
    'opaque',
    'win',
    'stale',
    'contended',
  ];
  for (const k of names) {
    const v = f[k];
    if (v !== undefined && v !== false) (out as Record<string, unknown>)[k] = v;
  }
  return out;
}

class Recorder implements MetaReplySink {
  readonly events: Event[] = [];
  onValue(flags: MetaFlags, data: Buffer, tooLarge: number): void {
    const e: Event = { t: 'value', flags: setFlags(flags), data: data.toString('hex') };
    if (tooLarge !== 0) e.tooLarge = tooLarge;
    this.events.push(e);
  }
  onStatus(status: MetaStatus, flags: MetaFlags): void {
    this.events.push({ t: 'status', status, flags: setFlags(flags) });
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

function parse(input: Buffer, points: readonly number[] = [], maxValueLength?: number): Event[] {
  const r = new Recorder();
  const p = new MetaReplyParser(r, maxValueLength === undefined ? {} : { maxValueLength });
  for (const chunk of splitAt(input, points)) p.feed(chunk);
  expect(p.idle).toBe(true);
  return r.events;
}

const hex = (s: string | Buffer): string =>
  (typeof s === 'string' ? Buffer.from(s) : s).toString('hex');

/** Every way of cutting `input` in two and in three pieces (and byte by byte) parses the same. */
function expectAtEverySplit(input: Buffer, expected: Event[]): void {
  expect(parse(input)).toEqual(expected);
  for (let i = 0; i <= input.length; i++) {
    expect(parse(input, [i])).toEqual(expected);
    for (let j = i; j <= input.length; j += 7) expect(parse(input, [i, j])).toEqual(expected);
  }
  expect(
    parse(
      input,
      Array.from({ length: input.length }, (_, i) => i),
    ),
  ).toEqual(expected);
}

describe('MetaReplyParser fixtures, split at every point', () => {
  test('a value with flags, a status with flags, text replies', () => {
    const input = bytes(
      'VA 5 f16 c18446744073709551615 t-1 kcafé b O12 W X Z\r\nhe\r\nl\r\n',
      'EN kmissing O3\r\n',
      'HD\r\n',
      'NF\r\nNS\r\nEX\r\nMN\r\n',
      'STAT pid 12\r\nSTAT version 1.6.18\r\nEND\r\n',
      'OK\r\nVERSION 1.6.18\r\nSTORED\r\nERROR\r\nCLIENT_ERROR bad data chunk\r\n',
    );
    expectAtEverySplit(input, [
      {
        t: 'value',
        flags: {
          flags: 16,
          cas: '18446744073709551615',
          ttl: -1,
          key: 'café',
          base64: true,
          opaque: 12,
          win: true,
          stale: true,
          contended: true,
        },
        data: hex('he\r\nl'),
      },
      { t: 'status', status: 'EN', flags: { key: 'missing', opaque: 3 } },
      { t: 'status', status: 'HD', flags: {} },
      { t: 'status', status: 'NF', flags: {} },
      { t: 'status', status: 'NS', flags: {} },
      { t: 'status', status: 'EX', flags: {} },
      { t: 'status', status: 'MN', flags: {} },
      { t: 'stat', name: 'pid', value: '12' },
      { t: 'stat', name: 'version', value: '1.6.18' },
      { t: 'end' },
      { t: 'line', line: 'OK' },
      { t: 'line', line: 'VERSION 1.6.18' },
      { t: 'line', line: 'STORED' },
      { t: 'line', line: 'ERROR' },
      { t: 'line', line: 'CLIENT_ERROR bad data chunk' },
    ]);
  });

  test('tolerant: extra spaces, flags in any order, unknown flags, a placeholder with an empty block', () => {
    expectAtEverySplit(
      bytes('VA  2   Q1  h0 c7 f0 l3   \r\nab\r\nVA 0 f0 c2 Z\r\n\r\nHD  Z  W\r\n'),
      [
        { t: 'value', flags: { cas: '7', flags: 0 }, data: hex('ab') },
        { t: 'value', flags: { flags: 0, cas: '2', contended: true }, data: '' },
        { t: 'status', status: 'HD', flags: { contended: true, win: true } },
      ],
    );
  });

  test('flags do not leak from one line to the next', () => {
    expect(parse(bytes('VA 1 f5 c9 kx W\r\n1\r\nVA 1\r\n2\r\n'))).toEqual([
      { t: 'value', flags: { flags: 5, cas: '9', key: 'x', win: true }, data: hex('1') },
      { t: 'value', flags: {}, data: hex('2') },
    ]);
  });

  test('codes that only look like meta codes are lines (END, EXISTS, ENx), and so are unknown ones', () => {
    expect(parse(bytes('EXISTS\r\nENx\r\nXY kfoo\r\nME foo exp=1\r\n'))).toEqual([
      { t: 'line', line: 'EXISTS' },
      { t: 'line', line: 'ENx' },
      { t: 'line', line: 'XY kfoo' },
      { t: 'line', line: 'ME foo exp=1' },
    ]);
  });

  test.each<[string, string]>([
    ['a size that is not a number', 'VA x f0\r\n'],
    ['no size', 'VA\r\n'],
    ['a negative size', 'VA -1\r\n'],
    ['a bad client flags value', 'VA 1 fx\r\nz\r\n'],
    ['client flags over 32 bits', 'VA 1 f4294967296\r\nz\r\n'],
    ['a cas with a letter', 'HD c12a\r\n'],
    ['a cas with a character just below the digits', 'HD c1/2\r\n'],
    ['a cas with a character just above the digits', 'HD c1:2\r\n'],
    ['an empty cas', 'HD c\r\n'],
    ['a cas of 21 digits', 'HD c123456789012345678901\r\n'],
    ['a ttl of -2', 'HD t-2\r\n'],
    ['an empty k', 'HD k\r\n'],
    ['a bare LF', 'HD\n'],
    ['a control character', 'HD k\x01\r\n'],
    ['data longer than declared', 'VA 1 f0\r\nab\r\n'],
    ['a size beyond any memcached item', `VA ${2 ** 31}\r\n`],
  ])('malformed: %s → MemcachedProtocolError, and the parser stays failed', (_label, input) => {
    const p = new MetaReplyParser(new Recorder());
    expect(() => p.feed(Buffer.from(input, 'latin1'))).toThrow(MemcachedProtocolError);
    expect(() => p.feed(Buffer.from('HD\r\n'))).toThrow(MemcachedProtocolError);
    p.reset();
    expect(() => p.feed(Buffer.from('HD\r\n'))).not.toThrow();
  });

  test('a line longer than maxLineLength is refused, also when it comes in pieces', () => {
    const p = new MetaReplyParser(new Recorder(), { maxLineLength: 20 });
    expect(() => {
      p.feed(Buffer.from('VA 1 '));
      p.feed(Buffer.from('k'.repeat(30)));
    }).toThrow(MemcachedProtocolError);
  });
});

describe('MetaReplyParser: a value over maxValueLength', () => {
  test('is read and dropped, reported by its size, at every split point; the stream stays in step', () => {
    const input = bytes('VA 10 f0 c1 kbig\r\n0123456789\r\nHD\r\n');
    const expected: Event[] = [
      { t: 'value', flags: { flags: 0, cas: '1', key: 'big' }, data: '', tooLarge: 10 },
      { t: 'status', status: 'HD', flags: {} },
    ];
    for (let i = 0; i <= input.length; i++) expect(parse(input, [i], 5)).toEqual(expected);
  });
});

// -----------------------------------------------------------------------------------------------
// Matcher

/** A connection's queue, as the matcher sees it. */
class Queue implements SessionHost {
  readonly server = SERVER;
  readonly requests: AnyRequest[] = [];
  readonly strays: MemcachedError[] = [];
  head(): AnyRequest | undefined {
    return this.requests[0];
  }
  shift(): void {
    this.requests.shift();
  }
  stray(error: MemcachedError): void {
    this.strays.push(error);
  }
}

interface Outcome {
  reply?: unknown;
  error?: MemcachedError;
}

/** A request of `spec` whose outcome is recorded in `out`. */
function request<S extends CommandSpec>(spec: S, out: Outcome[]): AnyRequest {
  const slot: Outcome = {};
  out.push(slot);
  const r = new Request<KindOf<S['op']>>(
    spec.op,
    spec,
    Buffer.alloc(0),
    (reply: Replies[KindOf<S['op']>]) => (slot.reply = reply),
    (error) => (slot.error = error),
  );
  return r as unknown as AnyRequest;
}

function setup(features = metaFeatures('1.6.18')) {
  const queue = new Queue();
  const tokens: string[] = [];
  const matcher = new MetaReplyMatcher(queue, {
    onUnusedToken: (server, key, cas) => tokens.push(`${server} ${key} ${cas}`),
  });
  if (typeof features !== 'string') matcher.features = features;
  const parser = new MetaReplyParser(matcher, { maxValueLength: 100 });
  const out: Outcome[] = [];
  return {
    queue,
    tokens,
    out,
    push: (spec: CommandSpec) => queue.requests.push(request(spec, out)),
    feed: (s: string | Buffer, points: number[] = []) => {
      for (const c of splitAt(typeof s === 'string' ? Buffer.from(s, 'utf8') : s, points))
        parser.feed(c);
    },
  };
}

const item = (
  key: string,
  flags: number,
  data: string,
  cas: string | undefined,
  index = 0,
  tooLarge = 0,
) => ({
  key,
  flags,
  data: Buffer.from(data),
  cas,
  index,
  tooLarge,
});

describe('MetaReplyMatcher', () => {
  test('single-key reads: a value, a miss, a placeholder (a miss), an empty Buffer (a hit)', () => {
    const s = setup();
    for (let i = 0; i < 5; i++) s.push({ op: 'get', keys: [`k${i}`] });
    s.feed(
      'VA 2 f16 c3 kk0\r\nhi\r\nEN kk1\r\nVA 0 f0 c4 kk2 Z\r\n\r\nVA 0 f0 c5 kk3\r\n\r\nVA 0 f0 c6 kk4 W\r\n\r\n',
    );
    // A plain read has no use for the cas: it is not made (as on the text protocol).
    expect(s.out.map((o) => o.reply)).toEqual([
      [item('k0', 16, 'hi', undefined)],
      [],
      [],
      [item('k3', 0, '', undefined)],
      [],
    ]);
    expect(s.queue.requests).toEqual([]);
  });

  test('a stale value is a miss for plain reads, and a token handed to one is given back', () => {
    const s = setup();
    s.push({ op: 'get', keys: ['a'] });
    s.push({ op: 'gets', keys: ['b'] });
    s.push({ op: 'gets', keys: ['c'] });
    s.push({ op: 'get', keys: ['d', 'e'] });
    s.feed(
      'VA 1 f0 ka X W\r\nx\r\nVA 1 f0 c9 kb X W\r\ny\r\nVA 1 f0 c10 kc X Z\r\nz\r\n' +
        'VA 1 f0 O0 X Z\r\nx\r\nVA 1 f0 O1 X W\r\nx\r\n',
    );
    expect(s.out.map((o) => o.reply)).toEqual([[], [], [], []]);
    // A get does not ask for the cas (the client reads it before giving the token back); a gets
    // has it. A reader that was not handed the token (Z) gives nothing back.
    expect(s.tokens).toEqual([`${SERVER} a undefined`, `${SERVER} b 9`, `${SERVER} e undefined`]);
  });

  test('a value with Z but data (someone refreshes it early) is a hit', () => {
    const s = setup();
    s.push({ op: 'get', keys: ['a'] });
    s.feed('VA 1 f16 c8 ka Z\r\nx\r\n');
    expect(s.out[0]!.reply).toEqual([item('a', 16, 'x', undefined)]);
  });

  test('a batched read: every key answered in order (a hit checked by its O, a miss EN), done after the last', () => {
    const s = setup();
    s.push({ op: 'get', keys: ['a', 'b', 'a', 'c'] });
    s.push({ op: 'delete', key: 'z' });
    const input = 'VA 1 f0 O0\r\n1\r\nEN O1\r\nVA 1 f0 O2\r\n1\r\nVA 0 f0 O3 Z\r\n\r\nHD\r\n';
    for (let i = 0; i <= input.length; i += 7) {
      const t = setup();
      t.push({ op: 'get', keys: ['a', 'b', 'a', 'c'] });
      t.feed(input.slice(0, input.length - 4), [i]);
      expect(t.out[0]!.reply).toEqual([
        item('a', 0, '1', undefined, 0),
        item('a', 0, '1', undefined, 2),
      ]);
    }
    s.feed(input);
    expect(s.out.map((o) => o.reply)).toEqual([
      [item('a', 0, '1', undefined, 0), item('a', 0, '1', undefined, 2)],
      true,
    ]);
  });

  test('a batched read before memcached 1.6.18: a miss is a bare EN (the position alone places it)', () => {
    const s = setup(metaFeatures('1.6.10'));
    s.push({ op: 'get', keys: ['a', 'b', 'c'] });
    s.feed('EN\r\nVA 1 f0 O1\r\n1\r\nEN\r\n');
    expect(s.out[0]!.reply).toEqual([item('b', 0, '1', undefined, 1)]);
    // From 1.6.18 a miss echoes the opaque, and one that does not is refused.
    const t = setup();
    t.push({ op: 'get', keys: ['a', 'b'] });
    expect(() => t.feed('EN\r\n')).toThrow(/sent EN with opaque \(none\)/);
  });

  test('a batched gets reports the cas of each hit; a k the server sends anyway is still checked', () => {
    const s = setup();
    s.push({ op: 'gets', keys: ['a', 'b'] });
    s.feed('VA 1 f3 c18446744073709551615 O0\r\n1\r\nVA 1 f0 c7 kb O1\r\n2\r\n');
    expect(s.out[0]!.reply).toEqual([
      item('a', 3, '1', '18446744073709551615', 0),
      item('b', 0, '2', '7', 1),
    ]);
  });

  test('the cas of one reply never shows in the next (the digits are reused)', () => {
    const s = setup();
    s.push({ op: 'gets', keys: ['a'] });
    s.push({ op: 'gets', keys: ['b'] });
    s.push({ op: 'gets', keys: ['c'] });
    s.feed('VA 1 c12345 ka\r\n1\r\nVA 1 c9 kb\r\n2\r\n');
    expect(s.out.map((o) => o.reply)).toEqual([
      [item('a', 0, '1', '12345')],
      [item('b', 0, '2', '9')],
    ]);
    expect(() => s.feed('VA 1 kc\r\n3\r\n')).toThrow(/without the "c" flag/);
  });

  test('the key echoed by k is compared exactly: longer, shorter, one byte off, non-ASCII', () => {
    for (const [asked, echoed, ok] of [
      ['abc', 'abc', true],
      ['abc', 'abd', false],
      ['abc', 'ab', false],
      ['abc', 'abcd', false],
      ['café', 'café', true],
      ['café', 'cafe', false],
      ['cafe', 'café', false],
    ] as const) {
      const s = setup();
      s.push({ op: 'get', keys: [asked] });
      const input = `VA 1 f0 c1 k${echoed}\r\n1\r\n`;
      if (ok) {
        s.feed(input);
        expect(s.out[0]!.reply).toEqual([item(asked, 0, '1', undefined)]);
      } else {
        expect(() => s.feed(input)).toThrow(/sent VA for key/);
      }
    }
    // A reply whose key bytes are not UTF-8 never matches a key that reads the same as Latin-1.
    const s = setup();
    s.push({ op: 'get', keys: ['\u00e9'] });
    expect(() => s.feed(Buffer.from([...Buffer.from('VA 1 k'), 0xe9, 13, 10, 49, 13, 10]))).toThrow(
      /sent VA for key/,
    );
  });

  test.each<[string, string, RegExp]>([
    ['a skipped position', 'VA 1 f0 kb O1\r\n1\r\n', /opaque O1.*next position is 0/],
    [
      'a position out of order',
      'VA 1 f0 ka O0\r\n1\r\nVA 1 f0 ka O0\r\n1\r\n',
      /opaque O0.*next position is 1/,
    ],
    ['a miss at the wrong position', 'EN O1\r\n', /sent EN with opaque O1.*next position is 0/],
    ['a position out of range', 'VA 1 f0 ka O9\r\n1\r\n', /opaque O9/],
    ['no position', 'VA 1 f0 ka\r\n1\r\n', /opaque \(none\)/],
    ['an opaque that is no position', 'VA 1 f0 ka Oabc\r\n1\r\n', /opaque \(not a position\)/],
    [
      'the wrong key at a position',
      'VA 1 f0 kx O0\r\n1\r\n',
      /sent VA for key "x" in reply to get of "a"/,
    ],
    ['a status that is neither a hit nor EN', 'HD\r\n', /sent HD in reply to get/],
    ['an MN (nothing was asked to close)', 'MN\r\n', /sent MN in reply to get/],
  ])(
    'a batched read rejects %s: MemcachedProtocolError (the stream cannot be trusted)',
    (_l, input, message) => {
      const s = setup();
      s.push({ op: 'get', keys: ['a', 'b'] });
      expect(() => s.feed(input)).toThrow(message);
    },
  );

  test('an error line in a batched read carries no opaque: it answers its position, the read fails once every key was answered, the next request gets its own reply', () => {
    const s = setup();
    s.push({ op: 'get', keys: ['a', 'b', 'c'] });
    s.push({ op: 'get', keys: ['d'] });
    s.feed('VA 1 f0 ka O0\r\n1\r\nSERVER_ERROR out of memory\r\n');
    expect(s.out[0]).toEqual({}); // not settled: c is still to come
    s.feed('VA 1 f0 kc O2\r\n3\r\nEN kd\r\n');
    expect(s.out[0]!.error).toBeInstanceOf(MemcachedServerError);
    expect(s.out[1]).toEqual({ reply: [] });
    // The error of the last key ends the read as well.
    const t = setup();
    t.push({ op: 'get', keys: ['a', 'b'] });
    t.push({ op: 'delete', key: 'z' });
    t.feed('EN O0\r\nSERVER_ERROR out of memory\r\nHD\r\n');
    expect(t.out[0]!.error).toBeInstanceOf(MemcachedServerError);
    expect(t.out[1]).toEqual({ reply: true });
  });

  test('storage, delete, touch and arithmetic codes', () => {
    const s = setup();
    const set = { key: 'k', flags: 0, ttl: 0, value: Buffer.alloc(0), noreply: false };
    for (const op of ['set', 'add', 'replace', 'cas'] as const)
      s.push({ op, ...set, cas: op === 'cas' ? '1' : undefined });
    s.push({ op: 'delete', key: 'k' });
    s.push({ op: 'delete', key: 'k' });
    s.push({ op: 'release', key: 'k', cas: '1' });
    s.push({ op: 'invalidate', key: 'k' });
    s.push({ op: 'touch', key: 'k', ttl: 1 });
    s.push({ op: 'touch', key: 'k', ttl: 1 });
    s.push({ op: 'incr', key: 'k', delta: 1n });
    s.push({ op: 'decr', key: 'k', delta: 1n });
    s.push({ op: 'incr', key: 'k', delta: 1n });
    s.feed(
      'HD\r\nNS\r\nNS\r\nEX\r\nHD\r\nNF\r\nEX\r\nHD\r\nHD kk\r\nEN kk\r\nVA 2\r\n42\r\nVA 3\r\n9  \r\nNF\r\n',
    );
    expect(s.out.map((o) => o.reply)).toEqual([
      'stored',
      'not_stored',
      'not_stored',
      'exists',
      true,
      false,
      false,
      true,
      true,
      false,
      42n,
      9n,
      undefined,
    ]);
  });

  test('lease reads report the item and its flags; a miss is undefined', () => {
    const s = setup();
    s.push({ op: 'lease', key: 'k', vivify: 30 });
    s.push({ op: 'lease', key: 'k' });
    s.push({ op: 'lease', key: 'k' });
    s.feed('VA 0 f0 c2 kk t30 W\r\n\r\nVA 1 f16 c3 kk t-1 X Z\r\nv\r\nEN kk\r\n');
    expect(s.out.map((o) => o.reply)).toEqual([
      {
        flags: 0,
        data: Buffer.alloc(0),
        cas: '2',
        tooLarge: 0,
        ttl: 30,
        win: true,
        stale: false,
        contended: false,
      },
      {
        flags: 16,
        data: Buffer.from('v'),
        cas: '3',
        tooLarge: 0,
        ttl: -1,
        win: false,
        stale: true,
        contended: true,
      },
      undefined,
    ]);
  });

  test('a base64 key echoed back (k… b) is decoded before it is compared', () => {
    const s = setup();
    s.push({ op: 'get', keys: ['café'] });
    s.push({ op: 'get', keys: ['café'] });
    const b64 = Buffer.from('café').toString('base64');
    s.feed(`VA 1 f0 c1 k${b64} b\r\n1\r\n`);
    expect(s.out[0]!.reply).toEqual([item('café', 0, '1', undefined)]);
    expect(() => s.feed(`VA 1 f0 c1 k${b64}\r\n1\r\n`)).toThrow(MemcachedProtocolError);
  });

  test('features per server: a miss without its key is fine before 1.6.18, a protocol error after', () => {
    const old = setup(metaFeatures('1.6.12'));
    old.push({ op: 'get', keys: ['k'] });
    old.feed('EN\r\n');
    expect(old.out[0]!.reply).toEqual([]);
    const now = setup(metaFeatures('1.6.18'));
    now.push({ op: 'get', keys: ['k'] });
    expect(() => now.feed('EN\r\n')).toThrow(/sent EN for key \(none\)/);
    expect(metaFeatures('1.6.9')).toMatch(/needs memcached 1\.6\.10 or newer/);
    expect(metaFeatures('proxy')).toEqual({ ...BASE_FEATURES, version: 'proxy' });
    expect(metaFeatures('1.6.27-beta')).toMatchObject({ explicitCas: true, conditionalGet: false });
  });

  test('a fence: nominal codes of noreply requests (q hides only success) are dropped, errors are stray, MN completes it', () => {
    const s = setup();
    s.queue.requests.push(request({ op: 'fence' }, s.out));
    s.push({ op: 'get', keys: ['a'] });
    s.feed(
      'NS\r\nEX\r\nNF\r\nHD\r\nCLIENT_ERROR bad data chunk\r\nSERVER_ERROR object too large for cache\r\nMN\r\nEN ka\r\n',
    );
    expect(s.out.map((o) => o.reply)).toEqual([true, []]);
    expect(s.queue.strays.map((e) => e.constructor)).toEqual([
      MemcachedClientError,
      MemcachedServerError,
    ]);
  });

  test('a fence refuses a value (a noreply request never reads one)', () => {
    const s = setup();
    s.queue.requests.push(request({ op: 'fence' }, s.out));
    expect(() => s.feed('VA 1 kx\r\nx\r\n')).toThrow(MemcachedProtocolError);
  });

  test('text-form commands: stats, version, flush_all, auth', () => {
    const s = setup();
    s.push({ op: 'stats' });
    s.push({ op: 'version' });
    s.push({ op: 'flush_all' });
    s.push({ op: 'auth', username: 'u', password: 'p' });
    s.feed('STAT a 1\r\nEND\r\nVERSION 1.6.18\r\nOK\r\nSTORED\r\n');
    expect(s.out.map((o) => o.reply)).toEqual([{ a: '1' }, '1.6.18', true, true]);
  });

  test('a reply nobody waits for is a protocol error', () => {
    const s = setup();
    expect(() => s.feed('HD\r\n')).toThrow(/but no request is waiting/);
  });

  test('isPlaceholder: stale always; W/Z only for an empty item with flags 0', () => {
    const f = (o: Partial<MetaFlags>): MetaFlags => ({
      flags: 0,
      cas: '1',
      ttl: undefined,
      key: 'k',
      base64: false,
      opaque: undefined,
      win: false,
      stale: false,
      contended: false,
      ...o,
    });
    expect(isPlaceholder(f({}), 0)).toBe(false);
    expect(isPlaceholder(f({ contended: true }), 0)).toBe(true);
    expect(isPlaceholder(f({ win: true }), 0)).toBe(true);
    expect(isPlaceholder(f({ contended: true }), 1)).toBe(false);
    expect(isPlaceholder(f({ contended: true, flags: 16 }), 0)).toBe(false);
    expect(isPlaceholder(f({ stale: true }), 5)).toBe(true);
  });
});

// -----------------------------------------------------------------------------------------------
// Property: requests and the replies a server would send, in any chunking

type ModelOp =
  | { t: 'get'; op: 'get' | 'gets'; keys: string[]; hits: Array<string | undefined> }
  | { t: 'set'; key: string; status: 'HD' | 'NS' | 'EX' | 'NF' }
  | { t: 'delete'; key: string; found: boolean }
  | { t: 'noreply'; key: string; refused: 'NS' | 'EX' | 'NF' | undefined }
  | { t: 'incr'; key: string; value: bigint | undefined };

const mkey = fc.stringMatching(/^[a-z0-9:é]{1,12}$/);
const opArb: fc.Arbitrary<ModelOp> = fc.oneof(
  mkey.chain((k) =>
    fc.array(mkey, { minLength: 0, maxLength: 6 }).chain((rest) => {
      const keys = [k, ...rest];
      return fc
        .array(fc.option(fc.string({ maxLength: 8 }), { nil: undefined }), {
          minLength: keys.length,
          maxLength: keys.length,
        })
        .chain((hits) =>
          fc
            .constantFrom('get' as const, 'gets' as const)
            .map((op) => ({ t: 'get' as const, op, keys, hits })),
        );
    }),
  ),
  fc.record({
    t: fc.constant('set' as const),
    key: mkey,
    status: fc.constantFrom('HD' as const, 'NS' as const, 'EX' as const, 'NF' as const),
  }),
  fc.record({ t: fc.constant('delete' as const), key: mkey, found: fc.boolean() }),
  fc.record({
    t: fc.constant('noreply' as const),
    key: mkey,
    refused: fc.constantFrom('NS' as const, 'EX' as const, 'NF' as const, undefined),
  }),
  fc.record({
    t: fc.constant('incr' as const),
    key: mkey,
    value: fc.option(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { nil: undefined }),
  }),
);

describe('MetaReplyMatcher property', () => {
  test('every request gets exactly its own reply, whatever the chunking; noreply runs are fenced', () => {
    fc.assert(
      fc.property(
        fc.array(opArb, { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (ops, rawPoints) => {
          const s = setup();
          const replies: string[] = [];
          const expected: unknown[] = [];
          let inNoreply = false;
          const closeRun = (): void => {
            if (!inNoreply) return;
            s.queue.requests.push(request({ op: 'fence' }, s.out));
            expected.push(true);
            replies.push('MN\r\n');
            inNoreply = false;
          };
          for (const op of ops) {
            if (op.t === 'noreply') {
              // Written but not queued (it settled when written); its refusal may still come.
              inNoreply = true;
              if (op.refused !== undefined) replies.push(`${op.refused}\r\n`);
              continue;
            }
            closeRun();
            if (op.t === 'get') {
              s.push({ op: op.op, keys: op.keys });
              const batch = op.keys.length > 1;
              const items: unknown[] = [];
              op.keys.forEach((k, i) => {
                const hit = op.hits[i];
                // As memcached answers what this client asks: `k` for one key, `O` for several.
                const echo = batch ? ` O${i}` : ` k${k}`;
                if (hit === undefined) {
                  replies.push(`EN${echo}\r\n`);
                  return;
                }
                const data = Buffer.from(hit);
                const cas = op.op === 'gets' ? String(i + 1) : undefined;
                replies.push(
                  `VA ${data.length} f16${cas === undefined ? '' : ` c${cas}`}${echo}\r\n${hit}\r\n`,
                );
                items.push({ key: k, flags: 16, data, cas, index: i, tooLarge: 0 });
              });
              expected.push(items);
            } else if (op.t === 'set') {
              s.push({
                op: 'set',
                key: op.key,
                flags: 0,
                ttl: 0,
                value: Buffer.alloc(0),
                noreply: false,
              });
              replies.push(`${op.status}\r\n`);
              expected.push(
                { HD: 'stored', NS: 'not_stored', EX: 'exists', NF: 'not_found' }[op.status],
              );
            } else if (op.t === 'delete') {
              s.push({ op: 'delete', key: op.key });
              replies.push(op.found ? 'HD\r\n' : 'NF\r\n');
              expected.push(op.found);
            } else {
              s.push({ op: 'incr', key: op.key, delta: 1n });
              replies.push(
                op.value === undefined
                  ? 'NF\r\n'
                  : `VA ${String(op.value).length}\r\n${op.value}\r\n`,
              );
              expected.push(op.value);
            }
          }
          closeRun();
          const input = Buffer.from(replies.join(''), 'utf8');
          s.feed(
            input,
            rawPoints.map((p) => p % (input.length + 1)),
          );
          expect(s.out.map((o) => o.reply)).toEqual(expected);
          expect(s.out.every((o) => o.error === undefined)).toBe(true);
          expect(s.queue.requests).toEqual([]);
        },
      ),
      { numRuns: 300 },
    );
  });
});

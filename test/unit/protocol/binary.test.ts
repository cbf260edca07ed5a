import { describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import {
  MemcachedAuthError,
  MemcachedClientError,
  MemcachedError,
  MemcachedProtocolError,
  MemcachedServerError,
  MemcachedUnknownCommandError,
} from '../../../lib/errors.js';
import { Opcode, Status } from '../../../lib/protocol/binary/constants.js';
import { encodeBinaryRequest } from '../../../lib/protocol/binary/encoder.js';
import { BinaryReplyMatcher } from '../../../lib/protocol/binary/matcher.js';
import {
  BinaryResponseParser,
  type ResponseHeader,
  type ResponseSink,
} from '../../../lib/protocol/binary/parser.js';
import type { SessionHost } from '../../../lib/protocol/driver.js';
import { Request, type AnyRequest, type CommandSpec } from '../../../lib/protocol/request.js';

// ---------------------------------------------------------------------------------------------
// Helpers

const hex = (b: Buffer | Buffer[]): string =>
  (Array.isArray(b) ? Buffer.concat(b) : b).toString('hex');

/** A request header as hex: magic, opcode, key length, extras length, body length, opaque, cas. */
function reqHeader(
  opcode: number,
  keyLength: number,
  extrasLength: number,
  bodyLength: number,
  opaque = 0,
  cas = 0n,
): string {
  const h = Buffer.alloc(24);
  h[0] = 0x80;
  h[1] = opcode;
  h.writeUInt16BE(keyLength, 2);
  h[4] = extrasLength;
  h.writeUInt32BE(bodyLength, 8);
  h.writeUInt32BE(opaque, 12);
  h.writeBigUInt64BE(cas, 16);
  return h.toString('hex');
}

const u32 = (n: number): string => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b.toString('hex');
};
const u64 = (n: bigint): string => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b.toString('hex');
};
const ascii = (s: string): string => Buffer.from(s, 'utf8').toString('hex');

interface ResponseSpec {
  opcode: number;
  status?: number;
  opaque?: number;
  cas?: bigint;
  extras?: Buffer;
  key?: string | Buffer;
  value?: string | Buffer;
}

/** A response packet (magic 0x81). */
function response(p: ResponseSpec): Buffer {
  const extras = p.extras ?? Buffer.alloc(0);
  const key = typeof p.key === 'string' ? Buffer.from(p.key) : (p.key ?? Buffer.alloc(0));
  const value = typeof p.value === 'string' ? Buffer.from(p.value) : (p.value ?? Buffer.alloc(0));
  const h = Buffer.alloc(24);
  h[0] = 0x81;
  h[1] = p.opcode;
  h.writeUInt16BE(key.length, 2);
  h[4] = extras.length;
  h.writeUInt16BE(p.status ?? 0, 6);
  h.writeUInt32BE(extras.length + key.length + value.length, 8);
  h.writeUInt32BE(p.opaque ?? 0, 12);
  h.writeBigUInt64BE(p.cas ?? 0n, 16);
  return Buffer.concat([h, extras, key, value]);
}

const flagsExtras = (flags: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(flags);
  return b;
};

interface Event {
  opcode: number;
  status: number;
  opaque: number;
  cas: string;
  extras: string;
  key: string;
  value: string;
  tooLarge: number;
}

class RecordingSink implements ResponseSink {
  readonly events: Event[] = [];
  onResponse(h: ResponseHeader, extras: Buffer, key: Buffer, value: Buffer, tooLarge: number) {
    this.events.push({
      opcode: h.opcode,
      status: h.status,
      opaque: h.opaque,
      cas: `${h.casHigh}:${h.casLow}`,
      extras: extras.toString('hex'),
      key: key.toString('hex'),
      value: value.toString('hex'),
      tooLarge,
    });
  }
}

function parseAll(chunks: Buffer[], maxValueLength = 1024 * 1024): Event[] {
  const sink = new RecordingSink();
  const parser = new BinaryResponseParser(sink, { maxValueLength });
  for (const c of chunks) parser.feed(c);
  expect(parser.idle).toBe(true);
  return sink.events;
}

/** A connection queue for the matcher: requests are written, replies settle them. */
class FakeHost implements SessionHost {
  readonly server = 'fake:1';
  readonly queue: AnyRequest[] = [];
  readonly strays: MemcachedError[] = [];
  head(): AnyRequest | undefined {
    return this.queue[0];
  }
  shift(): void {
    this.queue.shift();
  }
  stray(error: MemcachedError): void {
    this.strays.push(error);
  }
}

interface Outcome {
  reply?: unknown;
  error?: MemcachedError;
}

function enqueue(host: FakeHost, spec: CommandSpec): Outcome {
  const out: Outcome = {};
  const r = new Request(
    'cmd',
    spec,
    encodeBinaryRequest(spec),
    (reply: unknown) => (out.reply = reply),
    (error) => (out.error = error),
  );
  host.queue.push(r as unknown as AnyRequest);
  return out;
}

function matcher(): { host: FakeHost; feed: (...packets: Buffer[]) => void } {
  const host = new FakeHost();
  const parser = new BinaryResponseParser(new BinaryReplyMatcher(host));
  return { host, feed: (...packets) => parser.feed(Buffer.concat(packets)) };
}

// ---------------------------------------------------------------------------------------------
// Encoder

describe('binary encoder: byte fixtures', () => {
  test('get of one key is a getk; gets the same (the cas comes in every reply header)', () => {
    expect(hex(encodeBinaryRequest({ op: 'get', keys: ['foo'] }))).toBe(
      reqHeader(Opcode.getk, 3, 0, 3) + ascii('foo'),
    );
    expect(hex(encodeBinaryRequest({ op: 'gets', keys: ['foo'] }))).toBe(
      reqHeader(Opcode.getk, 3, 0, 3) + ascii('foo'),
    );
  });

  test('a multi-get is one getkq per key (opaque = index) closed by a noop', () => {
    expect(hex(encodeBinaryRequest({ op: 'get', keys: ['a', 'bb', 'a'] }))).toBe(
      reqHeader(Opcode.getkq, 1, 0, 1, 0) +
        ascii('a') +
        reqHeader(Opcode.getkq, 2, 0, 2, 1) +
        ascii('bb') +
        reqHeader(Opcode.getkq, 1, 0, 1, 2) +
        ascii('a') +
        reqHeader(Opcode.noop, 0, 0, 0),
    );
  });

  test('gat is gatk / gatkq with the exptime as extras; a negative ttl means expired now', () => {
    expect(hex(encodeBinaryRequest({ op: 'gat', keys: ['k'], ttl: 60 }))).toBe(
      reqHeader(Opcode.gatk, 1, 4, 5) + u32(60) + ascii('k'),
    );
    expect(hex(encodeBinaryRequest({ op: 'gats', keys: ['k', 'l'], ttl: -1 }))).toBe(
      reqHeader(Opcode.gatkq, 1, 4, 5, 0) +
        u32(2592001) +
        ascii('k') +
        reqHeader(Opcode.gatkq, 1, 4, 5, 1) +
        u32(2592001) +
        ascii('l') +
        reqHeader(Opcode.noop, 0, 0, 0),
    );
  });

  test('storage: flags and exptime as extras; quiet opcode for noreply; cas in the header', () => {
    const value = Buffer.from('v1');
    const base = { key: 'k', flags: 0xfffffffe, ttl: 30, value, noreply: false } as const;
    expect(hex(encodeBinaryRequest({ op: 'set', ...base }))).toBe(
      reqHeader(Opcode.set, 1, 8, 11) + u32(0xfffffffe) + u32(30) + ascii('k') + ascii('v1'),
    );
    expect(hex(encodeBinaryRequest({ op: 'add', ...base, noreply: true }))).toBe(
      reqHeader(Opcode.addq, 1, 8, 11) + u32(0xfffffffe) + u32(30) + ascii('k') + ascii('v1'),
    );
    expect(hex(encodeBinaryRequest({ op: 'replace', ...base, ttl: -5 }))).toBe(
      reqHeader(Opcode.replace, 1, 8, 11) + u32(0xfffffffe) + u32(2592001) + ascii('kv1'),
    );
    expect(hex(encodeBinaryRequest({ op: 'cas', ...base, cas: '18446744073709551615' }))).toBe(
      reqHeader(Opcode.set, 1, 8, 11, 0, 18446744073709551615n) +
        u32(0xfffffffe) +
        u32(30) +
        ascii('kv1'),
    );
    expect(hex(encodeBinaryRequest({ op: 'append', ...base }))).toBe(
      reqHeader(Opcode.append, 1, 0, 3) + ascii('kv1'),
    );
    expect(hex(encodeBinaryRequest({ op: 'prepend', ...base, noreply: true }))).toBe(
      reqHeader(Opcode.prependq, 1, 0, 3) + ascii('kv1'),
    );
  });

  test('a large value is a separate chunk (not copied)', () => {
    const value = Buffer.alloc(20_000, 7);
    const out = encodeBinaryRequest({
      op: 'set',
      key: 'big',
      flags: 0,
      ttl: 0,
      value,
      noreply: false,
    }) as Buffer[];
    expect(out).toHaveLength(2);
    expect(out[1]).toBe(value);
    expect(hex(out[0]!)).toBe(
      reqHeader(Opcode.set, 3, 8, 8 + 3 + 20_000) + u32(0) + u32(0) + ascii('big'),
    );
  });

  test('non-ASCII keys are sent as UTF-8 with their byte length', () => {
    expect(hex(encodeBinaryRequest({ op: 'delete', key: 'ключ' }))).toBe(
      reqHeader(Opcode.delete, 8, 0, 8) + ascii('ключ'),
    );
  });

  test('delete, touch, incr/decr (no-create exptime), flush, stats, version, noop, SASL PLAIN', () => {
    expect(hex(encodeBinaryRequest({ op: 'delete', key: 'k', noreply: true }))).toBe(
      reqHeader(Opcode.deleteq, 1, 0, 1) + ascii('k'),
    );
    expect(hex(encodeBinaryRequest({ op: 'touch', key: 'k', ttl: 9 }))).toBe(
      reqHeader(Opcode.touch, 1, 4, 5) + u32(9) + ascii('k'),
    );
    expect(hex(encodeBinaryRequest({ op: 'incr', key: 'n', delta: 2n ** 64n - 1n }))).toBe(
      reqHeader(Opcode.increment, 1, 20, 21) +
        u64(2n ** 64n - 1n) +
        u64(0n) +
        u32(0xffffffff) +
        ascii('n'),
    );
    expect(hex(encodeBinaryRequest({ op: 'decr', key: 'n', delta: 3n }))).toBe(
      reqHeader(Opcode.decrement, 1, 20, 21) + u64(3n) + u64(0n) + u32(0xffffffff) + ascii('n'),
    );
    expect(hex(encodeBinaryRequest({ op: 'flush_all' }))).toBe(reqHeader(Opcode.flush, 0, 0, 0));
    expect(hex(encodeBinaryRequest({ op: 'flush_all', delay: 10 }))).toBe(
      reqHeader(Opcode.flush, 0, 4, 4) + u32(10),
    );
    expect(hex(encodeBinaryRequest({ op: 'stats' }))).toBe(reqHeader(Opcode.stat, 0, 0, 0));
    expect(hex(encodeBinaryRequest({ op: 'stats', group: 'items' }))).toBe(
      reqHeader(Opcode.stat, 5, 0, 5) + ascii('items'),
    );
    expect(hex(encodeBinaryRequest({ op: 'version' }))).toBe(reqHeader(Opcode.version, 0, 0, 0));
    expect(hex(encodeBinaryRequest({ op: 'fence' }))).toBe(reqHeader(Opcode.noop, 0, 0, 0));
    expect(hex(encodeBinaryRequest({ op: 'auth', username: 'u', password: 'pw' }))).toBe(
      reqHeader(Opcode.saslAuth, 5, 0, 10) + ascii('PLAIN') + ascii('\0u\0pw'),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Parser

describe('binary response parser', () => {
  test('a hit: extras, key and value are split out; cas high and low words', () => {
    const events = parseAll([
      response({
        opcode: Opcode.getk,
        cas: (5n << 32n) | 7n,
        extras: flagsExtras(16),
        key: 'k',
        value: 'hello',
        opaque: 3,
      }),
    ]);
    expect(events).toEqual([
      {
        opcode: Opcode.getk,
        status: 0,
        opaque: 3,
        cas: '5:7',
        extras: '00000010',
        key: ascii('k'),
        value: ascii('hello'),
        tooLarge: 0,
      },
    ]);
  });

  test('a value over maxValueLength is read and dropped; the next packet parses', () => {
    const events = parseAll(
      [
        response({
          opcode: Opcode.getk,
          extras: flagsExtras(0),
          key: 'big',
          value: Buffer.alloc(100, 1),
        }),
        response({ opcode: Opcode.noop }),
      ],
      50,
    );
    expect(events.map((e) => [e.opcode, e.key, e.value, e.tooLarge])).toEqual([
      [Opcode.getk, ascii('big'), '', 100],
      [Opcode.noop, '', '', 0],
    ]);
  });

  test.each([
    ['a request magic', Buffer.from(reqHeader(Opcode.get, 0, 0, 0), 'hex')],
    ['text', Buffer.from('VALUE k 0 1\r\nx\r\nEND\r\n')],
    [
      'a key longer than the body',
      (() => {
        const b = response({ opcode: Opcode.getk, key: 'abc' });
        b.writeUInt32BE(2, 8);
        return b;
      })(),
    ],
    [
      'a data type that does not exist',
      (() => {
        const b = response({ opcode: Opcode.noop });
        b[5] = 1;
        return b;
      })(),
    ],
    [
      'a body larger than any item',
      (() => {
        const b = response({ opcode: Opcode.getk });
        b.writeUInt32BE(0xffffffff, 8);
        return b;
      })(),
    ],
  ])('%s is a protocol error, and the parser stays failed', (_name, bytes) => {
    const parser = new BinaryResponseParser(new RecordingSink());
    expect(() => parser.feed(bytes)).toThrow(MemcachedProtocolError);
    expect(() => parser.feed(response({ opcode: Opcode.noop }))).toThrow(MemcachedProtocolError);
    parser.reset();
    expect(() => parser.feed(response({ opcode: Opcode.noop }))).not.toThrow();
  });

  const packetArb: fc.Arbitrary<ResponseSpec> = fc.record({
    opcode: fc.integer({ min: 0, max: 0x24 }),
    status: fc.constantFrom(0, 1, 2, 5, 0x81),
    opaque: fc.nat(),
    cas: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    extras: fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a)),
    key: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
    value: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  });

  test('property: every split of a valid stream gives the same packets', () => {
    fc.assert(
      fc.property(
        fc.array(packetArb, { minLength: 1, maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        fc.integer({ min: 0, max: 400 }),
        (packets, cuts, maxValueLength) => {
          const stream = Buffer.concat(packets.map(response));
          const whole = parseAll([stream], maxValueLength);
          const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort(
            (a, b) => a - b,
          );
          const chunks: Buffer[] = [];
          let prev = 0;
          for (const p of points) {
            chunks.push(stream.subarray(prev, p));
            prev = p;
          }
          chunks.push(stream.subarray(prev));
          expect(parseAll(chunks, maxValueLength)).toEqual(whole);
          // ... and equal to the packets as built
          expect(whole).toEqual(
            packets.map((p) => {
              const value = p.value as Buffer;
              const tooLarge = value.length > maxValueLength ? value.length : 0;
              return {
                opcode: p.opcode,
                status: p.status,
                opaque: p.opaque,
                cas: `${Number(p.cas! >> 32n)}:${Number(p.cas! & 0xffffffffn)}`,
                extras: (p.extras as Buffer).toString('hex'),
                key: (p.key as Buffer).toString('hex'),
                value: tooLarge ? '' : value.toString('hex'),
                tooLarge,
              };
            }),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  test('property: one byte at a time parses the same', () => {
    fc.assert(
      fc.property(fc.array(packetArb, { minLength: 1, maxLength: 5 }), (packets) => {
        const stream = Buffer.concat(packets.map(response));
        const bytes = [...stream].map((b) => Buffer.from([b]));
        expect(parseAll(bytes)).toEqual(parseAll([stream]));
      }),
      { numRuns: 50 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Matcher

const hit = (key: string, value: string, opts: Partial<ResponseSpec> = {}): Buffer =>
  response({ opcode: Opcode.getkq, extras: flagsExtras(16), key, value, ...opts });
const noopReply = response({ opcode: Opcode.noop });

describe('binary reply matcher', () => {
  test('a multi-get: hits matched to the keys asked by index, misses absent, noop ends it', () => {
    const { host, feed } = matcher();
    const out = enqueue(host, { op: 'gets', keys: ['a', 'b', 'a', 'c'] });
    const next = enqueue(host, { op: 'version' });
    feed(
      hit('a', '1', { opaque: 0, cas: 9n }),
      hit('a', '3', { opaque: 2, cas: (1n << 40n) + 1n }),
      noopReply,
      response({ opcode: Opcode.version, value: '1.6.18' }),
    );
    expect(out.reply).toEqual([
      { key: 'a', flags: 16, data: Buffer.from('1'), cas: '9', index: 0, tooLarge: 0 },
      {
        key: 'a',
        flags: 16,
        data: Buffer.from('3'),
        cas: String((1n << 40n) + 1n),
        index: 2,
        tooLarge: 0,
      },
    ]);
    expect(next.reply).toBe('1.6.18');
    expect(host.queue).toHaveLength(0);
  });

  test.each([
    ['a key not asked', hit('zzz', 'x', { opaque: 1 })],
    ['a key at the wrong index', hit('a', 'x', { opaque: 1 })],
    ['an index out of range', hit('b', 'x', { opaque: 7 })],
    ['a miss from a quiet get', response({ opcode: Opcode.getkq, status: 1, opaque: 0 })],
    ['a reply of another opcode', response({ opcode: Opcode.set })],
  ])('a multi-get answered with %s breaks the stream', (_name, packet) => {
    const { host, feed } = matcher();
    const out = enqueue(host, { op: 'get', keys: ['a', 'b'] });
    expect(() => feed(packet)).toThrow(MemcachedProtocolError);
    expect(out.reply).toBeUndefined();
  });

  test('a key answered twice (going back) breaks the stream', () => {
    const { host, feed } = matcher();
    enqueue(host, { op: 'get', keys: ['a', 'b'] });
    feed(hit('b', 'x', { opaque: 1 }));
    expect(() => feed(hit('a', 'x', { opaque: 0 }))).toThrow(MemcachedProtocolError);
  });

  test('single get: getk hit, miss, miss of another key, error', () => {
    const { host, feed } = matcher();
    const a = enqueue(host, { op: 'get', keys: ['k'] });
    const b = enqueue(host, { op: 'get', keys: ['k'] });
    const c = enqueue(host, { op: 'gat', keys: ['k'], ttl: 1 });
    feed(
      response({ opcode: Opcode.getk, extras: flagsExtras(2), key: 'k', value: '42', cas: 5n }),
      response({ opcode: Opcode.getk, status: 1, key: 'k' }),
      response({ opcode: Opcode.gatk, status: Status.outOfMemory, value: 'Out of memory' }),
    );
    expect(a.reply).toEqual([
      { key: 'k', flags: 2, data: Buffer.from('42'), cas: undefined, index: 0, tooLarge: 0 },
    ]);
    expect(b.reply).toEqual([]);
    expect(c.error).toBeInstanceOf(MemcachedServerError);
    enqueue(host, { op: 'get', keys: ['k'] });
    expect(() => feed(response({ opcode: Opcode.getk, status: 1, key: 'other' }))).toThrow(
      MemcachedProtocolError,
    );
  });

  test('storage statuses map to the text protocol outcomes', () => {
    const { host, feed } = matcher();
    const v = Buffer.from('v');
    const store = (op: 'set' | 'add' | 'replace' | 'append' | 'cas', status: number): unknown => {
      const o = enqueue(host, {
        op,
        key: 'k',
        flags: 0,
        ttl: 0,
        value: v,
        noreply: false,
        cas: op === 'cas' ? '1' : undefined,
      });
      feed(response({ opcode: op === 'cas' ? Opcode.set : Opcode[op], status }));
      return o.reply ?? o.error;
    };
    expect(store('set', 0)).toBe('stored');
    expect(store('add', Status.keyExists)).toBe('not_stored');
    expect(store('replace', Status.keyNotFound)).toBe('not_stored');
    expect(store('append', Status.notStored)).toBe('not_stored');
    expect(store('cas', Status.keyExists)).toBe('exists');
    expect(store('cas', Status.keyNotFound)).toBe('not_found');
    expect(store('set', Status.tooLarge)).toBeInstanceOf(MemcachedServerError);
    expect(store('set', Status.invalidArguments)).toBeInstanceOf(MemcachedClientError);
    expect(store('set', Status.authError)).toBeInstanceOf(MemcachedAuthError);
    expect(store('set', Status.unknownCommand)).toBeInstanceOf(MemcachedUnknownCommandError);
  });

  test('delete, touch, incr/decr, flush, stats, version', () => {
    const { host, feed } = matcher();
    const d1 = enqueue(host, { op: 'delete', key: 'k' });
    const d2 = enqueue(host, { op: 'delete', key: 'k' });
    const t = enqueue(host, { op: 'touch', key: 'k', ttl: 1 });
    const i1 = enqueue(host, { op: 'incr', key: 'n', delta: 1n });
    const i2 = enqueue(host, { op: 'decr', key: 'n', delta: 1n });
    const i3 = enqueue(host, { op: 'incr', key: 'n', delta: 1n });
    const f = enqueue(host, { op: 'flush_all' });
    const s = enqueue(host, { op: 'stats' });
    const s2 = enqueue(host, { op: 'stats', group: 'nonsense' });
    const counter = Buffer.alloc(8);
    counter.writeBigUInt64BE(2n ** 64n - 1n);
    feed(
      response({ opcode: Opcode.delete }),
      response({ opcode: Opcode.delete, status: 1, value: 'Not found' }),
      response({ opcode: Opcode.touch, status: 1 }),
      response({ opcode: Opcode.increment, value: counter }),
      response({ opcode: Opcode.decrement, status: 1 }),
      response({ opcode: Opcode.increment, status: Status.nonNumeric, value: 'Non-numeric' }),
      response({ opcode: Opcode.flush }),
      response({ opcode: Opcode.stat, key: 'pid', value: '12' }),
      response({ opcode: Opcode.stat, key: 'version', value: '1.6.18' }),
      response({ opcode: Opcode.stat }),
      response({ opcode: Opcode.stat, status: 1, value: 'Not found' }),
    );
    expect([d1.reply, d2.reply, t.reply, i1.reply, i2.reply, f.reply]).toEqual([
      true,
      false,
      false,
      2n ** 64n - 1n,
      undefined,
      true,
    ]);
    expect(i2.error).toBeUndefined();
    expect(i3.error).toBeInstanceOf(MemcachedClientError);
    expect(s.reply).toEqual({ pid: '12', version: '1.6.18' });
    expect(s2.error).toBeInstanceOf(MemcachedUnknownCommandError);
  });

  test('a fence: errors of quiet writes are stray, their plain outcomes dropped, the noop settles it', () => {
    const { host, feed } = matcher();
    const fence = enqueue(host, { op: 'fence' });
    const after = enqueue(host, { op: 'delete', key: 'k' });
    feed(
      response({ opcode: Opcode.addq, status: Status.keyExists }),
      response({ opcode: Opcode.deleteq, status: Status.keyNotFound }),
      response({ opcode: Opcode.touch }),
      response({ opcode: Opcode.setq, status: Status.tooLarge, value: 'Too large.' }),
      noopReply,
      response({ opcode: Opcode.delete }),
    );
    expect(host.strays).toHaveLength(1);
    expect(host.strays[0]).toBeInstanceOf(MemcachedServerError);
    expect(fence.reply).toBe(true);
    expect(after.reply).toBe(true);
  });

  test.each([
    ['a quiet success', response({ opcode: Opcode.setq })],
    ['a reply of a command that was not quiet', response({ opcode: Opcode.get, status: 1 })],
    ['a get hit', hit('k', 'v')],
  ])('a fence answered with %s breaks the stream', (_name, packet) => {
    const { host, feed } = matcher();
    enqueue(host, { op: 'fence' });
    expect(() => feed(packet)).toThrow(MemcachedProtocolError);
  });

  test('a reply when nothing waits, or of the wrong opcode, breaks the stream', () => {
    const { host, feed } = matcher();
    expect(() => feed(response({ opcode: Opcode.noop }))).toThrow(MemcachedProtocolError);
    enqueue(host, { op: 'delete', key: 'k' });
    const m = matcher();
    m.host.queue.push(...host.queue);
    expect(() => m.feed(response({ opcode: Opcode.set }))).toThrow(MemcachedProtocolError);
  });

  test('a failed quiet get fails the multi-get; the rest up to its noop is read and dropped', () => {
    const { host, feed } = matcher();
    const out = enqueue(host, { op: 'get', keys: ['a', 'b'] });
    const next = enqueue(host, { op: 'version' });
    feed(
      response({
        opcode: Opcode.getkq,
        status: Status.authError,
        opaque: 0,
        value: 'Auth failure.',
      }),
      hit('b', 'x', { opaque: 1 }),
      noopReply,
      response({ opcode: Opcode.version, value: '1.6.18' }),
    );
    expect(out.error).toBeInstanceOf(MemcachedAuthError);
    expect(next.reply).toBe('1.6.18');
  });

  test('SASL: ok, refused, and a server without SASL are told apart', () => {
    const { host, feed } = matcher();
    const ok = enqueue(host, { op: 'auth', username: 'u', password: 'p' });
    const refused = enqueue(host, { op: 'auth', username: 'u', password: 'p' });
    const none = enqueue(host, { op: 'auth', username: 'u', password: 'p' });
    feed(
      response({ opcode: Opcode.saslAuth, value: 'Authenticated' }),
      response({ opcode: Opcode.saslAuth, status: Status.authError, value: 'Auth failure.' }),
      response({
        opcode: Opcode.saslAuth,
        status: Status.unknownCommand,
        value: 'Unknown command',
      }),
    );
    expect(ok.reply).toBe(true);
    expect(refused.error).toBeInstanceOf(MemcachedAuthError);
    expect(refused.error?.message).toMatch(/refused SASL PLAIN/);
    expect(none.error).toBeInstanceOf(MemcachedAuthError);
    expect(none.error?.message).toMatch(/-S/);
  });

  test('a too-large value reaches its caller as tooLarge, in step', () => {
    const host = new FakeHost();
    const parser = new BinaryResponseParser(new BinaryReplyMatcher(host), { maxValueLength: 4 });
    const a = enqueue(host, { op: 'get', keys: ['a', 'b'] });
    parser.feed(
      Buffer.concat([hit('a', '123456', { opaque: 0 }), hit('b', 'ok', { opaque: 1 }), noopReply]),
    );
    expect(
      (a.reply as Array<{ tooLarge: number; data: Buffer }>).map((i) => [
        i.tooLarge,
        i.data.toString(),
      ]),
    ).toEqual([
      [6, ''],
      [0, 'ok'],
    ]);
  });
});

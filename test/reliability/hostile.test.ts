/**
 * A hostile server: garbage, truncated lines, absurd lengths, values for keys nobody asked for,
 * wrong reply types, endless lines, extra replies, SERVER_ERROR in the middle of a multi-get,
 * numbers above 2^64. Every call rejects with a MemcachedError subclass (MemcachedProtocolError
 * when the stream is broken), the broken connection is replaced (the next call opens a new one),
 * memory stays bounded while the server pushes tens of megabytes of junk, and nothing crashes or
 * goes unhandled.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from '@jest/globals';
import fc from 'fast-check';
import {
  MemcachedClient,
  MemcachedConnectionError,
  MemcachedError,
  MemcachedProtocolError,
  MemcachedServerError,
  type MemcachedOptions,
} from '../../lib/index.js';
import {
  startHostileServer,
  type HostileServer,
  type Responder,
} from '../harness/hostile-server.js';
import {
  eventually,
  prng,
  recordUnhandledRejections,
  rejection,
  settledMemory,
  sleep,
  timed,
  type RejectionRecorder,
} from './helpers.js';

const TIMEOUT = 400;
const SLACK = 250;
const MB = 1024 * 1024;

let hostile: HostileServer;
let recorder: RejectionRecorder;
const clients: MemcachedClient[] = [];

beforeAll(() => {
  recorder = recordUnhandledRejections();
});

beforeEach(async () => {
  hostile = await startHostileServer();
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await hostile.close();
  expect(recorder.reasons).toEqual([]);
});

afterAll(() => {
  recorder.dispose();
});

function client(options: MemcachedOptions = {}): MemcachedClient {
  const c = new MemcachedClient({
    servers: hostile.address,
    poolSize: 1,
    timeout: TIMEOUT,
    connectTimeout: TIMEOUT,
    failover: { failureThreshold: 1000 },
    ...options,
  });
  clients.push(c);
  return c;
}

type Call = (mc: MemcachedClient) => Promise<unknown>;

interface Case {
  name: string;
  call: Call;
  reply: Responder;
  expected: typeof MemcachedError;
  /** The connection must be replaced (default: true). */
  resets?: boolean;
}

const garbage = ((): Buffer => {
  const random = prng(42);
  const bytes = Buffer.alloc(4096);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
  return Buffer.concat([bytes, Buffer.from('\r\n')]);
})();

const get: Call = (mc) => mc.get('hk');
const set: Call = (mc) => mc.set('hk', 'v');

const cases: Case[] = [
  {
    name: 'random garbage',
    call: get,
    reply: (_r, c) => c.write(garbage),
    expected: MemcachedProtocolError,
  },
  {
    name: 'a line with control characters',
    call: set,
    reply: (_r, c) => c.write('STO\x00RED\r\n'),
    expected: MemcachedProtocolError,
  },
  {
    name: 'a truncated line, then the connection closes',
    call: set,
    reply: (_r, c) => c.end('STOR'),
    expected: MemcachedConnectionError,
  },
  {
    name: 'a line ending in \\n without \\r',
    call: set,
    reply: (_r, c) => c.write('STORED\n'),
    expected: MemcachedProtocolError,
  },
  {
    name: 'a truncated value, then the connection closes',
    call: get,
    reply: (_r, c) => c.end('VALUE hk 16 10\r\nabc'),
    expected: MemcachedConnectionError,
  },
  {
    name: 'an absurd length (VALUE k 0 99999999999)',
    call: get,
    reply: (_r, c) => c.write('VALUE hk 0 99999999999\r\n'),
    expected: MemcachedProtocolError,
  },
  {
    name: 'a negative length',
    call: get,
    reply: (_r, c) => c.write('VALUE hk 0 -1\r\n'),
    expected: MemcachedProtocolError,
  },
  {
    name: 'flags above 2^32',
    call: get,
    reply: (_r, c) => c.write('VALUE hk 4294967296 1\r\nx\r\nEND\r\n'),
    expected: MemcachedProtocolError,
  },
  {
    name: 'a value for a key not asked for',
    call: get,
    reply: (_r, c) => c.write('VALUE other 16 1\r\nx\r\nEND\r\n'),
    expected: MemcachedProtocolError,
  },
  {
    name: 'a value for a key not asked for in a multi-get',
    call: (mc) => mc.getMany(['hk', 'hk2']),
    reply: (_r, c) => c.write('VALUE hk 16 1\r\nx\r\nVALUE hk3 16 1\r\ny\r\nEND\r\n'),
    expected: MemcachedProtocolError,
  },
  {
    name: 'two values for one key',
    call: get,
    reply: (_r, c) => c.write('VALUE hk 16 1\r\nx\r\nVALUE hk 16 1\r\ny\r\nEND\r\n'),
    expected: MemcachedProtocolError,
  },
  {
    name: 'more data than the declared length',
    call: get,
    reply: (_r, c) => c.write('VALUE hk 16 1\r\nxyz\r\nEND\r\n'),
    expected: MemcachedProtocolError,
  },
  {
    name: 'a gets reply without a cas token',
    call: (mc) => mc.gets('hk'),
    reply: (_r, c) => c.write('VALUE hk 16 1\r\nx\r\nEND\r\n'),
    expected: MemcachedProtocolError,
  },
  {
    name: 'STORED in reply to a get',
    call: get,
    reply: (_r, c) => c.write('STORED\r\n'),
    expected: MemcachedProtocolError,
  },
  {
    name: 'STAT in reply to a get',
    call: get,
    reply: (_r, c) => c.write('STAT pid 1\r\nEND\r\n'),
    expected: MemcachedProtocolError,
  },
  {
    name: 'VALUE in reply to a set',
    call: set,
    reply: (_r, c) => c.write('VALUE hk 16 1\r\nx\r\nEND\r\n'),
    expected: MemcachedProtocolError,
  },
  {
    name: 'DELETED in reply to a set',
    call: set,
    reply: (_r, c) => c.write('DELETED\r\n'),
    expected: MemcachedProtocolError,
  },
  {
    name: 'END in reply to a delete',
    call: (mc) => mc.delete('hk'),
    reply: (_r, c) => c.write('END\r\n'),
    expected: MemcachedProtocolError,
  },
  {
    name: 'VERSION in reply to stats',
    call: (mc) => mc.stats(),
    reply: (_r, c) => c.write('VERSION 1.6\r\n'),
    expected: MemcachedProtocolError,
  },
  {
    name: 'an incr result above 2^64',
    call: (mc) => mc.incr('hk', 1n),
    reply: (_r, c) => c.write('18446744073709551616\r\n'),
    expected: MemcachedProtocolError,
  },
  {
    name: 'a negative incr result',
    call: (mc) => mc.incr('hk'),
    reply: (_r, c) => c.write('-5\r\n'),
    expected: MemcachedProtocolError,
  },
  {
    name: 'a never-ending line (8 MB without \\r\\n)',
    call: get,
    reply: (_r, c) => {
      void c.stream(8 * MB, Buffer.alloc(64 * 1024, 'x'));
    },
    expected: MemcachedProtocolError,
  },
  {
    name: 'SERVER_ERROR in the middle of a multi-get',
    call: (mc) => mc.getMany(['hk', 'hk2', 'hk3']),
    reply: (_r, c) =>
      c.write('VALUE hk 16 1\r\nx\r\nSERVER_ERROR out of memory writing get response\r\n'),
    expected: MemcachedServerError,
    // The error line is a complete reply: the stream is still in step, no reset needed.
    resets: false,
  },
];

describe('hostile replies', () => {
  test.each(cases)(
    '$name: rejects with $expected.name, the connection is replaced, the next call is correct',
    async ({ call, reply, expected, resets }) => {
      const mc = client();
      expect(await mc.set('warm', 'w')).toBe(true);
      expect(hostile.connections).toBe(1);
      hostile.once(reply);
      const { error, ms } = await rejection(() => call(mc));
      expect(error).toBeInstanceOf(expected);
      expect(error).toBeInstanceOf(MemcachedError);
      expect(ms).toBeLessThan(TIMEOUT + SLACK);
      expect(await mc.get('warm')).toBe('w');
      expect(await mc.getMany(['warm', 'nope'])).toEqual(new Map([['warm', 'w']]));
      expect(hostile.connections).toBe(resets === false ? 1 : 2);
    },
  );

  test('an extra reply after a complete one: the answered call keeps its value, the connection is replaced', async () => {
    const mc = client();
    await mc.set('warm', 'w');
    hostile.once((req, c) =>
      c.write(Buffer.concat([hostile.honestReply(req), Buffer.from('STORED\r\nEND\r\n')])),
    );
    expect(await mc.get('warm')).toBe('w');
    await sleep(20);
    expect(await mc.get('warm')).toBe('w');
    expect(hostile.connections).toBe(2);
  });

  test('bytes nobody asked for on an idle connection: the connection is replaced before it is used again', async () => {
    const mc = client();
    hostile.onConnect((c) => {
      if (c.index === 0) setTimeout(() => c.write('VALUE warm 16 5\r\nevil!\r\nEND\r\n'), 50);
    });
    await mc.set('warm', 'w');
    await sleep(150);
    expect(await mc.get('warm')).toBe('w');
    expect(hostile.connections).toBe(2);
  });

  test('an extra END while a get waits: at worst a miss, never another value; the connection is replaced', async () => {
    const mc = client({ autoBatch: false });
    await mc.setMany([
      ['a', 'A'],
      ['b', 'B'],
    ]);
    hostile.once((req, c) =>
      c.write(Buffer.concat([hostile.honestReply(req), Buffer.from('END\r\n')])),
    );
    const [deleted, a] = await Promise.all([timed(() => mc.delete('x')), timed(() => mc.get('a'))]);
    expect(deleted.ok && deleted.value).toBe(false);
    if (a.ok) expect([undefined, 'A']).toContain(a.value);
    else expect(a.error).toBeInstanceOf(MemcachedError);
    await sleep(20);
    expect(await mc.get('b')).toBe('B');
    expect(hostile.connections).toBe(2);
  });

  test('a connection cut after a partial multi-get delivers no partial result', async () => {
    const mc = client();
    hostile.once((_r, c) => c.end('VALUE hk 16 1\r\nx\r\nVALUE hk2 16 1\r\ny\r\n'));
    const { error } = await rejection(() => mc.getMany(['hk', 'hk2', 'hk3']));
    expect(error).toBeInstanceOf(MemcachedConnectionError);
  });
});

describe('memory stays bounded', () => {
  // Retained memory (after full GCs) is sampled between calls while the junk flows.

  test('a never-ending line: 50 MB pushed over reconnecting connections, every call fails fast, memory stays flat', async () => {
    const mc = client({ timeout: 5000 });
    hostile.respond((_r, c) => {
      void c.stream(50 * MB, Buffer.alloc(256 * 1024, 'j'));
    });
    const conns: Array<{ bytesWritten: number }> = [];
    hostile.onConnect((c) => conns.push(c));
    const before = settledMemory();
    const peak = { ...before };
    let pushed = 0;
    let calls = 0;
    const started = performance.now();
    while (pushed < 50 * MB && calls < 400 && performance.now() - started < 20_000) {
      calls++;
      const { error, ms } = await rejection(() => mc.get('endless'));
      expect(error).toBeInstanceOf(MemcachedProtocolError);
      expect(ms).toBeLessThan(2000); // fails on the first bytes, not at the 5 s timeout
      await sleep(20);
      pushed = conns.reduce((n, c) => n + c.bytesWritten, 0);
      const m = settledMemory();
      peak.heapUsed = Math.max(peak.heapUsed, m.heapUsed);
      peak.arrayBuffers = Math.max(peak.arrayBuffers, m.arrayBuffers);
    }
    hostile.honest();
    await sleep(20);
    const after = settledMemory();
    process.stdout.write(
      `never-ending line: ${calls} calls/connections, ${(pushed / MB).toFixed(1)} MB pushed; retained heap +${((peak.heapUsed - before.heapUsed) / MB).toFixed(2)} MB, buffers +${((peak.arrayBuffers - before.arrayBuffers) / MB).toFixed(2)} MB\n`,
    );
    expect(pushed).toBeGreaterThanOrEqual(50 * MB);
    expect(hostile.connections).toBe(calls);
    expect(peak.heapUsed - before.heapUsed).toBeLessThan(4 * MB);
    expect(peak.arrayBuffers - before.arrayBuffers).toBeLessThan(8 * MB);
    expect(after.heapUsed - before.heapUsed).toBeLessThan(2 * MB);
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(2 * MB);
  }, 40_000);

  test('values that never end correctly: 50 × 1 MB read and dropped, memory stays flat', async () => {
    const mc = client({ timeout: 5000 });
    const data = Buffer.alloc(MB, 'd');
    hostile.respond((req, c) => {
      c.write(`VALUE ${req.keys[0]!} 0 ${MB}\r\n`);
      c.write(data);
      c.write('XX'); // not \r\n: the declared length does not match the data
    });
    const before = settledMemory();
    const peak = { ...before };
    for (let i = 0; i < 50; i++) {
      const { error } = await rejection(() => mc.get(`big:${i}`));
      expect(error).toBeInstanceOf(MemcachedProtocolError);
      if (i % 10 === 9) {
        const m = settledMemory();
        peak.heapUsed = Math.max(peak.heapUsed, m.heapUsed);
        peak.arrayBuffers = Math.max(peak.arrayBuffers, m.arrayBuffers);
      }
    }
    hostile.honest();
    const after = settledMemory();
    expect(hostile.connections).toBe(50);
    expect(peak.heapUsed - before.heapUsed).toBeLessThan(4 * MB);
    expect(peak.arrayBuffers - before.arrayBuffers).toBeLessThan(8 * MB);
    expect(after.heapUsed - before.heapUsed).toBeLessThan(2 * MB);
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(2 * MB);
  }, 40_000);

  // A stats reply is bounded (at most 100,000 STAT lines); past that the connection is reset,
  // even when the request already timed out.
  test('a stats reply that never ends (up to 50 MB of STAT lines): the call fails and memory stays bounded', async () => {
    const mc = client();
    let conn: { destroy(): void; bytesWritten: number } | undefined;
    const before = settledMemory();
    let peak = 0;
    let measuredAt = 0;
    // Retained memory is measured (full GC) after every 4 MB the server sent; past +16 MB the
    // server is cut off, which is enough to show the growth without exhausting the worker.
    const measure = (): void => {
      const grown = settledMemory().heapUsed - before.heapUsed;
      if (grown > peak) peak = grown;
      if (grown > 16 * MB) conn?.destroy();
    };
    hostile.respond((_r, c) => {
      conn = c;
      void c.stream(50 * MB, (i) => {
        if (c.bytesWritten - measuredAt >= 4 * MB) {
          measuredAt = c.bytesWritten;
          setImmediate(measure);
        }
        let s = '';
        for (let j = 0; j < 1000; j++) s += `STAT name_${i}_${j} ${j}\r\n`;
        return Buffer.from(s, 'latin1');
      });
    });
    let outcome: Awaited<ReturnType<typeof timed>> | undefined;
    const started = performance.now();
    try {
      outcome = await timed(() => mc.stats());
      // The stream goes on after a timeout: keep going until the server is done or cut off.
      for (let i = 0; i < 400 && hostile.open > 0; i++) await sleep(50);
    } finally {
      conn?.destroy();
    }
    process.stdout.write(
      `stats flood: ${((conn?.bytesWritten ?? 0) / MB).toFixed(1)} MB sent in ${Math.round(performance.now() - started)} ms, retained heap peak +${(peak / MB).toFixed(1)} MB\n`,
    );
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) expect(outcome.error).toBeInstanceOf(MemcachedError);
    expect(peak).toBeLessThan(8 * MB);
  }, 30_000);
});

describe('random replies (fast-check)', () => {
  test('random bytes in reply to random commands: only MemcachedError rejections, always within the timeout', async () => {
    const timeout = 200;
    const mc = client({ timeout, connectTimeout: timeout });
    await eventually(() => mc.set('rnd:0', 'hello'));
    const token = fc.constantFrom(
      'VALUE ',
      'END',
      'STORED',
      'DELETED',
      'TOUCHED',
      'NOT_FOUND',
      'STAT ',
      'SERVER_ERROR ',
      'CLIENT_ERROR ',
      'ERROR',
      'VERSION ',
      'rnd:0',
      'k',
      ' ',
      '0',
      '16',
      '32',
      '5',
      '99999999999',
      '18446744073709551616',
      'hello',
      '{"a":',
      '\r\n',
      '\r\n',
      '\n',
      '\r',
      '\x00',
      '\xff',
    );
    const bytes = fc.oneof(
      fc.array(token, { maxLength: 24 }).map((parts) => Buffer.from(parts.join(''), 'latin1')),
      fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)),
    );
    const calls: Array<[string, Call]> = [
      ['get', (m) => m.get('rnd:0')],
      ['gets', (m) => m.gets('rnd:0')],
      ['getMany', (m) => m.getMany(['rnd:0', 'k'])],
      ['set', (m) => m.set('rnd:0', 'hello')],
      ['delete', (m) => m.delete('rnd:0')],
      ['incr', (m) => m.incr('rnd:0')],
      ['touch', (m) => m.touch('rnd:0', 10)],
      ['version', (m) => m.version()],
      ['stats', (m) => m.stats()],
    ];
    const seen = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...calls),
        bytes,
        fc.integer({ min: 0, max: 9 }),
        async ([, call], reply, closeRoll) => {
          hostile.once((_r, c) => {
            if (closeRoll < 7) c.end(reply);
            else c.write(reply);
          });
          const o = await timed(() => call(mc));
          const label = o.ok ? 'resolved' : (o.error as Error).constructor.name;
          seen.set(label, (seen.get(label) ?? 0) + 1);
          if (!o.ok) {
            if (!(o.error instanceof MemcachedError)) throw o.error;
            expect(o.error).toBeInstanceOf(MemcachedError);
          }
          expect(o.ms).toBeLessThan(timeout + SLACK);
        },
      ),
      { numRuns: 150, seed: 20240607 },
    );
    // The property exercised the interesting paths.
    expect(seen.get('MemcachedProtocolError') ?? 0).toBeGreaterThan(10);
    expect(seen.get('MemcachedConnectionError') ?? 0).toBeGreaterThan(10);
    // Back to an honest server: the same client recovers.
    hostile.honest();
    const { value } = await eventually(async () => {
      await mc.set('after', 'fine');
      return mc.get('after');
    });
    expect(value).toBe('fine');
  }, 60_000);
});

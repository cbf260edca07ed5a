/**
 * Network faults between a client and a real memcached, injected by the proxy: every call rejects
 * with the right error class within its timeout (plus slack), nothing is rejected unhandled, no
 * partial value is ever delivered, and the same client recovers once the fault clears.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import {
  MemcachedClient,
  MemcachedConnectionError,
  MemcachedError,
  MemcachedTimeoutError,
  type MemcachedOptions,
} from '../../lib/index.js';
import { startMemcached, stopAllMemcached, type MemcachedProcess } from '../harness/memcached.js';
import { startProxy, type FaultProxy } from '../harness/proxy.js';
import {
  eventually,
  recordUnhandledRejections,
  rejection,
  sleep,
  timed,
  type RejectionRecorder,
} from './helpers.js';

const TIMEOUT = 400;
/** How late past its deadline a call may settle (timer granularity, a busy 2-core machine). */
const SLACK = 250;

let server: MemcachedProcess;
let proxy: FaultProxy;
let recorder: RejectionRecorder;
const clients: MemcachedClient[] = [];

beforeAll(async () => {
  recorder = recordUnhandledRejections();
  server = await startMemcached();
});

beforeEach(async () => {
  proxy = await startProxy('127.0.0.1', server.port);
});

afterEach(async () => {
  if (server.paused) server.resume();
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await proxy.close();
  expect(recorder.reasons).toEqual([]);
});

afterAll(async () => {
  recorder.dispose();
  await stopAllMemcached();
});

function client(options: MemcachedOptions = {}): MemcachedClient {
  const c = new MemcachedClient({
    servers: proxy.address,
    timeout: TIMEOUT,
    connectTimeout: TIMEOUT,
    poolSize: 2,
    // Keep the single server in the ring: these tests are about the connection, not failover.
    failover: { failureThreshold: 1000 },
    ...options,
  });
  clients.push(c);
  return c;
}

function expectClass(error: unknown, cls: typeof MemcachedError): void {
  expect(error).toBeInstanceOf(cls);
  expect(error).toBeInstanceOf(MemcachedError);
}

describe('connection closed (FIN)', () => {
  test('a request dropped by the proxy rejects with MemcachedConnectionError at once; the same client recovers', async () => {
    const mc = client();
    expect(await mc.set('fin:a', 'value-a')).toBe(true);
    proxy.dropNextRequest();
    const { error, ms } = await rejection(() => mc.get('fin:a'));
    expectClass(error, MemcachedConnectionError);
    expect(ms).toBeLessThan(TIMEOUT + SLACK);
    expect(await mc.get('fin:a')).toBe('value-a');
  });

  test('every call in flight on a closed connection rejects; later calls succeed', async () => {
    const mc = client({ poolSize: 1 });
    await mc.setMany(Array.from({ length: 10 }, (_, i) => [`fin:m${i}`, `v${i}`] as const));
    proxy.stall();
    const calls = Array.from({ length: 10 }, (_, i) => timed(() => mc.get(`fin:m${i}`)));
    calls.push(timed(() => mc.set('fin:x', 'x')));
    calls.push(timed(() => mc.getMany(['fin:m1', 'fin:m2'])));
    await sleep(30);
    proxy.dropAll();
    const outcomes = await Promise.all(calls);
    for (const o of outcomes) {
      expect(o.ok).toBe(false);
      if (!o.ok) expectClass(o.error, MemcachedConnectionError);
      expect(o.ms).toBeLessThan(TIMEOUT + SLACK);
    }
    await proxy.clearFaults();
    const again = await mc.getMany(Array.from({ length: 10 }, (_, i) => `fin:m${i}`));
    expect([...again.values()]).toEqual(Array.from({ length: 10 }, (_, i) => `v${i}`));
  });
});

describe('connection reset (RST)', () => {
  test('an established connection reset mid-request rejects with MemcachedConnectionError; the client reconnects', async () => {
    const mc = client({ poolSize: 1 });
    await mc.set('rst:a', 'A');
    const acceptedBefore = proxy.accepted;
    proxy.stall();
    const pending = [timed(() => mc.get('rst:a')), timed(() => mc.delete('rst:zz'))];
    await sleep(30);
    proxy.resetAll();
    for (const o of await Promise.all(pending)) {
      expect(o.ok).toBe(false);
      if (!o.ok) expectClass(o.error, MemcachedConnectionError);
      expect(o.ms).toBeLessThan(TIMEOUT + SLACK);
    }
    await proxy.clearFaults();
    expect(await mc.get('rst:a')).toBe('A');
    expect(proxy.accepted).toBe(acceptedBefore + 1);
  });

  test('connections reset as soon as they are accepted: MemcachedConnectionError, fail-fast backoff, recovery once accepted', async () => {
    const mc = client();
    proxy.resetOnConnect(true);
    const { error, ms } = await rejection(() => mc.get('rst:b'));
    expectClass(error, MemcachedConnectionError);
    expect(ms).toBeLessThan(TIMEOUT + SLACK);
    // While the server keeps resetting, calls keep failing fast with the same class.
    for (let i = 0; i < 5; i++) {
      const r = await rejection(() => mc.set('rst:b', 'B'));
      expectClass(r.error, MemcachedConnectionError);
      expect(r.ms).toBeLessThan(TIMEOUT + SLACK);
      await sleep(40);
    }
    const refusedAttempts = proxy.accepted;
    expect(refusedAttempts).toBeGreaterThanOrEqual(1);
    proxy.resetOnConnect(false);
    const { failures } = await eventually(() => mc.set('rst:b', 'B'), {
      attempts: 30,
      intervalMs: 100,
    });
    // Backoff is capped at about a second (±20% jitter).
    expect(failures).toBeLessThan(15);
    expect(await mc.get('rst:b')).toBe('B');
  });
});

describe('connection refused', () => {
  test('ECONNREFUSED rejects with MemcachedConnectionError quickly; the client connects once the port is back', async () => {
    const mc = client();
    await proxy.stopListening();
    const { error, ms } = await rejection(() => mc.get('ref:a'));
    expectClass(error, MemcachedConnectionError);
    expect(ms).toBeLessThan(TIMEOUT + SLACK);
    const r2 = await rejection(() => mc.set('ref:a', 1));
    expectClass(r2.error, MemcachedConnectionError);
    await proxy.startListening();
    const { failures } = await eventually(() => mc.set('ref:a', 1), {
      attempts: 30,
      intervalMs: 100,
    });
    expect(failures).toBeLessThan(15);
    expect(await mc.get('ref:a')).toBe(1);
  });
});

describe('stalled server', () => {
  test('a stall rejects calls with MemcachedTimeoutError after `timeout`; late replies are dropped, never delivered to later calls', async () => {
    const mc = client({ poolSize: 1 });
    await mc.setMany([
      ['st:a', 'value-a'],
      ['st:b', 'value-b'],
    ]);
    proxy.stall();
    const outcomes = await Promise.all([
      timed(() => mc.get('st:a')),
      timed(() => mc.getMany(['st:a', 'st:b'])),
      timed(() => mc.set('st:c', 'value-c')),
    ]);
    for (const o of outcomes) {
      expect(o.ok).toBe(false);
      if (!o.ok) expectClass(o.error, MemcachedTimeoutError);
      expect(o.ms).toBeGreaterThanOrEqual(TIMEOUT - 5);
      expect(o.ms).toBeLessThan(TIMEOUT + SLACK);
    }
    // Queue more while the old replies are still held back, then let everything through.
    const after = Promise.all([
      mc.get('st:b'),
      mc.get('st:a'),
      mc.getMany(['st:b', 'st:nope']),
    ] as const);
    proxy.resume();
    const [b, a, many] = await after;
    expect(b).toBe('value-b');
    expect(a).toBe('value-a');
    expect([...many]).toEqual([['st:b', 'value-b']]);
    expect(await mc.get('st:c')).toBe('value-c'); // the held set did reach the server
  });

  test('a connection that stays silent long after a timeout is replaced; the client recovers on a new connection', async () => {
    const mc = client({ poolSize: 1 });
    await mc.set('st:d', 'D');
    const acceptedBefore = proxy.accepted;
    proxy.stall();
    const { error, ms } = await rejection(() => mc.get('st:d'));
    expectClass(error, MemcachedTimeoutError);
    expect(ms).toBeLessThan(TIMEOUT + SLACK);
    // A later call on the stuck connection times out too, then the connection is reset.
    const later = await rejection(() => mc.get('st:d'));
    expect(later.error).toBeInstanceOf(MemcachedError);
    await sleep(1200);
    const stuck = proxy.open;
    await proxy.clearFaults();
    expect(await mc.get('st:d')).toBe('D');
    expect(proxy.accepted).toBe(acceptedBefore + 1);
    expect(stuck).toBeLessThanOrEqual(1);
  });

  test('SIGSTOPped memcached: MemcachedTimeoutError within timeout; correct answers after SIGCONT', async () => {
    const mc = client({ servers: server.address, poolSize: 1 });
    await mc.set('stop:a', 'A');
    server.pause();
    try {
      const { error, ms } = await rejection(() => mc.get('stop:a'));
      expectClass(error, MemcachedTimeoutError);
      expect(ms).toBeLessThan(TIMEOUT + SLACK);
      const other = await rejection(() => mc.set('stop:b', 'B'));
      expectClass(other.error, MemcachedTimeoutError);
    } finally {
      server.resume();
    }
    const { value } = await eventually(() => mc.getMany(['stop:a', 'stop:b']), { attempts: 20 });
    expect(value.get('stop:a')).toBe('A');
    expect([undefined, 'B']).toContain(value.get('stop:b'));
  });
});

describe('latency', () => {
  test('latency below the timeout: calls succeed, just slower', async () => {
    const mc = client();
    await mc.set('lat:a', 'A');
    proxy.setLatency(120);
    const o = await timed(() => mc.get('lat:a'));
    expect(o.ok && o.value).toBe('A');
    expect(o.ms).toBeGreaterThanOrEqual(115);
    expect(o.ms).toBeLessThan(TIMEOUT);
  });

  test('latency above the timeout: MemcachedTimeoutError within timeout; correct again when latency drops', async () => {
    const mc = client({ poolSize: 1 });
    await mc.setMany([
      ['lat:b', 'B'],
      ['lat:c', 'C'],
    ]);
    proxy.setLatency(TIMEOUT + 200);
    const outcomes = await Promise.all([
      timed(() => mc.get('lat:b')),
      timed(() => mc.incr('lat:n')),
      timed(() => mc.getMany(['lat:b', 'lat:c'])),
    ]);
    for (const o of outcomes) {
      expect(o.ok).toBe(false);
      if (!o.ok) expectClass(o.error, MemcachedTimeoutError);
      expect(o.ms).toBeLessThan(TIMEOUT + SLACK);
    }
    proxy.setLatency(0);
    // The late replies are still on their way (they keep their order): the next calls must get
    // their own answers, not those.
    expect(await mc.get('lat:c')).toBe('C');
    expect(await mc.getMany(['lat:c', 'lat:b'])).toEqual(
      new Map([
        ['lat:c', 'C'],
        ['lat:b', 'B'],
      ]),
    );
  });
});

describe('drip (one byte at a time)', () => {
  test('every reply read in 1-byte pieces still yields intact values', async () => {
    const mc = client({ timeout: 10_000 });
    const big = randomBytes(6 * 1024);
    const entries: Array<readonly [string, unknown]> = [
      ['drip:s', 'short'],
      ['drip:u', 'ünïcödé ✓ 🎉'],
      ['drip:n', 42],
      ['drip:o', { a: [1, 2, { b: 'c' }], d: null }],
      ['drip:big', big],
    ];
    expect(await mc.setMany(entries)).toEqual([]);
    proxy.setDrip(true);
    const before = proxy.bytesToClient;
    expect(await mc.get('drip:s')).toBe('short');
    expect(await mc.get('drip:u')).toBe('ünïcödé ✓ 🎉');
    expect(await mc.get('drip:o')).toEqual({ a: [1, 2, { b: 'c' }], d: null });
    const gotBig = await mc.get<Buffer>('drip:big');
    expect(Buffer.isBuffer(gotBig) && gotBig.equals(big)).toBe(true);
    const many = await mc.getMany(['drip:s', 'drip:n', 'drip:missing', 'drip:u']);
    expect([...many]).toEqual([
      ['drip:s', 'short'],
      ['drip:n', 42],
      ['drip:u', 'ünïcödé ✓ 🎉'],
    ]);
    expect(await mc.incr('drip:n', 8)).toBe(50);
    expect(await mc.set('drip:t', 'x')).toBe(true);
    expect(await mc.delete('drip:t')).toBe(true);
    expect(Object.keys(await mc.version())).toEqual([proxy.address]);
    expect(proxy.bytesToClient - before).toBeGreaterThan(big.length);
  });

  test('drip with 1 ms between bytes and concurrent callers: every caller gets its own value', async () => {
    const mc = client({ timeout: 10_000, poolSize: 2 });
    const n = 12;
    await mc.setMany(Array.from({ length: n }, (_, i) => [`drip2:${i}`, `value-${i}`] as const));
    proxy.setDrip(true, 1);
    const got = await Promise.all(Array.from({ length: n }, (_, i) => mc.get(`drip2:${i}`)));
    expect(got).toEqual(Array.from({ length: n }, (_, i) => `value-${i}`));
  });
});

describe('reply cut in the middle', () => {
  test('a large value cut halfway: MemcachedConnectionError, no partial value, the next call is correct', async () => {
    const mc = client({ poolSize: 1 });
    const big = randomBytes(300 * 1024);
    await mc.set('cut:big', big);
    for (const reset of [false, true]) {
      proxy.closeMidReply(150 * 1024, { reset });
      const { error, ms } = await rejection(() => mc.get('cut:big'));
      expectClass(error, MemcachedConnectionError);
      expect(ms).toBeLessThan(TIMEOUT + SLACK);
      const again = await mc.get<Buffer>('cut:big');
      expect(Buffer.isBuffer(again) && again.equals(big)).toBe(true);
    }
  });

  test('cuts at every kind of place (header line, data, between items, before END) never deliver a partial result', async () => {
    const mc = client({ poolSize: 1 });
    const a = 'a'.repeat(1000);
    const b = 'b'.repeat(1000);
    await mc.setMany([
      ['cut:a', a],
      ['cut:b', b],
    ]);
    // `VALUE cut:a 16 1000\r\n` is 21 bytes: cut inside it, inside a's data, right after a's
    // data, inside b's header, and one byte before the final END.
    const full = 21 + 1002 + 21 + 1002 + 5;
    for (const at of [5, 21, 500, 1023, 1030, full - 1]) {
      proxy.closeMidReply(at);
      const o = await timed(() => mc.getMany(['cut:a', 'cut:b']));
      expect(o.ok).toBe(false);
      if (!o.ok) expectClass(o.error, MemcachedConnectionError);
      const again = await mc.getMany(['cut:a', 'cut:b']);
      expect(again.get('cut:a')).toBe(a);
      expect(again.get('cut:b')).toBe(b);
    }
  });

  test('concurrent gets batched into one request, cut mid-reply: all of them reject, none gets a wrong or partial value', async () => {
    const mc = client({ poolSize: 1 });
    const n = 20;
    const values = Array.from({ length: n }, (_, i) => `${i}:`.padEnd(200 + i, String(i % 10)));
    await mc.setMany(values.map((v, i) => [`cut:c${i}`, v] as const));
    proxy.closeMidReply(2000);
    const outcomes = await Promise.all(values.map((_, i) => timed(() => mc.get(`cut:c${i}`))));
    let rejected = 0;
    outcomes.forEach((o, i) => {
      if (o.ok) expect(o.value).toBe(values[i]);
      else {
        rejected++;
        expectClass(o.error, MemcachedConnectionError);
      }
    });
    expect(rejected).toBeGreaterThan(0);
    const again = await Promise.all(values.map((_, i) => mc.get(`cut:c${i}`)));
    expect(again).toEqual(values);
  });
});

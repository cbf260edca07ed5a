/**
 * What only the binary protocol has: its own wire (a `-B binary` server), interoperability with
 * memjs, quiet writes and their errors, and a stream that stops making sense.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import memjs from 'memjs';
import net from 'node:net';
import {
  MemcachedClient,
  MemcachedConnectionError,
  MemcachedError,
  MemcachedProtocolError,
  MemcachedServerError,
} from '../../lib/index.js';
import { startMemcached, stopAllMemcached, type MemcachedProcess } from '../harness/memcached.js';
import { PROTOCOLS } from '../harness/protocols.js';

afterAll(stopAllMemcached);

function memjsClient(server: MemcachedProcess, auth?: { username: string; password: string }) {
  return memjs.Client.create(server.address, {
    retries: 0,
    timeout: 2,
    logger: { log: () => undefined },
    ...(auth ?? {}),
  });
}

describe('binary only server (-B binary)', () => {
  let server: MemcachedProcess;
  let mc: MemcachedClient;

  beforeAll(async () => {
    server = await startMemcached({ args: ['-B', 'binary'] });
    mc = new MemcachedClient({ servers: server.address, protocol: 'binary', poolSize: 3 });
  });
  afterAll(() => mc.close());

  test('every command goes over the binary protocol', async () => {
    expect(await mc.set('b:1', { v: 1 }, { ttl: 100 })).toBe(true);
    expect(await mc.add('b:1', 2)).toBe(false);
    expect(await mc.get('b:1')).toEqual({ v: 1 });
    const g = await mc.gets('b:1');
    expect(await mc.cas('b:1', 'v2', g!.cas)).toBe(true);
    expect(await mc.getMany(['b:1', 'b:none'])).toEqual(new Map([['b:1', 'v2']]));
    expect(await mc.getAndTouch('b:1', 100)).toBe('v2');
    expect(await mc.touch('b:1', 100)).toBe(true);
    expect(await mc.set('b:n', 5)).toBe(true);
    expect(await mc.incr('b:n', 2)).toBe(7);
    expect(await mc.decr('b:n')).toBe(6);
    expect(await mc.delete('b:n')).toBe(true);
    expect(Object.values(await mc.version())[0]).toMatch(/^1\.6\./);
    expect(Object.values(await mc.stats())[0]!.curr_connections).toMatch(/^\d+$/);
    await mc.flushAll();
    expect(await mc.get('b:1')).toBeUndefined();
  });

  test('a text client gets nothing from it (so the suite above did not use text)', async () => {
    const text = new MemcachedClient({ servers: server.address, timeout: 300, failover: false });
    try {
      await expect(text.get('b:1')).rejects.toThrow(MemcachedError);
    } finally {
      await text.close();
    }
  });

  test('concurrent gets of the same and different keys (one batch of getkq) each get their own', async () => {
    await mc.setMany({ 'd:a': 'A', 'd:b': 'B' });
    const keys = ['d:a', 'd:b', 'd:a', 'd:none', 'd:b', 'd:a'];
    const got = await Promise.all(keys.map((k) => mc.get(k)));
    expect(got).toEqual(['A', 'B', 'A', undefined, 'B', 'A']);
  });
});

describe('memjs interoperability', () => {
  let server: MemcachedProcess;
  let mc: MemcachedClient;
  let peer: memjs.Client;

  beforeAll(async () => {
    server = await startMemcached();
    mc = new MemcachedClient({ servers: server.address, protocol: 'binary' });
    peer = memjsClient(server);
  });
  afterAll(async () => {
    peer.close();
    await mc.close();
  });

  test('values memjs writes read back through ours, and the reverse', async () => {
    const bytes = Buffer.from([0, 1, 2, 0x80, 0xff, 13, 10]);
    await peer.set('mj:text', 'from memjs ✓', {});
    await peer.set('mj:bytes', bytes, {});
    // memjs stores raw bytes with flags 0: they read back as a Buffer.
    expect(await mc.get('mj:text')).toEqual(Buffer.from('from memjs ✓'));
    expect(await mc.get('mj:bytes')).toEqual(bytes);

    await mc.set('ours:text', 'from ours ✓');
    await mc.set('ours:bytes', bytes);
    await mc.set('ours:json', { a: [1, 2] });
    const t = await peer.get('ours:text');
    expect(t.value?.toString('utf8')).toBe('from ours ✓');
    expect(t.flags?.readUInt32BE(0)).toBe(16);
    expect((await peer.get('ours:bytes')).value).toEqual(bytes);
    expect(JSON.parse((await peer.get('ours:json')).value!.toString())).toEqual({ a: [1, 2] });

    // Counters and deletes agree both ways.
    await mc.set('ours:n', 10);
    expect(await peer.increment('ours:n', 5, {})).toMatchObject({ success: true, value: 15 });
    expect(await mc.incr('ours:n', 1)).toBe(16);
    expect(await peer.delete('ours:n')).toBe(true);
    expect(await mc.get('ours:n')).toBeUndefined();
  });
});

describe.each(PROTOCOLS)('the same errors on %s', (protocol) => {
  let server: MemcachedProcess;
  let mc: MemcachedClient;

  beforeAll(async () => {
    server = await startMemcached({ args: ['-I', '2k'] });
    // maxValueSize above the server's -I: the server refuses, not the client.
    mc = new MemcachedClient({ servers: server.address, protocol, maxValueSize: 64 * 1024 });
  });
  afterAll(() => mc.close());

  test('a value over the server limit: MemcachedServerError; the key is gone; others unaffected', async () => {
    await mc.set('big', 'small first');
    const [big, other] = await Promise.allSettled([
      mc.set('big', 'x'.repeat(8000)),
      mc.set('other', 'fine'),
    ]);
    expect(big.status === 'rejected' && big.reason).toBeInstanceOf(MemcachedServerError);
    expect((big as PromiseRejectedResult).reason.message).toMatch(/too large/);
    expect(other).toEqual({ status: 'fulfilled', value: true });
    expect(await mc.get('big')).toBeUndefined();
    expect(await mc.get('other')).toBe('fine');
  });

  test('a noreply write the server refuses: a noreplyError event, no call fails', async () => {
    const errors: MemcachedError[] = [];
    mc.on('noreplyError', ({ error }) => errors.push(error));
    expect(await mc.set('nr:big', 'x'.repeat(8000), { noreply: true })).toBe(true);
    expect(await mc.add('nr:ok', 1, { noreply: true })).toBe(true);
    // add of an existing key with noreply is no error (text: NOT_STORED is not sent either)
    expect(await mc.add('nr:ok', 2, { noreply: true })).toBe(true);
    expect(await mc.delete('nr:missing')).toBe(false);
    expect(await mc.get('nr:ok')).toBe(1);
    // The quiet forms (meta `q`, binary quiet opcodes) report a refused write; text noreply
    // drops the error.
    expect(errors).toHaveLength(protocol === 'text' ? 0 : 1);
    for (const e of errors) expect(e).toBeInstanceOf(MemcachedServerError);
    mc.removeAllListeners('noreplyError');
  });
});

/** A fake binary server: answers the first request of each connection with `answer(request)`. */
async function fakeBinaryServer(
  answer: (request: Buffer, socket: net.Socket) => void,
): Promise<{ address: string; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    // The client may reset the connection (close(), a timeout): not an error of the test.
    socket.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      answer(buf, socket);
      buf = Buffer.alloc(0);
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  return {
    address: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        srv.close(() => resolve());
      }),
  };
}

function replyPacket(opcode: number, key: string, value: string, opaque: number): Buffer {
  const k = Buffer.from(key);
  const v = Buffer.from(value);
  const h = Buffer.alloc(28);
  h[0] = 0x81;
  h[1] = opcode;
  h.writeUInt16BE(k.length, 2);
  h[4] = 4;
  h.writeUInt32BE(4 + k.length + v.length, 8);
  h.writeUInt32BE(opaque, 12);
  h.writeUInt32BE(16, 24); // flags: text
  return Buffer.concat([h, k, v]);
}

describe('a stream that stops making sense', () => {
  test('a multi-get answered with a key not asked: that call fails with a protocol error, the bystanders with a connection error', async () => {
    const fake = await fakeBinaryServer((_req, socket) => {
      // The value of a key nobody asked for, then a noop, then nothing for the next request.
      socket.write(
        Buffer.concat([
          replyPacket(0x0d, 'someone-else', 'secret', 0),
          replyPacket(0x0a, '', '', 0).subarray(0, 24),
        ]),
      );
    });
    const mc = new MemcachedClient({
      servers: fake.address,
      protocol: 'binary',
      poolSize: 1,
      autoBatch: false,
      timeout: 1000,
      failover: false,
    });
    try {
      const [many, other] = await Promise.allSettled([
        mc.getMany(['mine', 'also-mine']),
        mc.get('third'),
      ]);
      expect(many.status).toBe('rejected');
      expect((many as PromiseRejectedResult).reason).toBeInstanceOf(MemcachedProtocolError);
      expect((many as PromiseRejectedResult).reason.message).toMatch(/not asked for/);
      expect(other.status).toBe('rejected');
      expect((other as PromiseRejectedResult).reason).toBeInstanceOf(MemcachedConnectionError);
      expect(((other as PromiseRejectedResult).reason as Error).cause).toBeInstanceOf(
        MemcachedProtocolError,
      );
    } finally {
      await mc.close();
      await fake.close();
    }
  });
});

import net from 'node:net';
import { afterEach, expect, test } from '@jest/globals';
import { MemcachedClient, MemcachedProtocolError } from '../../lib/index.js';

/** A fake memcached that answers every request line with `reply(line)`. */
async function fakeServer(
  reply: (line: string) => string,
): Promise<{ address: string; connections: () => number; close: () => Promise<void> }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    // The client may reset the connection (close(), a timeout): not an error of the test.
    socket.on('error', () => undefined);
    let buffered = '';
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      let nl: number;
      while ((nl = buffered.indexOf('\r\n')) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 2);
        socket.write(reply(line));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    connections: () => connections,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

test('multi-key replies must follow request order: an out-of-order item resets the connection', async () => {
  const server = await fakeServer((line) =>
    line.startsWith('get ')
      ? 'VALUE b 16 1\r\nB\r\nVALUE a 16 1\r\nA\r\nEND\r\n'
      : 'VERSION 1.6.18\r\n',
  );
  const mc = new MemcachedClient({ servers: server.address, failover: false });
  cleanups.push(() => mc.close(), server.close);
  await expect(mc.getMany(['a', 'b'])).rejects.toBeInstanceOf(MemcachedProtocolError);
  // The next call uses a new connection.
  expect(Object.values(await mc.version())).toEqual(['1.6.18']);
  expect(server.connections()).toBe(2);
});

test('in-order items with misses in between are matched to their own keys', async () => {
  const stored: Record<string, string> = { a: 'A', c: 'C' };
  const server = await fakeServer(
    (line) =>
      line
        .split(' ')
        .slice(1)
        .filter((k) => stored[k] !== undefined)
        .map((k) => `VALUE ${k} 16 1\r\n${stored[k]}\r\n`)
        .join('') + 'END\r\n',
  );
  const mc = new MemcachedClient({ servers: server.address, failover: false });
  cleanups.push(() => mc.close(), server.close);
  const got = await mc.getMany(['a', 'b', 'c']);
  expect([...got]).toEqual([
    ['a', 'A'],
    ['c', 'C'],
  ]);
  const batched = await Promise.all(['a', 'b', 'c'].map((k) => mc.get(k)));
  expect(batched).toEqual(['A', undefined, 'C']);
});

test('an item for a key that was not asked for resets the connection, whoever asked', async () => {
  const server = await fakeServer(() => 'VALUE other 16 5\r\nleak!\r\nEND\r\n');
  const mc = new MemcachedClient({ servers: server.address, failover: false });
  cleanups.push(() => mc.close(), server.close);
  await expect(mc.get('mine')).rejects.toBeInstanceOf(MemcachedProtocolError);
  await expect(mc.getMany(['x', 'y'])).rejects.toBeInstanceOf(MemcachedProtocolError);
});

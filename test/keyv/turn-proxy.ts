import net from 'node:net';
import type { MemcachedProcess } from '../harness/memcached.js';

/**
 * A pass-through TCP proxy in front of a harness memcached that counts round trips: a "turn" is
 * a run of client → server bytes on one connection with no server → client bytes in between.
 * An operation that sends everything for a server before waiting for any reply is one turn on
 * that server's connection; one that waits for a reply and then sends more is two.
 */
export interface TurnProxy {
  /** `127.0.0.1:PORT` to give a client. */
  readonly address: string;
  /** Turns since the last `reset()`, over every connection. */
  readonly turns: number;
  /** Client → server text since the last `reset()`. */
  readonly sent: string;
  reset(): void;
  close(): Promise<void>;
}

export async function turnProxy(target: MemcachedProcess): Promise<TurnProxy> {
  let turns = 0;
  let sent = '';
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    sockets.add(client).add(upstream);
    let clientsTurn = false;
    client.on('data', (chunk) => {
      if (!clientsTurn) turns++;
      clientsTurn = true;
      sent += chunk.toString('latin1');
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      clientsTurn = false;
      client.write(chunk);
    });
    const close = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', close).on('error', close);
    upstream.on('close', close).on('error', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    get turns() {
      return turns;
    },
    get sent() {
      return sent;
    },
    reset() {
      turns = 0;
      sent = '';
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

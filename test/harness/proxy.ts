import net from 'node:net';

/**
 * A TCP proxy between a client and a real memcached, for fault injection. Modes apply to new
 * bytes as they flow; `dropNextRequest()` closes the client's connection when its next request
 * arrives (before forwarding it), so the server never sees that request.
 */
export interface FaultProxy {
  /** `127.0.0.1:PORT` to give a client. */
  readonly address: string;
  readonly port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Close the next client connection that sends a request, without forwarding the request. */
  dropNextRequest(): void;
  /** Close every open connection now. */
  dropAll(): void;
  /** Accept bytes but forward nothing in either direction until `resume()`. */
  stall(): void;
  resume(): void;
  /** Refuse (reset) new connections until `accept()`. */
  refuse(): void;
  accept(): void;
  /** Add `ms` of latency to every server → client chunk. */
  setLatency(ms: number): void;
  /** Forward server → client bytes one byte at a time. */
  setDrip(on: boolean): void;
  close(): Promise<void>;
}

export async function startProxy(targetHost: string, targetPort: number): Promise<FaultProxy> {
  const sockets = new Set<net.Socket>();
  let dropNext = false;
  let stalled = false;
  let refusing = false;
  let latency = 0;
  let drip = false;
  let accepted = 0;
  const held: Array<() => void> = [];

  const server = net.createServer((client) => {
    accepted++;
    if (refusing) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect({ host: targetHost, port: targetPort });
    sockets.add(client);
    sockets.add(upstream);
    const closeBoth = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', closeBoth);
    upstream.on('error', closeBoth);
    client.on('close', closeBoth);
    upstream.on('close', closeBoth);
    client.on('data', (chunk: Buffer) => {
      if (dropNext) {
        dropNext = false;
        closeBoth();
        return;
      }
      const send = (): void => {
        if (!upstream.destroyed) upstream.write(chunk);
      };
      if (stalled) held.push(send);
      else send();
    });
    upstream.on('data', (chunk: Buffer) => {
      const deliver = (): void => {
        if (client.destroyed) return;
        if (!drip) {
          client.write(chunk);
          return;
        }
        for (let i = 0; i < chunk.length; i++) client.write(chunk.subarray(i, i + 1));
      };
      const send = (): void => {
        if (latency > 0) setTimeout(deliver, latency);
        else deliver();
      };
      if (stalled) held.push(send);
      else send();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;

  return {
    address: `127.0.0.1:${port}`,
    port,
    get accepted() {
      return accepted;
    },
    dropNextRequest: () => {
      dropNext = true;
    },
    dropAll: () => {
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    stall: () => {
      stalled = true;
    },
    resume: () => {
      stalled = false;
      for (const f of held.splice(0)) f();
    },
    refuse: () => {
      refusing = true;
    },
    accept: () => {
      refusing = false;
    },
    setLatency: (ms) => {
      latency = ms;
    },
    setDrip: (on) => {
      drip = on;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      sockets.clear();
      held.length = 0;
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

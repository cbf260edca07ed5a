import net from 'node:net';

/**
 * A TCP proxy between a client and a real memcached, for fault injection. Faults apply to bytes
 * as they flow, and the stream a client sees is always a prefix of what the server sent, in order
 * (latency and drip never reorder bytes, even when they change mid-stream):
 *
 * - `dropNextRequest()`: the next connection that sends a request is closed before the request is
 *   forwarded, so the server never sees it;
 * - `dropAll()` closes (FIN), `resetAll()` resets (RST) every open connection;
 * - `closeMidReply(n)`: the next server → client bytes are forwarded up to `n` bytes, then that
 *   connection is closed (`{ reset: true }`: reset) — a reply cut in the middle;
 * - `stall()` / `resume()`: bytes are accepted in both directions but held until `resume()`;
 * - `refuse()` / `accept()` (alias `resetOnConnect(on)`): new connections are reset as soon as
 *   they are accepted;
 * - `stopListening()` / `startListening()`: the port is closed, so connects fail with
 *   ECONNREFUSED, then reopened on the same port;
 * - `setLatency(ms)`: server → client bytes are delayed by `ms`;
 * - `setDrip(on, intervalMs)`: server → client bytes go one byte per write, a macrotask (or
 *   `intervalMs`) apart, so the client reads replies in 1-byte pieces.
 */
export interface FaultProxy {
  /** `127.0.0.1:PORT` to give a client. */
  readonly address: string;
  readonly port: number;
  /** Connections accepted so far (including those reset on connect). */
  readonly accepted: number;
  /** Client connections open now. */
  readonly open: number;
  /** Bytes forwarded client → server and server → client so far. */
  readonly bytesToServer: number;
  readonly bytesToClient: number;
  /** Close the next client connection that sends a request, without forwarding the request. */
  dropNextRequest(): void;
  /** Close (FIN) every open connection now. */
  dropAll(): void;
  /** Reset (RST) every open connection now. */
  resetAll(): void;
  /**
   * Forward only the next `afterBytes` bytes from the server (on whichever connection has any),
   * then close that connection (`reset`: with RST instead of FIN). One-shot.
   */
  closeMidReply(afterBytes: number, options?: { reset?: boolean }): void;
  /** Accept bytes but forward nothing in either direction until `resume()`. */
  stall(): void;
  resume(): void;
  readonly stalled: boolean;
  /** Reset new connections as soon as they are accepted, until `accept()`. */
  refuse(): void;
  accept(): void;
  /** `refuse()` / `accept()` as a switch. */
  resetOnConnect(on: boolean): void;
  /** Stop listening: connects fail with ECONNREFUSED. Open connections stay. */
  stopListening(): Promise<void>;
  /** Listen again on the same port. */
  startListening(): Promise<void>;
  /** Add `ms` of latency to every server → client chunk. */
  setLatency(ms: number): void;
  /** Forward server → client bytes one byte at a time (`intervalMs` apart; 0: a macrotask). */
  setDrip(on: boolean, intervalMs?: number): void;
  /** Undo every fault: resume, no latency, no drip, accept and listen, nothing armed. */
  clearFaults(): Promise<void>;
  close(): Promise<void>;
}

interface Outgoing {
  buf: Buffer;
  /** Bytes of `buf` already written. */
  off: number;
  /** Not before this time (performance clock). */
  at: number;
}

const now = (): number => performance.now();

/** One client connection and its upstream connection. */
class Pair {
  readonly toClient: Outgoing[] = [];
  readonly heldToServer: Buffer[] = [];
  lastAt = 0;
  timer: NodeJS.Timeout | undefined;
  immediate: NodeJS.Immediate | undefined;
  closed = false;

  constructor(
    readonly client: net.Socket,
    readonly upstream: net.Socket,
  ) {}

  clearTimers(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
  }
}

export async function startProxy(targetHost: string, targetPort: number): Promise<FaultProxy> {
  const pairs = new Set<Pair>();
  const servers: net.Server[] = [];
  let current: net.Server | undefined;
  let dropNext = false;
  let stalled = false;
  let refusing = false;
  let latency = 0;
  let drip = false;
  let dripInterval = 0;
  let cut: { remaining: number; reset: boolean } | undefined;
  let accepted = 0;
  let bytesToServer = 0;
  let bytesToClient = 0;
  let closed = false;

  const closePair = (pair: Pair, reset = false): void => {
    if (pair.closed) return;
    pair.closed = true;
    pair.clearTimers();
    pair.toClient.length = 0;
    pair.heldToServer.length = 0;
    if (reset) pair.client.resetAndDestroy();
    else pair.client.destroy();
    pair.upstream.destroy();
    pairs.delete(pair);
  };

  /** Writes what may be written now to the client; reschedules itself for the rest. */
  const pump = (pair: Pair): void => {
    pair.timer = undefined;
    pair.immediate = undefined;
    if (pair.closed || stalled) return;
    const queue = pair.toClient;
    while (queue.length > 0) {
      const head = queue[0]!;
      const wait = head.at - now();
      if (wait > 0) {
        pair.timer = setTimeout(() => pump(pair), Math.ceil(wait));
        return;
      }
      let n = head.buf.length - head.off;
      if (drip) n = 1;
      if (cut !== undefined) n = Math.min(n, cut.remaining);
      if (n > 0) {
        pair.client.write(head.buf.subarray(head.off, head.off + n));
        bytesToClient += n;
        head.off += n;
        if (head.off === head.buf.length) queue.shift();
      }
      if (cut !== undefined) {
        cut.remaining -= n;
        if (cut.remaining <= 0) {
          const reset = cut.reset;
          cut = undefined;
          pair.closed = true;
          pair.clearTimers();
          queue.length = 0;
          pairs.delete(pair);
          pair.upstream.destroy();
          // FIN after the bytes already written; RST drops them, so let them go out first.
          if (reset) setImmediate(() => pair.client.resetAndDestroy());
          else pair.client.end();
          return;
        }
      }
      if (drip && queue.length > 0) {
        if (dripInterval > 0) pair.timer = setTimeout(() => pump(pair), dripInterval);
        else pair.immediate = setImmediate(() => pump(pair));
        return;
      }
    }
  };

  const onConnection = (client: net.Socket): void => {
    accepted++;
    if (refusing || closed) {
      client.on('error', () => undefined);
      client.resetAndDestroy();
      return;
    }
    client.setNoDelay(true);
    const upstream = net.connect({ host: targetHost, port: targetPort });
    upstream.setNoDelay(true);
    const pair = new Pair(client, upstream);
    pairs.add(pair);
    const closeBoth = (): void => closePair(pair);
    client.on('error', closeBoth);
    upstream.on('error', closeBoth);
    client.on('close', closeBoth);
    upstream.on('close', closeBoth);
    client.on('data', (chunk: Buffer) => {
      if (pair.closed) return;
      if (dropNext) {
        dropNext = false;
        closeBoth();
        return;
      }
      if (stalled) {
        pair.heldToServer.push(chunk);
        return;
      }
      bytesToServer += chunk.length;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (pair.closed) return;
      const at = Math.max(now() + latency, pair.lastAt);
      pair.lastAt = at;
      pair.toClient.push({ buf: chunk, off: 0, at });
      if (pair.timer === undefined && pair.immediate === undefined) pump(pair);
    });
  };

  const listen = async (port: number): Promise<net.Server> => {
    const server = net.createServer(onConnection);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    servers.push(server);
    current = server;
    return server;
  };

  const closeServer = (server: net.Server): Promise<void> =>
    new Promise<void>((resolve) => {
      if (!server.listening) {
        resolve();
        return;
      }
      server.close(() => resolve());
    });

  const first = await listen(0);
  const port = (first.address() as net.AddressInfo).port;

  const resumeAll = (): void => {
    stalled = false;
    for (const pair of [...pairs]) {
      for (const chunk of pair.heldToServer.splice(0)) {
        bytesToServer += chunk.length;
        pair.upstream.write(chunk);
      }
      if (pair.timer === undefined && pair.immediate === undefined) pump(pair);
    }
  };

  const proxy: FaultProxy = {
    address: `127.0.0.1:${port}`,
    port,
    get accepted() {
      return accepted;
    },
    get open() {
      return pairs.size;
    },
    get bytesToServer() {
      return bytesToServer;
    },
    get bytesToClient() {
      return bytesToClient;
    },
    get stalled() {
      return stalled;
    },
    dropNextRequest: () => {
      dropNext = true;
    },
    dropAll: () => {
      for (const pair of [...pairs]) closePair(pair);
    },
    resetAll: () => {
      for (const pair of [...pairs]) closePair(pair, true);
    },
    closeMidReply: (afterBytes, options = {}) => {
      if (!Number.isInteger(afterBytes) || afterBytes < 1) {
        throw new Error('closeMidReply: afterBytes must be a positive integer');
      }
      cut = { remaining: afterBytes, reset: options.reset ?? false };
    },
    stall: () => {
      stalled = true;
    },
    resume: resumeAll,
    refuse: () => {
      refusing = true;
    },
    accept: () => {
      refusing = false;
    },
    resetOnConnect: (on) => {
      refusing = on;
    },
    stopListening: async () => {
      const server = current;
      current = undefined;
      if (server !== undefined) await closeServerListening(server);
    },
    startListening: async () => {
      if (current === undefined && !closed) await listen(port);
    },
    setLatency: (ms) => {
      latency = Math.max(0, ms);
    },
    setDrip: (on, intervalMs = 0) => {
      drip = on;
      dripInterval = Math.max(0, intervalMs);
      if (!on) {
        for (const pair of pairs) {
          pair.clearTimers();
          pump(pair);
        }
      }
    },
    clearFaults: async () => {
      dropNext = false;
      cut = undefined;
      refusing = false;
      latency = 0;
      drip = false;
      resumeAll();
      await proxy.startListening();
    },
    close: async () => {
      closed = true;
      for (const pair of [...pairs]) closePair(pair);
      current = undefined;
      await Promise.all(servers.map(closeServer));
    },
  };

  /** Stops accepting without waiting for open connections (server.close's callback would). */
  function closeServerListening(server: net.Server): Promise<void> {
    return new Promise<void>((resolve) => {
      server.close();
      // The listening socket is closed synchronously; connects are refused from here on.
      setImmediate(resolve);
    });
  }

  return proxy;
}

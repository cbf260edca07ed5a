import net from 'node:net';

/**
 * A fake memcached on a loopback port that answers with whatever a test scripts: correct replies
 * by default (a tiny in-memory store: enough of get/gets/set/add/replace/delete/incr/decr/touch/
 * version/stats/flush_all), or any bytes a responder writes. It parses requests like memcached
 * (storage commands carry a data block) so a responder sees one call per request.
 *
 * ```ts
 * const hostile = await startHostileServer();
 * hostile.once((req, conn) => conn.write('STORED\r\n')); // the next request gets a wrong reply
 * hostile.respond((req, conn) => conn.write(randomBytes(100))); // every request, from now on
 * hostile.honest(); // back to correct replies
 * ```
 */
export interface HostileRequest {
  /** The request line without `\r\n`. */
  readonly line: string;
  /** The command name (`get`, `set`, ...). */
  readonly command: string;
  /** The key(s): every key of a retrieval, the key of other key commands, none otherwise. */
  readonly keys: readonly string[];
  /** The request line split on spaces. */
  readonly tokens: readonly string[];
  /** The data block of a storage command. */
  readonly data: Buffer | undefined;
  readonly noreply: boolean;
}

export interface HostileConnection {
  /** 0 for the first connection the server accepted, 1 for the next... */
  readonly index: number;
  /** Requests received on this connection so far (including the current one). */
  readonly requests: number;
  readonly closed: boolean;
  /** Bytes written to this connection that the kernel accepted (in flight or delivered). */
  readonly bytesWritten: number;
  write(bytes: string | Buffer): void;
  /**
   * Writes `total` bytes taken from `chunk` over and over, waiting for 'drain' (so the server
   * itself never buffers more than one chunk); resolves with the bytes written when done or when
   * the connection closes (`stop()` ends it early).
   */
  stream(total: number, chunk: Buffer | ((i: number) => Buffer)): Promise<number>;
  /** Stops a running `stream`. */
  stop(): void;
  /** FIN after what was written. */
  end(bytes?: string | Buffer): void;
  /** Close at once. */
  destroy(): void;
  /** RST. */
  reset(): void;
}

/** Answers one request; the default responder answers like memcached. */
export type Responder = (request: HostileRequest, connection: HostileConnection) => void;

export interface HostileServer {
  /** `127.0.0.1:PORT` for a client's `servers`. */
  readonly address: string;
  readonly port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Connections open now. */
  readonly open: number;
  /** Requests received so far (all connections). */
  readonly requests: number;
  /** Every request line received so far, in order (bounded to the last 10,000). */
  readonly log: readonly string[];
  /** The store the honest responder uses. */
  readonly store: Map<string, { flags: number; data: Buffer; cas: bigint }>;
  /** Answer every request with `responder` from now on. */
  respond(responder: Responder): void;
  /** Answer only the next request with `responder`, then go back to the current behaviour. */
  once(responder: Responder): void;
  /** Called for every new connection (e.g. to send bytes nobody asked for). */
  onConnect(handler: ((connection: HostileConnection) => void) | undefined): void;
  /** Back to correct replies. */
  honest(): void;
  /** The correct reply for `request` (what the honest responder would write). */
  honestReply(request: HostileRequest): Buffer;
  close(): Promise<void>;
}

const STORAGE = new Set(['set', 'add', 'replace', 'append', 'prepend', 'cas']);
/** Longest request line the fake accepts before it hangs up (memcached: 2048 for keys). */
const MAX_REQUEST_LINE = 64 * 1024;
const MAX_LOG = 10_000;

class Conn implements HostileConnection {
  requests = 0;
  bytesWritten = 0;
  private streaming = false;
  private stopped = false;

  constructor(
    readonly index: number,
    readonly socket: net.Socket,
  ) {}

  get closed(): boolean {
    return this.socket.destroyed || this.socket.writableEnded;
  }

  write(bytes: string | Buffer): void {
    if (this.closed) return;
    const buf = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
    this.bytesWritten += buf.length;
    this.socket.write(buf);
  }

  async stream(total: number, chunk: Buffer | ((i: number) => Buffer)): Promise<number> {
    if (this.streaming) throw new Error('already streaming on this connection');
    this.streaming = true;
    this.stopped = false;
    let written = 0;
    try {
      for (let i = 0; written < total && !this.closed && !this.stopped; i++) {
        let piece = typeof chunk === 'function' ? chunk(i) : chunk;
        if (piece.length > total - written) piece = piece.subarray(0, total - written);
        written += piece.length;
        this.bytesWritten += piece.length;
        if (!this.socket.write(piece)) {
          await new Promise<void>((resolve) => {
            const done = (): void => {
              this.socket.off('drain', done);
              this.socket.off('close', done);
              resolve();
            };
            this.socket.on('drain', done);
            this.socket.on('close', done);
          });
        }
      }
    } finally {
      this.streaming = false;
    }
    return written;
  }

  stop(): void {
    this.stopped = true;
  }

  end(bytes?: string | Buffer): void {
    if (this.closed) return;
    if (bytes !== undefined) this.write(bytes);
    this.socket.end();
  }

  destroy(): void {
    this.stopped = true;
    this.socket.destroy();
  }

  reset(): void {
    this.stopped = true;
    if (!this.socket.destroyed) this.socket.resetAndDestroy();
  }
}

function parseRequest(line: string, data: Buffer | undefined): HostileRequest {
  const tokens = line.split(' ').filter((t) => t !== '');
  const command = tokens[0] ?? '';
  let keys: string[] = [];
  if (command === 'get' || command === 'gets') keys = tokens.slice(1);
  else if (command === 'gat' || command === 'gats') keys = tokens.slice(2);
  else if (STORAGE.has(command) || ['delete', 'incr', 'decr', 'touch'].includes(command)) {
    keys = tokens.slice(1, 2);
  }
  return {
    line,
    command,
    keys,
    tokens,
    data,
    noreply: tokens[tokens.length - 1] === 'noreply',
  };
}

export async function startHostileServer(): Promise<HostileServer> {
  const store = new Map<string, { flags: number; data: Buffer; cas: bigint }>();
  let casCounter = 0n;
  const sockets = new Set<net.Socket>();
  const log: string[] = [];
  let connections = 0;
  let requests = 0;
  let onConnect: ((connection: HostileConnection) => void) | undefined;

  const honestReply = (req: HostileRequest): Buffer => {
    const t = req.tokens;
    const out: Buffer[] = [];
    const line = (s: string): void => {
      out.push(Buffer.from(`${s}\r\n`, 'latin1'));
    };
    switch (req.command) {
      case 'get':
      case 'gets':
      case 'gat':
      case 'gats': {
        const withCas = req.command === 'gets' || req.command === 'gats';
        for (const key of req.keys) {
          const item = store.get(key);
          if (item === undefined) continue;
          line(`VALUE ${key} ${item.flags} ${item.data.length}${withCas ? ` ${item.cas}` : ''}`);
          out.push(item.data, Buffer.from('\r\n'));
        }
        line('END');
        break;
      }
      case 'set':
      case 'add':
      case 'replace':
      case 'append':
      case 'prepend':
      case 'cas': {
        const key = t[1]!;
        const exists = store.has(key);
        const data = req.data ?? Buffer.alloc(0);
        const flags = Number(t[2]);
        if (req.command === 'add' && exists) line('NOT_STORED');
        else if (
          (req.command === 'replace' || req.command === 'append' || req.command === 'prepend') &&
          !exists
        ) {
          line('NOT_STORED');
        } else if (req.command === 'cas' && !exists) line('NOT_FOUND');
        else if (req.command === 'cas' && store.get(key)!.cas !== BigInt(t[5] ?? '0')) {
          line('EXISTS');
        } else {
          const old = store.get(key);
          const bytes =
            req.command === 'append'
              ? Buffer.concat([old!.data, data])
              : req.command === 'prepend'
                ? Buffer.concat([data, old!.data])
                : data;
          store.set(key, {
            // append/prepend keep the item's flags; the others set them.
            flags: req.command === 'append' || req.command === 'prepend' ? old!.flags : flags,
            data: bytes,
            cas: ++casCounter,
          });
          line('STORED');
        }
        break;
      }
      case 'delete':
        line(store.delete(t[1]!) ? 'DELETED' : 'NOT_FOUND');
        break;
      case 'touch':
        line(store.has(t[1]!) ? 'TOUCHED' : 'NOT_FOUND');
        break;
      case 'incr':
      case 'decr': {
        const item = store.get(t[1]!);
        if (item === undefined) {
          line('NOT_FOUND');
          break;
        }
        const text = item.data.toString('latin1').trim();
        if (!/^[0-9]{1,20}$/.test(text)) {
          line('CLIENT_ERROR cannot increment or decrement non-numeric value');
          break;
        }
        const delta = BigInt(t[2] ?? '0');
        let n = BigInt(text);
        n = req.command === 'incr' ? (n + delta) & 0xffffffffffffffffn : n > delta ? n - delta : 0n;
        item.data = Buffer.from(n.toString(), 'latin1');
        item.cas = ++casCounter;
        line(n.toString());
        break;
      }
      case 'version':
        line('VERSION 1.6.18-hostile');
        break;
      case 'stats':
        line('STAT pid 1');
        line(`STAT curr_items ${store.size}`);
        line('END');
        break;
      case 'flush_all':
        store.clear();
        line('OK');
        break;
      default:
        line('ERROR');
    }
    return Buffer.concat(out);
  };

  const honestResponder: Responder = (req, conn) => {
    const reply = honestReply(req);
    if (!req.noreply) conn.write(reply);
  };
  let responder: Responder = honestResponder;
  const onceQueue: Responder[] = [];

  const server = net.createServer((socket) => {
    const conn = new Conn(connections++, socket);
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    let buffered: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      for (;;) {
        const nl = buffered.indexOf('\r\n');
        if (nl === -1) {
          if (buffered.length > MAX_REQUEST_LINE) socket.destroy();
          return;
        }
        const line = buffered.toString('latin1', 0, nl);
        const tokens = line.split(' ');
        let data: Buffer | undefined;
        let consumed = nl + 2;
        if (STORAGE.has(tokens[0] ?? '')) {
          const size = Number(tokens[4]);
          if (!Number.isInteger(size) || size < 0) {
            socket.destroy();
            return;
          }
          if (buffered.length < consumed + size + 2) return; // wait for the data block
          data = Buffer.from(buffered.subarray(consumed, consumed + size));
          consumed += size + 2;
        }
        buffered = buffered.subarray(consumed);
        requests++;
        conn.requests++;
        log.push(line);
        if (log.length > MAX_LOG) log.splice(0, log.length - MAX_LOG);
        const request = parseRequest(line, data);
        const r = onceQueue.shift() ?? responder;
        try {
          r(request, conn);
        } catch {
          socket.destroy();
        }
        if (socket.destroyed) return;
      }
    });
    onConnect?.(conn);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;

  return {
    address: `127.0.0.1:${port}`,
    port,
    get connections() {
      return connections;
    },
    get open() {
      return sockets.size;
    },
    get requests() {
      return requests;
    },
    log,
    store,
    respond: (r) => {
      responder = r;
    },
    once: (r) => {
      onceQueue.push(r);
    },
    onConnect: (handler) => {
      onConnect = handler;
    },
    honest: () => {
      responder = honestResponder;
      onceQueue.length = 0;
      onConnect = undefined;
    },
    honestReply,
    close: async () => {
      for (const s of sockets) s.destroy();
      sockets.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

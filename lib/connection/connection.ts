import * as net from 'node:net';
import * as tls from 'node:tls';
import {
  MemcachedAuthError,
  MemcachedBackpressureError,
  MemcachedConnectionError,
  MemcachedError,
  MemcachedProtocolError,
  MemcachedTimeoutError,
} from '../errors.js';
import { encodeAuth } from '../protocol/encoder.js';
import { ReplyParser, type ParserLimits, type ReplySink } from '../protocol/parser.js';
import {
  interpretLine,
  unexpectedReply,
  type ReplyKind,
  type RetrievedItem,
} from '../protocol/replies.js';

/** Where a connection goes. */
export interface ServerAddress {
  /** `host:port`, `[v6]:port` or the socket path. */
  id: string;
  /** Host name or IP (without brackets), or the socket path for unix sockets. */
  host: string;
  /** TCP port; 0 for unix sockets. */
  port: number;
  /** True for a unix domain socket. */
  unix: boolean;
}

export interface ConnectionSettings {
  connectTimeout: number;
  /** `true` or TLS options; undefined for plain TCP. */
  tls: tls.ConnectionOptions | undefined;
  auth: { username: string; password: string } | undefined;
  keepAlive: boolean;
  parserLimits: ParserLimits;
  /** Reconnect backoff while the server stays down (ms). */
  backoffMin: number;
  backoffMax: number;
  /** Requests allowed to wait on one connection; beyond it `send` fails fast. */
  maxPending: number;
}

/** Connection life: events for the pool / cluster above. */
export interface ConnectionEvents {
  /** The socket is connected (and authenticated) and ready for requests. */
  onReady?(connection: Connection): void;
  /** The socket failed to connect or was lost. */
  onDown?(connection: Connection, error: MemcachedError): void;
}

/** A request waiting in a connection's queue. */
export interface Request {
  readonly kind: ReplyKind;
  /** The command name for error messages (`get`, `set`, ...). */
  readonly command: string;
  /** Bytes to write; released once written. */
  data: Buffer | Buffer[] | undefined;
  /** Retrieval: the wire keys asked for (a reply item for any other key breaks the stream). */
  readonly keys: readonly string[] | undefined;
  /** Retrieval: index in `keys` where the next reply item may start (replies keep request order). */
  cursor: number;
  /** With noreply the request settles `true` once written and expects no reply. */
  readonly noreply: boolean;
  /** Absolute deadline (ms, performance clock). */
  readonly deadline: number;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: MemcachedError) => void;
  /** Settled already (timed out); its reply, if it comes, is read and dropped. */
  settled: boolean;
  /** A noreply request was written just before this one (an error line may be the noreply's). */
  afterNoreply: boolean;
  items: RetrievedItem[] | undefined;
  stats: Record<string, string> | undefined;
  statCount: number;
}

/** Most STAT lines one reply may carry (`stats conns` of a very busy server stays far below). */
const MAX_STAT_LINES = 100_000;

type State = 'idle' | 'connecting' | 'authenticating' | 'ready' | 'down' | 'closed';

const now = (): number => performance.now();

/**
 * One socket to one memcached server, with its FIFO of pending requests. Requests are pipelined
 * in order; replies are matched strictly in order and checked against what each request expects
 * (kind, and for retrievals the exact keys asked), so a reply can never reach the wrong caller:
 * anything that does not fit resets the connection. One timer serves every deadline. A lost socket
 * fails every pending request at once; the next request reconnects (with backoff while the server
 * stays down).
 */
export class Connection implements ReplySink {
  private state: State = 'idle';
  private socket: net.Socket | undefined;
  private readonly parser: ReplyParser;
  /** Pending requests: [head, unwritten) are written and await replies; [unwritten, end) are not yet written. */
  private queue: Request[] = [];
  private head = 0;
  private unwritten = 0;
  private flushScheduled = false;
  private noreplyWritten = false;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private connectTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private nextAttemptAt = 0;
  private lastError: MemcachedError | undefined;
  private lastDataAt = 0;
  private closeWaiters: Array<() => void> = [];

  constructor(
    readonly server: ServerAddress,
    private readonly settings: ConnectionSettings,
    private readonly events: ConnectionEvents = {},
  ) {
    this.parser = new ReplyParser(this, settings.parserLimits);
  }

  /** Requests written or waiting to be written, not yet answered. */
  get pending(): number {
    return this.queue.length - this.head;
  }

  get isReady(): boolean {
    return this.state === 'ready';
  }

  get isClosed(): boolean {
    return this.state === 'closed';
  }

  /** True while connect attempts are held back after failures. */
  get isBackingOff(): boolean {
    return this.state === 'down' && now() < this.nextAttemptAt;
  }

  /**
   * Queues a request. Returns a promise settled with the interpreted reply: the status line
   * value, the retrieved items, the stats record, or `true` for noreply once written.
   */
  send(
    kind: ReplyKind,
    command: string,
    data: Buffer | Buffer[],
    timeout: number,
    keys?: readonly string[],
    noreply = false,
  ): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) =>
      this.enqueue(kind, command, data, timeout, keys, noreply, resolve, reject),
    );
  }

  /**
   * {@link send} with callbacks instead of a Promise (the hot path): exactly one of `resolve`
   * and `reject` is called once — synchronously when the request is refused at once.
   */
  enqueue(
    kind: ReplyKind,
    command: string,
    data: Buffer | Buffer[],
    timeout: number,
    keys: readonly string[] | undefined,
    noreply: boolean,
    resolve: (value: unknown) => void,
    reject: (error: MemcachedError) => void,
  ): void {
    const failFast = this.admit();
    if (failFast !== undefined) {
      reject(failFast);
      return;
    }
    if (this.queue.length - this.head >= this.settings.maxPending) {
      reject(
        new MemcachedBackpressureError(
          `${this.queue.length - this.head} requests are already waiting on a connection to memcached ${this.server.id} (maxPending.perConnection = ${this.settings.maxPending}); the server is stalled or slower than the request rate`,
          { server: this.server.id, command },
        ),
      );
      return;
    }
    const request: Request = {
      kind,
      command,
      data,
      keys,
      cursor: 0,
      noreply,
      deadline: now() + timeout,
      resolve,
      reject,
      settled: false,
      afterNoreply: false,
      items: undefined,
      stats: undefined,
      statCount: 0,
    };
    this.queue.push(request);
    this.arm(request.deadline);
    if (this.state === 'ready') this.scheduleFlush();
  }

  /**
   * Closes the connection. In-flight requests may finish within `graceMs`; whatever is still
   * pending then is rejected with MemcachedConnectionError. No timer or socket is left behind.
   */
  async close(graceMs = 0): Promise<void> {
    if (this.state === 'closed') return;
    const live =
      this.state === 'ready' || this.state === 'connecting' || this.state === 'authenticating';
    if (graceMs > 0 && this.pending > 0 && live) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, graceMs);
        this.closeWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    if (this.isClosed) return;
    this.state = 'closed';
    const error = new MemcachedConnectionError(
      `the memcached client was closed before ${this.server.id} answered`,
      { server: this.server.id },
    );
    this.failAll(error);
    this.clearTimers();
    const socket = this.socket;
    this.socket = undefined;
    if (socket !== undefined) {
      socket.removeAllListeners('data');
      socket.destroy();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Connecting

  /** Decides whether a new request may be queued; starts connecting when needed. */
  private admit(): MemcachedError | undefined {
    switch (this.state) {
      case 'ready':
      case 'connecting':
      case 'authenticating':
        return undefined;
      case 'closed':
        return new MemcachedConnectionError(
          'the memcached client is closed; create a new client to send more commands',
          { server: this.server.id },
        );
      case 'down': {
        const wait = this.nextAttemptAt - now();
        if (wait > 0) return this.downError(wait);
        this.connect();
        return undefined;
      }
      case 'idle':
        this.connect();
        return undefined;
    }
  }

  private downError(waitMs: number): MemcachedError {
    const last = this.lastError;
    const detail = last === undefined ? '' : `: ${last.message}`;
    const message = `memcached ${this.server.id} is unavailable${detail} (next connection attempt in ${Math.ceil(waitMs)} ms)`;
    if (last instanceof MemcachedAuthError) {
      return new MemcachedAuthError(message, { server: this.server.id, cause: last });
    }
    return new MemcachedConnectionError(message, { server: this.server.id, cause: last });
  }

  private connect(): void {
    this.state = 'connecting';
    this.parser.reset();
    const { server, settings } = this;
    let socket: net.Socket;
    const onConnected = (): void => this.onConnected(socket);
    if (settings.tls !== undefined) {
      const options: tls.ConnectionOptions = { ...settings.tls };
      if (server.unix) options.path = server.host;
      else {
        options.host = server.host;
        options.port = server.port;
        if (options.servername === undefined && net.isIP(server.host) === 0) {
          options.servername = server.host;
        }
      }
      socket = tls.connect(options, onConnected);
    } else {
      socket = server.unix
        ? net.connect({ path: server.host }, onConnected)
        : net.connect({ host: server.host, port: server.port }, onConnected);
    }
    this.socket = socket;
    socket.setNoDelay(true);
    if (settings.keepAlive) socket.setKeepAlive(true, 30_000);
    socket.on('data', (chunk: Buffer) => this.onData(socket, chunk));
    socket.on('error', (err: Error) => this.onSocketError(socket, err));
    socket.on('close', () => this.onSocketError(socket, undefined));
    this.connectTimer = setTimeout(() => {
      this.connectTimer = undefined;
      if (this.socket !== socket) return;
      this.lose(
        socket,
        new MemcachedConnectionError(
          `could not connect to memcached ${server.id} within ${settings.connectTimeout} ms (connectTimeout); is the server up and reachable?`,
          { server: server.id },
        ),
        true,
      );
    }, settings.connectTimeout);
  }

  private onConnected(socket: net.Socket): void {
    if (this.socket !== socket || this.state !== 'connecting') return;
    if (this.connectTimer !== undefined) {
      clearTimeout(this.connectTimer);
      this.connectTimer = undefined;
    }
    const auth = this.settings.auth;
    if (auth === undefined) {
      this.becomeReady();
      return;
    }
    this.state = 'authenticating';
    const request: Request = {
      kind: 'auth',
      command: 'auth',
      data: undefined,
      keys: undefined,
      cursor: 0,
      noreply: false,
      deadline: now() + this.settings.connectTimeout,
      resolve: () => {
        if (this.socket === socket && this.state === 'authenticating') this.becomeReady();
      },
      reject: (error) => {
        if (this.socket === socket) this.lose(socket, error, true);
      },
      settled: false,
      afterNoreply: false,
      items: undefined,
      stats: undefined,
      statCount: 0,
    };
    // The auth request goes first, alone; user requests wait until it succeeded.
    this.queue.splice(this.head, 0, request);
    this.unwritten = this.head + 1;
    this.arm(request.deadline);
    socket.write(encodeAuth(auth.username, auth.password));
  }

  private becomeReady(): void {
    this.state = 'ready';
    this.failures = 0;
    this.lastError = undefined;
    this.events.onReady?.(this);
    this.scheduleFlush();
  }

  private onSocketError(socket: net.Socket, err: Error | undefined): void {
    if (this.socket !== socket) return;
    const wasConnecting = this.state === 'connecting';
    const server = this.server.id;
    let error: MemcachedError;
    if (err === undefined) {
      error = new MemcachedConnectionError(
        wasConnecting
          ? `memcached ${server} closed the connection while connecting`
          : `connection to memcached ${server} was closed`,
        { server },
      );
    } else if (wasConnecting) {
      error = new MemcachedConnectionError(
        `could not connect to memcached ${server}: ${err.message}; is the server up${this.settings.tls ? ' and its TLS certificate trusted' : ''}?`,
        { server, cause: err },
      );
    } else {
      error = new MemcachedConnectionError(
        `connection to memcached ${server} failed: ${err.message}`,
        { server, cause: err },
      );
    }
    this.lose(socket, error, wasConnecting || this.state === 'authenticating');
  }

  /**
   * The socket is unusable: fail every pending request, destroy it, and hold back reconnects.
   * `connectFailure` grows the backoff; losing an established connection lets the next call
   * retry at once.
   */
  private lose(socket: net.Socket, error: MemcachedError, connectFailure: boolean): void {
    if (this.socket !== socket || this.state === 'closed') return;
    this.socket = undefined;
    socket.removeAllListeners('data');
    socket.destroy();
    if (this.connectTimer !== undefined) {
      clearTimeout(this.connectTimer);
      this.connectTimer = undefined;
    }
    this.state = 'down';
    this.lastError = error;
    if (connectFailure || error instanceof MemcachedAuthError) {
      this.failures++;
      const base =
        error instanceof MemcachedAuthError
          ? this.settings.backoffMax
          : Math.min(
              this.settings.backoffMax,
              this.settings.backoffMin * 2 ** Math.min(this.failures - 1, 20),
            );
      // Jitter (±20%) keeps many clients from reconnecting in lock step.
      this.nextAttemptAt = now() + base * (0.8 + Math.random() * 0.4);
    } else {
      this.nextAttemptAt = 0;
    }
    this.parser.reset();
    this.failAll(error);
    this.clearTimers();
    this.events.onDown?.(this, error);
  }

  private failAll(error: MemcachedError): void {
    const queue = this.queue;
    const head = this.head;
    this.queue = [];
    this.head = 0;
    this.unwritten = 0;
    this.noreplyWritten = false;
    for (let i = head; i < queue.length; i++) {
      const r = queue[i]!;
      if (!r.settled) {
        r.settled = true;
        r.reject(error);
      }
    }
    this.notifyDrained();
  }

  private clearTimers(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.timerAt = Infinity;
    if (this.connectTimer !== undefined) {
      clearTimeout(this.connectTimer);
      this.connectTimer = undefined;
    }
  }

  // ---------------------------------------------------------------------------------------
  // Writing

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    process.nextTick(() => this.flush());
  }

  /** Writes every unwritten request in one corked batch (one syscall per tick). */
  private flush(): void {
    this.flushScheduled = false;
    const socket = this.socket;
    if (socket === undefined || this.state !== 'ready') return;
    const queue = this.queue;
    let w = this.unwritten;
    if (w >= queue.length) return;
    const out: Buffer[] = [];
    let bytes = 0;
    for (let i = this.unwritten; i < queue.length; i++) {
      const r = queue[i]!;
      if (r.settled) continue; // timed out before it was sent: never sent at all
      const data = r.data!;
      r.data = undefined;
      if (Array.isArray(data)) {
        for (const chunk of data) {
          out.push(chunk);
          bytes += chunk.length;
        }
      } else {
        out.push(data);
        bytes += data.length;
      }
      if (r.noreply) {
        this.noreplyWritten = true;
        r.settled = true;
        r.resolve(true);
        continue;
      }
      r.afterNoreply = this.noreplyWritten;
      this.noreplyWritten = false;
      queue[w++] = r;
    }
    queue.length = w;
    this.unwritten = w;
    // One write per tick: small requests are joined into one buffer, large values go as they are.
    if (out.length === 0) return;
    if (out.length === 1) socket.write(out[0]!);
    else if (bytes <= 64 * 1024) socket.write(Buffer.concat(out, bytes));
    else {
      socket.cork();
      for (const chunk of out) socket.write(chunk);
      socket.uncork();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Reading

  private onData(socket: net.Socket, chunk: Buffer): void {
    if (this.socket !== socket) return;
    this.lastDataAt = now();
    try {
      this.parser.feed(chunk);
    } catch (err) {
      const error =
        err instanceof MemcachedError
          ? err
          : new MemcachedProtocolError(
              `failed to handle a reply from ${this.server.id}: ${String(err)}`,
              {
                server: this.server.id,
                cause: err,
              },
            );
      this.lose(socket, error, false);
    }
  }

  /** The request whose reply is being read (undefined when none was written). */
  private current(): Request | undefined {
    return this.head < this.unwritten ? this.queue[this.head] : undefined;
  }

  /** A reply arrived while no request waits for one: the stream cannot be trusted. */
  private unsolicited(what: string): MemcachedProtocolError {
    return new MemcachedProtocolError(
      `memcached ${this.server.id} sent ${what} but no request is waiting for a reply; the connection was reset`,
      { server: this.server.id },
    );
  }

  /**
   * A retrieval item. memcached answers the keys of a get in the order they were asked,
   * skipping misses, so the item must match a key at or after the cursor: anything else (a key
   * not asked for, out of order, or twice) means the stream cannot be trusted.
   */
  onValue(key: string, flags: number, data: Buffer, cas: string | undefined): void {
    const r = this.current();
    if (r === undefined) throw this.unsolicited(`VALUE ${key}`);
    if (r.kind !== 'retrieval') {
      throw unexpectedReply(`VALUE ${key}`, r.kind, r.command, this.server.id);
    }
    const keys = r.keys!;
    let i = r.cursor;
    while (i < keys.length && keys[i] !== key) i++;
    if (i === keys.length) {
      throw new MemcachedProtocolError(
        `memcached ${this.server.id} returned key "${key}" which was not asked for (or not in this order) in this ${r.command}; the connection was reset`,
        { server: this.server.id, command: r.command },
      );
    }
    r.cursor = i + 1;
    if (cas === undefined && (r.command === 'gets' || r.command === 'gats')) {
      throw unexpectedReply(`VALUE ${key} without a cas token`, r.kind, r.command, this.server.id);
    }
    const item: RetrievedItem = { key, flags, data, cas, index: i };
    if (r.items === undefined) r.items = [item];
    else r.items.push(item);
  }

  onStat(name: string, value: string): void {
    const r = this.current();
    if (r === undefined) throw this.unsolicited(`STAT ${name}`);
    if (r.kind !== 'stats') {
      throw unexpectedReply(`STAT ${name}`, r.kind, r.command, this.server.id);
    }
    const stats = (r.stats ??= {});
    if (++r.statCount > MAX_STAT_LINES) {
      throw new MemcachedProtocolError(
        `memcached ${this.server.id} sent more than ${MAX_STAT_LINES} STAT lines in reply to ${r.command}; the connection was reset`,
        { server: this.server.id, command: r.command },
      );
    }
    stats[name] = value;
  }

  onEnd(): void {
    const r = this.current();
    if (r === undefined) throw this.unsolicited('END');
    if (r.kind === 'retrieval') this.complete(r, r.items ?? []);
    else if (r.kind === 'stats') this.complete(r, r.stats ?? {});
    else throw unexpectedReply('END', r.kind, r.command, this.server.id);
  }

  onLine(line: string): void {
    const r = this.current();
    if (r === undefined) throw this.unsolicited(JSON.stringify(line.slice(0, 80)));
    if ((r.items !== undefined || r.stats !== undefined) && !line.startsWith('SERVER_ERROR')) {
      throw unexpectedReply(JSON.stringify(line.slice(0, 80)), r.kind, r.command, this.server.id);
    }
    const result = interpretLine(r.kind, line, r.command, this.server.id);
    if (result instanceof MemcachedError) {
      if (r.afterNoreply && r.kind !== 'auth') {
        // The error may belong to the noreply command written just before: we cannot know
        // whose it is, so trust nothing that follows.
        throw new MemcachedProtocolError(
          `memcached ${this.server.id} answered "${line.slice(0, 80)}" right after a noreply command; the reply cannot be attributed, so the connection was reset`,
          { server: this.server.id, command: r.command, cause: result },
        );
      }
      this.fail(r, result);
      return;
    }
    this.complete(r, result);
  }

  private complete(r: Request, value: unknown): void {
    this.pop();
    if (!r.settled) {
      r.settled = true;
      r.resolve(value);
    }
  }

  private fail(r: Request, error: MemcachedError): void {
    this.pop();
    if (!r.settled) {
      r.settled = true;
      r.reject(error);
    }
  }

  private pop(): void {
    const q = this.queue;
    q[this.head] = undefined as unknown as Request;
    this.head++;
    if (this.head === q.length) {
      q.length = 0;
      this.head = 0;
      this.unwritten = 0;
      this.notifyDrained();
    } else if (this.head >= 1024 && this.head * 2 >= q.length) {
      q.splice(0, this.head);
      this.unwritten -= this.head;
      this.head = 0;
    }
  }

  private notifyDrained(): void {
    if (this.closeWaiters.length > 0 && this.pending === 0) {
      const waiters = this.closeWaiters;
      this.closeWaiters = [];
      for (const w of waiters) w();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Deadlines: one timer per connection, set to the earliest pending deadline.

  private arm(deadline: number): void {
    if (deadline >= this.timerAt) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = deadline;
    this.timer = setTimeout(() => this.onTimer(), Math.max(0, deadline - now()) + 1);
  }

  private onTimer(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const t = now();
    let next = Infinity;
    const queue = this.queue;
    for (let i = this.head; i < queue.length; i++) {
      const r = queue[i]!;
      if (r.settled) continue;
      if (r.deadline <= t) {
        r.settled = true;
        if (r.kind === 'auth') {
          if (this.socket !== undefined) {
            this.lose(
              this.socket,
              new MemcachedAuthError(
                `memcached ${this.server.id} did not answer the authentication request within ${this.settings.connectTimeout} ms`,
                { server: this.server.id, command: 'auth' },
              ),
              true,
            );
          }
          return;
        }
        r.reject(
          new MemcachedTimeoutError(
            `memcached ${this.server.id} did not answer ${r.command} in time (timeout); the server may be overloaded or unreachable`,
            { server: this.server.id, command: r.command },
          ),
        );
      } else if (r.deadline < next) {
        next = r.deadline;
      }
    }
    // A connection whose oldest written request timed out and that has received nothing since is
    // stuck: reset it rather than queue more behind it.
    if (this.socket !== undefined && this.head < this.unwritten) {
      const oldest = queue[this.head]!;
      if (oldest.settled && this.lastDataAt < oldest.deadline) {
        const stalledFor = t - oldest.deadline;
        const limit = Math.max(1000, this.settings.connectTimeout);
        if (stalledFor >= limit) {
          this.lose(
            this.socket,
            new MemcachedConnectionError(
              `memcached ${this.server.id} stopped answering (nothing received for ${Math.round(stalledFor)} ms after a timeout); the connection was reset`,
              { server: this.server.id },
            ),
            false,
          );
          return;
        }
        next = Math.min(next, oldest.deadline + limit);
      }
    }
    if (next !== Infinity) this.arm(next);
    this.notifyDrained();
  }
}

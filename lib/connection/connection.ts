import type * as net from 'node:net';
import type * as tls from 'node:tls';
import {
  MemcachedAuthError,
  MemcachedBackpressureError,
  MemcachedConnectionError,
  MemcachedError,
  MemcachedProtocolError,
  MemcachedTimeoutError,
} from '../errors.js';
import type {
  DriverAuth,
  DriverSession,
  ProtocolDriver,
  SessionHost,
  SessionLimits,
} from '../protocol/driver.js';
import type { AnyRequest } from '../protocol/request.js';
import { DeadlineTimer } from './deadlines.js';
import { RequestQueue } from './request-queue.js';
import { openSocket, type ServerAddress } from './socket.js';

export type { ServerAddress } from './socket.js';

export interface ConnectionSettings {
  driver: ProtocolDriver;
  connectTimeout: number;
  /** The client's call timeout (ms): a timer this much late means the process stalled. */
  timeout: number;
  /** `true` or TLS options; undefined for plain TCP. */
  tls: tls.ConnectionOptions | undefined;
  auth: DriverAuth | undefined;
  keepAlive: boolean;
  limits: SessionLimits;
  /** Reconnect backoff while the server stays down (ms). */
  backoffMin: number;
  backoffMax: number;
  /** Requests allowed to wait on one connection; beyond it `enqueue` fails fast. */
  maxPending: number;
}

/** Connection life, for the pool and cluster above. */
export interface ConnectionEvents {
  /** Connected (and through the handshake), ready for requests. */
  onReady?(connection: Connection): void;
  /** The socket failed to connect or was lost: one failure event. */
  onDown?(connection: Connection, error: MemcachedError): void;
  /**
   * Requests timed out while the server sent nothing and this process was not stalled: one
   * failure event however many requests it rejected.
   */
  onTimeout?(connection: Connection, error: MemcachedTimeoutError): void;
  /** The server sent bytes: it is alive. */
  onData?(connection: Connection): void;
  /** An error reply to a noreply request (no caller waits for it). */
  onStray?(connection: Connection, error: MemcachedError): void;
}

type State = 'idle' | 'connecting' | 'handshake' | 'ready' | 'down' | 'closed';

const now = (): number => performance.now();

/** Writes up to this size are joined into one buffer; larger ones go out corked, uncopied. */
const JOIN_LIMIT = 64 * 1024;

/**
 * One socket to one memcached server and its queue. Requests are written in order, coalesced
 * into one write per tick, and their replies are matched in order by the protocol driver's
 * session. One timer serves every deadline; a timed-out request rejects alone and its late
 * reply is read and dropped. A lost socket fails every pending request at once; the next
 * request reconnects (with backoff while the server stays down). It knows no command.
 */
export class Connection implements SessionHost {
  readonly server: string;
  private state: State = 'idle';
  private socket: net.Socket | undefined;
  private readonly session: DriverSession;
  private readonly queue = new RequestQueue();
  private readonly deadlines: DeadlineTimer;
  private flushScheduled = false;
  /** Sequence number of the last noreply request queued here. */
  private noreplySeq = 0;
  /** Every noreply request up to this sequence number is known to be processed. */
  private fencedSeq = 0;
  private connectTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private nextAttemptAt = 0;
  private lastError: MemcachedError | undefined;
  private lastDataAt = 0;
  private closeWaiters: Array<() => void> = [];
  private readonly flushNow = (): void => this.flush();

  constructor(
    readonly address: ServerAddress,
    private readonly settings: ConnectionSettings,
    private readonly events: ConnectionEvents = {},
  ) {
    this.server = address.id;
    this.session = settings.driver.session(this, settings.limits, settings.auth);
    this.deadlines = new DeadlineTimer((t, lateBy) => this.checkDeadlines(t, lateBy));
  }

  /** Requests written or waiting to be written, not yet answered. */
  get pending(): number {
    return this.queue.pending;
  }

  /**
   * True while noreply requests sent here are not yet known to be processed: later requests of
   * the same client must follow them on this connection to keep their order.
   */
  get hasUnfencedWrites(): boolean {
    return this.noreplySeq > this.fencedSeq;
  }

  /** The sequence number of the last noreply request queued here. */
  get lastNoreply(): number {
    return this.noreplySeq;
  }

  /** Whether the noreply request numbered `seq` is known to be processed (or lost). */
  isFenced(seq: number): boolean {
    return seq <= this.fencedSeq;
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
   * Queues a request; it settles exactly once (synchronously, when refused at once). A noreply
   * request settles once written.
   */
  enqueue(request: AnyRequest): void {
    const refused = this.admit(request.command);
    if (refused !== undefined) {
      request.fail(refused);
      return;
    }
    if (this.queue.pending >= this.settings.maxPending) {
      request.fail(
        new MemcachedBackpressureError(
          `${this.queue.pending} requests are already waiting on a connection to memcached ${this.server} (maxPending.perConnection = ${this.settings.maxPending}); the server is stalled or slower than the request rate`,
          { server: this.server, command: request.command },
        ),
      );
      return;
    }
    if (request.noreply) this.noreplySeq++;
    this.queue.push(request);
    if (this.state === 'ready' && !this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(this.flushNow);
    }
  }

  /** Forgets the reconnect backoff: the next request connects at once (resetDeadServers). */
  resetBackoff(): void {
    this.nextAttemptAt = 0;
  }

  /**
   * Closes the connection. In-flight requests may finish within `graceMs`; whatever is still
   * pending then is rejected with MemcachedConnectionError. No timer or socket is left behind.
   */
  async close(graceMs = 0): Promise<void> {
    if (this.state === 'closed') return;
    const live =
      this.state === 'ready' || this.state === 'connecting' || this.state === 'handshake';
    if (graceMs > 0 && this.pending > 0 && live) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, graceMs);
        this.closeWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    if ((this.state as State) === 'closed') return;
    this.state = 'closed';
    this.fail(
      new MemcachedConnectionError(
        `the memcached client was closed before ${this.server} answered`,
        { server: this.server },
      ),
    );
    const socket = this.socket;
    this.socket = undefined;
    if (socket !== undefined) {
      socket.removeAllListeners('data');
      socket.destroy();
    }
  }

  // ---------------------------------------------------------------------------------------
  // SessionHost: the driver session reads replies through these.

  head(): AnyRequest | undefined {
    return this.queue.head();
  }

  shift(): void {
    this.queue.shift();
    if (this.closeWaiters.length > 0 && this.queue.pending === 0) this.notifyDrained();
  }

  stray(error: MemcachedError): void {
    this.events.onStray?.(this, error);
  }

  // ---------------------------------------------------------------------------------------
  // Connecting

  /** Decides whether a new request may be queued; starts connecting when needed. */
  private admit(command: string): MemcachedError | undefined {
    switch (this.state) {
      case 'ready':
      case 'connecting':
      case 'handshake':
        return undefined;
      case 'closed':
        return new MemcachedConnectionError(
          'the memcached client is closed; create a new client to send more commands',
          { server: this.server, command },
        );
      case 'down': {
        const wait = this.nextAttemptAt - now();
        if (wait > 0) return this.downError(wait, command);
        this.connect();
        return undefined;
      }
      case 'idle':
        this.connect();
        return undefined;
    }
  }

  private downError(waitMs: number, command: string): MemcachedError {
    const last = this.lastError;
    const detail = last === undefined ? '' : `: ${last.message}`;
    const message = `memcached ${this.server} is unavailable${detail} (next connection attempt in ${Math.ceil(waitMs)} ms)`;
    const Failure =
      last instanceof MemcachedAuthError ? MemcachedAuthError : MemcachedConnectionError;
    return new Failure(message, { server: this.server, command, cause: last });
  }

  private connect(): void {
    this.state = 'connecting';
    this.session.reset();
    const { address, settings } = this;
    const socket = openSocket(address, settings.tls, settings.keepAlive, () =>
      this.onConnected(socket),
    );
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => this.onData(socket, chunk));
    socket.on('error', (err: Error) => this.onSocketError(socket, err));
    socket.on('close', () => this.onSocketError(socket, undefined));
    this.connectTimer = setTimeout(() => {
      this.connectTimer = undefined;
      this.lose(
        socket,
        new MemcachedConnectionError(
          `could not connect to memcached ${address.id} within ${settings.connectTimeout} ms (connectTimeout); is the server up and reachable?`,
          { server: address.id },
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
    const steps = this.session.handshake(
      () => {
        if (this.socket === socket && this.state === 'handshake') this.becomeReady();
      },
      (error) => {
        if (this.socket === socket) this.lose(socket, error, true);
      },
    );
    if (steps.length === 0) {
      this.becomeReady();
      return;
    }
    // The handshake goes first and alone; user requests wait until it succeeded.
    this.state = 'handshake';
    const deadline = now() + this.settings.connectTimeout;
    const out: Buffer[] = [];
    for (const step of steps) {
      step.timeout = this.settings.connectTimeout;
      step.deadline = deadline;
      pushData(out, step);
      this.queue.pushWritten(step);
    }
    this.deadlines.arm(deadline);
    socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
  }

  private becomeReady(): void {
    this.state = 'ready';
    this.failures = 0;
    this.lastError = undefined;
    this.events.onReady?.(this);
    if (this.queue.hasUnwritten && !this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(this.flushNow);
    }
  }

  private onSocketError(socket: net.Socket, err: Error | undefined): void {
    if (this.socket !== socket) return;
    const wasConnecting = this.state === 'connecting';
    const server = this.server;
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
    this.lose(socket, error, wasConnecting || this.state === 'handshake');
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
    this.session.reset();
    if (error instanceof MemcachedProtocolError) {
      // The request being answered gets the protocol error; the others on this connection did
      // nothing wrong and fail as bystanders of a broken stream.
      this.queue.head()?.fail(error);
      this.fail(
        new MemcachedConnectionError(
          `the connection to memcached ${this.server} was reset: ${error.message}`,
          { server: this.server, cause: error },
        ),
      );
    } else {
      this.fail(error);
    }
    this.events.onDown?.(this, error);
  }

  /** Fails every pending request and clears every timer. */
  private fail(error: MemcachedError): void {
    if (this.connectTimer !== undefined) {
      clearTimeout(this.connectTimer);
      this.connectTimer = undefined;
    }
    this.deadlines.clear();
    // Whatever happened to the noreply writes on the lost socket, nothing can follow them now.
    this.fencedSeq = this.noreplySeq;
    this.queue.failAll(error);
    this.notifyDrained();
  }

  // ---------------------------------------------------------------------------------------
  // Writing

  /** Writes every unwritten request in one batch (one syscall per tick). */
  private flush(): void {
    this.flushScheduled = false;
    const socket = this.socket;
    if (socket === undefined || this.state !== 'ready' || !this.queue.hasUnwritten) return;
    const t = now();
    const out: Buffer[] = [];
    let earliest = Infinity;
    let seq = this.fencedSeq;
    this.queue.takeUnwritten(
      (r) => {
        pushData(out, r);
        if (r.noreply) {
          seq++;
          r.completeNoreply();
          return;
        }
        // The deadline runs from the write: time spent before it (a stall of this process,
        // connecting) is not the server's.
        r.deadline = t + r.timeout;
        if (r.deadline < earliest) earliest = r.deadline;
      },
      () => {
        const fence = this.session.fence();
        fence.covers = seq;
        fence.timeout = this.settings.timeout;
        fence.deadline = t + this.settings.timeout;
        const onFenced = (): void => {
          if (fence.covers > this.fencedSeq) this.fencedSeq = fence.covers;
        };
        fence.listener = { onSettled: onFenced };
        pushData(out, fence);
        return fence;
      },
    );
    if (earliest !== Infinity) this.deadlines.arm(earliest);
    if (out.length === 0) return;
    if (out.length === 1) {
      socket.write(out[0]!);
      return;
    }
    let bytes = 0;
    for (const chunk of out) bytes += chunk.length;
    if (bytes <= JOIN_LIMIT) socket.write(Buffer.concat(out, bytes));
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
    this.events.onData?.(this);
    try {
      this.session.feed(chunk);
    } catch (err) {
      const error =
        err instanceof MemcachedError
          ? err
          : new MemcachedProtocolError(
              `failed to handle a reply from ${this.server}: ${String(err)}`,
              { server: this.server, cause: err },
            );
      this.lose(socket, error, false);
    }
  }

  private notifyDrained(): void {
    if (this.closeWaiters.length > 0 && this.queue.pending === 0) {
      const waiters = this.closeWaiters;
      this.closeWaiters = [];
      for (const w of waiters) w();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Deadlines

  /** Runs after pending I/O was read: rejects what is still unanswered past its deadline. */
  private checkDeadlines(t: number, lateBy: number): void {
    let next = Infinity;
    let expired: MemcachedTimeoutError | undefined;
    let handshakeExpired = false;
    for (const r of this.queue.written()) {
      if (r.settled) continue;
      if (r.deadline > t) {
        if (r.deadline < next) next = r.deadline;
        continue;
      }
      if (this.state === 'handshake') {
        handshakeExpired = true;
        break;
      }
      if (r.op === 'fence') continue; // nobody waits for it; a stuck stream is caught below
      const error = new MemcachedTimeoutError(
        `memcached ${this.server} did not answer ${r.command} within ${r.timeout} ms (timeout); the server may be overloaded or unreachable`,
        { server: this.server, command: r.command },
      );
      expired ??= error;
      r.fail(error);
    }
    const socket = this.socket;
    if (handshakeExpired && socket !== undefined) {
      const auth = this.settings.auth !== undefined;
      this.lose(
        socket,
        auth
          ? new MemcachedAuthError(
              `memcached ${this.server} did not answer the authentication request within ${this.settings.connectTimeout} ms`,
              { server: this.server, command: 'auth' },
            )
          : new MemcachedConnectionError(
              `memcached ${this.server} did not answer the connection handshake within ${this.settings.connectTimeout} ms`,
              { server: this.server },
            ),
        true,
      );
      return;
    }
    // Only a silent server fails: not one that sent something within the timeout, and not a
    // timer that fired late because this process was blocked.
    const stalled = lateBy > Math.max(50, this.settings.timeout / 4);
    if (expired !== undefined && !stalled && t - this.lastDataAt >= this.settings.timeout) {
      this.events.onTimeout?.(this, expired);
    }
    // A connection whose oldest written request timed out and that has received nothing since
    // is stuck: reset it rather than queue more behind it.
    const oldest = this.queue.head();
    if (socket !== undefined && oldest !== undefined && oldest.deadline <= t) {
      const silentFor = t - Math.max(oldest.deadline, this.lastDataAt);
      const limit = Math.max(1000, this.settings.connectTimeout);
      if (this.lastDataAt < oldest.deadline && silentFor >= limit && !stalled) {
        this.lose(
          socket,
          new MemcachedConnectionError(
            `memcached ${this.server} stopped answering (nothing received for ${Math.round(silentFor)} ms after a timeout); the connection was reset`,
            { server: this.server },
          ),
          false,
        );
        return;
      }
      next = Math.min(next, Math.max(t + 1, Math.max(oldest.deadline, this.lastDataAt) + limit));
    }
    if (next !== Infinity) this.deadlines.arm(next);
    this.notifyDrained();
  }
}

function pushData(out: Buffer[], r: AnyRequest): void {
  const data = r.data!;
  r.data = undefined;
  if (Array.isArray(data)) for (const chunk of data) out.push(chunk);
  else out.push(data);
}

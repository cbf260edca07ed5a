import {
  Connection,
  type ConnectionEvents,
  type ConnectionSettings,
  type ServerAddress,
} from '../connection/connection.js';
import type { AnyRequest } from '../protocol/request.js';

/** Pinned keys are swept of fenced entries when their map grows past this size. */
const PIN_SWEEP_SIZE = 4096;

/**
 * Up to `size` connections to one server, opened lazily. A request goes to the connection with
 * the fewest pending requests; a new connection is opened only while every open one is busy.
 *
 * Noreply writes keep their order through key affinity: they all go to one connection (the
 * fencing one) while any of them is not yet fenced, and so does every later request that
 * touches one of their keys (or no key: `flush_all`). memcached processes a connection's
 * requests in order, so those requests see the writes; other keys spread over the pool as usual.
 */
export class Pool {
  private readonly connections: Connection[] = [];
  private next = 0;
  /** Set by close(): no new connection is opened after it. */
  private closing = false;
  /** The connection that carries unfenced noreply writes, if any. */
  private fencing: Connection | undefined;
  /** Wire key → sequence number of its last noreply write on the fencing connection. */
  private readonly pins = new Map<string, number>();

  constructor(
    readonly server: ServerAddress,
    /** Most connections this pool opens. */
    readonly size: number,
    private readonly settings: ConnectionSettings,
    private readonly events: ConnectionEvents = {},
  ) {}

  /** Sends a request on the right connection; it settles exactly once. */
  send(request: AnyRequest): void {
    const f = this.fencing;
    let conn: Connection | undefined;
    if (f !== undefined) {
      if (!f.hasUnfencedWrites) {
        this.fencing = undefined;
        this.pins.clear();
      } else if (request.noreply || this.touchesPinned(request.keys, f)) {
        conn = f;
      }
    }
    conn ??= this.acquire();
    conn.enqueue(request);
    if (request.noreply && !request.settled && conn.hasUnfencedWrites) {
      this.fencing = conn;
      const seq = conn.lastNoreply;
      for (const key of request.keys) this.pins.set(key, seq);
      if (this.pins.size > PIN_SWEEP_SIZE) {
        for (const [key, s] of this.pins) if (conn.isFenced(s)) this.pins.delete(key);
      }
    }
  }

  private touchesPinned(keys: readonly string[], f: Connection): boolean {
    if (keys.length === 0) return true;
    const pins = this.pins;
    for (let i = 0; i < keys.length; i++) {
      const seq = pins.get(keys[i]!);
      if (seq !== undefined && !f.isFenced(seq)) return true;
    }
    return false;
  }

  /** The connection for the next request that has no ordering constraint. */
  acquire(): Connection {
    const conns = this.connections;
    const n = conns.length;
    if (n === 0) return this.open();
    if (n === 1) {
      const only = conns[0]!;
      if (only.pending === 0 || n >= this.size || this.closing) {
        return only;
      }
      return this.open();
    }
    let best: Connection | undefined;
    let bestPending = Infinity;
    // Start at a rotating index so idle connections share the load.
    for (let k = 0; k < n; k++) {
      const c = conns[(this.next + k) % n]!;
      const p = c.pending;
      if (p < bestPending && !c.isBackingOff) {
        best = c;
        bestPending = p;
        if (p === 0) break;
      }
    }
    this.next = (this.next + 1) % n;
    if (best === undefined) return conns[0]!; // all backing off: fail fast through one of them
    if (bestPending > 0 && n < this.size && !this.closing) return this.open();
    return best;
  }

  /** Every open connection (for closing and inspection). */
  get all(): readonly Connection[] {
    return this.connections;
  }

  get pending(): number {
    let p = 0;
    for (const c of this.connections) p += c.pending;
    return p;
  }

  /** Lets connections that are backing off after failures try again with the next request. */
  resetBackoff(): void {
    for (const c of this.connections) c.resetBackoff();
  }

  async close(graceMs = 0): Promise<void> {
    this.closing = true;
    await Promise.all(this.connections.map((c) => c.close(graceMs)));
  }

  private open(): Connection {
    const c = new Connection(this.server, this.settings, this.events);
    this.connections.push(c);
    // Asked for a connection after close(): hand out a closed one, which rejects the request.
    if (this.closing) void c.close();
    return c;
  }
}

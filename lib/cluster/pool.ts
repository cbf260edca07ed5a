import {
  Connection,
  type ConnectionEvents,
  type ConnectionSettings,
  type ServerAddress,
} from '../connection/connection.js';

/**
 * Up to `size` connections to one server, opened lazily. A request goes to the connection with
 * the fewest pending requests; a new connection is opened only while every open one is busy.
 */
export class Pool {
  private readonly connections: Connection[] = [];
  private next = 0;
  /** Set by close(): no new connection is opened after it. */
  private closing = false;

  constructor(
    readonly server: ServerAddress,
    /** Most connections this pool opens. */
    readonly size: number,
    private readonly settings: ConnectionSettings,
    private readonly events: ConnectionEvents = {},
  ) {}

  /** The connection for the next request. */
  acquire(): Connection {
    const conns = this.connections;
    const n = conns.length;
    if (n === 0) return this.open();
    const canOpen = n < this.size && !this.closing;
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
    if (bestPending > 0 && canOpen) return this.open();
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

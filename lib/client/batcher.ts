import type { ServerNode } from '../cluster/cluster.js';
import type { MemcachedError } from '../errors.js';
import {
  commandChannel,
  commandContext,
  traceFailed,
  traceStart,
  traceSucceeded,
} from '../observability/command-trace.js';
import type { ProtocolDriver } from '../protocol/driver.js';
import { Request, type RetrievedItem } from '../protocol/request.js';

interface Waiter {
  wire: string;
  resolve: (item: RetrievedItem | undefined) => void;
  reject: (error: MemcachedError) => void;
}

/** Keys per multi-get request. */
const CHUNK = 100;

/** What a batch asks for: values, or values with their cas (tagged getOrSet reads). */
export type BatchOp = 'get' | 'gets';

/**
 * Auto-batching of single-key gets: the gets for one server issued in the same tick go out as
 * one multi-get request per pool connection (at most 100 keys each); each caller receives its
 * own item, miss or error. `gets` (with cas) are batched the same way, apart from the gets.
 */
export class GetBatcher {
  private batches = new Map<ServerNode, Waiter[]>();
  private casBatches = new Map<ServerNode, Waiter[]>();
  private scheduled = false;
  private readonly run = (): void => this.flush();

  constructor(
    private readonly driver: ProtocolDriver,
    private readonly dispatch: (node: ServerNode, request: Request<'retrieve'>) => void,
  ) {}

  /** Queues a get of `wire` on `node` for this tick's batch; calls back with its item or a miss. */
  get(
    node: ServerNode,
    wire: string,
    resolve: (item: RetrievedItem | undefined) => void,
    reject: (error: MemcachedError) => void,
    op: BatchOp = 'get',
  ): void {
    if (commandChannel.hasSubscribers) {
      this.getTraced(node, wire, resolve, reject, op);
      return;
    }
    this.queue(node, { wire, resolve, reject }, op);
  }

  /**
   * {@link get}, published on `memcached:command` (someone listens): one trace per get, from the
   * call to its own item, whichever multi-get carried it.
   */
  private getTraced(
    node: ServerNode,
    wire: string,
    resolve: (item: RetrievedItem | undefined) => void,
    reject: (error: MemcachedError) => void,
    op: BatchOp,
  ): void {
    const trace = commandContext(op, op, [wire], false, node.config, this.driver.protocol);
    traceStart(trace, () =>
      this.queue(
        node,
        {
          wire,
          resolve: (item) => traceSucceeded(trace, item === undefined ? 0 : 1, resolve, item),
          reject: (error) => traceFailed(trace, error, reject),
        },
        op,
      ),
    );
  }

  private queue(node: ServerNode, waiter: Waiter, op: BatchOp): void {
    const batches = op === 'get' ? this.batches : this.casBatches;
    const batch = batches.get(node);
    if (batch === undefined) batches.set(node, [waiter]);
    else batch.push(waiter);
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(this.run);
    }
  }

  /** Sends every batched get now (used before closing). */
  flush(): void {
    this.scheduled = false;
    if (this.batches.size > 0) {
      const batches = this.batches;
      this.batches = new Map();
      this.flushAll(batches, 'get');
    }
    if (this.casBatches.size > 0) {
      const batches = this.casBatches;
      this.casBatches = new Map();
      this.flushAll(batches, 'gets');
    }
  }

  private flushAll(batches: Map<ServerNode, Waiter[]>, op: BatchOp): void {
    for (const [node, waiters] of batches) {
      if (waiters.length === 1) {
        const w = waiters[0]!;
        this.send(node, op, [w.wire], (items) => w.resolve(items[0]), w.reject);
      } else {
        this.flushMany(node, op, waiters);
      }
    }
  }

  private send(
    node: ServerNode,
    op: BatchOp,
    keys: readonly string[],
    onItems: (items: RetrievedItem[]) => void,
    onError: (error: MemcachedError) => void,
  ): void {
    const spec = { op, keys } as const;
    this.dispatch(
      node,
      new Request<'retrieve'>(op, spec, this.driver.encode(spec), onItems, onError),
    );
  }

  private flushMany(node: ServerNode, op: BatchOp, waiters: Waiter[]): void {
    if (op === 'gets') {
      this.flushShared(node, waiters);
      return;
    }
    // Spread the batch over the pool's connections (and so over memcached's threads): one
    // multi-get per connection, at most CHUNK keys each. A key asked twice is simply sent twice:
    // memcached answers each occurrence, so each caller gets its own bytes.
    const n = waiters.length;
    const chunk = Math.min(CHUNK, Math.ceil(n / node.poolSize));
    for (let start = 0; start < n; start += chunk) {
      const mine = n <= chunk ? waiters : waiters.slice(start, start + chunk);
      this.send(
        node,
        op,
        mine.map((w) => w.wire),
        (items) => {
          // Items carry their position in the key list; the others are misses.
          let next = 0;
          for (const item of items) {
            while (next < item.index) mine[next++]!.resolve(undefined);
            mine[next++]!.resolve(item);
          }
          while (next < mine.length) mine[next++]!.resolve(undefined);
        },
        (error) => {
          for (const w of mine) w.reject(error);
        },
      );
    }
  }

  /**
   * A `gets` batch (the reads of tagged getOrSet calls: values and their tags' version keys):
   * each key once (every waiter for it gets a copy of its item), in as few
   * requests as possible (one up to CHUNK keys), since one call's keys are usually a handful.
   */
  private flushShared(node: ServerNode, waiters: Waiter[]): void {
    const byWire = new Map<string, Waiter[]>();
    for (const w of waiters) {
      const list = byWire.get(w.wire);
      if (list === undefined) byWire.set(w.wire, [w]);
      else list.push(w);
    }
    const groups = [...byWire.values()];
    const chunk =
      groups.length <= CHUNK ? CHUNK : Math.min(CHUNK, Math.ceil(groups.length / node.poolSize));
    for (let start = 0; start < groups.length; start += chunk) {
      const mine = groups.length <= chunk ? groups : groups.slice(start, start + chunk);
      this.send(
        node,
        'gets',
        mine.map((g) => g[0]!.wire),
        (items) => {
          let next = 0;
          const settle = (item: RetrievedItem | undefined): void => {
            const group = mine[next++]!;
            group[0]!.resolve(item);
            // The others get their own bytes (a version: a few bytes).
            for (let i = 1; i < group.length; i++) {
              group[i]!.resolve(
                item === undefined ? undefined : { ...item, data: Buffer.from(item.data) },
              );
            }
          };
          for (const item of items) {
            while (next < item.index) settle(undefined);
            settle(item);
          }
          while (next < mine.length) settle(undefined);
        },
        (error) => {
          for (const g of mine) for (const w of g) w.reject(error);
        },
      );
    }
  }
}

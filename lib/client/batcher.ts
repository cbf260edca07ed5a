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

/**
 * Auto-batching of single-key gets: the gets for one server issued in the same tick go out as
 * one multi-get request per pool connection (at most 100 keys each); each caller receives its
 * own item, miss or error.
 */
export class GetBatcher {
  private batches = new Map<ServerNode, Waiter[]>();
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
  ): void {
    if (commandChannel.hasSubscribers) {
      this.getTraced(node, wire, resolve, reject);
      return;
    }
    this.queue(node, { wire, resolve, reject });
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
  ): void {
    const trace = commandContext('get', 'get', [wire], false, node.config, this.driver.protocol);
    traceStart(trace, () =>
      this.queue(node, {
        wire,
        resolve: (item) => traceSucceeded(trace, item === undefined ? 0 : 1, resolve, item),
        reject: (error) => traceFailed(trace, error, reject),
      }),
    );
  }

  private queue(node: ServerNode, waiter: Waiter): void {
    const batch = this.batches.get(node);
    if (batch === undefined) this.batches.set(node, [waiter]);
    else batch.push(waiter);
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(this.run);
    }
  }

  /** Sends every batched get now (used before closing). */
  flush(): void {
    this.scheduled = false;
    const batches = this.batches;
    if (batches.size === 0) return;
    this.batches = new Map();
    for (const [node, waiters] of batches) {
      if (waiters.length === 1) {
        const w = waiters[0]!;
        this.send(node, [w.wire], (items) => w.resolve(items[0]), w.reject);
      } else {
        this.flushMany(node, waiters);
      }
    }
  }

  private send(
    node: ServerNode,
    keys: readonly string[],
    onItems: (items: RetrievedItem[]) => void,
    onError: (error: MemcachedError) => void,
  ): void {
    const spec = { op: 'get', keys } as const;
    this.dispatch(
      node,
      new Request<'retrieve'>('get', spec, this.driver.encode(spec), onItems, onError),
    );
  }

  private flushMany(node: ServerNode, waiters: Waiter[]): void {
    // Spread the batch over the pool's connections (and so over memcached's threads): one
    // multi-get per connection, at most CHUNK keys each. A key asked twice is simply sent twice:
    // memcached answers each occurrence, so each caller gets its own bytes.
    const n = waiters.length;
    const chunk = Math.min(CHUNK, Math.ceil(n / node.poolSize));
    for (let start = 0; start < n; start += chunk) {
      const mine = n <= chunk ? waiters : waiters.slice(start, start + chunk);
      this.send(
        node,
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
}

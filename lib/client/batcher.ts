import type { ServerNode } from '../cluster/cluster.js';
import { encodeRetrieval } from '../protocol/encoder.js';
import type { RetrievedItem } from '../protocol/replies.js';

/** Sends one retrieval request to a node; resolves the items of the reply. */
export type RetrievalSender = (
  node: ServerNode,
  command: 'get',
  data: Buffer,
  keys: readonly string[],
) => Promise<RetrievedItem[]>;

interface Waiter {
  wire: string;
  resolve: (item: RetrievedItem | undefined) => void;
  reject: (error: unknown) => void;
}

/** Keys per multi-get request line. */
const CHUNK = 100;

/**
 * Auto-batching of single-key gets: the gets for one server issued in the same tick go out as
 * one `get k1 k2 …` request per pool connection (at most 100 keys each); each caller receives its
 * own item, miss or error. A key asked twice is sent once; the second caller gets its own copy
 * of the bytes.
 */
export class GetBatcher {
  private batches = new Map<ServerNode, Waiter[]>();
  private scheduled = false;
  private readonly run = (): void => this.flush();

  constructor(private readonly send: RetrievalSender) {}

  get(node: ServerNode, wire: string): Promise<RetrievedItem | undefined> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { wire, resolve, reject };
      const batch = this.batches.get(node);
      if (batch === undefined) this.batches.set(node, [waiter]);
      else batch.push(waiter);
      if (!this.scheduled) {
        this.scheduled = true;
        process.nextTick(this.run);
      }
    });
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
        const keys = [w.wire];
        this.send(node, 'get', encodeRetrieval('get', keys), keys).then(
          (items) => w.resolve(items[0]),
          w.reject,
        );
      } else {
        this.flushMany(node, waiters);
      }
    }
  }

  private flushMany(node: ServerNode, waiters: Waiter[]): void {
    const unique = [...new Set(waiters.map((w) => w.wire))];
    // Spread the batch over the pool's connections (and so over memcached's threads): one
    // multi-get per connection, at most CHUNK keys each.
    const chunk = Math.min(CHUNK, Math.ceil(unique.length / node.pool.size));
    for (let i = 0; i < unique.length; i += chunk) {
      const keys = unique.length <= chunk ? unique : unique.slice(i, i + chunk);
      const mine = keys.length === unique.length ? waiters : waitersFor(waiters, keys);
      this.send(node, 'get', encodeRetrieval('get', keys), keys).then(
        (items) => {
          const byKey = new Map<string, RetrievedItem>();
          for (const item of items) byKey.set(item.key, item);
          const duplicates = unique.length < waiters.length;
          const delivered = duplicates ? new Set<string>() : undefined;
          for (const w of mine) {
            const item = byKey.get(w.wire);
            if (item === undefined || delivered === undefined) {
              w.resolve(item);
            } else if (!delivered.has(w.wire)) {
              delivered.add(w.wire);
              w.resolve(item);
            } else {
              // Same key asked twice: each caller gets its own bytes.
              w.resolve({ ...item, data: Buffer.from(item.data) });
            }
          }
        },
        (error: unknown) => {
          for (const w of mine) w.reject(error);
        },
      );
    }
  }
}

function waitersFor(waiters: readonly Waiter[], keys: readonly string[]): Waiter[] {
  const set = new Set(keys);
  return waiters.filter((w) => set.has(w.wire));
}

import type { ServerNode } from '../cluster/cluster.js';
import type { RetrievedItem } from '../protocol/request.js';
import type { ValueCodec } from './codec.js';
import type { Dispatcher, ServerFailure } from './dispatcher.js';

/** Keys per retrieval request; larger multi-gets are pipelined in several requests. */
export const MULTI_GET_CHUNK = 100;

/**
 * A multi-key retrieval: the keys grouped by server, one pipelined batch per server (chunks of
 * MULTI_GET_CHUNK keys), servers in parallel; the hits decoded into a Map (waiting for values
 * that decompress off-thread). Every promise it makes is awaited, whatever fails: a failed
 * server and a value that cannot be decoded never leave a rejection unhandled. A key listed
 * twice is asked twice; the Map keeps one entry.
 */
export async function retrieveMany<V>(
  dispatcher: Dispatcher,
  codec: ValueCodec,
  op: 'get' | 'gets',
  method: string,
  keys: readonly string[],
  wires: readonly string[],
  wrap: (value: unknown, item: RetrievedItem) => V,
): Promise<Map<string, V>> {
  const out = new Map<string, V>();
  if (keys.length === 0) return out;
  // Wire keys grouped by server; `users` holds the user key for each wire key.
  const groups = new Map<ServerNode, { wires: string[]; users: string[] }>();
  for (let i = 0; i < keys.length; i++) {
    const node = dispatcher.cluster.nodeFor(keys[i]!);
    const group = groups.get(node);
    if (group === undefined) groups.set(node, { wires: [wires[i]!], users: [keys[i]!] });
    else {
      group.wires.push(wires[i]!);
      group.users.push(keys[i]!);
    }
  }
  const fromServer = async (node: ServerNode, wires: string[], users: string[]): Promise<void> => {
    const requests: Array<Promise<RetrievedItem[]>> = [];
    for (let i = 0; i < wires.length; i += MULTI_GET_CHUNK) {
      const chunk = wires.length <= MULTI_GET_CHUNK ? wires : wires.slice(i, i + MULTI_GET_CHUNK);
      requests.push(dispatcher.send(node, method, { op, keys: chunk }, (items) => items));
    }
    const replies = await Promise.all(requests);
    let error: unknown;
    const waits: Array<Promise<void>> = [];
    for (let r = 0; r < replies.length; r++) {
      const base = r * MULTI_GET_CHUNK;
      for (const item of replies[r]!) {
        const key = users[base + item.index]!;
        try {
          const value = codec.decode(key, item, method);
          if (value instanceof Promise) {
            waits.push(value.then((v: unknown) => void out.set(key, wrap(v, item))));
          } else {
            out.set(key, wrap(value, item));
          }
        } catch (err) {
          error ??= err;
        }
      }
    }
    for (const s of await Promise.allSettled(waits)) {
      if (s.status === 'rejected') error ??= s.reason;
    }
    if (error !== undefined) throw error;
  };
  const nodes = [...groups];
  const settled = await Promise.allSettled(
    nodes.map(([node, { wires, users }]) => fromServer(node, wires, users)),
  );
  const failures: ServerFailure[] = [];
  settled.forEach((s, i) => {
    if (s.status === 'rejected') failures.push([nodes[i]![0], s.reason]);
  });
  dispatcher.settleFailures(method, failures);
  return out;
}

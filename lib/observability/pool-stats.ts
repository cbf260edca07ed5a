import type { ServerNode } from '../cluster/cluster.js';

/** One server's pool and failover state, as returned by `client.poolStats()`. */
export interface ServerPoolStats {
  /** Connections open and ready (connected, handshake done). */
  connections: number;
  /** The most connections the pool opens (`poolSize`). */
  maxConnections: number;
  /** Requests written or waiting to be written on this server's connections, not yet answered. */
  pending: number;
  /** Consecutive failure events (failed connects, lost connections, silent timeouts). */
  failures: number;
  /** The client marked the server dead: with failover its keys go to the other servers. */
  dead: boolean;
  /** While dead: when the client marked it dead. */
  deadSince?: Date;
  /** While dead or failing: the message of the last failure. */
  lastError?: string;
}

/** The stats of one node. */
export function serverPoolStats(node: ServerNode): ServerPoolStats {
  let connections = 0;
  for (const c of node.pool.all) if (c.isReady) connections++;
  const stats: ServerPoolStats = {
    connections,
    maxConnections: node.poolSize,
    pending: node.pool.pending,
    failures: node.failures,
    dead: node.dead,
  };
  if (node.dead && node.deadSince !== undefined) stats.deadSince = new Date(node.deadSince);
  if (node.lastError !== undefined && (node.dead || node.failures > 0)) {
    stats.lastError = node.lastError.message;
  }
  return stats;
}

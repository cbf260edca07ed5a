import type { ConnectionSettings } from '../connection/connection.js';
import {
  MemcachedAuthError,
  MemcachedConnectionError,
  MemcachedError,
  MemcachedProtocolError,
  MemcachedTimeoutError,
} from '../errors.js';
import { encodeVersion } from '../protocol/encoder.js';
import { createDistributor, type Distributor, type HashingScheme } from './hashing/index.js';
import { Pool } from './pool.js';
import type { ServerConfig } from './servers.js';

export interface FailoverSettings {
  /** Route a dead server's keys to the others (true) or fail its calls fast (false). */
  enabled: boolean;
  failureThreshold: number;
  deadTimeout: number;
  retryTimeout: number;
}

export interface ClusterEvents {
  serverDown?(server: string, error: MemcachedError): void;
  serverUp?(server: string): void;
}

/** One server of the cluster: its pool and health. */
export class ServerNode {
  readonly id: string;
  readonly pool: Pool;
  /** Consecutive failures (connection errors, timeouts). */
  failures = 0;
  /** While dead: the time (performance clock, ms) of the next probe. */
  nextProbeAt = 0;
  dead = false;
  probing = false;
  lastError: MemcachedError | undefined;

  constructor(
    readonly config: ServerConfig,
    readonly index: number,
    poolSize: number,
    settings: ConnectionSettings,
    onDown: (node: ServerNode, error: MemcachedError) => void,
  ) {
    this.id = config.id;
    this.pool = new Pool(config, poolSize, settings, {
      onDown: (_connection, error) => onDown(this, error),
    });
  }
}

const now = (): number => performance.now();

/** Entries of the key → server cache (cleared, not evicted one by one, when full). */
const PLACEMENT_CACHE_SIZE = 10_000;

/** Whether an error says the server (not the request) is in trouble. */
export function isServerFailure(error: unknown): boolean {
  return (
    error instanceof MemcachedConnectionError ||
    error instanceof MemcachedTimeoutError ||
    error instanceof MemcachedProtocolError
  );
}

/**
 * The servers, the key → server placement, and dead-server tracking. A server that fails
 * `failureThreshold` times in a row is dead for `deadTimeout`: with failover its keys go to the
 * live servers (no other key moves), without it its calls fail fast. Then it is probed with
 * `version` (every `retryTimeout` until it answers) and rejoins.
 */
export class Cluster {
  readonly nodes: ServerNode[];
  private readonly distributor: Distributor | undefined;
  private readonly alive = (i: number): boolean => !this.nodes[i]!.dead;
  private deadCount = 0;
  /** Recent key → node placements; cleared whenever the set of live servers changes. */
  private readonly placement = new Map<string, ServerNode>();
  private closed = false;

  constructor(
    servers: readonly ServerConfig[],
    hashing: HashingScheme,
    poolSize: number,
    settings: ConnectionSettings,
    private readonly failover: FailoverSettings,
    private readonly events: ClusterEvents = {},
  ) {
    const onDown = (node: ServerNode, error: MemcachedError): void => this.failed(node, error);
    this.nodes = servers.map((s, i) => new ServerNode(s, i, poolSize, settings, onDown));
    this.distributor =
      servers.length > 1
        ? createDistributor(
            hashing,
            servers.map((s) => ({ id: s.id, host: s.host, port: s.port, weight: s.weight })),
          )
        : undefined;
  }

  /**
   * The server for a key (without prefix). With failover, dead servers are skipped (throws
   * MemcachedConnectionError when none is alive); without it, the key's server even when dead
   * (see {@link checkUsable}).
   */
  nodeFor(key: string): ServerNode {
    if (this.deadCount > 0) this.probeDue();
    const d = this.distributor;
    if (d === undefined) return this.nodes[0]!;
    const cached = this.placement.get(key);
    if (cached !== undefined) return cached;
    let node: ServerNode;
    if (this.deadCount === 0 || !this.failover.enabled) node = this.nodes[d.pick(key)]!;
    else {
      const i = d.pick(key, this.alive);
      if (i === -1) throw this.noLiveServer();
      node = this.nodes[i]!;
    }
    if (this.placement.size >= PLACEMENT_CACHE_SIZE) this.placement.clear();
    this.placement.set(key, node);
    return node;
  }

  /** Every node, dead or alive (stats, version, flushAll go to all). */
  get all(): readonly ServerNode[] {
    return this.nodes;
  }

  /**
   * Records the outcome of a call on a node. A reply (even an error reply) proves the server
   * alive; a timeout counts as a failure. Connection failures are counted once per event (a
   * failed connect, a lost socket) by the pool, not once per call they rejected.
   */
  record(node: ServerNode, error: unknown): void {
    if (error === undefined || !isServerFailure(error)) {
      if (node.failures !== 0 && !node.dead) node.failures = 0;
      return;
    }
    if (error instanceof MemcachedTimeoutError) this.failed(node, error);
  }

  private failed(node: ServerNode, error: MemcachedError): void {
    if (this.closed) return;
    node.lastError = error;
    node.failures++;
    if (!node.dead && node.failures >= this.failover.failureThreshold) {
      this.markDead(node, error);
    }
  }

  async close(graceMs = 0): Promise<void> {
    this.closed = true;
    await Promise.all(this.nodes.map((n) => n.pool.close(graceMs)));
  }

  /**
   * Throws MemcachedConnectionError when `node` is dead (its calls fail fast: with failover off,
   * or when it is the only server).
   */
  checkUsable(node: ServerNode): void {
    if (node.dead) {
      const wait = Math.max(0, Math.ceil(node.nextProbeAt - now()));
      // Keep the class of the failure that killed it (an auth failure stays an auth failure).
      const Failure =
        node.lastError instanceof MemcachedAuthError
          ? MemcachedAuthError
          : MemcachedConnectionError;
      throw new Failure(
        `memcached ${node.id} is marked dead after ${this.failover.failureThreshold} consecutive failures (last: ${node.lastError?.message ?? 'unknown'}); it will be probed again in ${wait} ms${this.failover.enabled ? '' : ' (failover is off, so its keys are not moved)'}`,
        { server: node.id, cause: node.lastError },
      );
    }
  }

  private noLiveServer(): MemcachedConnectionError {
    return new MemcachedConnectionError(
      `no live memcached server: all ${this.nodes.length} are marked dead (${this.nodes.map((n) => n.id).join(', ')}); they are probed every ${this.failover.retryTimeout} ms`,
    );
  }

  private markDead(node: ServerNode, error: MemcachedError): void {
    node.dead = true;
    node.nextProbeAt = now() + this.failover.deadTimeout;
    this.deadCount++;
    this.placement.clear();
    this.events.serverDown?.(node.id, error);
  }

  private markAlive(node: ServerNode): void {
    if (!node.dead) return;
    node.dead = false;
    node.failures = 0;
    node.lastError = undefined;
    this.deadCount--;
    this.placement.clear();
    this.events.serverUp?.(node.id);
  }

  /** Starts a `version` probe of every dead node whose time has come (no timers: driven by traffic). */
  private probeDue(): void {
    const t = now();
    for (const node of this.nodes) {
      if (!node.dead || node.probing || t < node.nextProbeAt || this.closed) continue;
      node.probing = true;
      node.pool
        .acquire()
        .send('version', 'version', encodeVersion(), Math.max(this.failover.retryTimeout, 100))
        .then(
          () => {
            node.probing = false;
            if (!this.closed) this.markAlive(node);
          },
          (err: unknown) => {
            node.probing = false;
            node.lastError = err instanceof MemcachedError ? err : node.lastError;
            node.nextProbeAt = now() + this.failover.retryTimeout;
          },
        );
    }
  }
}

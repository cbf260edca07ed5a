import type { Connection, ConnectionEvents, ConnectionSettings } from '../connection/connection.js';
import {
  MemcachedAuthError,
  MemcachedBackpressureError,
  MemcachedConnectionError,
  MemcachedError,
  MemcachedKeyError,
  MemcachedOptionsError,
} from '../errors.js';
import { publishServerDown, publishServerUp } from '../observability/events.js';
import { Request, type AnyRequest, type RequestListener } from '../protocol/request.js';
import { createDistributor, type Distributor, type HashingScheme } from './hashing/index.js';
import { Pool } from './pool.js';
import { resolveServers, type ServerConfig, type ServerSpec } from './servers.js';

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
  /** An error reply to a noreply request: no call failed for it. */
  noreplyError?(server: string, error: MemcachedError): void;
}

/** One server of the cluster: its pool and health. */
export class ServerNode {
  readonly id: string;
  readonly pool: Pool;
  /** Most connections to this server. */
  readonly poolSize: number;
  /** Consecutive failure events (failed connects, lost connections, silent timeouts). */
  failures = 0;
  /** While dead: the time (performance clock, ms) of the next probe. */
  nextProbeAt = 0;
  dead = false;
  /** While dead: when it was marked dead (epoch ms). */
  deadSince: number | undefined = undefined;
  probing = false;
  /** Taken out of the server list by setServers: no call is sent to it any more. */
  removed = false;
  lastError: MemcachedError | undefined;

  constructor(
    /** Its address and weight (the weight may change with setServers). */
    public config: ServerConfig,
    poolSize: number,
    settings: ConnectionSettings,
    events: ConnectionEvents,
  ) {
    this.id = config.id;
    this.poolSize = poolSize;
    this.pool = new Pool(config, poolSize, settings, events);
  }
}

const now = (): number => performance.now();

/** Entries of the key → server cache (cleared, not evicted one by one, when full). */
const PLACEMENT_CACHE_SIZE = 10_000;

/** Settings of a cluster besides its servers. */
export interface ClusterSettings {
  hashing: HashingScheme;
  poolSize: number;
  connection: ConnectionSettings;
  failover: FailoverSettings;
  /** Calls waiting for replies across every server; beyond it calls fail fast. */
  maxPending: number;
  /** Reply timeout of calls, ms. */
  timeout: number;
  /** The string that places a key (the `routeBy` option); the key itself when undefined. */
  routeBy?: ((key: string) => string) | undefined;
}

/** One server's answer to a ping. */
export interface NodePing {
  ok: boolean;
  latencyMs: number;
  error?: MemcachedError;
}

/**
 * The servers, the key → server placement, dead-server tracking, and dispatch: every request
 * goes out through {@link dispatch}, which refuses it when its server is dead or too many calls
 * are waiting, and otherwise hands it to a pooled connection. A server that fails
 * `failureThreshold` times in a row (failure events: failed connects, lost connections, silent
 * timeouts — never a stall of this process) is dead for `deadTimeout`: with failover its keys go
 * to the live servers (no other key moves), without it its calls fail fast. Then it is probed
 * with `version` (every `retryTimeout` until it answers) and rejoins.
 */
export class Cluster implements RequestListener {
  private nodes: ServerNode[];
  private distributor: Distributor | undefined;
  /** Removed by setServers and still closing (close() waits for them too). */
  private readonly leaving = new Set<ServerNode>();
  private readonly alive = (i: number): boolean => !this.nodes[i]!.dead;
  private deadCount = 0;
  /** Recent key → node placements; cleared whenever the set of live servers changes. */
  private readonly placement = new Map<string, ServerNode>();
  private closed = false;
  /** Calls waiting for a reply, across every server. */
  private inFlight = 0;
  private readonly failover: FailoverSettings;

  constructor(
    servers: readonly ServerConfig[],
    private readonly settings: ClusterSettings,
    private readonly events: ClusterEvents = {},
  ) {
    this.failover = settings.failover;
    this.nodes = servers.map((s) => this.createNode(s));
    this.distributor = this.distribute(this.nodes);
  }

  private createNode(config: ServerConfig): ServerNode {
    const events = this.connectionEvents(() => node);
    const node: ServerNode = new ServerNode(
      config,
      this.settings.poolSize,
      this.settings.connection,
      events,
    );
    return node;
  }

  private distribute(nodes: readonly ServerNode[]): Distributor | undefined {
    if (nodes.length < 2) return undefined;
    return createDistributor(
      this.settings.hashing,
      nodes.map(({ config: s }) => ({ id: s.id, host: s.host, port: s.port, weight: s.weight })),
    );
  }

  /** Every node, dead or alive (stats, version, flushAll go to all). */
  get all(): readonly ServerNode[] {
    return this.nodes;
  }

  /**
   * The server for a key (without prefix). With failover, dead servers are skipped (throws
   * MemcachedConnectionError when none is alive); without it, the key's server even when dead
   * (its calls then fail fast in {@link dispatch}).
   */
  nodeFor(key: string): ServerNode {
    if (this.deadCount > 0) this.probeDue();
    if (this.settings.routeBy !== undefined) key = this.route(key);
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

  /**
   * Sends a request to `node`. It settles exactly once — synchronously with an error when it is
   * refused at once (dead server, backpressure, closed).
   */
  dispatch(node: ServerNode, request: AnyRequest): void {
    if (node.removed) {
      request.fail(
        new MemcachedConnectionError(
          `memcached ${node.id} was removed from the server list (setServers) before ${request.command} was sent; call again`,
          { server: node.id, command: request.command },
        ),
      );
      return;
    }
    if (node.dead) {
      request.fail(this.deadError(node));
      return;
    }
    if (this.inFlight >= this.settings.maxPending) {
      request.fail(
        new MemcachedBackpressureError(
          `${this.inFlight} calls are already waiting for memcached replies (maxPending = ${this.settings.maxPending}); a server is stalled or slower than the request rate`,
          { server: node.id, command: request.command },
        ),
      );
      return;
    }
    this.inFlight++;
    request.listener = this;
    request.timeout = this.settings.timeout;
    node.pool.send(request);
  }

  /** RequestListener: a dispatched request settled. */
  onSettled(): void {
    this.inFlight--;
  }

  /**
   * Asks every server for its version (bypassing failover state) and reports per server whether
   * it answered and how fast. Never rejects.
   */
  async ping(timeout: number): Promise<Record<string, NodePing>> {
    const out: Record<string, NodePing> = {};
    await Promise.all(
      this.nodes.map(async (node) => {
        const started = performance.now();
        try {
          await this.version(node, timeout, 'ping');
          out[node.id] = { ok: true, latencyMs: performance.now() - started };
        } catch (err) {
          const error =
            err instanceof MemcachedError
              ? err
              : new MemcachedError(String(err), { server: node.id, command: 'version' });
          out[node.id] = { ok: false, latencyMs: performance.now() - started, error };
        }
      }),
    );
    return out;
  }

  async close(graceMs = 0): Promise<void> {
    this.closed = true;
    await Promise.all([...this.nodes, ...this.leaving].map((n) => n.pool.close(graceMs)));
  }

  // ---------------------------------------------------------------------------------------
  // Run-time changes of the server list (setServers, resetDeadServers)

  /**
   * Replaces the server list. Servers in both lists keep their node (pool, health); with ketama
   * or rendezvous only the keys of removed or added servers move. Removed servers get no new
   * call; their calls in flight settle normally (up to the call timeout), then their
   * connections close — the promise resolves then. A bad list throws MemcachedOptionsError and
   * changes nothing.
   */
  async setServers(servers: string | readonly ServerSpec[]): Promise<void> {
    if (this.closed) {
      throw new MemcachedConnectionError('setServers: the memcached client is closed', {
        command: 'setServers',
      });
    }
    if (servers === undefined || servers === null) {
      throw new MemcachedOptionsError('servers', 'setServers needs a server list');
    }
    const configs = resolveServers(servers, undefined, {});
    const old = new Map(this.nodes.map((n) => [n.id, n]));
    const nodes = configs.map((config) => {
      const kept = old.get(config.id);
      if (kept === undefined) return this.createNode(config);
      old.delete(config.id);
      kept.config = config;
      return kept;
    });
    const distributor = this.distribute(nodes);
    this.nodes = nodes;
    this.distributor = distributor;
    this.deadCount = nodes.filter((n) => n.dead).length;
    this.placement.clear();
    const removed = [...old.values()];
    for (const node of removed) {
      node.removed = true;
      this.leaving.add(node);
    }
    await Promise.all(
      removed.map(async (node) => {
        // Calls already sent there settle within their timeout; then its sockets close.
        await node.pool.close(this.settings.timeout + 100);
        this.leaving.delete(node);
      }),
    );
  }

  /**
   * Forgets every dead mark at once: dead servers rejoin the ring without waiting for a probe,
   * and their connections may reconnect at once.
   */
  resetDeadServers(): void {
    for (const node of this.nodes) {
      node.failures = 0;
      node.pool.resetBackoff();
      if (!node.dead) continue;
      node.dead = false;
      node.lastError = undefined;
      node.nextProbeAt = 0;
      this.events.serverUp?.(node.id);
    }
    this.deadCount = 0;
    this.placement.clear();
  }

  /** The placement string of a key: `routeBy(key)`, checked. */
  private route(key: string): string {
    let route: unknown;
    try {
      route = this.settings.routeBy!(key);
    } catch (err) {
      throw new MemcachedKeyError(
        `routeBy threw for key ${JSON.stringify(key.slice(0, 60))}: ${err instanceof Error ? err.message : String(err)}`,
        key,
        { cause: err },
      );
    }
    if (typeof route !== 'string') {
      throw new MemcachedKeyError(
        `routeBy must return a string (the placement of the key), but returned ${route === null ? 'null' : typeof route} for key ${JSON.stringify(key.slice(0, 60))}; nothing was sent`,
        key,
      );
    }
    return route;
  }

  /** `version` sent straight to a node's pool, whatever its state (pings and probes). */
  private version(node: ServerNode, timeout: number, command: string): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      if (this.closed) {
        reject(
          new MemcachedConnectionError('the memcached client is closed', {
            server: node.id,
            command,
          }),
        );
        return;
      }
      const spec = { op: 'version' } as const;
      const request = new Request<'version'>(
        command,
        spec,
        this.settings.connection.driver.encode(spec),
        resolve,
        reject,
      );
      request.timeout = timeout;
      node.pool.send(request);
    });
  }

  private connectionEvents(node: () => ServerNode): ConnectionEvents {
    return {
      onDown: (_c: Connection, error) => this.failed(node(), error),
      onTimeout: (_c: Connection, error) => this.failed(node(), error),
      onData: () => {
        const n = node();
        if (n.failures !== 0 && !n.dead) n.failures = 0;
      },
      onStray: (_c: Connection, error) => this.events.noreplyError?.(node().id, error),
    };
  }

  private failed(node: ServerNode, error: MemcachedError): void {
    if (this.closed || node.removed) return;
    node.lastError = error;
    node.failures++;
    if (!node.dead && node.failures >= this.failover.failureThreshold) {
      this.markDead(node, error);
    }
  }

  /**
   * The error for a call to a dead node: its calls fail fast (with failover off, when it is the
   * only server, or for commands sent to every server).
   */
  private deadError(node: ServerNode): MemcachedError {
    const wait = Math.max(0, Math.ceil(node.nextProbeAt - now()));
    // Keep the class of the failure that killed it (an auth failure stays an auth failure).
    const Failure =
      node.lastError instanceof MemcachedAuthError ? MemcachedAuthError : MemcachedConnectionError;
    return new Failure(
      `memcached ${node.id} is marked dead after ${this.failover.failureThreshold} consecutive failures (last: ${node.lastError?.message ?? 'unknown'}); it will be probed again in ${wait} ms${this.failover.enabled ? '' : ' (failover is off, so its keys are not moved)'}`,
      { server: node.id, cause: node.lastError },
    );
  }

  private noLiveServer(): MemcachedConnectionError {
    return new MemcachedConnectionError(
      `no live memcached server: all ${this.nodes.length} are marked dead (${this.nodes.map((n) => n.id).join(', ')}); they are probed every ${this.failover.retryTimeout} ms`,
    );
  }

  private markDead(node: ServerNode, error: MemcachedError): void {
    node.dead = true;
    node.deadSince = Date.now();
    node.nextProbeAt = now() + this.failover.deadTimeout;
    this.deadCount++;
    this.placement.clear();
    this.events.serverDown?.(node.id, error);
    publishServerDown(node.id, error);
  }

  private markAlive(node: ServerNode): void {
    if (!node.dead) return;
    node.dead = false;
    node.deadSince = undefined;
    node.failures = 0;
    node.lastError = undefined;
    this.deadCount--;
    this.placement.clear();
    this.events.serverUp?.(node.id);
    publishServerUp(node.id);
  }

  /** Starts a `version` probe of every dead node whose time has come (no timers: driven by traffic). */
  private probeDue(): void {
    const t = now();
    for (const node of this.nodes) {
      if (!node.dead || node.probing || t < node.nextProbeAt || this.closed) continue;
      node.probing = true;
      this.version(node, Math.max(this.failover.retryTimeout, 100), 'version').then(
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

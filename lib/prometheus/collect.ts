import { Counter, Gauge, Histogram, register as globalRegistry, type Registry } from 'prom-client';
import {
  cacheChannel,
  commandChannel,
  serverDownChannel,
  serverUpChannel,
  type MemcachedCacheEvent,
  type MemcachedCommandContext,
  type MemcachedServerEvent,
} from '../observability/channels.js';
import { DURATION_BUCKETS } from '../observability/conventions.js';
import type { ServerPoolStats } from '../observability/pool-stats.js';

/** Anything with the client's `poolStats()`: a `MemcachedClient` or a `MemcachedService`. */
export interface PoolStatsSource {
  poolStats(): Record<string, ServerPoolStats>;
}

/** Options of {@link collectMemcachedMetrics}. */
export interface CollectMemcachedMetricsOptions {
  /** The registry the metrics go to; default: prom-client's global `register`. */
  register?: Registry;
  /**
   * Clients whose pools are reported (`memcached_pool_connections`,
   * `memcached_pool_pending_calls`) and whose failover state `memcached_servers_up` reads at
   * every scrape. Without them, `memcached_servers_up` follows the failover events of every
   * client in the process.
   */
  clients?: Iterable<PoolStatsSource>;
  /** Buckets of `memcached_command_duration_seconds`; default: the semantic-conventions ones. */
  buckets?: readonly number[];
}

/** The names of the metrics {@link collectMemcachedMetrics} registers. */
export const MEMCACHED_METRIC_NAMES = [
  'memcached_commands_total',
  'memcached_command_duration_seconds',
  'memcached_cache_requests_total',
  'memcached_servers_up',
  'memcached_pool_connections',
  'memcached_pool_pending_calls',
] as const;

/**
 * Registers Prometheus metrics fed by the client's `node:diagnostics_channel` channels (every
 * client of this package in the process):
 *
 * - `memcached_commands_total{command,server,outcome}`: commands sent, `outcome` `ok` or `error`;
 * - `memcached_command_duration_seconds{command,server}`: histogram of their duration;
 * - `memcached_cache_requests_total{outcome}`: cache-aside reads (`getOrSet`, `@Cacheable`) by
 *   outcome: `hit`, `miss`, `stale`, `coalesced`, `error`;
 * - `memcached_servers_up{server}`: 1 while the client sends the server calls, 0 while it marks
 *   it dead;
 * - `memcached_pool_connections{server}` / `memcached_pool_pending_calls{server}`: open
 *   connections and requests waiting for a reply, read from `options.clients` at every scrape.
 *
 * `command` is the memcached command (`get`, `set`, ...), `server` the server id. Keys and
 * values are never labels. Returns a function that stops the collection and removes the metrics
 * from the registry. Loads no Nest.
 *
 * ```ts
 * import { collectMemcachedMetrics } from 'nestjs-memcached/prometheus';
 * collectMemcachedMetrics({ clients: [client] }); // prom-client's global register
 * ```
 */
export function collectMemcachedMetrics(options: CollectMemcachedMetricsOptions = {}): () => void {
  if (options === null || typeof options !== 'object') {
    throw new TypeError('collectMemcachedMetrics: options must be an object');
  }
  const registry = options.register ?? globalRegistry;
  if (typeof registry?.registerMetric !== 'function') {
    throw new TypeError('collectMemcachedMetrics: register must be a prom-client Registry');
  }
  const clients = [...(options.clients ?? [])];
  for (const c of clients) {
    if (typeof (c as Partial<PoolStatsSource> | null)?.poolStats !== 'function') {
      throw new TypeError(
        'collectMemcachedMetrics: clients must be MemcachedClient or MemcachedService instances (objects with poolStats())',
      );
    }
  }
  const buckets = [...(options.buckets ?? DURATION_BUCKETS)];
  if (buckets.length === 0 || buckets.some((b) => typeof b !== 'number' || !(b > 0))) {
    throw new TypeError('collectMemcachedMetrics: buckets must be positive numbers');
  }
  for (const name of MEMCACHED_METRIC_NAMES) {
    if (registry.getSingleMetric(name) !== undefined) {
      throw new Error(
        `collectMemcachedMetrics: ${name} is already registered in this registry (call the function returned by the first collectMemcachedMetrics() to stop it first)`,
      );
    }
  }
  const registers = [registry];

  /** Server id → 1 (calls go to it) / 0 (marked dead), from the channels. */
  const seen = new Map<string, 0 | 1>();

  const commands = new Counter({
    name: 'memcached_commands_total',
    help: 'memcached commands sent, by command, server and outcome (ok or error).',
    labelNames: ['command', 'server', 'outcome'] as const,
    registers,
  });
  const duration = new Histogram({
    name: 'memcached_command_duration_seconds',
    help: 'Duration of memcached commands, from the call to the reply, in seconds.',
    labelNames: ['command', 'server'] as const,
    buckets,
    registers,
  });
  const cache = new Counter({
    name: 'memcached_cache_requests_total',
    help: 'Cache-aside reads (getOrSet, @Cacheable) by outcome: hit, miss, stale, coalesced, error.',
    labelNames: ['outcome'] as const,
    registers,
  });
  new Gauge({
    name: 'memcached_servers_up',
    help: 'Whether the client sends calls to the server (1) or marks it dead (0).',
    labelNames: ['server'] as const,
    registers,
    collect() {
      this.reset();
      const up = new Map(seen);
      const fromClients = new Map<string, 0 | 1>();
      for (const client of clients) {
        for (const [server, stats] of Object.entries(client.poolStats())) {
          const value = stats.dead ? 0 : 1;
          fromClients.set(server, Math.min(fromClients.get(server) ?? 1, value) as 0 | 1);
        }
      }
      for (const [server, value] of fromClients) up.set(server, value);
      for (const [server, value] of up) this.set({ server }, value);
    },
  });
  new Gauge({
    name: 'memcached_pool_connections',
    help: 'Open connections to the server (of the clients given to collectMemcachedMetrics).',
    labelNames: ['server'] as const,
    registers,
    collect() {
      this.reset();
      for (const [server, total] of sumPools(clients, 'connections')) this.set({ server }, total);
    },
  });
  new Gauge({
    name: 'memcached_pool_pending_calls',
    help: 'Requests waiting for a reply from the server (of the clients given to collectMemcachedMetrics).',
    labelNames: ['server'] as const,
    registers,
    collect() {
      this.reset();
      for (const [server, total] of sumPools(clients, 'pending')) this.set({ server }, total);
    },
  });

  const STARTED = Symbol('memcached_command_duration_seconds start');
  type Timed = MemcachedCommandContext & { [STARTED]?: number };
  const onStart = (message: unknown): void => {
    (message as Timed)[STARTED] = performance.now();
  };
  const onAsyncEnd = (message: unknown): void => {
    const c = message as Timed;
    const started = c[STARTED];
    if (started === undefined) return;
    c[STARTED] = undefined;
    const outcome = c.error === undefined ? 'ok' : 'error';
    commands.inc({ command: c.command, server: c.server, outcome });
    duration.observe(
      { command: c.command, server: c.server },
      (performance.now() - started) / 1000,
    );
    if (!seen.has(c.server)) seen.set(c.server, 1);
  };
  const onCache = (message: unknown): void => {
    cache.inc({ outcome: (message as MemcachedCacheEvent).outcome });
  };
  const onDown = (message: unknown): void => {
    seen.set((message as MemcachedServerEvent).server, 0);
  };
  const onUp = (message: unknown): void => {
    seen.set((message as MemcachedServerEvent).server, 1);
  };
  commandChannel.start.subscribe(onStart);
  commandChannel.asyncEnd.subscribe(onAsyncEnd);
  cacheChannel.subscribe(onCache);
  serverDownChannel.subscribe(onDown);
  serverUpChannel.subscribe(onUp);

  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    commandChannel.start.unsubscribe(onStart);
    commandChannel.asyncEnd.unsubscribe(onAsyncEnd);
    cacheChannel.unsubscribe(onCache);
    serverDownChannel.unsubscribe(onDown);
    serverUpChannel.unsubscribe(onUp);
    for (const name of MEMCACHED_METRIC_NAMES) registry.removeSingleMetric(name);
  };
}

function sumPools(
  clients: readonly PoolStatsSource[],
  field: 'connections' | 'pending',
): Map<string, number> {
  const totals = new Map<string, number>();
  for (const client of clients) {
    for (const [server, stats] of Object.entries(client.poolStats())) {
      totals.set(server, (totals.get(server) ?? 0) + stats[field]);
    }
  }
  return totals;
}

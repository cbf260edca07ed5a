/**
 * `nestjs-memcached/prometheus`: Prometheus metrics (prom-client, an optional peer dependency)
 * from the client's `node:diagnostics_channel` channels. Loads no Nest.
 */
export { collectMemcachedMetrics, MEMCACHED_METRIC_NAMES } from './collect.js';
export type { CollectMemcachedMetricsOptions, PoolStatsSource } from './collect.js';

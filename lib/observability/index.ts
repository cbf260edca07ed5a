/**
 * Observability hooks of the client: `node:diagnostics_channel` channels (the public contract,
 * documented in the README) and the publishers the client calls.
 */
export { MEMCACHED_CHANNELS } from './channels.js';
export type {
  MemcachedCacheEvent,
  MemcachedCacheOutcome,
  MemcachedCommandContext,
  MemcachedServerEvent,
} from './channels.js';
export { publishCacheOutcome, publishServerDown, publishServerUp } from './events.js';
export type { ServerPoolStats } from './pool-stats.js';

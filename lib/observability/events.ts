/**
 * The point events: failover transitions and cache-aside outcomes. Each publisher is one check
 * of `hasSubscribers` when nobody listens.
 */
import type { MemcachedError } from '../errors.js';
import {
  cacheChannel,
  serverDownChannel,
  serverUpChannel,
  type MemcachedCacheEvent,
  type MemcachedCacheOutcome,
  type MemcachedServerEvent,
} from './channels.js';

/** `memcached:server:down`: the client marked `server` dead because of `error`. */
export function publishServerDown(server: string, error: MemcachedError): void {
  if (serverDownChannel.hasSubscribers) {
    serverDownChannel.publish({ server, error } satisfies MemcachedServerEvent);
  }
}

/** `memcached:server:up`: `server` answered its probe and rejoined. */
export function publishServerUp(server: string): void {
  if (serverUpChannel.hasSubscribers) {
    serverUpChannel.publish({ server } satisfies MemcachedServerEvent);
  }
}

/**
 * `memcached:cache`: what one cache-aside read of `key` (the application's key, without
 * `keyPrefix`) found. Call it once per read: from `getOrSet`, the decorators and any other
 * cache-aside layer.
 */
export function publishCacheOutcome(key: string, outcome: MemcachedCacheOutcome): void {
  if (cacheChannel.hasSubscribers) {
    cacheChannel.publish({ key, outcome } satisfies MemcachedCacheEvent);
  }
}

import { crc32 } from 'node:zlib';

import type { Distributor, HashNode } from './index.js';

/** python-memcached's `Client._SERVER_RETRIES`: how many buckets are tried before giving up. */
export const MODULA_SERVER_RETRIES = 10;

/**
 * python-memcached's `cmemcache_hash`: bits 16..30 of the CRC-32, with 0 mapped to 1.
 *
 * @param data - bytes (or a string, hashed as UTF-8)
 */
export function cmemcacheHash(data: string | Uint8Array): number {
  return (crc32(data) >>> 16) & 0x7fff || 1;
}

/**
 * python-memcached's server selection (`memcache.Client._get_server`):
 *
 * - Buckets: each server repeated `weight` times, in configuration order.
 * - Key: `cmemcacheHash(UTF-8 key)`; the server is `buckets[hash % buckets.length]`.
 * - Dead servers: python-memcached rehashes with `hash = cmemcacheHash(String(hash) + String(i))`
 *   for i = 0, 1, ... and retries, {@link MODULA_SERVER_RETRIES} tries in all; if every try lands
 *   on a dead server it gives up (returns no server) even when other servers are alive. This is
 *   reproduced exactly: `pick` then returns -1. Keys of live servers never move.
 */
export class ModulaDistributor implements Distributor {
  /** Node index of each bucket. */
  private readonly buckets: Int32Array;

  /** @param nodes - the servers (weights are assumed validated: positive integers) */
  constructor(nodes: readonly HashNode[]) {
    const total = nodes.reduce((sum, n) => sum + n.weight, 0);
    this.buckets = new Int32Array(total);
    let b = 0;
    for (const [index, node] of nodes.entries()) {
      this.buckets.fill(index, b, b + node.weight);
      b += node.weight;
    }
  }

  /** {@inheritDoc Distributor.pick} */
  pick(key: string, isAlive?: (index: number) => boolean): number {
    const n = this.buckets.length;
    if (n === 0) return -1;
    let hash = cmemcacheHash(key);
    if (isAlive === undefined) return this.buckets[hash % n]!;
    for (let i = 0; i < MODULA_SERVER_RETRIES; i++) {
      const index = this.buckets[hash % n]!;
      if (isAlive(index)) return index;
      hash = cmemcacheHash(`${hash}${i}`);
    }
    return -1;
  }
}

/**
 * Key placement: picks the server for a key exactly like other languages' memcached clients do,
 * so that a Node.js application and, say, a Python or PHP application sharing the same server
 * list read and write each key on the same server.
 *
 * - `ketama`: libmemcached's weighted ketama consistent hashing (pylibmc with
 *   `ketama_weighted`, php-memcached with `OPT_LIBKETAMA_COMPATIBLE`), see {@link KetamaDistributor}.
 * - `rendezvous`: pymemcache's `HashClient` default, see {@link RendezvousDistributor}.
 * - `modula`: python-memcached's `crc32 % buckets`, see {@link ModulaDistributor}.
 *
 * @packageDocumentation
 */

import { KetamaDistributor } from './ketama.js';
import { ModulaDistributor } from './modula.js';
import { RendezvousDistributor } from './rendezvous.js';

export { KetamaDistributor, ketamaPointCount, ketamaServerName } from './ketama.js';
export { ModulaDistributor, cmemcacheHash, MODULA_SERVER_RETRIES } from './modula.js';
export { RendezvousDistributor, rendezvousNodeName, pythonStrLowBytes } from './rendezvous.js';
export { murmur3_32 } from './murmur3.js';

/** One server, as the distributors see it. */
export interface HashNode {
  /** 'host:port' for TCP (IPv6 as '[addr]:port'), or the socket path for unix sockets */
  id: string;
  /** Host name or address (IPv6 without brackets); for unix sockets: the path. */
  host: string;
  /** TCP port; for unix sockets: 0. */
  port: number;
  /** Positive integer, default 1. */
  weight: number;
}

/** The supported key-placement schemes. */
export type HashingScheme = 'ketama' | 'rendezvous' | 'modula';

/** Maps keys to servers. */
export interface Distributor {
  /**
   * Index (into the nodes array given at construction) of the server for `key` (the key WITHOUT
   * any client key prefix, as a JS string hashed on its UTF-8 bytes; `rendezvous` instead hashes
   * it the way pymemcache hashes a Python `str`, which differs for non-ASCII keys, see
   * {@link RendezvousDistributor}).
   * `isAlive(i)` (optional) tells whether node i is usable; dead nodes are skipped the way the
   * reference client skips them, so keys of live nodes never move. Returns -1 if no node is alive.
   */
  pick(key: string, isAlive?: (index: number) => boolean): number;
}

/**
 * Checks that every node has a positive integer weight.
 *
 * @throws RangeError if a weight is not a positive safe integer
 */
function validateNodes(nodes: readonly HashNode[]): void {
  for (const [i, node] of nodes.entries()) {
    if (!Number.isSafeInteger(node.weight) || node.weight < 1) {
      throw new RangeError(
        `node ${i} (${node.id}): weight must be a positive integer, got ${String(node.weight)}`,
      );
    }
  }
}

/**
 * Creates the distributor for `scheme` over `nodes`. The nodes array is copied; indices returned by
 * {@link Distributor.pick} refer to positions in the array given here.
 *
 * @param scheme - which reference client to be compatible with
 * @param nodes - the servers, in configuration order (order matters for `modula`, and for ties)
 * @throws RangeError on a non-positive or non-integer weight, or an unknown scheme
 */
export function createDistributor(scheme: HashingScheme, nodes: readonly HashNode[]): Distributor {
  validateNodes(nodes);
  switch (scheme) {
    case 'ketama':
      return new KetamaDistributor(nodes);
    case 'rendezvous':
      return new RendezvousDistributor(nodes);
    case 'modula':
      return new ModulaDistributor(nodes);
    default: {
      const unknown: never = scheme;
      throw new RangeError(`unknown hashing scheme: ${String(unknown)}`);
    }
  }
}

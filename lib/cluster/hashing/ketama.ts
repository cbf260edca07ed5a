import type { Distributor, HashNode } from './index.js';
import { md5FirstWord, md5Words } from './md5.js';

/** libmemcached's MEMCACHED_POINTS_PER_SERVER_KETAMA: points per server at average weight. */
const POINTS_PER_SERVER = 160;
/** Each md5 digest of a point name yields four 32-bit points. */
const POINTS_PER_HASH = 4;
/** Default memcached port; libmemcached leaves it out of point names. */
const DEFAULT_PORT = 11211;
/** Node indices are packed below the point value in a float64 while sorting: 2^32 * 2^21 = 2^53. */
const INDEX_RANGE = 2 ** 21;

/**
 * Number of continuum points libmemcached gives a server in weighted ketama mode.
 *
 * libmemcached computes `floor(weight / totalWeight * 160 / 4 * liveServers) * 4` entirely in
 * single-precision `float` (the `+ 1e-10` it adds is lost in that precision), so the result
 * can fall one step short of the exact value: e.g. 25 equal-weight servers get 156 points each,
 * and weight 1 out of a total of 25 on 5 servers gets 28 rather than 32. Each step is rounded
 * to float here with `Math.fround` to reproduce that.
 *
 * @param weight - the server's weight
 * @param totalWeight - sum of the weights of all live servers
 * @param liveServers - number of live servers
 */
export function ketamaPointCount(weight: number, totalWeight: number, liveServers: number): number {
  const f = Math.fround;
  const pct = f(f(weight) / f(totalWeight));
  let x = f(pct * POINTS_PER_SERVER);
  x = f(x / 4);
  x = f(x * f(liveServers));
  x = f(x + f(1e-10));
  return Math.floor(x) * POINTS_PER_HASH;
}

/**
 * The server part of libmemcached's continuum point names (`<name>-<i>`): the host name as
 * configured (IPv6 without brackets), followed by `:port` unless the port is 11211.
 *
 * Unix sockets: libmemcached (`memcached_server_add_unix_socket*`, used by pylibmc for
 * `/path` servers) stores them with port 0, so their name is `<path>:0` (verified against pylibmc).
 */
export function ketamaServerName(node: HashNode): string {
  const host =
    node.host.startsWith('[') && node.host.endsWith(']') ? node.host.slice(1, -1) : node.host;
  return node.port === DEFAULT_PORT ? host : `${host}:${node.port}`;
}

/**
 * libmemcached's weighted ketama consistent hashing with md5 (`MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA`
 * / `CONSISTENT_WEIGHTED` with `ketama_weighted`), as used by pylibmc
 * (`behaviors={"ketama_weighted": True}`), php-memcached (`OPT_LIBKETAMA_COMPATIBLE`) and other
 * libmemcached-based clients.
 *
 * - Continuum: for each server, {@link ketamaPointCount} points; for i = 0 .. count/4 - 1 the md5
 *   digest of `<name>-<i>` ({@link ketamaServerName}) gives four points (its four little-endian
 *   32-bit words). Points are sorted by value, then by server index (libmemcached's order).
 * - Key: the first four bytes of md5(UTF-8 key), little-endian; the server is the owner of the
 *   first point >= that value, wrapping around to the first point.
 * - Dead servers: their points are skipped clockwise. (libmemcached itself only re-routes with
 *   `remove_failed`/auto-eject; otherwise the command fails.) With equal weights this is exactly
 *   what libmemcached's auto-eject rebuild yields (unless the live count crosses a float rounding
 *   step of {@link ketamaPointCount}, such as 25 servers). With unequal weights libmemcached's
 *   rebuild recomputes every server's point count from the live total, which also moves a few keys
 *   between live servers; this distributor deliberately keeps them where they are.
 */
export class KetamaDistributor implements Distributor {
  /** Sorted point values. */
  private readonly points: Uint32Array;
  /** Owner (node index) of each point. */
  private readonly owners: Int32Array;

  /** @param nodes - the servers (weights are assumed validated: positive integers) */
  constructor(nodes: readonly HashNode[]) {
    if (nodes.length > INDEX_RANGE) throw new RangeError('too many nodes for ketama');
    const totalWeight = nodes.reduce((sum, n) => sum + n.weight, 0);
    const counts = nodes.map((n) => ketamaPointCount(n.weight, totalWeight, nodes.length));
    const total = counts.reduce((sum, c) => sum + c, 0);

    // Pack (value, index) into one float64 so a numeric typed-array sort orders by value then index.
    const packed = new Float64Array(total);
    let p = 0;
    for (const [index, node] of nodes.entries()) {
      const name = ketamaServerName(node);
      const hashes = counts[index]! / POINTS_PER_HASH;
      for (let i = 0; i < hashes; i++) {
        const digest = md5Words(`${name}-${i}`);
        for (let word = 0; word < POINTS_PER_HASH; word++) {
          packed[p++] = (digest[word]! >>> 0) * INDEX_RANGE + index;
        }
      }
    }
    packed.sort();

    this.points = new Uint32Array(total);
    this.owners = new Int32Array(total);
    for (let i = 0; i < total; i++) {
      const v = packed[i]!;
      const value = Math.floor(v / INDEX_RANGE);
      this.points[i] = value;
      this.owners[i] = v - value * INDEX_RANGE;
    }
  }

  /** Number of continuum points (for diagnostics). */
  get size(): number {
    return this.points.length;
  }

  /** {@inheritDoc Distributor.pick} */
  pick(key: string, isAlive?: (index: number) => boolean): number {
    const n = this.points.length;
    if (n === 0) return -1;
    const hash = md5FirstWord(key);

    // Lower bound: first point >= hash.
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.points[mid]! < hash) lo = mid + 1;
      else hi = mid;
    }
    let at = lo === n ? 0 : lo;
    if (isAlive === undefined) return this.owners[at]!;

    for (let step = 0; step < n; step++) {
      const owner = this.owners[at]!;
      if (isAlive(owner)) return owner;
      at = at + 1 === n ? 0 : at + 1;
    }
    return -1;
  }
}

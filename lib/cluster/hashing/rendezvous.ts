import type { Distributor, HashNode } from './index.js';
import { murmur3Range } from './murmur3.js';

/**
 * The node name pymemcache's `HashClient` hashes: `host:port` for TCP servers (the host as parsed
 * by `normalize_server_spec`, so IPv6 addresses without brackets, e.g. `::1:11211`; no special
 * case for port 11211), and the bare path for unix sockets (port 0).
 */
export function rendezvousNodeName(node: HashNode): string {
  if (node.port === 0) return node.host;
  const host =
    node.host.startsWith('[') && node.host.endsWith(']') ? node.host.slice(1, -1) : node.host;
  return `${host}:${node.port}`;
}

/**
 * The bytes pymemcache's pure-Python `murmur3_32` effectively hashes for a Python `str`: one byte
 * per Unicode code point, the code point's low 8 bits (it reads `ord(ch)` per character and keeps
 * 8 bits of each, modulo 2^32 arithmetic). For ASCII this equals the UTF-8 bytes; for other text it
 * does not (`é` hashes as the single byte 0xE9, `€` U+20AC as 0xAC, an emoji as one byte).
 */
export function pythonStrLowBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  return out.subarray(0, writeLowBytes(s, out, 0));
}

/**
 * Writes {@link pythonStrLowBytes}(s) into `out` at `offset` (which must have room for
 * `s.length` bytes); returns the offset after the last byte written.
 */
function writeLowBytes(s: string, out: Uint8Array, offset: number): number {
  let n = offset;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        // Surrogate pair: one code point, 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00).
        out[n++] = (d - 0xdc00) & 0xff;
        i++;
        continue;
      }
    }
    out[n++] = c & 0xff;
  }
  return n;
}

/** Compares two strings by Unicode code points, like Python's `str` ordering. */
function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done === true) return y.done === true ? 0 : -1;
    if (y.done === true) return 1;
    const cx = x.value.codePointAt(0)!;
    const cy = y.value.codePointAt(0)!;
    if (cx !== cy) return cx - cy;
  }
}

/**
 * pymemcache's rendezvous (highest random weight) hashing, the default `hasher` of
 * `pymemcache.client.hash.HashClient` (`pymemcache.client.rendezvous.RendezvousHash`, seed 0).
 *
 * - Score of node n for key k: `murmur3_32("<name(n)>-<k>")` ({@link rendezvousNodeName}), where
 *   the string is hashed the way pymemcache's Python murmur3 hashes a `str`
 *   ({@link pythonStrLowBytes}; identical to UTF-8 for ASCII keys). This matches a Python
 *   application passing `str` keys (with `allow_unicode_keys=True` for non-ASCII ones); pymemcache
 *   hashes `bytes` keys by their `repr` (`b'...'`), which is not reproduced.
 * - The highest score wins; on equal scores the node whose name is greater (Python string order)
 *   wins, whatever the configuration order.
 * - Weights are ignored: `HashClient` has no weights.
 * - Dead nodes: `HashClient` removes them from the hasher, i.e. they are left out of the maximum,
 *   so keys of live nodes never move.
 */
export class RendezvousDistributor implements Distributor {
  /** `"<name>-"` of each node, as bytes. */
  private readonly prefixes: Uint8Array[];
  /** Rank of each node's name in Python string order (equal names share a rank). */
  private readonly ranks: Int32Array;
  /** Length of the longest prefix. */
  private readonly maxPrefix: number;
  private scratch = new Uint8Array(512);

  /** @param nodes - the servers (weights are ignored) */
  constructor(nodes: readonly HashNode[]) {
    const names = nodes.map(rendezvousNodeName);
    this.prefixes = names.map((name) => pythonStrLowBytes(`${name}-`));
    this.maxPrefix = this.prefixes.reduce((max, p) => Math.max(max, p.length), 0);
    const order = names.map((_, i) => i).sort((a, b) => compareCodePoints(names[a]!, names[b]!));
    this.ranks = new Int32Array(nodes.length);
    let rank = 0;
    for (const [pos, index] of order.entries()) {
      if (pos > 0 && compareCodePoints(names[order[pos - 1]!]!, names[index]!) !== 0) rank++;
      this.ranks[index] = rank;
    }
  }

  /** {@inheritDoc Distributor.pick} */
  pick(key: string, isAlive?: (index: number) => boolean): number {
    // Layout: [key bytes][room for the longest prefix + key]; each node's input is assembled in
    // the second part as prefix + key.
    const needed = key.length + this.maxPrefix + key.length;
    if (this.scratch.length < needed) this.scratch = new Uint8Array(needed * 2);
    const scratch = this.scratch;
    const keyLength = writeLowBytes(key, scratch, 0);
    let winner = -1;
    let best = -1;
    for (let i = 0; i < this.prefixes.length; i++) {
      if (isAlive !== undefined && !isAlive(i)) continue;
      const prefix = this.prefixes[i]!;
      scratch.set(prefix, keyLength);
      scratch.copyWithin(keyLength + prefix.length, 0, keyLength);
      const end = keyLength + prefix.length + keyLength;
      const score = murmur3Range(scratch, keyLength, end, 0);
      if (score > best || (score === best && this.ranks[i]! > this.ranks[winner]!)) {
        best = score;
        winner = i;
      }
    }
    return winner;
  }
}

/** The workloads of a run and the keys and values they use. */
import { createHash } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import { compressSync as lz4CompressSync } from 'lz4-napi';
import type { ClientName } from './clients.js';
import { prng } from '../test/harness/prng.js';

export type Operation = 'get' | 'set' | 'getMany' | 'setCompressed' | 'setText' | 'getOrSet';

/** How a client of a variant workload compresses: not at all, lz4 or zlib (level 6). */
export type Variant = 'none' | 'lz4' | 'zlib';

export interface Workload {
  /** Stable id, e.g. `get-100B-c64` (use it in BENCH_WORKLOADS). */
  id: string;
  /** Human label for tables and the chart. */
  title: string;
  op: Operation;
  /** Value size in bytes. */
  valueSize: number;
  /** Calls kept in flight. */
  concurrency: number;
  /** Distinct keys the workload cycles through. */
  keyCount: number;
  /** Keys per getMany call. */
  batch?: number;
  /** `main` workloads compare every client; `linearity` is ours (and raw) over value sizes. */
  group: 'main' | 'linearity';
  /**
   * Restrict to these clients (default: every selected client, see {@link clientsFor}; `ours-meta`
   * only where `meta` is set).
   */
  clients?: readonly ClientName[];
  /** `setCompressed`: the algorithm (default zlib, the one every peer that compresses has). */
  compression?: 'zlib' | 'lz4';
  /**
   * `setText`: each client runs once per entry (uncompressed, lz4, zlib), all of them interleaved
   * round by round in this one workload, so their ratios come from the same minutes of the run.
   */
  variants?: readonly Variant[];
  /** `ours-meta` runs it too (the meta protocol's columns). */
  meta?: boolean;
  /** `getOrSet`: tags per value (0 or undefined: untagged). */
  tags?: number;
}

/**
 * The selected clients that run `workload`: `ours-nobatch` only where auto-batching applies,
 * `ours-traced` / `ours-otel` only with 100-byte values (where the cost per call shows).
 */
export function clientsFor(workload: Workload, selected: readonly ClientName[]): ClientName[] {
  const batchable = workload.op === 'get' && workload.concurrency > 1;
  const small = workload.group === 'main' && workload.valueSize <= 100;
  return selected.filter((c) =>
    workload.clients !== undefined
      ? workload.clients.includes(c)
      : c === 'ours-nobatch'
        ? batchable
        : c === 'ours-traced' || c === 'ours-otel'
          ? small
          : c === 'ours-meta'
            ? workload.meta === true
            : true,
  );
}

const KB = 1024;

export const WORKLOADS: readonly Workload[] = [
  w('get', 100, 1, 1000, true),
  w('get', 100, 64, 1000, true),
  w('set', 100, 1, 1000, true),
  w('set', 100, 64, 1000, true),
  {
    id: 'getMany100-100B-c8',
    title: 'getMany 100 keys × 100 B, c8',
    op: 'getMany',
    valueSize: 100,
    concurrency: 8,
    keyCount: 1000,
    batch: 100,
    group: 'main',
    meta: true,
  },
  w('get', 10 * KB, 64, 500, true),
  w('get', 512 * KB, 4, 16),
  {
    id: 'setCompressed-4KB-c64',
    title: 'set 4 KB text, compression on, c64',
    op: 'setCompressed',
    valueSize: 4 * KB,
    concurrency: 64,
    keyCount: 1000,
    group: 'main',
    // Only the clients that compress: memjs and 3rd-Eden memcached would do a plain set, which
    // is not the same work (and would be taken for the best peer).
    clients: ['ours', 'ours-binary', 'ours-baseline', 'memcache-client', 'raw'],
  },
  // The same text uncompressed, with lz4 and with zlib: ours (text and binary) and raw, each
  // client three times, every round of every variant interleaved with the others (the ratios
  // lz4 / uncompressed are taken round by round).
  {
    id: 'setCompression-4KB-c64',
    title: 'set 4 KB text: none / lz4 / zlib, c64',
    op: 'setText',
    variants: ['none', 'lz4', 'zlib'],
    valueSize: 4 * KB,
    concurrency: 64,
    keyCount: 1000,
    group: 'main',
    // ours-baseline only runs with BENCH_BASELINE (a build to compare with, variant by variant).
    clients: ['ours', 'ours-binary', 'ours-baseline', 'raw'],
  },
  // getOrSet hits, untagged and with two tags (the cost of checking the tags' versions).
  ...[1, 64].flatMap((c): Workload[] =>
    [0, 2].map((tags) => ({
      id: `getOrSet${tags > 0 ? 'Tagged' : ''}-100B-c${c}`,
      title: `getOrSet${tags > 0 ? ` with ${tags} tags` : ''} 100 B hit, c${c}`,
      op: 'getOrSet',
      valueSize: 100,
      concurrency: c,
      keyCount: 1000,
      group: 'main',
      tags,
      clients: ['ours', 'ours-binary', 'ours-meta', 'raw'],
    })),
  ),
  ...[64, 128, 256, 512].map((kb): Workload => ({
    id: `linear-get-${kb}KB-c1`,
    title: `get ${kb} KB, c1`,
    op: 'get',
    valueSize: kb * KB,
    concurrency: 1,
    keyCount: 8,
    group: 'linearity',
    clients: ['ours', 'raw'],
  })),
];

function w(
  op: 'get' | 'set',
  size: number,
  concurrency: number,
  keyCount: number,
  meta = false,
): Workload {
  return {
    ...(meta ? { meta } : {}),
    id: `${op}-${sizeLabel(size).replace(' ', '')}-c${concurrency}`,
    title: `${op} ${sizeLabel(size)}, c${concurrency}`,
    op,
    valueSize: size,
    concurrency,
    keyCount,
    group: 'main',
  };
}

export function sizeLabel(bytes: number): string {
  if (bytes >= KB && bytes % KB === 0) return `${bytes / KB} KB`;
  return `${bytes} B`;
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

/** An ASCII string of `size` random letters/digits (incompressible-ish, UTF-8 = 1 byte/char). */
export function randomValue(size: number, seed = size): string {
  const rnd = prng(seed);
  let s = '';
  for (let i = 0; i < size; i++) s += ALPHABET[Math.floor(rnd() * ALPHABET.length)];
  return s;
}

const WORDS = (
  'the quick brown fox jumps over lazy dog cache memcached value key server client request ' +
  'reply session user profile order item price total count status active pending shipped'
).split(' ');

/** ASCII text of `size` bytes made of common words: compresses about 3-4x with zlib. */
export function compressibleValue(size: number, seed = 7): string {
  const rnd = prng(seed);
  let s = '';
  while (s.length < size) {
    s +=
      WORDS[Math.floor(rnd() * WORDS.length)]! +
      (rnd() < 0.1 ? ` ${Math.floor(rnd() * 1e6)} ` : ' ');
  }
  return s.slice(0, size);
}

/** The value a workload stores / expects. */
export function valueFor(workload: Workload): string {
  return workload.op === 'setCompressed' || workload.op === 'setText'
    ? compressibleValue(workload.valueSize)
    : randomValue(workload.valueSize);
}

/**
 * Keys of `client` for a workload: each client reads back only what it stored itself. The client
 * is named by 8 hex digits of a hash of its name, so every client's keys have the same length
 * (a longer key costs every client more bytes and hashing, on both sides).
 */
export function keysFor(workload: Workload, client: ClientName, variant?: Variant): string[] {
  const space = `${workload.op === 'get' || workload.op === 'getMany' ? 'v' : workload.op}${workload.tags ?? ''}${workload.valueSize}`;
  const name = variant === undefined ? client : `${client}-${variant}`;
  const who = createHash('sha256').update(name).digest('hex').slice(0, 8);
  const keys: string[] = [];
  for (let i = 0; i < workload.keyCount; i++) keys.push(`bench:${who}:${space}:${i}`);
  return keys;
}

/**
 * The tags of key number `i` in a tagged getOrSet workload: one shared by every key, then one of
 * ten groups, and so on.
 */
export function tagsFor(workload: Workload, i: number): string[] | undefined {
  const n = workload.tags ?? 0;
  if (n === 0) return undefined;
  return Array.from({ length: n }, (_, t) => `bench-tag-${t}-${t === 0 ? 'all' : i % 10 ** t}`);
}

/** getMany batches: `batch` consecutive keys starting at every multiple of `batch`. */
export function batchesFor(keys: readonly string[], batch: number): string[][] {
  const out: string[][] = [];
  for (let start = 0; start + batch <= keys.length; start += batch) {
    out.push(keys.slice(start, start + batch));
  }
  return out;
}

/** The compression of a `setCompressed` workload or of one variant of a `setText` workload. */
export function compressionOf(workload: Workload, variant?: Variant): false | 'zlib' | 'lz4' {
  if (workload.op === 'setCompressed') return workload.compression ?? 'zlib';
  return variant === undefined || variant === 'none' ? false : variant;
}

/** Pre-encoded raw requests, one per key. */
export function rawRequests(
  workload: Workload,
  keys: readonly string[],
  value: string,
  variant?: Variant,
): Buffer[] {
  switch (workload.op) {
    case 'get':
      return keys.map((k) => Buffer.from(`get ${k}\r\n`));
    case 'getMany':
      return batchesFor(keys, workload.batch ?? 100).map((b) =>
        Buffer.from(`get ${b.join(' ')}\r\n`),
      );
    case 'set':
      return keys.map((k) => rawSet(k, 0, Buffer.from(value)));
    case 'setCompressed':
    case 'setText': {
      // The bytes our client puts on the wire: the zlib-compressed value with flag bit 8, the
      // lz4 one with flag bit 64, or the text as it is (flag 16).
      const compression = compressionOf(workload, variant);
      if (compression === 'lz4') {
        const packed = lz4CompressSync(Buffer.from(value));
        return keys.map((k) => rawSet(k, 16 | 64, packed));
      }
      if (compression === 'zlib') {
        const packed = deflateSync(Buffer.from(value), { level: 6 });
        return keys.map((k) => rawSet(k, 16 | 8, packed));
      }
      return keys.map((k) => rawSet(k, 16, Buffer.from(value)));
    }
    case 'getOrSet':
      // What a getOrSet hit reads: the key, or the key and its tags' version keys.
      return keys.map((k, i) => {
        const tags = tagsFor(workload, i);
        return Buffer.from(
          tags === undefined
            ? `get ${k}\r\n`
            : `gets ${[k, ...tags.map((t) => `__tag:${t}`)].join(' ')}\r\n`,
        );
      });
  }
}

export function rawSet(key: string, flags: number, data: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from(`set ${key} ${flags} 0 ${data.length}\r\n`),
    data,
    Buffer.from('\r\n'),
  ]);
}

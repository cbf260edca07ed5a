/**
 * One adapter per client under test, all with the same promise interface so the workloads run
 * identical code around each. Every `get` resolves to a `string` (what the application asked
 * for), so a client that hands back raw bytes pays the same UTF-8 decoding the others do.
 */
import { deflateSync, inflateSync } from 'node:zlib';
import Memcached from 'memcached';
import memcacheClient, { type MultiRetrievalResponse } from 'memcache-client';
import memjs from 'memjs';
import { MemcachedClient, type MemcachedOptions } from '../lib/index.js';
import { lz4Package } from '../lib/serde/lz4.js';
import { attachOtel, attachPlainSubscriber, type Attach } from './tracing.js';

/**
 * The clients of a run. `ours-nobatch` is ours with `autoBatch: false` (only in the concurrent
 * get workloads, where auto-batching applies); `ours-meta` is ours with `protocol: 'meta'` (in the
 * get/set/getMany workloads); `ours-baseline` is another build of ours, loaded from the module
 * named by `BENCH_BASELINE` (to compare two versions in one run); `ours-traced` is ours with a
 * plain subscriber on the `memcached:command` TracingChannel and `ours-otel` ours with the
 * `nestjs-memcached/otel` bridge into the OpenTelemetry SDK (both only in the 100-byte workloads,
 * attached only during their own rounds); `raw` is the socket ceiling (see raw.ts).
 */
export const CLIENT_NAMES = [
  'ours',
  'ours-binary',
  'ours-baseline',
  'ours-nobatch',
  'ours-traced',
  'ours-otel',
  'ours-meta',
  'memjs',
  'memcached',
  'memcache-client',
  'raw',
] as const;
export type ClientName = (typeof CLIENT_NAMES)[number];
export type DriverName = Exclude<ClientName, 'raw'>;
export const PEER_NAMES: readonly DriverName[] = ['memjs', 'memcached', 'memcache-client'];
/** Ours with a subscriber on the channels. */
export const TRACING_NAMES: readonly DriverName[] = ['ours-traced', 'ours-otel'];

export function isClientName(name: string): name is ClientName {
  return (CLIENT_NAMES as readonly string[]).includes(name);
}

export interface Driver {
  readonly name: DriverName;
  /** How the client was configured and what it does differently in this bench. */
  readonly notes: string[];
  /** The value as a string, or undefined on a miss. */
  get(key: string): Promise<string | undefined>;
  /** Resolves whether the server stored it. */
  set(key: string, value: string): Promise<boolean>;
  /** Resolves the number of hits. */
  getMany(keys: readonly string[]): Promise<number>;
  /** Cache-aside (ours only): the value, from `factory` on a miss. */
  getOrSet?(
    key: string,
    factory: () => string,
    tags: readonly string[] | undefined,
  ): Promise<string>;
  close(): Promise<void>;
  /**
   * Called before each warm-up and round of this client; returns what is called after it (the
   * tracing clients attach their subscriber only while they run).
   */
  activate?(): () => void;
}

export interface DriverOptions {
  host: string;
  port: number;
  /** Compress values on set with this algorithm (where the client can), or not at all. */
  compression: false | 'zlib' | 'lz4';
  /** Per-call timeout, ms. */
  timeoutMs: number;
  /** Largest value accepted, bytes. */
  maxValueSize: number;
}

/** The threshold our client compresses from in the compression workload. */
export const COMPRESSION_THRESHOLD = 1024;

/** A client class with our API, from this build or another. */
type OursClass = new (options: MemcachedOptions) => MemcachedClient;

let baseline: { Client: OursClass; from: string } | undefined;

/**
 * Loads the `MemcachedClient` of another build of this package (a path to its built entry
 * point, e.g. a checkout's `dist/cjs/index.js`) as the `ours-baseline` client.
 */
export async function loadBaseline(path: string): Promise<void> {
  const mod = (await import(path)) as {
    MemcachedClient?: OursClass;
    default?: { MemcachedClient?: OursClass };
  };
  const Client = mod.MemcachedClient ?? mod.default?.MemcachedClient;
  if (typeof Client !== 'function') {
    throw new Error(`BENCH_BASELINE: ${path} exports no MemcachedClient`);
  }
  baseline = { Client, from: path };
}

export function createDriver(name: DriverName, o: DriverOptions): Driver {
  switch (name) {
    case 'ours':
      return oursDriver(o, true);
    case 'ours-binary':
      return oursDriver(o, true, MemcachedClient, name, undefined, 'binary');
    case 'ours-baseline':
      if (baseline === undefined) {
        throw new Error(
          'ours-baseline needs BENCH_BASELINE=<path to a built MemcachedClient module>',
        );
      }
      return oursDriver(o, true, baseline.Client, name, `build from ${baseline.from}`);
    case 'ours-nobatch':
      return oursDriver(o, false);
    case 'ours-traced':
      return traced(
        oursDriver(o, true, MemcachedClient, name),
        attachPlainSubscriber,
        'a subscriber on every event of the memcached:command TracingChannel (reads the context, counts)',
      );
    case 'ours-otel':
      return traced(
        oursDriver(o, true, MemcachedClient, name),
        attachOtel,
        'instrumentMemcached() into the OpenTelemetry SDK: BasicTracerProvider + BatchSpanProcessor (exporter drops the spans), MeterProvider + a metric reader (histogram aggregated, never exported)',
      );
    case 'ours-meta':
      return oursDriver(o, true, MemcachedClient, name, undefined, 'meta');
    case 'memjs':
      return memjsDriver(o);
    case 'memcached':
      return memcachedDriver(o);
    case 'memcache-client':
      return memcacheClientDriver(o);
  }
}

function oursDriver(
  o: DriverOptions,
  autoBatch: boolean,
  Client: OursClass = MemcachedClient,
  name:
    | 'ours'
    | 'ours-binary'
    | 'ours-baseline'
    | 'ours-nobatch'
    | 'ours-traced'
    | 'ours-otel'
    | 'ours-meta' = autoBatch ? 'ours' : 'ours-nobatch',
  origin?: string,
  protocol?: 'binary' | 'meta',
): Driver {
  const algorithm = o.compression;
  const client = new Client({
    servers: [`${o.host}:${o.port}`],
    timeout: o.timeoutMs,
    maxValueSize: o.maxValueSize,
    ...(protocol === undefined ? {} : { protocol }),
    ...(autoBatch ? {} : { autoBatch: false }),
    ...(algorithm === 'zlib' ? { compression: { threshold: COMPRESSION_THRESHOLD } } : {}),
    ...(algorithm === 'lz4'
      ? { compression: { threshold: COMPRESSION_THRESHOLD, algorithm: 'lz4' as const } }
      : {}),
  });
  const resolved = client.options as unknown as Record<string, unknown>;
  const shown = ['protocol', 'poolSize', 'timeout', 'autoBatch', 'maxPending']
    .filter((k) => resolved[k] !== undefined)
    .map((k) => `${k}=${JSON.stringify(resolved[k])}`);
  return {
    name,
    notes: [
      ...(origin === undefined ? [] : [origin]),
      `defaults except timeout/maxValueSize${autoBatch ? '' : '/autoBatch'}${protocol === undefined ? '' : '/protocol'} (${shown.join(', ')})`,
      ...(algorithm === 'zlib'
        ? [`compression: { threshold: ${COMPRESSION_THRESHOLD} } (zlib level 6)`]
        : []),
      ...(algorithm === 'lz4'
        ? [
            `compression: { threshold: ${COMPRESSION_THRESHOLD}, algorithm: 'lz4' } (package ${lz4Package() ?? 'none'})`,
          ]
        : []),
    ],
    async get(key) {
      const v = await client.get<string>(key);
      return v;
    },
    set(key, value) {
      return client.set(key, value);
    },
    async getMany(keys) {
      return (await client.getMany<string>(keys)).size;
    },
    getOrSet(key, factory, tags) {
      return client.getOrSet(key, factory, tags === undefined ? {} : { tags });
    },
    close() {
      return client.close();
    },
  };
}

/** `driver` with a subscriber attached while it runs. */
function traced(driver: Driver, attach: Attach, note: string): Driver {
  return { ...driver, notes: [...driver.notes, note], activate: attach };
}

function memjsDriver(o: DriverOptions): Driver {
  const client = memjs.Client.create(`${o.host}:${o.port}`, {
    timeout: o.timeoutMs / 1000,
    conntimeout: 2,
    retries: 0,
    keepAlive: false,
  });
  return {
    name: 'memjs',
    notes: [
      'binary protocol, one connection, TCP_NODELAY not set (library default)',
      'get returns a Buffer: decoded with toString() like the others',
      'no multi-get API: getMany = Promise.all of single gets',
      ...(o.compression ? ['no compression support: plain set'] : []),
    ],
    async get(key) {
      const { value } = await client.get(key);
      return value === null ? undefined : value.toString('utf8');
    },
    set(key, value) {
      return client.set(key, value, { expires: 0 });
    },
    async getMany(keys) {
      const values = await Promise.all(keys.map((k) => client.get(k)));
      let hits = 0;
      for (const { value } of values) if (value !== null) hits++;
      return hits;
    },
    close() {
      client.close();
      return Promise.resolve();
    },
  };
}

function memcachedDriver(o: DriverOptions): Driver {
  const client = new Memcached(`${o.host}:${o.port}`, {
    timeout: o.timeoutMs,
    maxValue: o.maxValueSize,
  });
  return {
    name: 'memcached',
    notes: [
      '3rd-Eden memcached: text protocol, callback API wrapped in promises, pool up to 10 connections (default)',
      ...(o.compression ? ['no compression support: plain set'] : []),
    ],
    get(key) {
      return new Promise((resolve, reject) => {
        client.get(key, (err: unknown, data: unknown) => {
          if (err) reject(toError(err));
          else resolve(data === undefined ? undefined : String(data));
        });
      });
    },
    set(key, value) {
      return new Promise((resolve, reject) => {
        client.set(key, value, 0, (err: unknown, ok: boolean) => {
          if (err) reject(toError(err));
          else resolve(ok);
        });
      });
    },
    getMany(keys) {
      return new Promise((resolve, reject) => {
        client.getMulti([...keys], (err: unknown, data: Record<string, unknown>) => {
          if (err) reject(toError(err));
          else resolve(data === undefined ? 0 : Object.keys(data).length);
        });
      });
    },
    close() {
      client.end();
      return Promise.resolve();
    },
  };
}

/** zlib for memcache-client's pluggable compressor (its default needs the zstd CLI). */
const zlibCompressor = {
  compressSync(payload?: { input: string | number | Buffer | Record<string, unknown> }): Buffer {
    const input = payload?.input;
    return deflateSync(Buffer.isBuffer(input) ? input : Buffer.from(String(input)));
  },
  decompressSync(payload: { input: string | number | Buffer }): Buffer {
    const input = payload.input;
    return inflateSync(Buffer.isBuffer(input) ? input : Buffer.from(String(input)));
  },
};

function memcacheClientDriver(o: DriverOptions): Driver {
  const client = new memcacheClient.MemcacheClient({
    server: `${o.host}:${o.port}`,
    cmdTimeout: o.timeoutMs,
    noDelay: true,
    lifetime: 3600,
    ...(o.compression ? { compressor: zlibCompressor } : {}),
  });
  const storeOptions = o.compression ? { compress: true } : {};
  return {
    name: 'memcache-client',
    notes: [
      'text protocol, one connection (maxConnections default 1), noDelay: true, lifetime 3600 s (its default TTL is 60 s)',
      'getMany = get([...keys]) (one multi-get request)',
      ...(o.compression
        ? [
            'compression: set(..., { compress: true }) with a zlib compressor (level 6); it compresses from 100 bytes',
          ]
        : []),
    ],
    async get(key) {
      const r = await client.get<string>(key);
      return r === undefined ? undefined : r.value;
    },
    async set(key, value) {
      const r = await client.set(key, value, storeOptions);
      return r[0] === 'STORED';
    },
    async getMany(keys) {
      const r = await client.get<MultiRetrievalResponse<string>>([...keys]);
      return r === undefined ? 0 : Object.keys(r).length;
    },
    close() {
      client.shutdown();
      return Promise.resolve();
    },
  };
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

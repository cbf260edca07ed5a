/**
 * The benchmark behind `npm run bench` (issue #5): our MemcachedClient against memjs, memcached
 * (3rd-Eden) and memcache-client on the same workloads, plus a raw-socket ceiling, against a
 * memcached this run starts itself. `runBench` does everything and returns the results; run.ts
 * is the CLI around it.
 */
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { serverStats, startMemcached, type MemcachedProcess } from '../test/harness/memcached.js';
import {
  CLIENT_NAMES,
  PEER_NAMES,
  createDriver,
  isClientName,
  type ClientName,
  type Driver,
  type DriverName,
} from './clients.js';
import { LatencyRecorder, closedLoop, now, type LoopOutcome, type RoundLimit } from './measure.js';
import { RawPipeline } from './raw.js';
import { renderSvg } from './report.js';
import {
  WORKLOADS,
  batchesFor,
  clientsFor,
  compressionOf,
  keysFor,
  randomValue,
  rawRequests,
  rawSet,
  tagsFor,
  valueFor,
  type Variant,
  type Workload,
} from './workloads.js';

// ---------------------------------------------------------------------------------------------
// Configuration

export interface BenchConfig {
  /** Measured seconds per (workload, client), split evenly over the rounds. */
  seconds: number;
  /** Rounds per (workload, client); clients are interleaved round by round. */
  rounds: number;
  /** Warm-up seconds per (workload, client) before the rounds. */
  warmupSeconds: number;
  /** When set, each round runs this many operations instead of a duration. */
  opsPerRound?: number | undefined;
  /** When set, the warm-up runs this many operations instead of a duration. */
  warmupOps?: number | undefined;
  clients: ClientName[];
  /** Workload ids (or id prefixes) to run; all when undefined. */
  workloads?: string[] | undefined;
  /** Operations of the heap-flat check (512 KB gets, ours); 0 skips it. */
  heapOps: number;
  /** Directory for results.json and results.svg. */
  outDir: string;
  memcachedArgs: string[];
  timeoutMs: number;
  /** Progress lines. */
  log: (line: string) => void;
}

export const DEFAULT_MEMCACHED_ARGS = ['-t', '2', '-m', '1024', '-c', '4096', '-I', '2m'];

/** Reads the configuration from BENCH_* environment variables (see bench/README.md). */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): BenchConfig {
  const num = (name: string, fallback: number, min: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min) {
      throw new Error(`${name} must be a number >= ${min}, got ${JSON.stringify(raw)}`);
    }
    return n;
  };
  const list = (name: string): string[] | undefined => {
    const raw = env[name];
    if (raw === undefined || raw.trim() === '') return undefined;
    return raw
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  };
  const clients =
    list('BENCH_CLIENTS') ??
    CLIENT_NAMES.filter((c) => c !== 'ours-baseline' || env['BENCH_BASELINE'] !== undefined);
  for (const c of clients) {
    if (!isClientName(c)) {
      throw new Error(
        `BENCH_CLIENTS: unknown client ${JSON.stringify(c)} (one of ${CLIENT_NAMES.join(', ')})`,
      );
    }
  }
  const ops = env['BENCH_OPS'] ? num('BENCH_OPS', 0, 1) : undefined;
  return {
    seconds: num('BENCH_SECONDS', 3, 0.01),
    rounds: Math.floor(num('BENCH_ROUNDS', 5, 1)),
    warmupSeconds: num('BENCH_WARMUP_SECONDS', 0.5, 0),
    opsPerRound: ops === undefined ? undefined : Math.floor(ops),
    warmupOps: ops === undefined ? undefined : Math.max(1, Math.floor(ops / 4)),
    clients: clients as ClientName[],
    workloads: list('BENCH_WORKLOADS'),
    heapOps: Math.floor(num('BENCH_HEAP_OPS', 3000, 0)),
    outDir: env['BENCH_OUT_DIR'] ?? join(process.cwd(), 'bench'),
    memcachedArgs:
      list('BENCH_MEMCACHED_ARGS')?.flatMap((a) => a.split(' ')) ?? DEFAULT_MEMCACHED_ARGS,
    timeoutMs: num('BENCH_TIMEOUT_MS', 5000, 1),
    log: (line) => process.stderr.write(`${line}\n`),
  };
}

// ---------------------------------------------------------------------------------------------
// Results

export interface MemorySample {
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  rss: number;
}

export interface RoundResult {
  round: number;
  ops: number;
  errors: number;
  elapsedMs: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  maxMs: number;
  /** CPU time of the bench process per operation, µs (where measured). */
  cpuUsPerOp?: number;
}

export interface ClientResult {
  client: ClientName;
  /** In a variant workload: how this run of the client compressed. */
  variant?: Variant;
  /** From the median round (by ops/s). */
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  /** Which round was the median. */
  medianRound: number;
  /** Median over the rounds of the CPU time per operation, µs (where measured). */
  cpuUsPerOp?: number;
  rounds: RoundResult[];
  /** Process memory right after this client's last round (after a full GC when --expose-gc). */
  memoryAfter: MemorySample;
  notes: string[];
  /** Set when the client could not run the workload (then its numbers are 0). */
  error?: string;
}

export interface WorkloadResult {
  id: string;
  title: string;
  group: Workload['group'];
  op: Workload['op'];
  valueSize: number;
  concurrency: number;
  batch?: number;
  results: ClientResult[];
  /**
   * Variant workloads: per client, each variant's ops/s (median round) and its ratio to the
   * uncompressed run, the median over the rounds of (variant ÷ uncompressed in the same round).
   */
  variants?: VariantSummary[];
  summary: {
    ours?: number;
    /** Ours with autoBatch off (concurrent get workloads only). */
    oursNoBatch?: number;
    /** Ours with `protocol: 'binary'`. */
    oursBinary?: number;
    /** ours-binary ops/s ÷ memjs ops/s (both binary protocol). */
    oursBinaryOverMemjs?: number;
    /** Ours with protocol: 'meta' (get/set/getMany workloads), and its ops/s ÷ ours (text). */
    oursMeta?: number;
    metaOverText?: number;
    /**
     * The median over the rounds of (meta ops/s ÷ text ops/s in the same round): less sensitive
     * than {@link metaOverText} to load that changes during the run. Its spread: the lowest and
     * highest round ratios.
     */
    metaOverTextPaired?: number;
    metaOverTextRange?: [number, number];
    /** CPU µs per call of this process, text and meta (medians of the rounds). */
    textCpuUsPerCall?: number;
    metaCpuUsPerCall?: number;
    bestPeer?: { client: ClientName; opsPerSec: number };
    /** ours ops/s ÷ best peer ops/s. */
    oursOverBestPeer?: number;
    raw?: number;
    /** ours ops/s ÷ raw ops/s. */
    oursOverRaw?: number;
    /** Ours: CPU µs per call (median of the rounds). */
    oursCpuUsPerCall?: number;
    /** Ours with a plain TracingChannel subscriber: ops/s, and the CPU µs it adds per call. */
    oursTraced?: number;
    tracedCostUsPerCall?: number;
    /** Ours with the OpenTelemetry bridge on: ops/s, and the CPU µs it adds per call. */
    oursOtel?: number;
    otelCostUsPerCall?: number;
  };
}

export interface VariantSummary {
  client: ClientName;
  opsPerSec: Partial<Record<Variant, number>>;
  /** CPU time of the bench process per call, µs (median round): less sensitive to other load. */
  cpuUsPerOp: Partial<Record<Variant, number>>;
  overNone: Partial<Record<Variant, number>>;
  /** The per-round ratios behind overNone. */
  roundRatios: Partial<Record<Variant, number[]>>;
}

export interface LinearityResult {
  client: ClientName;
  points: Array<{
    size: number;
    msPerOp: number;
    usPerKB: number;
    opsPerSec: number;
    p50Ms: number;
    p99Ms: number;
  }>;
  /** Least squares of ms/op over size: ms = intercept + slope × KB. */
  fit: { slopeUsPerKB: number; interceptMs: number; r2: number };
}

export interface HeapFlatResult {
  client: ClientName;
  workload: string;
  ops: number;
  errors: number;
  durationMs: number;
  opsPerSec: number;
  /** After a full GC (when exposed) before and after the run. */
  start: MemorySample;
  end: MemorySample;
  /** Samples taken every `intervalMs` during the run (no forced GC). */
  intervalMs: number;
  samples: Array<{ tMs: number; ops: number } & MemorySample>;
  maxHeapUsed: number;
  /** (end − start) of heapUsed + arrayBuffers, bytes. */
  growthBytes: number;
  flat: boolean;
  criterion: string;
}

export interface BenchResults {
  meta: {
    date: string;
    durationMs: number;
    node: string;
    v8: string;
    platform: string;
    arch: string;
    osRelease: string;
    cpus: { count: number; model: string; speedMHz: number };
    totalMemMB: number;
    loadavgStart: number[];
    loadavgEnd: number[];
    gitCommit: string | undefined;
    memcached: { version: string; args: string[] };
    peers: Record<string, string>;
    gcExposed: boolean;
    config: {
      seconds: number;
      rounds: number;
      warmupSeconds: number;
      opsPerRound?: number | undefined;
      warmupOps?: number | undefined;
      clients: ClientName[];
      heapOps: number;
      timeoutMs: number;
    };
    method: string[];
  };
  workloads: WorkloadResult[];
  linearity: LinearityResult[];
  heapFlat?: HeapFlatResult;
}

export interface BenchOutput {
  results: BenchResults;
  jsonPath: string;
  svgPath: string;
}

// ---------------------------------------------------------------------------------------------
// Running

const gc = (globalThis as { gc?: () => void }).gc;

function memory(collect: boolean): MemorySample {
  if (collect && gc !== undefined) {
    gc();
    gc();
  }
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, rss: m.rss };
}

function selected(config: BenchConfig): Workload[] {
  const filter = config.workloads;
  if (filter === undefined) return [...WORKLOADS];
  const picked = WORKLOADS.filter((w) => filter.some((f) => w.id === f || w.id.startsWith(f)));
  if (picked.length === 0) {
    throw new Error(
      `BENCH_WORKLOADS matched nothing; workloads are: ${WORKLOADS.map((w) => w.id).join(', ')}`,
    );
  }
  return picked;
}

/** Runs the benchmark, writes results.json and results.svg to `config.outDir`. */
export async function runBench(config: BenchConfig): Promise<BenchOutput> {
  const started = now();
  const loadavgStart = os.loadavg();
  const workloads = selected(config);
  const server = await startMemcached({ args: config.memcachedArgs });
  const recorder = new LatencyRecorder();
  try {
    const stats = await serverStats(server);
    config.log(
      `memcached ${stats['version'] ?? '?'} on ${server.address} (${server.args.join(' ')})`,
    );
    const results: WorkloadResult[] = [];
    for (const workload of workloads) {
      if (clientsFor(workload, config.clients).length === 0) continue;
      results.push(await runWorkload(workload, config, server, recorder));
    }
    const heapFlat =
      config.heapOps > 0 && config.clients.includes('ours')
        ? await runHeapFlat(config, server, recorder)
        : undefined;
    const cpus = os.cpus();
    const bench: BenchResults = {
      meta: {
        date: new Date().toISOString(),
        durationMs: Math.round(now() - started),
        node: process.version,
        v8: process.versions.v8,
        platform: process.platform,
        arch: process.arch,
        osRelease: os.release(),
        cpus: {
          count: cpus.length,
          model: cpus[0]?.model ?? 'unknown',
          speedMHz: cpus[0]?.speed ?? 0,
        },
        totalMemMB: Math.round(os.totalmem() / 2 ** 20),
        loadavgStart,
        loadavgEnd: os.loadavg(),
        gitCommit: gitCommit(),
        memcached: { version: stats['version'] ?? 'unknown', args: [...server.args] },
        peers: Object.fromEntries(PEER_NAMES.map((p) => [p, packageVersion(p)])),
        gcExposed: gc !== undefined,
        config: {
          seconds: config.seconds,
          rounds: config.rounds,
          warmupSeconds: config.warmupSeconds,
          opsPerRound: config.opsPerRound,
          warmupOps: config.warmupOps,
          clients: config.clients,
          heapOps: config.heapOps,
          timeoutMs: config.timeoutMs,
        },
        method: [
          'One process, one memcached started by the run; clients run one at a time, never concurrently.',
          'Per workload: every client stores its own keys with its own set (so each reads its own format), warms up, then runs `rounds` rounds, clients interleaved (round r starts with client r mod n).',
          'Reported numbers come from the median round by ops/s; every round is in `rounds`.',
          'Closed loop: `concurrency` workers each start the next call when the previous settles; latency is per call (performance.now(), stored in a preallocated Float64Array); p50/p99 are nearest-rank.',
          'Values are ASCII strings; every client returns a string from get (memjs Buffers are decoded with toString()).',
          'raw: pre-encoded pipelined requests on one socket, replies counted by a minimal scanner (no decoding): a ceiling for any client on this machine.',
          'memoryAfter is process-wide (all clients share the process), taken after a full GC when run with --expose-gc.',
        ],
      },
      workloads: results,
      linearity: linearity(results),
      ...(heapFlat === undefined ? {} : { heapFlat }),
    };
    await mkdir(config.outDir, { recursive: true });
    const jsonPath = join(config.outDir, 'results.json');
    const svgPath = join(config.outDir, 'results.svg');
    await writeFile(jsonPath, JSON.stringify(bench, null, 2) + '\n');
    await writeFile(svgPath, renderSvg(bench));
    return { results: bench, jsonPath, svgPath };
  } finally {
    await server.stop();
  }
}

interface Contender {
  name: ClientName;
  variant?: Variant;
  driver?: Driver;
  raw?: RawPipeline;
  notes: string[];
  run(limit: RoundLimit): Promise<LoopOutcome>;
  rounds: RoundResult[];
  memoryAfter?: MemorySample;
  error?: string;
}

async function runWorkload(
  workload: Workload,
  config: BenchConfig,
  server: MemcachedProcess,
  recorder: LatencyRecorder,
): Promise<WorkloadResult> {
  const names = clientsFor(workload, config.clients);
  config.log(`\n${workload.id}: ${workload.title} — ${names.join(', ')}`);
  const value = valueFor(workload);
  const contenders: Contender[] = [];
  try {
    for (const name of names) {
      for (const variant of workload.variants ?? [undefined]) {
        contenders.push(await prepare(name, variant, workload, value, config, server, recorder));
      }
    }
    const roundLimit: RoundLimit =
      config.opsPerRound !== undefined
        ? { kind: 'ops', ops: config.opsPerRound }
        : { kind: 'duration', ms: (config.seconds * 1000) / config.rounds };
    const warmup: RoundLimit =
      config.warmupOps !== undefined
        ? { kind: 'ops', ops: config.warmupOps }
        : { kind: 'duration', ms: config.warmupSeconds * 1000 };
    for (const c of contenders) {
      if (c.error !== undefined) continue;
      try {
        const w = await c.run(warmup);
        if (w.ops === 0 && w.errors > 0) throw w.firstError;
        await verify(c, workload, value);
      } catch (err) {
        c.error = `warm-up failed: ${errorText(err)}`;
        config.log(`  ${label(c)}: ${c.error}`);
      }
    }
    for (let round = 0; round < config.rounds; round++) {
      const live = contenders.filter((c) => c.error === undefined);
      for (let k = 0; k < live.length; k++) {
        const c = live[(round + k) % live.length]!;
        gc?.();
        const outcome = await c.run(roundLimit);
        const lat = recorder.summary();
        const r: RoundResult = {
          round,
          ops: outcome.ops,
          errors: outcome.errors,
          elapsedMs: outcome.elapsedMs,
          opsPerSec: outcome.elapsedMs > 0 ? (outcome.ops * 1000) / outcome.elapsedMs : 0,
          ...lat,
          ...(outcome.cpuMs === undefined || outcome.ops === 0
            ? {}
            : { cpuUsPerOp: (outcome.cpuMs * 1000) / outcome.ops }),
        };
        c.rounds.push(r);
        if (outcome.errors > 0) {
          config.log(
            `  ${label(c)}: ${outcome.errors} errors in round ${round}: ${errorText(outcome.firstError)}`,
          );
        }
        if (outcome.ops === 0)
          c.error = `no successful operation: ${errorText(outcome.firstError)}`;
        if (round === config.rounds - 1 || c.error !== undefined) c.memoryAfter = memory(true);
        config.log(
          `  round ${round} ${label(c).padEnd(16)} ${fmtInt(r.opsPerSec).padStart(9)} ops/s  p50 ${r.p50Ms.toFixed(3)} ms  p99 ${r.p99Ms.toFixed(3)} ms`,
        );
      }
    }
  } finally {
    for (const c of contenders) {
      await c.driver?.close();
      await c.raw?.close();
    }
  }
  const results = contenders.map(toClientResult);
  return {
    id: workload.id,
    title: workload.title,
    group: workload.group,
    op: workload.op,
    valueSize: workload.valueSize,
    concurrency: workload.concurrency,
    ...(workload.batch === undefined ? {} : { batch: workload.batch }),
    results,
    ...(workload.variants === undefined ? {} : { variants: summarizeVariants(results) }),
    summary: summarize(results.filter((r) => r.variant === undefined || r.variant === 'none')),
  };
}

function label(c: { name: ClientName; variant?: Variant | undefined }): string {
  return c.variant === undefined ? c.name : `${c.name} ${c.variant}`;
}

/** Per client of a variant workload: ops/s per variant and the round-by-round ratios. */
function summarizeVariants(results: readonly ClientResult[]): VariantSummary[] {
  const out: VariantSummary[] = [];
  for (const client of [...new Set(results.map((r) => r.client))]) {
    const mine = results.filter((r) => r.client === client && r.error === undefined);
    const none = mine.find((r) => r.variant === 'none');
    const summary: VariantSummary = {
      client,
      opsPerSec: {},
      cpuUsPerOp: {},
      overNone: {},
      roundRatios: {},
    };
    for (const r of mine) {
      if (r.variant === undefined) continue;
      summary.opsPerSec[r.variant] = r.opsPerSec;
      if (r.cpuUsPerOp !== undefined) summary.cpuUsPerOp[r.variant] = r.cpuUsPerOp;
      if (none === undefined || r.variant === 'none') continue;
      const ratios: number[] = [];
      for (const round of r.rounds) {
        const base = none.rounds.find((b) => b.round === round.round);
        if (base !== undefined && base.opsPerSec > 0) ratios.push(round.opsPerSec / base.opsPerSec);
      }
      ratios.sort((a, b) => a - b);
      summary.roundRatios[r.variant] = ratios;
      if (ratios.length > 0)
        summary.overNone[r.variant] = ratios[Math.floor((ratios.length - 1) / 2)]!;
    }
    out.push(summary);
  }
  return out;
}

/** Creates the client, stores its keys, and returns how to run a round with it. */
async function prepare(
  name: ClientName,
  variant: Variant | undefined,
  workload: Workload,
  value: string,
  config: BenchConfig,
  server: MemcachedProcess,
  recorder: LatencyRecorder,
): Promise<Contender> {
  const keys = keysFor(workload, name, variant);
  const base = { name, ...(variant === undefined ? {} : { variant }), rounds: [] as RoundResult[] };
  const compression = compressionOf(workload, variant);
  const needsData = workload.op === 'get' || workload.op === 'getMany';
  // raw reads plain values where ours reads what getOrSet stored (and the version keys).
  const rawData = needsData || workload.op === 'getOrSet';
  if (name === 'raw') {
    const raw = await RawPipeline.connect(server.host, server.port);
    if (rawData) {
      const data = Buffer.from(value);
      const sets = keys.map((k) => rawSet(k, 0, data));
      const stored = await raw.run(
        (i) => sets[i]!,
        16,
        { kind: 'ops', ops: sets.length },
        new LatencyRecorder(sets.length),
      );
      if (stored.errors > 0)
        throw new Error(`raw: populating failed: ${errorText(stored.firstError)}`);
    }
    const requests = rawRequests(workload, keys, value, variant);
    return {
      ...base,
      raw,
      notes: [
        'pre-encoded pipelined requests on one socket; replies counted, not decoded',
        ...(compression === false
          ? []
          : [`sends the ${compression}-compressed bytes (compressed once up front)`]),
      ],
      run: (limit) =>
        raw.run((i) => requests[i % requests.length]!, workload.concurrency, limit, recorder),
    };
  }
  let driver: Driver;
  try {
    driver = createDriver(name, {
      host: server.host,
      port: server.port,
      compression,
      timeoutMs: config.timeoutMs,
      maxValueSize: 2 * 1024 * 1024,
    });
  } catch (err) {
    // E.g. an option this version of the client does not know: report it, run the others.
    const error = `could not create the client: ${errorText(err)}`;
    config.log(`  ${label(base)}: ${error}`);
    return { ...base, notes: [], error, run: () => Promise.reject(new Error(error)) };
  }
  const contender: Contender = {
    ...base,
    driver,
    notes: driver.notes,
    run: opRunner(driver, workload, keys, value, recorder),
  };
  try {
    if (needsData) await populate(driver, keys, value);
    if (workload.op === 'getOrSet') {
      const getOrSet = cacheAside(driver);
      for (let i = 0; i < keys.length; i++) {
        await getOrSet(keys[i]!, () => value, tagsFor(workload, i));
      }
    }
  } catch (err) {
    contender.error = `populating failed: ${errorText(err)}`;
    config.log(`  ${label(base)}: ${contender.error}`);
  }
  return contender;
}

function opRunner(
  driver: Driver,
  workload: Workload,
  keys: readonly string[],
  value: string,
  recorder: LatencyRecorder,
): (limit: RoundLimit) => Promise<LoopOutcome> {
  const n = keys.length;
  let op: (i: number) => Promise<unknown>;
  switch (workload.op) {
    case 'get':
      op = (i) => driver.get(keys[i % n]!);
      break;
    case 'set':
    case 'setCompressed':
    case 'setText':
      op = (i) => driver.set(keys[i % n]!, value);
      break;
    case 'getMany': {
      const batches = batchesFor(keys, workload.batch ?? 100);
      op = (i) => driver.getMany(batches[i % batches.length]!);
      break;
    }
    case 'getOrSet': {
      const getOrSet = cacheAside(driver);
      const tags = keys.map((_, i) => tagsFor(workload, i));
      // Every call should hit (the keys were stored by populate): a factory run is a miss.
      const miss = (): string => {
        throw new Error('getOrSet missed: the factory ran');
      };
      op = (i) => getOrSet(keys[i % n]!, miss, tags[i % n]);
      break;
    }
  }
  const activate = driver.activate;
  if (activate === undefined)
    return (limit) => closedLoop(op, workload.concurrency, limit, recorder);
  return async (limit) => {
    const deactivate = activate();
    try {
      return await closedLoop(op, workload.concurrency, limit, recorder);
    } finally {
      deactivate();
    }
  };
}

/** The driver's getOrSet (ours only). */
function cacheAside(driver: Driver): NonNullable<Driver['getOrSet']> {
  const getOrSet = driver.getOrSet?.bind(driver);
  if (getOrSet === undefined) throw new Error(`${driver.name} has no getOrSet`);
  return getOrSet;
}

async function populate(driver: Driver, keys: readonly string[], value: string): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < keys.length) {
      const key = keys[next++]!;
      if (!(await driver.set(key, value)))
        throw new Error(`${driver.name}: set ${key} was not stored`);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
}

/** Checks the client reads back exactly what the workload stored (catches a broken adapter). */
async function verify(c: Contender, workload: Workload, value: string): Promise<void> {
  const d = c.driver;
  if (d === undefined) return;
  const keys = keysFor(workload, c.name, c.variant);
  if (workload.op === 'getMany') {
    const hits = await d.getMany(keys.slice(0, workload.batch ?? 100));
    if (hits !== (workload.batch ?? 100))
      throw new Error(`getMany returned ${hits} hits, expected ${workload.batch ?? 100}`);
    return;
  }
  const got =
    workload.op === 'getOrSet'
      ? await cacheAside(d)(keys[0]!, () => 'a miss', tagsFor(workload, 0))
      : await d.get(keys[0]!);
  if (got !== value) {
    throw new Error(
      `get returned ${got === undefined ? 'a miss' : `${typeof got} of length ${String(got).length}`}, expected the ${value.length}-byte string`,
    );
  }
}

function toClientResult(c: Contender): ClientResult {
  const ranked = [...c.rounds].sort((a, b) => a.opsPerSec - b.opsPerSec);
  const median = ranked[Math.floor((ranked.length - 1) / 2)];
  const base = {
    client: c.name,
    ...(c.variant === undefined ? {} : { variant: c.variant }),
    rounds: c.rounds,
    memoryAfter: c.memoryAfter ?? memory(false),
    notes: c.notes,
  };
  if (c.error !== undefined || median === undefined) {
    return {
      ...base,
      opsPerSec: 0,
      p50Ms: 0,
      p99Ms: 0,
      meanMs: 0,
      medianRound: -1,
      error: c.error ?? 'no rounds',
    };
  }
  const cpu = c.rounds
    .map((r) => r.cpuUsPerOp)
    .filter((v): v is number => v !== undefined)
    .sort((a, b) => a - b);
  return {
    ...base,
    opsPerSec: median.opsPerSec,
    p50Ms: median.p50Ms,
    p99Ms: median.p99Ms,
    meanMs: median.meanMs,
    medianRound: median.round,
    ...(cpu.length === 0 ? {} : { cpuUsPerOp: cpu[Math.floor((cpu.length - 1) / 2)]! }),
  };
}

/** Meta ÷ text round by round (see `metaOverTextPaired`); nothing when either did not run. */
function pairedMeta(
  ok: readonly ClientResult[],
): Pick<WorkloadResult['summary'], 'metaOverTextPaired' | 'metaOverTextRange'> {
  const text = ok.find((r) => r.client === 'ours');
  const meta = ok.find((r) => r.client === 'ours-meta');
  if (text === undefined || meta === undefined) return {};
  const ratios: number[] = [];
  for (const round of meta.rounds) {
    const base = text.rounds.find((b) => b.round === round.round);
    if (base !== undefined && base.opsPerSec > 0) ratios.push(round.opsPerSec / base.opsPerSec);
  }
  if (ratios.length === 0) return {};
  ratios.sort((a, b) => a - b);
  const mid = ratios.length >> 1;
  const median = ratios.length % 2 === 1 ? ratios[mid]! : (ratios[mid - 1]! + ratios[mid]!) / 2;
  return { metaOverTextPaired: median, metaOverTextRange: [ratios[0]!, ratios.at(-1)!] };
}

function summarize(results: readonly ClientResult[]): WorkloadResult['summary'] {
  const ok = results.filter((r) => r.error === undefined);
  const ours = ok.find((r) => r.client === 'ours')?.opsPerSec;
  const oursNoBatch = ok.find((r) => r.client === 'ours-nobatch')?.opsPerSec;
  const oursBinary = ok.find((r) => r.client === 'ours-binary')?.opsPerSec;
  const memjs = ok.find((r) => r.client === 'memjs')?.opsPerSec;
  const oursMeta = ok.find((r) => r.client === 'ours-meta')?.opsPerSec;
  const raw = ok.find((r) => r.client === 'raw')?.opsPerSec;
  const cpuOf = (client: ClientName): number | undefined =>
    ok.find((r) => r.client === client)?.cpuUsPerOp;
  const traced = ok.find((r) => r.client === 'ours-traced')?.opsPerSec;
  const otel = ok.find((r) => r.client === 'ours-otel')?.opsPerSec;
  // What a subscriber adds per call: the difference in CPU time per call of this process (less
  // sensitive to other load on the machine than ops/s).
  const oursCpu = cpuOf('ours');
  const cost = (client: ClientName): number | undefined => {
    const other = cpuOf(client);
    return oursCpu !== undefined && other !== undefined ? other - oursCpu : undefined;
  };
  const tracedCost = cost('ours-traced');
  const otelCost = cost('ours-otel');
  let best: ClientResult | undefined;
  for (const r of ok) {
    if (
      (PEER_NAMES as readonly string[]).includes(r.client) &&
      (best === undefined || r.opsPerSec > best.opsPerSec)
    )
      best = r;
  }
  return {
    ...(ours === undefined ? {} : { ours }),
    ...(oursNoBatch === undefined ? {} : { oursNoBatch }),
    ...(oursBinary === undefined ? {} : { oursBinary }),
    ...(oursBinary !== undefined && memjs !== undefined && memjs > 0
      ? { oursBinaryOverMemjs: oursBinary / memjs }
      : {}),
    ...(oursMeta === undefined ? {} : { oursMeta }),
    ...pairedMeta(ok),
    ...(cpuOf('ours-meta') === undefined || oursCpu === undefined
      ? {}
      : { textCpuUsPerCall: oursCpu, metaCpuUsPerCall: cpuOf('ours-meta') }),
    ...(oursMeta !== undefined && ours !== undefined && ours > 0
      ? { metaOverText: oursMeta / ours }
      : {}),
    ...(best === undefined ? {} : { bestPeer: { client: best.client, opsPerSec: best.opsPerSec } }),
    ...(ours !== undefined && best !== undefined && best.opsPerSec > 0
      ? { oursOverBestPeer: ours / best.opsPerSec }
      : {}),
    ...(raw === undefined ? {} : { raw }),
    ...(ours !== undefined && raw !== undefined && raw > 0 ? { oursOverRaw: ours / raw } : {}),
    ...(oursCpu === undefined || (traced === undefined && otel === undefined)
      ? {}
      : { oursCpuUsPerCall: oursCpu }),
    ...(traced === undefined ? {} : { oursTraced: traced }),
    ...(tracedCost === undefined ? {} : { tracedCostUsPerCall: tracedCost }),
    ...(otel === undefined ? {} : { oursOtel: otel }),
    ...(otelCost === undefined ? {} : { otelCostUsPerCall: otelCost }),
  };
}

/** ms/op over value size for every client of the linearity workloads, with a least-squares fit. */
export function linearity(workloads: readonly WorkloadResult[]): LinearityResult[] {
  const lin = workloads.filter((w) => w.group === 'linearity');
  const out: LinearityResult[] = [];
  for (const client of CLIENT_NAMES) {
    const points = lin
      .map((w) => ({ w, r: w.results.find((r) => r.client === client && r.error === undefined) }))
      .filter(
        (p): p is { w: WorkloadResult; r: ClientResult } => p.r !== undefined && p.r.opsPerSec > 0,
      )
      .map(({ w, r }) => {
        const msPerOp = (1000 * w.concurrency) / r.opsPerSec;
        return {
          size: w.valueSize,
          msPerOp,
          usPerKB: (msPerOp * 1000) / (w.valueSize / 1024),
          opsPerSec: r.opsPerSec,
          p50Ms: r.p50Ms,
          p99Ms: r.p99Ms,
        };
      })
      .sort((a, b) => a.size - b.size);
    if (points.length < 2) continue;
    out.push({ client, points, fit: fitLine(points.map((p) => [p.size / 1024, p.msPerOp])) });
  }
  return out;
}

/** Least squares y = a + b·x; slope reported in µs per unit x. */
export function fitLine(xy: ReadonlyArray<readonly [number, number]>): LinearityResult['fit'] {
  const n = xy.length;
  let sx = 0;
  let sy = 0;
  for (const [x, y] of xy) {
    sx += x;
    sy += y;
  }
  const mx = sx / n;
  const my = sy / n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (const [x, y] of xy) {
    sxx += (x - mx) ** 2;
    sxy += (x - mx) * (y - my);
    syy += (y - my) ** 2;
  }
  const slope = sxx === 0 ? 0 : sxy / sxx;
  const intercept = my - slope * mx;
  const r2 = sxx === 0 || syy === 0 ? 1 : (sxy * sxy) / (sxx * syy);
  return { slopeUsPerKB: slope * 1000, interceptMs: intercept, r2 };
}

/** Many 512 KB gets with ours, sampling the heap: it must stay flat (nothing retained per call). */
async function runHeapFlat(
  config: BenchConfig,
  server: MemcachedProcess,
  recorder: LatencyRecorder,
): Promise<HeapFlatResult> {
  const size = 512 * 1024;
  const workload: Workload = {
    id: 'heapflat-get-512KB-c4',
    title: 'get 512 KB, c4 (heap check)',
    op: 'get',
    valueSize: size,
    concurrency: 4,
    keyCount: 8,
    group: 'main',
  };
  config.log(`\n${workload.id}: ${config.heapOps} gets of 512 KB with ours, sampling memory`);
  const value = randomValue(size);
  const keys = keysFor(workload, 'ours');
  const driver = createDriver('ours', {
    host: server.host,
    port: server.port,
    compression: false,
    timeoutMs: config.timeoutMs,
    maxValueSize: 2 * 1024 * 1024,
  });
  try {
    await populate(driver, keys, value);
    await closedLoop(
      (i) => driver.get(keys[i % keys.length]!),
      4,
      { kind: 'ops', ops: 200 },
      recorder,
    );
    const intervalMs = 50;
    const samples: HeapFlatResult['samples'] = [];
    let ops = 0;
    const start = memory(true);
    const t0 = now();
    const timer = setInterval(
      () => samples.push({ tMs: Math.round(now() - t0), ops, ...memory(false) }),
      intervalMs,
    );
    let outcome: LoopOutcome;
    try {
      outcome = await closedLoop(
        async (i) => {
          await driver.get(keys[i % keys.length]!);
          ops++;
        },
        4,
        { kind: 'ops', ops: config.heapOps },
        recorder,
      );
    } finally {
      clearInterval(timer);
    }
    samples.push({ tMs: Math.round(now() - t0), ops, ...memory(false) });
    const end = memory(true);
    const growthBytes = end.heapUsed + end.arrayBuffers - (start.heapUsed + start.arrayBuffers);
    const limit = 4 * 2 ** 20;
    const result: HeapFlatResult = {
      client: 'ours',
      workload: workload.id,
      ops: outcome.ops,
      errors: outcome.errors,
      durationMs: outcome.elapsedMs,
      opsPerSec: (outcome.ops * 1000) / outcome.elapsedMs,
      start,
      end,
      intervalMs,
      samples,
      maxHeapUsed: Math.max(...samples.map((s) => s.heapUsed)),
      growthBytes,
      flat: growthBytes < limit,
      criterion: `heapUsed + arrayBuffers after GC grows by less than ${limit / 2 ** 20} MiB over the run${gc === undefined ? ' (no --expose-gc: measured without forced GC, noisy)' : ''}`,
    };
    config.log(
      `  ${result.ops} ops in ${(result.durationMs / 1000).toFixed(1)} s; heapUsed ${mb(start.heapUsed)} → ${mb(end.heapUsed)} MB (max sampled ${mb(result.maxHeapUsed)}), arrayBuffers ${mb(start.arrayBuffers)} → ${mb(end.arrayBuffers)} MB: ${result.flat ? 'flat' : 'GROWING'}`,
    );
    return result;
  } finally {
    await driver.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

function errorText(err: unknown): string {
  if (err instanceof Error) return `${err.constructor.name}: ${err.message}`;
  return String(err);
}

export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function mb(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}

function packageVersion(name: DriverName): string {
  try {
    const pkg = JSON.parse(
      readFileSync(join(process.cwd(), 'node_modules', name, 'package.json'), 'utf8'),
    ) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function gitCommit(): string | undefined {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return undefined;
  }
}

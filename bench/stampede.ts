/**
 * `npm run bench:stampede`: a cache stampede. N concurrent misses of one key, spread over P
 * processes (STAMPEDE_PROCESSES × STAMPEDE_CALLS), with a STAMPEDE_FACTORY_MS factory, in three
 * ways:
 *
 * - `lease`: ours, `protocol: 'meta'`, `getOrSet(key, factory, { lease })`: one factory run in all;
 * - `getOrSet`: ours, text, `getOrSet` without a lease: single flight per process (P runs);
 * - `wrap`: the cache-manager way (get; on a miss the factory, then set), no coalescing (N runs).
 *
 * Per round a fresh key; factory runs are counted by memcached (an incr counter); latency is per
 * call, from the go signal its process received to its value. Prints a table, writes
 * bench/stampede-results.json (BENCH_OUT_DIR).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { MemcachedClient } from '../lib/index.js';
import { startMemcached, stopAllMemcached } from '../test/harness/memcached.js';
import type { StampedeMode } from './stampede-child.js';

const env = (name: string, fallback: number): number => {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer`);
  return n;
};

const PROCESSES = env('STAMPEDE_PROCESSES', 4);
const CALLS = env('STAMPEDE_CALLS', 25);
const FACTORY_MS = env('STAMPEDE_FACTORY_MS', 200);
const ROUNDS = env('STAMPEDE_ROUNDS', 5);
const MODES: readonly StampedeMode[] = ['lease', 'getOrSet', 'wrap'];
const childScript = fileURLToPath(new URL('./stampede-child.js', import.meta.url));

interface Child {
  process: ChildProcess;
  next(): Promise<string>;
}

function startChild(server: string, mode: StampedeMode): Child {
  const child = spawn(
    process.execPath,
    [childScript, JSON.stringify({ server, mode, calls: CALLS, factoryMs: FACTORY_MS })],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return {
    process: child,
    async next() {
      const line = await lines.next();
      if (line.done === true) throw new Error(`a ${mode} process exited`);
      return line.value;
    },
  };
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

interface ModeResult {
  mode: StampedeMode;
  factoryRuns: number[];
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

async function runMode(
  server: string,
  admin: MemcachedClient,
  mode: StampedeMode,
): Promise<ModeResult> {
  const children = Array.from({ length: PROCESSES }, () => startChild(server, mode));
  try {
    for (const c of children) {
      const ready = await c.next();
      if (ready !== 'READY') throw new Error(`unexpected ${ready}`);
    }
    const runs: number[] = [];
    const latencies: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const key = `stampede:${mode}:${round}`;
      const counter = `${key}:runs`;
      await admin.delete(key);
      await admin.set(counter, 0);
      for (const c of children) c.process.stdin!.write(`${key} ${counter}\n`);
      for (const c of children) {
        const done = await c.next();
        latencies.push(...(JSON.parse(done.slice('DONE '.length)) as number[]));
      }
      runs.push((await admin.get<number>(counter)) ?? -1);
    }
    latencies.sort((a, b) => a - b);
    return {
      mode,
      factoryRuns: runs,
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
      maxMs: latencies[latencies.length - 1]!,
    };
  } finally {
    for (const c of children) c.process.stdin!.end();
    await Promise.all(
      children.map((c) => new Promise((resolve) => c.process.once('exit', resolve))),
    );
  }
}

const LABELS: Record<StampedeMode, string> = {
  lease: 'ours, meta, getOrSet { lease }',
  getOrSet: 'ours, text, getOrSet (per-process single flight)',
  wrap: 'cache-manager-style wrap (get, factory, set)',
};

async function main(): Promise<void> {
  const loadBefore = loadavg();
  const server = await startMemcached({ args: ['-t', '2'] });
  const admin = new MemcachedClient({ servers: server.address, protocol: 'meta' });
  const results: ModeResult[] = [];
  try {
    for (const mode of MODES) {
      process.stderr.write(`stampede: ${mode}...\n`);
      results.push(await runMode(server.address, admin, mode));
    }
  } finally {
    await admin.close();
    await stopAllMemcached();
  }
  const n = PROCESSES * CALLS;
  const lines = [
    `stampede: ${n} concurrent misses of one key (${PROCESSES} processes × ${CALLS} calls), ${FACTORY_MS} ms factory, ${ROUNDS} rounds; ${cpus().length} CPUs, load ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`,
    '',
    `${'mode'.padEnd(52)}${'factory runs/round'.padStart(20)}${'p50 ms'.padStart(10)}${'p99 ms'.padStart(10)}${'max ms'.padStart(10)}`,
  ];
  for (const r of results) {
    const runs = [...new Set(r.factoryRuns)].sort((a, b) => a - b).join('/');
    lines.push(
      `${LABELS[r.mode].padEnd(52)}${runs.padStart(20)}${r.p50Ms.toFixed(1).padStart(10)}${r.p99Ms.toFixed(1).padStart(10)}${r.maxMs.toFixed(1).padStart(10)}`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  const outDir = process.env['BENCH_OUT_DIR'] ?? join(process.cwd(), 'bench');
  const path = join(outDir, 'stampede-results.json');
  await writeFile(
    path,
    `${JSON.stringify(
      {
        processes: PROCESSES,
        callsPerProcess: CALLS,
        factoryMs: FACTORY_MS,
        rounds: ROUNDS,
        cpus: cpus().length,
        node: process.version,
        loadBefore,
        loadAfter: loadavg(),
        results,
      },
      null,
      2,
    )}\n`,
  );
  process.stdout.write(`wrote ${path}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `stampede bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});

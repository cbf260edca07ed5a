/**
 * getOrSet's cross-process guarantees (API.md section 8) with real child processes: each child
 * imports a build of the package (lib/ transpiled file by file), opens a meta client, waits for
 * the go signal, then runs concurrent getOrSet calls of one key. Factory runs are counted by
 * memcached itself (an incr counter); nothing is shared between the processes but the server.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MemcachedClient } from '../../lib/index.js';
import { startMemcached, stopAllMemcached, type MemcachedProcess } from '../harness/memcached.js';
import { buildPackage, ROOT } from '../harness/package-build.js';

/**
 * argv[2]: JSON config. Prints READY once connected, waits for a line on stdin, runs `calls`
 * concurrent getOrSet calls, waits `lingerMs` (background refreshes), prints REPORT [results].
 * The factory counts its run with incr; in mode `throw` the first run throws, in mode `hang` the
 * first run prints WINNER and never returns (the test kills that process).
 */
const CHILD = `
const cfg = JSON.parse(process.argv[2]);
const { MemcachedClient } = await import(cfg.entry);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mc = new MemcachedClient({ servers: cfg.server, protocol: 'meta', timeout: 5000 });
await mc.version();
console.log('READY');
await new Promise((resolve) => process.stdin.once('data', resolve));
const factory = async () => {
  const n = await mc.incr(cfg.counter);
  if (n === 1 && cfg.mode === 'throw') { await sleep(300); throw new Error('winner failed'); }
  if (n === 1 && cfg.mode === 'hang') { console.log('WINNER'); await new Promise(() => {}); }
  await sleep(cfg.factoryMs);
  return 'value:' + n;
};
const results = await Promise.all(Array.from({ length: cfg.calls }, async () => {
  const t0 = performance.now();
  try {
    const value = await mc.getOrSet(cfg.key, factory, cfg.opts);
    return { value, ms: Math.round(performance.now() - t0) };
  } catch (error) {
    return { error: String(error && error.message), ms: Math.round(performance.now() - t0) };
  }
}));
await sleep(cfg.lingerMs);
await mc.close();
console.log('REPORT ' + JSON.stringify(results));
process.stdin.destroy();
`;

interface CallResult {
  value?: string;
  error?: string;
  ms: number;
}

interface Child {
  process: ChildProcess;
  ready: Promise<void>;
  /** Resolves when it printed WINNER. */
  winner: Promise<void>;
  /** The REPORT of a child that exited normally; undefined for a killed one. */
  done: Promise<CallResult[] | undefined>;
}

let server: MemcachedProcess;
let admin: MemcachedClient;
let entry: string;
let script: string;
const outDir = join(ROOT, '.tmp', `stampede-processes-${process.pid}`);

beforeAll(async () => {
  server = await startMemcached();
  admin = new MemcachedClient({ servers: server.address, protocol: 'meta' });
  entry = await buildPackage(join(outDir, 'lib'));
  script = join(outDir, 'stampede-child.mjs');
  await mkdir(outDir, { recursive: true });
  await writeFile(script, CHILD);
}, 60_000);

afterAll(async () => {
  await admin.close();
  await stopAllMemcached();
  await rm(outDir, { recursive: true, force: true });
});

beforeEach(async () => {
  await admin.flushAll();
  await admin.set('runs', 0);
});

function startChild(config: Record<string, unknown>): Child {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['NODE_OPTIONS']; // jest's --experimental-vm-modules
  const child = spawn(
    process.execPath,
    ['--unhandled-rejections=strict', script, JSON.stringify({ entry, ...config })],
    { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  let onReady!: () => void;
  let onWinner!: () => void;
  const ready = new Promise<void>((r) => (onReady = r));
  const winner = new Promise<void>((r) => (onWinner = r));
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    if (out.includes('READY\n')) onReady();
    if (out.includes('WINNER\n')) onWinner();
  });
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const done = new Promise<CallResult[] | undefined>((resolve, reject) => {
    child.once('exit', (code, signal) => {
      if (signal === 'SIGKILL') return resolve(undefined);
      const line = out.split('\n').find((l) => l.startsWith('REPORT '));
      if (code !== 0 || line === undefined) {
        reject(new Error(`child exited with ${code ?? signal}: ${err.slice(0, 800)}`));
        return;
      }
      resolve(JSON.parse(line.slice('REPORT '.length)) as CallResult[]);
    });
  });
  return { process: child, ready, winner, done };
}

/** Starts `n` children, waits until every one is connected, then lets them all go at once. */
async function stampede(n: number, config: Record<string, unknown>): Promise<Child[]> {
  const children = Array.from({ length: n }, () =>
    startChild({ server: server.address, counter: 'runs', lingerMs: 0, ...config }),
  );
  await Promise.all(children.map((c) => c.ready));
  for (const c of children) c.process.stdin!.write('go\n');
  return children;
}

const runs = async (): Promise<number | undefined> => admin.get<number>('runs');

describe('getOrSet across real processes (3 processes × 10 concurrent calls)', () => {
  test('a lease on one missing key with an 800 ms factory: exactly one factory run, every caller gets its value', async () => {
    const children = await stampede(3, {
      key: 'product:1',
      calls: 10,
      factoryMs: 800,
      opts: { lease: true, ttl: 60 },
    });
    const reports = await Promise.all(children.map((c) => c.done));
    const all = reports.flatMap((r) => r!);
    expect(all.map((r) => r.value ?? r.error)).toEqual(Array(30).fill('value:1'));
    expect(await runs()).toBe(1);
    expect(await admin.get('product:1')).toBe('value:1');
  }, 60_000);

  test('a winner whose factory throws gives the lease back: another process computes within seconds, not after lease.ttl (20 s)', async () => {
    const children = await stampede(3, {
      key: 'product:2',
      calls: 10,
      factoryMs: 200,
      mode: 'throw',
      opts: { lease: { ttl: 20, wait: 15_000 }, ttl: 60 },
    });
    const reports = (await Promise.all(children.map((c) => c.done))).map((r) => r!);
    // The winner's process: all its callers share the failure (single flight).
    const failed = reports.filter((r) => r.every((c) => c.error === 'winner failed'));
    const served = reports.filter((r) => r.every((c) => c.value === 'value:2'));
    expect({ failed: failed.length, served: served.length }).toEqual({ failed: 1, served: 2 });
    const slowest = Math.max(...served.flat().map((c) => c.ms));
    // The throw comes at ~300 ms; the next poll (backoff ≤ 500 ms) takes over at once.
    expect(slowest).toBeLessThan(3000);
    expect(await runs()).toBe(2);
    expect(await admin.get('product:2')).toBe('value:2');
  }, 60_000);

  test('a winner killed with SIGKILL while computing: another process computes once its lease expired (lease.ttl = 3 s)', async () => {
    const children = await stampede(3, {
      key: 'product:3',
      calls: 10,
      factoryMs: 100,
      mode: 'hang',
      opts: { lease: { ttl: 3, wait: 20_000 }, ttl: 60 },
    });
    const winner = await Promise.race(children.map((c, i) => c.winner.then(() => i)));
    children[winner]!.process.kill('SIGKILL');
    const reports = await Promise.all(children.map((c) => c.done));
    expect(reports[winner]).toBeUndefined();
    const survivors = reports.filter((r) => r !== undefined).flat();
    expect(survivors.map((c) => c.value ?? c.error)).toEqual(Array(20).fill('value:2'));
    // memcached's clock ticks in whole seconds: a 3 s placeholder expires 2 to 3 s after it was made.
    expect(Math.min(...survivors.map((c) => c.ms))).toBeGreaterThanOrEqual(1900);
    expect(await runs()).toBe(2);
  }, 60_000);

  test('staleWhileRevalidate: readers in every process get the old value without waiting, and exactly one refresh runs', async () => {
    const opts = { ttl: 1, staleWhileRevalidate: 60 };
    expect(await admin.getOrSet('product:4', () => 'old', opts)).toBe('old');
    await new Promise((r) => setTimeout(r, 2100)); // past ttl, within the window
    const children = await stampede(3, {
      key: 'product:4',
      calls: 10,
      factoryMs: 800,
      lingerMs: 1500, // the refreshing process keeps running until its refresh is stored
      opts,
    });
    const all = (await Promise.all(children.map((c) => c.done))).flatMap((r) => r!);
    expect(all.map((r) => r.value ?? r.error)).toEqual(Array(30).fill('old'));
    // Served at once: far less than the 800 ms the refresh takes.
    expect(Math.max(...all.map((c) => c.ms))).toBeLessThan(500);
    expect(await runs()).toBe(1);
    expect(await admin.get('product:4')).toBe('value:1');
  }, 60_000);
});

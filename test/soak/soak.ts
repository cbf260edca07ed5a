/**
 * Soak: millions of mixed, checked operations against real memcached servers behind fault
 * proxies, with random network faults and real server restarts (SIGKILL or SIGTERM, then start
 * again on the same port). Prints throughput, errors by class, wrong values and heap over time;
 * exits 1 when any get returned a value its key could not hold, when an error was not a
 * MemcachedError, on an unhandled rejection, or when the heap kept growing.
 *
 *   npm run soak        # SOAK_OPS (default 2,000,000) or SOAK_SECONDS (default 900), whichever first
 *   npm run soak:ci     # the same, about 20 s (two server restarts)
 *
 * Settings (environment): SOAK_OPS, SOAK_SECONDS, SOAK_CONCURRENCY (64), SOAK_SERVERS (2),
 * SOAK_KEYS (20000), SOAK_POOL (4), SOAK_TIMEOUT_MS (200), SOAK_FAULT_GAP_MS (150, mean pause
 * between faults; 0 = no faults), SOAK_RESTART_EVERY_S (20; 0 = no restarts), SOAK_REPORT_EVERY_S
 * (10), SOAK_SEED, SOAK_MAX_HEAP_GROWTH_MB (64). `--ci` changes the defaults to a ~20 s run.
 *
 * Built with `tsc -p test/soak/tsconfig.json` into dist-all/ (git-, eslint- and prettier-ignored)
 * and run with `node --expose-gc` so heap samples are taken after a full GC.
 */
import { MemcachedClient } from '../../lib/client/memcached-client.js';
import { startMemcached, stopAllMemcached, type MemcachedProcess } from '../harness/memcached.js';
import { startProxy, type FaultProxy } from '../harness/proxy.js';
import { injectFaults, Workload, type Tally } from './workload.js';
import { prng } from '../harness/prng.js';

interface Config {
  ops: number;
  seconds: number;
  concurrency: number;
  servers: number;
  keys: number;
  pool: number;
  timeout: number;
  faultGapMs: number;
  restartEveryS: number;
  reportEveryS: number;
  seed: number;
  maxHeapGrowthMb: number;
}

function readConfig(argv: readonly string[], env: NodeJS.ProcessEnv): Config {
  const ci = argv.includes('--ci');
  const num = (name: string, fallback: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw.replace(/_/g, ''));
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number`);
    return n;
  };
  return {
    ops: num('SOAK_OPS', ci ? 100_000_000 : 2_000_000),
    seconds: num('SOAK_SECONDS', ci ? 20 : 900),
    concurrency: num('SOAK_CONCURRENCY', 64),
    servers: num('SOAK_SERVERS', 2),
    keys: num('SOAK_KEYS', 20_000),
    pool: num('SOAK_POOL', 4),
    timeout: num('SOAK_TIMEOUT_MS', 200),
    faultGapMs: num('SOAK_FAULT_GAP_MS', 150),
    restartEveryS: num('SOAK_RESTART_EVERY_S', ci ? 7 : 20),
    reportEveryS: num('SOAK_REPORT_EVERY_S', ci ? 5 : 10),
    seed: num('SOAK_SEED', Date.now() % 1_000_000),
    maxHeapGrowthMb: num('SOAK_MAX_HEAP_GROWTH_MB', 64),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const MB = 1024 * 1024;

const gc = (globalThis as { gc?: () => void }).gc;

interface HeapSample {
  second: number;
  heapMb: number;
  rssMb: number;
}

function sampleHeap(second: number): HeapSample {
  gc?.();
  const m = process.memoryUsage();
  return {
    second,
    heapMb: Math.round((m.heapUsed / MB) * 10) / 10,
    rssMb: Math.round(m.rss / MB),
  };
}

const fmt = (n: number): string => n.toLocaleString('en-US');

function errorSummary(t: Tally): string {
  const entries = Object.entries(t.errors).sort((a, b) => b[1] - a[1]);
  if (entries.length === 0) return 'none';
  return entries.map(([k, v]) => `${k.replace(/^Memcached/, '')} ${fmt(v)}`).join(', ');
}

async function main(): Promise<number> {
  const config = readConfig(process.argv.slice(2), process.env);
  const random = prng(config.seed);
  let unhandled = 0;
  process.on('unhandledRejection', (reason) => {
    unhandled++;
    console.error('unhandled rejection:', reason);
  });
  console.log(
    `soak: ${JSON.stringify(config)}${gc ? '' : ' (run with --expose-gc for exact heap samples)'}`,
  );

  const servers: MemcachedProcess[] = [];
  for (let i = 0; i < config.servers; i++) servers.push(await startMemcached());
  const proxies: FaultProxy[] = [];
  for (const s of servers) proxies.push(await startProxy('127.0.0.1', s.port));
  const addresses = proxies.map((p) => p.address);

  const workload = new Workload({ keys: config.keys, concurrency: config.concurrency, random });
  const setup = new MemcachedClient({ servers: addresses, timeout: 10_000 });
  await workload.seed(setup);
  await setup.close();

  const mc = new MemcachedClient({
    servers: addresses,
    poolSize: config.pool,
    timeout: config.timeout,
    connectTimeout: 500,
    // Keys stay on their server (failover would legitimately serve stale values).
    failover: { failureThreshold: 1000 },
  });
  const tally = workload.tally;
  const started = performance.now();
  const elapsedS = (): number => (performance.now() - started) / 1000;
  let running = true;
  const stop = (): boolean => !running || elapsedS() >= config.seconds;

  const heap: HeapSample[] = [sampleHeap(0)];
  let restarts = 0;
  let lastOps = 0;
  let lastAt = 0;
  const report = setInterval(() => {
    const s = elapsedS();
    const sample = sampleHeap(Math.round(s));
    heap.push(sample);
    const rate = (tally.ops - lastOps) / (s - lastAt);
    lastOps = tally.ops;
    lastAt = s;
    const faults = Object.values(tally.faults).reduce((a, b) => a + b, 0);
    console.log(
      `[${s.toFixed(0).padStart(5)} s] ops ${fmt(tally.ops)} (${fmt(Math.round(rate))}/s)  errors: ${errorSummary(tally)}  wrong ${tally.wrongValues}  faults ${faults}  restarts ${restarts}  heap ${sample.heapMb} MB  rss ${sample.rssMb} MB`,
    );
  }, config.reportEveryS * 1000);

  const faults =
    config.faultGapMs > 0
      ? injectFaults({
          proxies,
          random,
          timeout: config.timeout,
          gapMin: config.faultGapMs / 2,
          gapSpread: config.faultGapMs,
          running: () => !stop(),
          tally,
        })
      : Promise.resolve();

  const restarter = (async (): Promise<void> => {
    if (config.restartEveryS <= 0) return;
    for (;;) {
      for (let waited = 0; waited < config.restartEveryS * 1000 && !stop(); waited += 100) {
        await sleep(100);
      }
      if (stop()) return;
      const j = Math.floor(random() * servers.length);
      const settle = workload.serverLost((key) => mc.serverFor(key) === addresses[j]);
      if (random() < 0.5) await servers[j]!.kill();
      else await servers[j]!.stop();
      await sleep(200 + random() * 800); // down for a while: connection errors, reconnects
      await servers[j]!.restart();
      restarts++;
      await sleep(500); // nothing of the old process can arrive any more
      settle();
    }
  })();

  try {
    await workload.run(mc, config.ops, stop);
  } finally {
    running = false;
    await Promise.all([faults, restarter]);
    clearInterval(report);
  }
  const seconds = elapsedS();
  await sleep(config.timeout * 2);
  await workload.verifyAll(mc);
  await mc.close();
  for (const p of proxies) await p.close();
  await stopAllMemcached();
  heap.push(sampleHeap(Math.round(elapsedS())));

  // Heap growth: the median of the last three samples against the median of three samples taken
  // after warm-up (a quarter of the run).
  const median = (xs: number[]): number =>
    [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const warm = heap.filter((h) => h.second >= seconds / 4).slice(0, 3);
  const tail = heap.slice(-3);
  const growthMb =
    warm.length > 0 && tail.length > 0
      ? Math.round((median(tail.map((h) => h.heapMb)) - median(warm.map((h) => h.heapMb))) * 10) /
        10
      : 0;

  const ok = Object.values(tally.okByOp).reduce((a, b) => a + b, 0);
  const summary = {
    seed: config.seed,
    seconds: Math.round(seconds * 10) / 10,
    ops: tally.ops,
    opsPerSecond: Math.round(tally.ops / seconds),
    succeeded: ok,
    byOp: tally.byOp,
    errors: tally.errors,
    faults: tally.faults,
    restarts,
    checkedValues: tally.checkedValues,
    wrongValues: tally.wrongValues,
    foreignValues: tally.foreignValues,
    unaskedKeys: tally.unaskedKeys,
    unexpectedMisses: tally.unexpectedMisses,
    unhandledRejections: unhandled,
    heapGrowthMb: growthMb,
    heap: heap.map((h) => `${h.second}s:${h.heapMb}MB`).join(' '),
  };
  console.log('\nsoak summary');
  for (const [k, v] of Object.entries(summary)) {
    console.log(`  ${k.padEnd(20)} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
  }
  if (tally.examples.length > 0) console.log(`  examples:\n    ${tally.examples.join('\n    ')}`);

  const failures: string[] = [];
  if (tally.wrongValues > 0) failures.push(`${tally.wrongValues} wrong values`);
  if (tally.unaskedKeys > 0)
    failures.push(`${tally.unaskedKeys} keys returned that were not asked`);
  if ((tally.errors['NOT_MEMCACHED'] ?? 0) > 0) failures.push('errors that are not MemcachedError');
  if (unhandled > 0) failures.push(`${unhandled} unhandled rejections`);
  if (growthMb > config.maxHeapGrowthMb) failures.push(`heap grew by ${growthMb} MB`);
  if (ok === 0) failures.push('no operation succeeded');
  console.log(failures.length === 0 ? '\nsoak: PASS' : `\nsoak: FAIL (${failures.join('; ')})`);
  return failures.length === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (error: unknown) => {
    console.error('soak crashed:', error);
    await stopAllMemcached().catch(() => undefined);
    process.exitCode = 1;
  },
);

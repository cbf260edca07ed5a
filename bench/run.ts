/**
 * `npm run bench`: builds (tsc -p bench/tsconfig.json) and runs this file. Configuration comes
 * from BENCH_* environment variables (bench/README.md). Prints the table on stdout, progress on
 * stderr, writes bench/results.json and bench/results.svg.
 */
import { stopAllMemcached } from '../test/harness/memcached.js';
import { configFromEnv, runBench } from './bench.js';
import { loadBaseline } from './clients.js';
import { formatTable } from './report.js';

async function main(): Promise<void> {
  const config = configFromEnv();
  const baseline = process.env['BENCH_BASELINE'];
  if (baseline !== undefined && config.clients.includes('ours-baseline')) {
    await loadBaseline(baseline);
  }
  if ((globalThis as { gc?: unknown }).gc === undefined) {
    config.log('note: run with node --expose-gc for GC between rounds and exact heap numbers');
  }
  try {
    const { results, jsonPath, svgPath } = await runBench(config);
    process.stdout.write(`\n${formatTable(results)}\n\nwrote ${jsonPath} and ${svgPath}\n`);
  } finally {
    await stopAllMemcached();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(
    `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exitCode = 1;
});

/**
 * One process of the stampede benchmark (bench/stampede.ts). argv[2]: JSON
 * `{ server, mode, calls, factoryMs }`. Prints READY once connected; then for every stdin line
 * `<key> <counter>` runs `calls` concurrent reads of `key` in `mode` and prints
 * `DONE <latencies ms as JSON>`; stdin closing ends it.
 */
import { createInterface } from 'node:readline';
import { MemcachedClient } from '../lib/index.js';

export type StampedeMode = 'lease' | 'getOrSet' | 'wrap';

interface ChildConfig {
  server: string;
  mode: StampedeMode;
  calls: number;
  factoryMs: number;
}

const cfg = JSON.parse(process.argv[2]!) as ChildConfig;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const mc = new MemcachedClient({
  servers: cfg.server,
  protocol: cfg.mode === 'lease' ? 'meta' : 'text',
  timeout: 10_000,
  poolSize: 4,
});

/** The cache-manager way: read; on a miss compute and write; nothing coalesces the misses. */
async function wrap<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const hit = await mc.get<T>(key);
  if (hit !== undefined) return hit;
  const value = await fn();
  await mc.set(key, value, { ttl: 60 });
  return value;
}

async function round(key: string, counter: string): Promise<number[]> {
  const factory = async (): Promise<string> => {
    await mc.incr(counter);
    await sleep(cfg.factoryMs);
    return `value of ${key}`;
  };
  const one = async (): Promise<number> => {
    const t0 = performance.now();
    const value =
      cfg.mode === 'wrap'
        ? await wrap(key, factory)
        : await mc.getOrSet(key, factory, {
            ttl: 60,
            ...(cfg.mode === 'lease' ? { lease: { ttl: 10, wait: 5000 } } : {}),
          });
    if (value !== `value of ${key}`) throw new Error(`wrong value ${JSON.stringify(value)}`);
    return performance.now() - t0;
  };
  return Promise.all(Array.from({ length: cfg.calls }, one));
}

async function main(): Promise<void> {
  await mc.version();
  process.stdout.write('READY\n');
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const [key, counter] = line.split(' ');
    const latencies = await round(key!, counter!);
    process.stdout.write(`DONE ${JSON.stringify(latencies)}\n`);
  }
  await mc.close();
}

main().catch((error: unknown) => {
  process.stderr.write(`${String(error)}\n`);
  process.exitCode = 1;
});

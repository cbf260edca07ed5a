/**
 * Smoke test of `npm run bench` (bench/): the whole code path end to end with tiny op counts
 * (our client, one peer and the raw ceiling against a memcached the bench starts itself), plus
 * the pure pieces (reply counter, percentiles, line fit, SVG). No timing is asserted.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fitLine, runBench, type BenchConfig, type BenchOutput } from '../../bench/bench.js';
import { percentile } from '../../bench/measure.js';
import { ReplyCounter } from '../../bench/raw.js';
import { compact, formatTable } from '../../bench/report.js';
import { WORKLOADS, clientsFor, rawRequests } from '../../bench/workloads.js';
import { stopAllMemcached } from '../harness/memcached.js';

describe('bench: pure parts', () => {
  it('counts replies split anywhere, skipping value data by its declared length', () => {
    // Value data that looks like terminators must not be counted.
    const stream = Buffer.from(
      'VALUE a 0 10\r\nEND\r\nEND\r\n\r\nEND\r\nSTORED\r\n' +
        'VALUE b 16 3 42\r\nxyz\r\nVALUE c 0 0\r\n\r\nEND\r\nNOT_STORED\r\n',
    );
    for (let split = 1; split < stream.length; split++) {
      const counter = new ReplyCounter();
      const n = counter.feed(stream.subarray(0, split)) + counter.feed(stream.subarray(split));
      expect(n).toBe(4);
      expect(counter.errors).toBe(1);
      expect(counter.lastError).toBe('NOT_STORED');
    }
    const byteByByte = new ReplyCounter();
    let total = 0;
    for (let i = 0; i < stream.length; i++) total += byteByByte.feed(stream.subarray(i, i + 1));
    expect(total).toBe(4);
  });

  it('computes nearest-rank percentiles and least-squares fits', () => {
    const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(sorted, 0.5)).toBe(50);
    expect(percentile(sorted, 0.99)).toBe(99);
    expect(percentile(new Float64Array(0), 0.5)).toBe(0);
    const fit = fitLine([
      [64, 0.5],
      [128, 0.9],
      [256, 1.7],
      [512, 3.3],
    ]);
    expect(fit.slopeUsPerKB).toBeCloseTo(6.25, 6);
    expect(fit.interceptMs).toBeCloseTo(0.1, 6);
    expect(fit.r2).toBeCloseTo(1, 9);
    expect(compact(1234567)).toBe('1.23M');
    expect(compact(45210)).toBe('45.2k');
  });

  it('pre-encodes one raw request per key (or per batch for getMany)', () => {
    const getMany = WORKLOADS.find((w) => w.op === 'getMany')!;
    const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
    const reqs = rawRequests(getMany, keys, 'v');
    expect(reqs).toHaveLength(2);
    expect(reqs[0]!.toString().split(' ')).toHaveLength(101);
    const set = WORKLOADS.find((w) => w.op === 'set')!;
    expect(rawRequests(set, ['a'], 'hello')[0]!.toString()).toBe('set a 0 0 5\r\nhello\r\n');
    // autoBatch-off variant only where auto-batching applies (concurrent gets).
    const all = ['ours', 'ours-nobatch', 'raw'] as const;
    expect(
      clientsFor(
        WORKLOADS.find((w) => w.id === 'get-100B-c64')!,
        all,
      ),
    ).toContain('ours-nobatch');
    expect(
      clientsFor(
        WORKLOADS.find((w) => w.id === 'get-100B-c1')!,
        all,
      ),
    ).not.toContain('ours-nobatch');
    // The tracing variants only with 100-byte values.
    const tracing = ['ours', 'ours-traced', 'ours-otel'] as const;
    expect(
      clientsFor(
        WORKLOADS.find((w) => w.id === 'getMany100-100B-c8')!,
        tracing,
      ),
    ).toEqual(tracing);
    expect(
      clientsFor(
        WORKLOADS.find((w) => w.id === 'get-10KB-c64')!,
        tracing,
      ),
    ).toEqual(['ours']);
  });
});

describe('bench: end to end with tiny counts', () => {
  let outDir: string;
  let output: BenchOutput;
  const log: string[] = [];

  beforeAll(async () => {
    outDir = await mkdtemp(join(tmpdir(), 'bench-smoke-'));
    const config: BenchConfig = {
      seconds: 1,
      rounds: 2,
      warmupSeconds: 0,
      opsPerRound: 100,
      warmupOps: 20,
      clients: ['ours', 'ours-binary', 'memcache-client', 'raw'],
      heapOps: 200,
      outDir,
      memcachedArgs: ['-t', '2', '-m', '256', '-c', '1024', '-I', '2m'],
      timeoutMs: 10_000,
      log: (line) => log.push(line),
    };
    output = await runBench(config);
  }, 180_000);

  afterAll(async () => {
    await stopAllMemcached();
    if (outDir !== undefined) await rm(outDir, { recursive: true, force: true });
  });

  it('measures every workload for every client with numbers > 0', () => {
    const { workloads } = output.results;
    expect(workloads.map((w) => w.id)).toEqual(WORKLOADS.map((w) => w.id));
    for (const w of workloads) {
      const expected =
        w.group === 'linearity'
          ? ['ours', 'raw']
          : w.id === 'setCompression-4KB-c64' || w.id.startsWith('getOrSet')
            ? ['ours', 'ours-binary', 'raw'] // no peer has lz4 or getOrSet
            : ['ours', 'ours-binary', 'memcache-client', 'raw'];
      if (w.id === 'setCompression-4KB-c64') {
        // Every client once per variant, interleaved in the same workload.
        expect(w.results.map((r) => `${r.client} ${r.variant}`)).toEqual(
          expected.flatMap((c) => [`${c} none`, `${c} lz4`, `${c} zlib`]),
        );
        expect(w.variants?.map((v) => v.client)).toEqual(expected);
        for (const v of w.variants!) {
          const none = w.results.find((r) => r.client === v.client && r.variant === 'none')!;
          const lz4 = w.results.find((r) => r.client === v.client && r.variant === 'lz4')!;
          const perRound = lz4.rounds
            .map((r) => r.opsPerSec / none.rounds.find((b) => b.round === r.round)!.opsPerSec)
            .sort((a, b) => a - b);
          expect(v.roundRatios.lz4).toEqual(perRound);
          expect(v.overNone.lz4).toBe(perRound[0]); // median of 2 rounds: the lower one
          expect(v.overNone.zlib).toBeGreaterThan(0);
          expect(v.opsPerSec.none).toBe(none.opsPerSec);
          if (v.client !== 'raw') expect(v.cpuUsPerOp.lz4).toBeGreaterThan(0);
        }
      } else {
        expect(w.results.map((r) => r.client)).toEqual(expected);
        expect(w.variants).toBeUndefined();
      }
      for (const r of w.results) {
        expect({ workload: w.id, client: r.client, error: r.error }).toEqual({
          workload: w.id,
          client: r.client,
          error: undefined,
        });
        expect(r.opsPerSec).toBeGreaterThan(0);
        expect(r.p50Ms).toBeGreaterThan(0);
        expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms);
        expect(r.rounds).toHaveLength(2);
        for (const round of r.rounds) expect(round.ops).toBe(100);
        expect(r.memoryAfter.heapUsed).toBeGreaterThan(0);
      }
      expect(w.summary.ours).toBeGreaterThan(0);
      expect(w.summary.oursOverRaw).toBeGreaterThan(0);
      if (w.group === 'main') {
        expect(w.summary.oursBinary).toBeGreaterThan(0);
      }
      if (expected.includes('memcache-client')) {
        expect(w.summary.bestPeer?.client).toBe('memcache-client');
        expect(w.summary.oursOverBestPeer).toBeGreaterThan(0);
      }
    }
  });

  it('fits latency over value size and samples the heap', () => {
    const { linearity, heapFlat } = output.results;
    expect(linearity.map((l) => l.client)).toEqual(['ours', 'raw']);
    for (const l of linearity) {
      expect(l.points.map((p) => p.size)).toEqual([64, 128, 256, 512].map((k) => k * 1024));
      for (const p of l.points) expect(p.msPerOp).toBeGreaterThan(0);
      expect(Number.isFinite(l.fit.slopeUsPerKB)).toBe(true);
    }
    expect(heapFlat).toBeDefined();
    expect(heapFlat!.ops).toBe(200);
    expect(heapFlat!.errors).toBe(0);
    expect(heapFlat!.samples.length).toBeGreaterThan(0);
    expect(heapFlat!.samples.at(-1)!.ops).toBe(200);
  });

  it('writes results.json with machine info and a labelled SVG chart', () => {
    expect(output.jsonPath).toBe(join(outDir, 'results.json'));
    const json = JSON.parse(readFileSync(output.jsonPath, 'utf8')) as typeof output.results;
    expect(json.meta.cpus.count).toBeGreaterThan(0);
    expect(json.meta.node).toBe(process.version);
    expect(json.meta.memcached.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(json.meta.peers['memcache-client']).toMatch(/^\d+\.\d+\.\d+/);
    expect(json.workloads).toHaveLength(output.results.workloads.length);
    expect(existsSync(output.svgPath)).toBe(true);
    const svg = readFileSync(output.svgPath, 'utf8');
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('get 100 B, c64');
    expect(svg).toContain('memcache-client');
    // One bar of ours per main workload, three in the variant workload (none, lz4, zlib).
    expect(svg.match(/<rect [^>]*fill="#e4572e"><title>/g)?.length).toBe(
      output.results.workloads.filter((w) => w.group === 'main').length + 2,
    );
    expect(svg).toContain('<title>ours lz4: ');
    const table = formatTable(output.results);
    expect(table).toContain('ours/best');
    expect(table).toContain('heap flat');
    expect(table).toContain('lz4/none');
    expect(log.some((l) => l.startsWith('memcached '))).toBe(true);
  });
});

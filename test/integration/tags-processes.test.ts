/**
 * Tag invalidation across real processes (API.md section 10): process A caches tagged values,
 * process B — which shares nothing with A but the memcached server — invalidates a tag, and A's
 * next reads of values under it miss (A's factory runs again) while values under other tags
 * still hit. Never with flush_all: `stats cmd_flush` stays 0.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MemcachedClient, TaggedValue } from '../../lib/index.js';
import { buildForChildren, report, runChild, type ChildBuild } from '../harness/child.js';
import {
  serverStats,
  startMemcached,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';
import { ROOT } from '../harness/package-build.js';
import { PROTOCOLS } from '../harness/protocols.js';

/**
 * argv[2]: JSON config. Mode `reader`: prints READY, then for each JSON line on stdin
 * (`{ reads: [{ key, tags }], slow?: key, opts?, factoryMs? }`) runs the getOrSet calls
 * concurrently (with `opts` added) and prints RESULT [{ key, value }]; its factories count their
 * runs per key (in this process) and return `<key>#<run>@<pid>`. A `slow`
 * key's factory prints COMPUTING and waits for a `release` line first. Mode `invalidate`:
 * invalidateTags(cfg.tags), prints REPORT, exits.
 */
const CHILD = `
const cfg = JSON.parse(process.argv[2]);
const { MemcachedClient } = await import(cfg.entry);
const mc = new MemcachedClient({ servers: cfg.server, protocol: cfg.protocol, timeout: 5000 });
if (cfg.mode === 'invalidate') {
  await mc.invalidateTags(cfg.tags);
  await mc.close();
  console.log('REPORT ' + JSON.stringify({ ok: true }));
} else {
  await mc.version();
  const runs = new Map();
  let release;
  const lines = [];
  let wake;
  process.stdin.setEncoding('utf8');
  let buffered = '';
  process.stdin.on('data', (chunk) => {
    buffered += chunk;
    let i;
    while ((i = buffered.indexOf('\\n')) >= 0) {
      const line = buffered.slice(0, i);
      buffered = buffered.slice(i + 1);
      if (line === 'release') release?.();
      else { lines.push(line); wake?.(); }
    }
  });
  process.stdin.on('end', async () => { await mc.close(); process.exit(0); });
  console.log('READY');
  for (;;) {
    if (lines.length === 0) await new Promise((r) => (wake = r));
    const { reads, slow, opts, factoryMs } = JSON.parse(lines.shift());
    const results = await Promise.all(reads.map(async ({ key, tags }) => {
      const value = await mc.getOrSet(key, async () => {
        const n = (runs.get(key) ?? 0) + 1;
        runs.set(key, n);
        if (key === slow) {
          const gate = new Promise((r) => (release = r));
          console.log('COMPUTING');
          await gate;
        }
        if (factoryMs) await new Promise((r) => setTimeout(r, factoryMs));
        return key + '#' + n + '@' + process.pid;
      }, { tags, ttl: 300, ...opts });
      return { key, value };
    }));
    console.log('RESULT ' + JSON.stringify(results));
  }
}
`;

let server: MemcachedProcess;
let admin: MemcachedClient;
let build: ChildBuild;
let script: string;

beforeAll(async () => {
  server = await startMemcached();
  admin = new MemcachedClient({ servers: server.address });
  build = await buildForChildren('tags-processes');
  script = join(build.dir, 'tags-child.mjs');
  await writeFile(script, CHILD);
}, 60_000);

afterAll(async () => {
  expect((await serverStats(server))['cmd_flush']).toBe('0');
  await admin.close();
  await stopAllMemcached();
  await build.remove();
});

/** A long-lived reader process: send it reads, get its RESULT lines back in order. */
class Reader {
  private readonly child: ChildProcess;
  private out = '';
  private err = '';
  private waiters: Array<{ marker: string; resolve: (line: string) => void }> = [];
  readonly ready: Promise<string>;

  constructor(config: Record<string, unknown>) {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env['NODE_OPTIONS'];
    this.child = spawn(
      process.execPath,
      ['--unhandled-rejections=strict', script, JSON.stringify({ mode: 'reader', ...config })],
      { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    this.child.stdout!.on('data', (chunk: Buffer) => {
      this.out += chunk.toString();
      this.drain();
    });
    this.child.stderr!.on('data', (chunk: Buffer) => (this.err += chunk.toString()));
    this.child.once('exit', (code) => {
      for (const w of this.waiters) w.resolve(`EXIT ${code}: ${this.err.slice(0, 800)}`);
      this.waiters = [];
    });
    this.ready = this.next('READY');
  }

  private drain(): void {
    let i;
    while ((i = this.out.indexOf('\n')) >= 0 && this.waiters.length > 0) {
      const line = this.out.slice(0, i);
      this.out = this.out.slice(i + 1);
      const w = this.waiters[0]!;
      if (line.startsWith(w.marker)) {
        this.waiters.shift();
        w.resolve(line);
      }
    }
  }

  /** The next stdout line starting with `marker`. */
  next(marker: string): Promise<string> {
    return new Promise((resolve) => {
      this.waiters.push({ marker, resolve });
      this.drain();
    });
  }

  send(line: string): void {
    this.child.stdin!.write(line + '\n');
  }

  /** Runs reads; resolves with key → value. */
  async read(
    reads: Array<{ key: string; tags: string[] }>,
    slow?: string,
    extra: { opts?: Record<string, unknown>; factoryMs?: number } = {},
    keepPid = false,
  ): Promise<Record<string, string>> {
    const result = this.next('RESULT ');
    this.send(JSON.stringify({ reads, slow, ...extra }));
    const line = await result;
    if (!line.startsWith('RESULT ')) throw new Error(`reader failed: ${line}`);
    const list = JSON.parse(line.slice(7)) as Array<{ key: string; value: string }>;
    return Object.fromEntries(
      list.map((r) => [r.key, keepPid ? r.value : r.value.replace(/@\d+$/, '')]),
    );
  }

  close(): void {
    this.child.stdin!.end();
  }
}

describe.each(PROTOCOLS)('protocol %s', (protocol) => {
  const invalidate = async (tags: string[]): Promise<void> => {
    const result = await runChild(script, [
      JSON.stringify({
        entry: build.entry,
        server: server.address,
        protocol,
        mode: 'invalidate',
        tags,
      }),
    ]);
    expect(report<{ ok: boolean }>(result)).toEqual({ ok: true });
  };

  test('process B invalidates a tag: process A misses the values under it, hits the others', async () => {
    const a = new Reader({ entry: build.entry, server: server.address, protocol });
    try {
      await a.ready;
      const t = `${protocol}-${process.pid}`;
      const reads = [
        { key: `list:${t}`, tags: [`products:${t}`] },
        { key: `featured:${t}`, tags: [`products:${t}`, `home:${t}`] },
        { key: `user:${t}`, tags: [`users:${t}`] },
      ];
      const first = await a.read(reads);
      expect(Object.values(first)).toEqual([`list:${t}#1`, `featured:${t}#1`, `user:${t}#1`]);
      expect(await a.read(reads)).toEqual(first); // hits
      const flushes = (await serverStats(server))['cmd_flush'];

      await invalidate([`products:${t}`]);
      expect(Object.values(await a.read(reads))).toEqual([
        `list:${t}#2`,
        `featured:${t}#2`,
        `user:${t}#1`,
      ]);
      await invalidate([`home:${t}`]);
      expect(Object.values(await a.read(reads))).toEqual([
        `list:${t}#2`,
        `featured:${t}#3`,
        `user:${t}#1`,
      ]);
      expect((await serverStats(server))['cmd_flush']).toBe(flushes);
      expect(flushes).toBe('0');
    } finally {
      a.close();
    }
  }, 60_000);

  test('process B invalidates while process A computes: A stores its value, and it reads back as a miss', async () => {
    const a = new Reader({ entry: build.entry, server: server.address, protocol });
    try {
      await a.ready;
      const t = `race-${protocol}-${process.pid}`;
      const reads = [{ key: `list:${t}`, tags: [`products:${t}`] }];
      const computing = a.next('COMPUTING');
      const pending = a.read(reads, `list:${t}`);
      await computing;
      await invalidate([`products:${t}`]);
      a.send('release');
      expect(await pending).toEqual({ [`list:${t}`]: `list:${t}#1` });
      // It was stored (with the version read before computing).
      const stored = await admin.get(`list:${t}`);
      expect(stored).toBeInstanceOf(TaggedValue);
      expect(String((stored as TaggedValue).value).replace(/@\d+$/, '')).toBe(`list:${t}#1`);
      // Stored with the version read before computing: a miss now, a hit after the recompute.
      expect(await a.read(reads)).toEqual({ [`list:${t}`]: `list:${t}#2` });
      expect(await a.read(reads)).toEqual({ [`list:${t}`]: `list:${t}#2` });
    } finally {
      a.close();
    }
  }, 60_000);

  if (protocol === 'meta') {
    test('with a lease: after process B invalidates, three processes × one read: one factory run in all', async () => {
      const readers = [0, 1, 2].map(
        () => new Reader({ entry: build.entry, server: server.address, protocol }),
      );
      try {
        await Promise.all(readers.map((r) => r.ready));
        const t = `lease-${process.pid}`;
        const reads = [{ key: `list:${t}`, tags: [`products:${t}`] }];
        const extra = { opts: { lease: { ttl: 10, wait: 8000 } }, factoryMs: 300 };
        const first = await readers[0]!.read(reads, undefined, extra, true);
        for (const r of readers) expect(await r.read(reads, undefined, extra, true)).toEqual(first);
        await invalidate([`products:${t}`]);
        const after = await Promise.all(readers.map((r) => r.read(reads, undefined, extra, true)));
        // One value, computed by one process, for all three.
        const values = after.map((a) => a[`list:${t}`]!);
        expect(new Set(values).size).toBe(1);
        expect(values[0]).not.toBe(first[`list:${t}`]);
        expect(values[0]).toMatch(/#\d+@\d+$/);
      } finally {
        for (const r of readers) r.close();
      }
    }, 60_000);
  }
});

/**
 * The client behind twemproxy (nutcracker) in front of two real memcached processes: the
 * commands twemproxy proxies work, the ones it does not are refused without hurting other calls.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { MemcachedClient, MemcachedConnectionError, MemcachedError } from '../../lib/index.js';
import {
  findExecutable,
  freePort,
  onProcessExit,
  rawRequest,
  startMemcacheds,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';

function findNutcracker(): string | undefined {
  return findExecutable('nutcracker');
}

const nutcracker = findNutcracker();
if (nutcracker === undefined) {
  console.warn(
    'twemproxy.test: nutcracker (twemproxy) is not installed, skipping; ' +
      'install it with "apt-get install -y nutcracker" (npm test does so where allowed)',
  );
}

async function waitForPort(port: number, proc: ChildProcess): Promise<void> {
  for (let i = 0; i < 250; i++) {
    if (proc.exitCode !== null) throw new Error(`nutcracker exited with ${proc.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('nutcracker did not listen');
}

let backends: MemcachedProcess[];
let proxy: ChildProcess | undefined;
let proxyAddress: string;
let dir: string;

beforeAll(async () => {
  if (nutcracker === undefined) return;
  backends = await startMemcacheds(2);
  dir = mkdtempSync(join(tmpdir(), 'nutcracker-'));
  const port = await freePort();
  const statsPort = await freePort();
  proxyAddress = `127.0.0.1:${port}`;
  writeFileSync(
    join(dir, 'nutcracker.yml'),
    [
      'pool:',
      `  listen: ${proxyAddress}`,
      '  hash: md5',
      '  distribution: ketama',
      '  timeout: 2000',
      '  auto_eject_hosts: false',
      '  servers:',
      ...backends.map((b) => `   - ${b.address}:1`),
      '',
    ].join('\n'),
  );
  proxy = spawn(
    nutcracker,
    ['-c', join(dir, 'nutcracker.yml'), '-s', String(statsPort), '-o', join(dir, 'log')],
    { stdio: 'ignore' },
  );
  const started = proxy;
  onProcessExit(() => started.kill('SIGKILL'));
  await waitForPort(port, proxy);
});

afterAll(async () => {
  if (proxy !== undefined && proxy.exitCode === null) {
    const exited = new Promise((resolve) => proxy!.once('exit', resolve));
    proxy.kill('SIGTERM');
    await exited;
  }
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  await stopAllMemcached();
});

const withProxy = nutcracker === undefined ? describe.skip : describe;

withProxy('behind twemproxy', () => {
  let mc: MemcachedClient;
  beforeAll(() => {
    mc = new MemcachedClient({ servers: [proxyAddress], timeout: 2000, autoBatch: true });
  });
  afterAll(() => mc.close());

  async function onBackend(key: string): Promise<MemcachedProcess[]> {
    const holders: MemcachedProcess[] = [];
    for (const b of backends) {
      if ((await rawRequest(b, `get ${key}\r\n`)).startsWith('VALUE ')) holders.push(b);
    }
    return holders;
  }

  test('storage and retrieval commands reach the memcached servers behind it', async () => {
    const keys = Array.from({ length: 40 }, (_, i) => `tw:${i}`);
    for (const k of keys) expect(await mc.set(k, { k })).toBe(true);
    // Spread over both backends, each key on exactly one.
    const placed = await Promise.all(keys.map(onBackend));
    for (const holders of placed) expect(holders).toHaveLength(1);
    expect(new Set(placed.map((h) => h[0]!.port)).size).toBe(2);
    // A multi-get across both backends, concurrent gets (auto-batched), misses.
    expect(await mc.getMany([...keys, 'tw:missing'])).toEqual(new Map(keys.map((k) => [k, { k }])));
    const values = await Promise.all(keys.map((k) => mc.get(k)));
    expect(values).toEqual(keys.map((k) => ({ k })));
    expect(await mc.get('tw:missing')).toBeUndefined();
  });

  test('add, replace, append, prepend, cas, update, delete, incr, decr, touch', async () => {
    expect(await mc.add('tw:a', 'one')).toBe(true);
    expect(await mc.add('tw:a', 'two')).toBe(false);
    expect(await mc.replace('tw:a', 'three')).toBe(true);
    expect(await mc.replace('tw:none', 'x')).toBe(false);
    expect(await mc.set('tw:s', 'mid', { ttl: 0 })).toBe(true);
    expect(await mc.append('tw:s', Buffer.from('>'))).toBe(true);
    expect(await mc.prepend('tw:s', Buffer.from('<'))).toBe(true);
    const item = await mc.gets<string>('tw:a');
    expect(item?.value).toBe('three');
    expect(await mc.cas('tw:a', 'four', item!.cas)).toBe(true);
    expect(await mc.cas('tw:a', 'five', item!.cas)).toBe(false);
    expect(await mc.get('tw:a')).toBe('four');
    expect(await mc.update<number>('tw:u', (n) => (n ?? 0) + 1)).toBe(1);
    expect(await mc.update<number>('tw:u', (n) => (n ?? 0) + 1)).toBe(2);
    expect(await mc.incr('tw:n', 1)).toBeUndefined();
    await mc.set('tw:n', '10');
    expect(await mc.incr('tw:n', 5)).toBe(15);
    expect(await mc.decr('tw:n', 3)).toBe(12);
    expect(await mc.touch('tw:n', 100)).toBe(true);
    expect(await mc.touch('tw:none', 100)).toBe(false);
    expect(await mc.delete('tw:n')).toBe(true);
    expect(await mc.delete('tw:n')).toBe(false);
    expect(await mc.get('tw:n')).toBeUndefined();
  });

  test('setMany, getsMany, deleteMany, getOrSet and ping', async () => {
    const entries = new Map(Array.from({ length: 10 }, (_, i) => [`tw:m:${i}`, i]));
    await mc.setMany(entries);
    const items = await mc.getsMany<number>([...entries.keys()]);
    expect(new Map([...items].map(([k, item]) => [k, item.value]))).toEqual(entries);
    await mc.deleteMany([...entries.keys()]);
    expect((await mc.getMany([...entries.keys()])).size).toBe(0);
    let calls = 0;
    const factory = async (): Promise<string> => `made ${++calls}`;
    expect(await mc.getOrSet('tw:g', factory)).toBe('made 1');
    expect(await mc.getOrSet('tw:g', factory)).toBe('made 1');
    expect(Object.values(await mc.ping())).toEqual([expect.objectContaining({ ok: true })]);
  });

  test('getAndTouch (gat) is not proxied', async () => {
    await mc.set('tw:t', 't');
    await expect(mc.getAndTouch('tw:t', 100)).rejects.toBeInstanceOf(MemcachedError);
    expect(await mc.get('tw:t')).toBe('t');
  });

  test('version is answered through it; stats and flushAll are not proxied', async () => {
    expect(typeof Object.values(await mc.version())[0]).toBe('string');
    // twemproxy closes the connection on a command it does not proxy.
    await expect(mc.stats()).rejects.toBeInstanceOf(MemcachedError);
    await expect(mc.flushAll()).rejects.toBeInstanceOf(MemcachedError);
    // Nothing was flushed, and the client recovers on the next call.
    expect(await mc.set('tw:after', 'ok')).toBe(true);
    expect(await mc.get('tw:after')).toBe('ok');
    expect(await mc.get('tw:a')).toBe('four');
  });

  test('a refused command fails only itself, not calls sent with it', async () => {
    await mc.set('tw:c', 'c');
    const results = await Promise.allSettled([mc.get('tw:c'), mc.stats(), mc.get('tw:c')]);
    expect(results[1]!.status).toBe('rejected');
    // The calls around it either got their value or a connection error: never a wrong reply.
    for (const r of [results[0]!, results[2]!]) {
      if (r.status === 'fulfilled') expect(r.value).toBe('c');
      else expect(r.reason).toBeInstanceOf(MemcachedConnectionError);
    }
  });

  test('noreply writes are proxied: later reads on the connection see them', async () => {
    const keys = Array.from({ length: 20 }, (_, i) => `tw:nr:${i}`);
    for (const k of keys) expect(await mc.set(k, k, { noreply: true })).toBe(true);
    expect(await mc.append('tw:nr:0', Buffer.from('!'), { noreply: true })).toBe(true);
    for (const k of keys.slice(1)) expect(await mc.get(k)).toBe(k);
    const [holder] = await onBackend('tw:nr:0');
    expect(await rawRequest(holder!, 'get tw:nr:0\r\n')).toContain('!\r\nEND');
  });

  test.each(['meta', 'binary'] as const)(
    'protocol %s needs a direct connection',
    async (protocol) => {
      const direct = new MemcachedClient({ servers: [proxyAddress], protocol, timeout: 500 });
      try {
        await expect(direct.get('tw:a')).rejects.toBeInstanceOf(MemcachedError);
      } finally {
        await direct.close();
      }
    },
  );
});

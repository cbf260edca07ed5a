/**
 * lz4 compression: its own flag bit (64), read whatever the reading client's setting, in the
 * format Python's lz4.block reads and writes (4-byte little-endian size, then an LZ4 block).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compressSync } from 'lz4-napi';
import {
  FLAG_COMPRESSED,
  FLAG_JSON,
  FLAG_LZ4,
  FLAG_TEXT,
  MemcachedClient,
  MemcachedOptionsError,
  MemcachedSerdeError,
  type MemcachedOptions,
} from '../../lib/index.js';
import { LZ4_PACKAGES, lz4Package, useLz4Package } from '../../lib/serde/lz4.js';
import { buildForChildren, report, runChild, type ChildBuild } from '../harness/child.js';
import {
  rawRequest,
  startMemcached,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';
import { PROTOCOLS } from '../harness/protocols.js';

let server: MemcachedProcess;
const clients: MemcachedClient[] = [];

beforeAll(async () => {
  server = await startMemcached();
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await stopAllMemcached();
});

function client(options: MemcachedOptions = {}): MemcachedClient {
  const c = new MemcachedClient({ servers: server.address, ...options });
  clients.push(c);
  return c;
}

const doc = {
  users: Array.from({ length: 60 }, (_, i) => ({ id: i, name: `user-${i}`, tags: ['a', 'b'] })),
};

describe.each(PROTOCOLS)('lz4 on %s', (protocol) => {
  test('values are stored with flag 64 as a size-prefixed lz4 block, and read back', async () => {
    const mc = client({ protocol, compression: { threshold: 100, algorithm: 'lz4' } });
    await mc.set('lz4:doc', doc);
    await mc.set('lz4:small', 'tiny');
    const { flags } = await rawBytes('lz4:doc');
    expect(flags).toBe(FLAG_JSON | FLAG_LZ4);
    expect((await rawBytes('lz4:small')).flags).toBe(FLAG_TEXT);
    expect(await mc.get('lz4:doc')).toEqual(doc);
    expect(await mc.get('lz4:small')).toBe('tiny');
  });

  test('either algorithm is read whatever the reading client compresses with', async () => {
    const zlib = client({ protocol, compression: { threshold: 100 } });
    const lz4 = client({ protocol, compression: { threshold: 100, algorithm: 'lz4' } });
    const none = client({ protocol });
    await zlib.set('by:zlib', doc);
    await lz4.set('by:lz4', doc);
    expect((await rawBytes('by:zlib')).flags).toBe(FLAG_JSON | FLAG_COMPRESSED);
    expect((await rawBytes('by:lz4')).flags).toBe(FLAG_JSON | FLAG_LZ4);
    for (const reader of [zlib, lz4, none]) {
      expect(await reader.getMany(['by:zlib', 'by:lz4'])).toEqual(
        new Map([
          ['by:zlib', doc],
          ['by:lz4', doc],
        ]),
      );
    }
  });

  test('a large value (with lz4-napi: compressed off the event loop) round-trips', async () => {
    const mc = client({ protocol, compression: { threshold: 1, algorithm: 'lz4' } });
    const big = 'lorem ipsum dolor sit amet '.repeat(20_000); // 540 KB, compresses well
    await mc.set('lz4:big', big);
    expect(await mc.get('lz4:big')).toBe(big);
  });
});

describe('lz4 bad data', () => {
  test('a declared size over the limit, corrupt data, and both bits set are MemcachedSerdeError', async () => {
    const mc = client({ maxValueSize: 1024 * 1024 });
    const store = async (key: string, flags: number, bytes: Buffer): Promise<void> => {
      const reply = await rawRequest(
        server,
        Buffer.concat([
          Buffer.from(`set ${key} ${flags} 0 ${bytes.length}\r\n`),
          bytes,
          Buffer.from('\r\n'),
        ]),
      );
      expect(reply).toBe('STORED\r\n');
    };
    const bomb = Buffer.alloc(8);
    bomb.writeUInt32LE(0xfffffff0, 0); // declares ~4 GiB
    await store('bad:bomb', FLAG_LZ4 | FLAG_TEXT, bomb);
    await store('bad:corrupt', FLAG_LZ4 | FLAG_TEXT, Buffer.from([10, 0, 0, 0, 0xff, 0xff, 0xff]));
    await store('bad:both', FLAG_LZ4 | FLAG_COMPRESSED, compressSync(Buffer.from('x')));
    await store('bad:short', FLAG_LZ4, Buffer.from([1, 2]));
    await expect(mc.get('bad:bomb')).rejects.toThrow(/declares 4294967280 bytes/);
    for (const key of ['bad:bomb', 'bad:corrupt', 'bad:both', 'bad:short']) {
      await expect(mc.get(key)).rejects.toThrow(MemcachedSerdeError);
    }
    // the connection is fine
    await mc.set('bad:after', 1);
    expect(await mc.get('bad:after')).toBe(1);
  });

  test('level is zlib only', () => {
    expect(
      () => new MemcachedClient({ compression: { threshold: 1, algorithm: 'lz4', level: 3 } }),
    ).toThrow(MemcachedOptionsError);
  });
});

/** Python 3 with python-lz4 (Debian's python3-lz4), or undefined. */
function pythonWithLz4(): string | undefined {
  for (const python of ['/usr/bin/python3', 'python3']) {
    if (python.startsWith('/') && !existsSync(python)) continue;
    try {
      execFileSync(python, ['-c', 'import lz4.block'], { stdio: 'ignore' });
      return python;
    } catch {
      // not this one
    }
  }
  return undefined;
}

const python = pythonWithLz4();
if (python === undefined) {
  console.warn(
    'SKIPPED: the Python lz4 interoperability tests need python3-lz4 (apt-get install python3-lz4); .ci/run installs it',
  );
}
const withPython = python === undefined ? test.skip : test;

describe('lz4 and Python', () => {
  const SCRIPT = `
import sys, lz4.block, json
mode, path = sys.argv[1], sys.argv[2]
data = open(path, 'rb').read()
if mode == 'decompress':
    sys.stdout.write(lz4.block.decompress(data).decode('utf-8'))
else:
    open(path, 'wb').write(lz4.block.compress(data))
`;
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lz4-py-'));
    await writeFile(join(dir, 'lz4tool.py'), SCRIPT);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const initial = lz4Package();
  afterAll(() => {
    if (initial !== undefined) useLz4Package(initial);
  });

  withPython.each(LZ4_PACKAGES)(
    'Python lz4.block.decompress reads what this client stored with %s',
    async (name) => {
      useLz4Package(name);
      const mc = client({ protocol: 'binary', compression: { threshold: 1, algorithm: 'lz4' } });
      await mc.set(`py:read:${name}`, doc);
      const stored = await rawBytes(`py:read:${name}`);
      expect(stored.flags).toBe(FLAG_JSON | FLAG_LZ4);
      await writeFile(join(dir, 'in.lz4'), stored.data);
      const out = execFileSync(
        python!,
        [join(dir, 'lz4tool.py'), 'decompress', join(dir, 'in.lz4')],
        {
          encoding: 'utf8',
        },
      );
      expect(JSON.parse(out)).toEqual(doc);
    },
  );

  withPython.each(LZ4_PACKAGES)(
    'this client reads with %s what Python lz4.block.compress made',
    async (name) => {
      useLz4Package(name);
      const json = JSON.stringify(doc);
      await writeFile(join(dir, 'py.bin'), json);
      execFileSync(python!, [join(dir, 'lz4tool.py'), 'compress', join(dir, 'py.bin')]);
      const { readFile } = await import('node:fs/promises');
      const packed = await readFile(join(dir, 'py.bin'));
      const reply = await rawRequest(
        server,
        Buffer.concat([
          Buffer.from(`set py:wrote ${FLAG_JSON | FLAG_LZ4} 0 ${packed.length}\r\n`),
          packed,
          Buffer.from('\r\n'),
        ]),
      );
      expect(reply).toBe('STORED\r\n');
      for (const protocol of PROTOCOLS) {
        expect(await client({ protocol }).get('py:wrote')).toEqual(doc);
      }
      expect(lz4Package()).toBe(name);
    },
  );
});

/** The flags and exact bytes stored under `key` (read with a binary-safe text request). */
async function rawBytes(key: string): Promise<{ flags: number; data: Buffer }> {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const socket = net.connect(server.port, server.host, () => socket.write(`get ${key}\r\n`));
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const head = buf.indexOf('\r\n');
      if (head < 0) return;
      const m = /^VALUE \S+ (\d+) (\d+)/.exec(buf.toString('latin1', 0, head));
      if (m === null) {
        socket.destroy();
        reject(new Error(buf.toString('latin1', 0, head)));
        return;
      }
      const size = Number(m[2]);
      if (buf.length < head + 2 + size + 7) return;
      socket.destroy();
      resolve({ flags: Number(m[1]), data: buf.subarray(head + 2, head + 2 + size) });
    });
    socket.on('error', reject);
  });
}

describe('without lz4-napi installed', () => {
  let build: ChildBuild;
  let outside: string;
  beforeAll(async () => {
    build = await buildForChildren('lz4-missing');
    // A working directory with no node_modules: lz4-napi cannot be found from there.
    outside = await mkdtemp(join(tmpdir(), 'no-lz4-'));
  });
  afterAll(async () => {
    await build.remove();
    await rm(outside, { recursive: true, force: true });
  });

  test('asking for lz4 fails at construction naming the package; reading an lz4 value fails naming it', async () => {
    await client().set('nolz4:value', 'ok'); // plain
    const lz4 = client({ compression: { threshold: 1, algorithm: 'lz4' } });
    await lz4.set('nolz4:packed', 'packed value packed value packed value');
    const script = join(outside, 'child.mjs');
    await writeFile(
      script,
      `
const [entry, server] = process.argv.slice(2);
const { MemcachedClient } = await import(entry);
const out = {};
try {
  new MemcachedClient({ servers: server, compression: { threshold: 1, algorithm: 'lz4' } });
  out.construct = 'no error';
} catch (e) {
  out.construct = { name: e.name, option: e.option, message: e.message };
}
const mc = new MemcachedClient({ servers: server });
out.plain = await mc.get('nolz4:value');
out.packed = await mc.get('nolz4:packed').then(() => 'no error', (e) => ({ name: e.name, message: e.message }));
await mc.close();
console.log('REPORT ' + JSON.stringify(out));
`,
    );
    const result = await runChild(script, [build.entry, server.address], outside);
    const out = report<{
      construct: { name: string; option: string; message: string };
      plain: string;
      packed: { name: string; message: string };
    }>(result);
    expect(out.construct.name).toBe('MemcachedOptionsError');
    expect(out.construct.option).toBe('compression.algorithm');
    expect(out.construct.message).toMatch(/npm install lz4-napi/);
    expect(out.plain).toBe('ok');
    expect(out.packed.name).toBe('MemcachedSerdeError');
    expect(out.packed.message).toMatch(/lz4-napi/);
  });
});

describe('with lz4-napi installed and not lz4', () => {
  let build: ChildBuild;
  let dir: string;
  beforeAll(async () => {
    build = await buildForChildren('lz4-napi-only');
    // A working directory whose node_modules has lz4-napi (and its binary) but not lz4.
    dir = await mkdtemp(join(tmpdir(), 'lz4-napi-only-'));
    const modules = join(process.cwd(), 'node_modules');
    await mkdir(join(dir, 'node_modules', '@antoniomuso'), { recursive: true });
    await symlink(join(modules, 'lz4-napi'), join(dir, 'node_modules', 'lz4-napi'));
    await symlink(
      join(modules, '@antoniomuso', `lz4-napi-${process.platform}-${process.arch}-gnu`),
      join(dir, 'node_modules', '@antoniomuso', `lz4-napi-${process.platform}-${process.arch}-gnu`),
    );
  });
  afterAll(async () => {
    await build.remove();
    await rm(dir, { recursive: true, force: true });
  });

  test('the client falls back to lz4-napi: values it stores are read here (with lz4) and back', async () => {
    await client({ compression: { threshold: 1, algorithm: 'lz4' } }).set('fallback:here', doc);
    const script = join(dir, 'child.mjs');
    await writeFile(
      script,
      `
const [entry, server] = process.argv.slice(2);
const { MemcachedClient } = await import(entry);
const { lz4Package } = await import(new URL('../serde/lz4.js', entry).href);
const mc = new MemcachedClient({ servers: server, compression: { threshold: 1, algorithm: 'lz4' } });
await mc.set('fallback:there', 'from the child, '.repeat(50));
const out = { package: lz4Package(), read: await mc.get('fallback:here') };
await mc.close();
console.log('REPORT ' + JSON.stringify(out));
`,
    );
    const result = await runChild(script, [build.entry, server.address], dir);
    const out = report<{ package: string; read: unknown }>(result);
    expect(out).toEqual({ package: 'lz4-napi', read: doc });
    expect((await rawBytes('fallback:there')).flags).toBe(FLAG_TEXT | FLAG_LZ4);
    expect(await client().get('fallback:there')).toBe('from the child, '.repeat(50));
  });
});

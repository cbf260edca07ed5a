import { afterAll, describe, expect, test } from '@jest/globals';
import { MemcachedAuthError, MemcachedClient, MemcachedConnectionError } from '../../lib/index.js';
import {
  ipv6Available,
  serverStats,
  startMemcached,
  stopAllMemcached,
} from '../harness/memcached.js';
import { makeTlsMaterial, removeTlsMaterial, type TlsMaterial } from '../harness/tls.js';

const materials: TlsMaterial[] = [];

afterAll(async () => {
  await stopAllMemcached();
  for (const m of materials) await removeTlsMaterial(m);
});

async function roundTrip(mc: MemcachedClient, key: string): Promise<unknown> {
  await mc.set(key, { ok: key });
  return mc.get(key);
}

describe('TLS', () => {
  test('a server with a self-signed CA: the right CA connects, a wrong CA or servername is refused', async () => {
    const material = await makeTlsMaterial();
    const other = await makeTlsMaterial();
    materials.push(material, other);
    const server = await startMemcached({ tls: material });

    const good = new MemcachedClient({
      servers: server.address,
      tls: { ca: material.caCert, servername: 'localhost' },
    });
    try {
      expect(await roundTrip(good, 'tls:1')).toEqual({ ok: 'tls:1' });
      expect(Object.values(await good.version())[0]).toMatch(/^1\./);
    } finally {
      await good.close();
    }

    const wrongCa = new MemcachedClient({
      servers: server.address,
      tls: { ca: other.caCert, servername: 'localhost' },
      failover: false,
    });
    try {
      const err = await wrongCa.get('tls:1').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MemcachedConnectionError);
      expect((err as Error).message).toMatch(/certificate|self.signed|verify/i);
    } finally {
      await wrongCa.close();
    }

    const wrongName = new MemcachedClient({
      servers: server.address,
      tls: { ca: material.caCert, servername: 'not-the-server.example' },
      failover: false,
    });
    try {
      const err = await wrongName.get('tls:1').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MemcachedConnectionError);
      expect((err as Error).message).toMatch(/altnames|hostname|certificate/i);
    } finally {
      await wrongName.close();
    }

    const plain = new MemcachedClient({ servers: server.address, failover: false, timeout: 500 });
    try {
      // A plain-text client against a TLS server must fail, never hang.
      await expect(plain.get('tls:1')).rejects.toBeInstanceOf(Error);
    } finally {
      await plain.close();
    }
  });
});

describe('ASCII authentication', () => {
  test('right credentials work; wrong ones raise MemcachedAuthError without a reconnect storm', async () => {
    const server = await startMemcached({ auth: { username: 'app', password: 's3cret!' } });

    const good = new MemcachedClient({
      servers: server.address,
      auth: { username: 'app', password: 's3cret!' },
    });
    try {
      expect(await roundTrip(good, 'auth:1')).toEqual({ ok: 'auth:1' });
    } finally {
      await good.close();
    }

    const before = Number((await serverStats(server)).total_connections);
    const bad = new MemcachedClient({
      servers: server.address,
      auth: { username: 'app', password: 'wrong' },
      failover: false,
    });
    try {
      const errors = await Promise.all(
        Array.from({ length: 50 }, () => bad.get('auth:1').catch((e: unknown) => e)),
      );
      for (const e of errors) expect(e).toBeInstanceOf(MemcachedAuthError);
      // More calls right after fail fast with the same class, without new connections.
      for (let i = 0; i < 20; i++) {
        await expect(bad.set('auth:x', 1)).rejects.toBeInstanceOf(MemcachedAuthError);
      }
      const after = Number((await serverStats(server)).total_connections);
      // serverStats itself opens one connection; the bad client opened at most its pool.
      expect(after - before).toBeLessThanOrEqual(1 + bad.options.poolSize);
    } finally {
      await bad.close();
    }

    const none = new MemcachedClient({ servers: server.address, failover: false });
    try {
      await expect(none.get('auth:1')).rejects.toBeInstanceOf(MemcachedAuthError);
    } finally {
      await none.close();
    }
  });
});

describe('unix sockets and IPv6', () => {
  test('a unix socket as /path and as unix:/path', async () => {
    const server = await startMemcached({ unixSocket: true });
    for (const servers of [server.socketPath!, `unix:${server.socketPath!}`]) {
      const mc = new MemcachedClient({ servers });
      try {
        expect(mc.servers).toEqual([server.socketPath]);
        expect(await roundTrip(mc, 'unix:1')).toEqual({ ok: 'unix:1' });
        expect(Object.keys(await mc.version())).toEqual([server.socketPath]);
      } finally {
        await mc.close();
      }
    }
  });

  test('IPv6 loopback in brackets', async () => {
    if (!(await ipv6Available())) {
      console.warn('IPv6 test skipped: ::1 is not available on this machine');
      return;
    }
    const server = await startMemcached({ host: '::1' });
    const mc = new MemcachedClient({ servers: `[::1]:${server.port}` });
    try {
      expect(mc.servers).toEqual([`[::1]:${server.port}`]);
      expect(await roundTrip(mc, 'v6:1')).toEqual({ ok: 'v6:1' });
      expect(Object.keys(await mc.stats())).toEqual([`[::1]:${server.port}`]);
    } finally {
      await mc.close();
    }
  });
});

/**
 * SASL PLAIN on the binary protocol against memcached -S (users in a sasldb the harness makes
 * with saslpasswd2): the handshake goes first on every connection, values cross between memjs
 * and this client, and a refused password fails fast without a reconnect storm.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import memjs from 'memjs';
import { MemcachedAuthError, MemcachedClient } from '../../lib/index.js';
import {
  serverStats,
  startMemcached,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';

const alice = { username: 'alice', password: 'wonder-land' };
const bob = { username: 'bob', password: 'builder' };

let server: MemcachedProcess;

beforeAll(async () => {
  server = await startMemcached({ sasl: [alice, bob] });
});
afterAll(stopAllMemcached);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('SASL PLAIN (memcached -S)', () => {
  test('the handshake goes first on every new connection: concurrent first calls all succeed', async () => {
    const before = await serverStats(server);
    const mc = new MemcachedClient({
      servers: server.address,
      protocol: 'binary',
      auth: alice,
      poolSize: 4,
    });
    try {
      // Issued at once, before any connection exists: each of the 4 connections must send its
      // SASL request before these (an unauthenticated command gets "Auth failure").
      const writes = await Promise.all(
        Array.from({ length: 200 }, (_, i) => mc.set(`s:${i}`, i, { noreply: i % 3 === 0 })),
      );
      expect(writes.every((w) => w)).toBe(true);
      const values = await Promise.all(Array.from({ length: 200 }, (_, i) => mc.get(`s:${i}`)));
      expect(values).toEqual(Array.from({ length: 200 }, (_, i) => i));
    } finally {
      await mc.close();
    }
    const after = await serverStats(server);
    const connections = Number(after.total_connections) - Number(before.total_connections);
    const auths = Number(after.auth_cmds) - Number(before.auth_cmds);
    // One SASL request per connection (the harness' own stats connection counts in both).
    expect(auths).toBe(connections);
    expect(connections).toBeGreaterThanOrEqual(2);
    expect(connections).toBeLessThanOrEqual(5);
    expect(Number(after.auth_errors) - Number(before.auth_errors)).toBe(0);
  });

  test('values written by memjs read back by ours and the reverse, both authenticated', async () => {
    const mc = new MemcachedClient({ servers: server.address, protocol: 'binary', auth: bob });
    const peer = memjs.Client.create(server.address, {
      ...alice,
      retries: 0,
      timeout: 2,
      logger: { log: () => undefined },
    });
    try {
      const bytes = Buffer.from([0, 255, 13, 10, 32]);
      await peer.set('peer:bytes', bytes, {});
      await peer.set('peer:text', 'héllo', {});
      expect(await mc.get('peer:bytes')).toEqual(bytes);
      expect(await mc.get('peer:text')).toEqual(Buffer.from('héllo'));
      await mc.set('ours:text', 'wörld');
      await mc.set('ours:obj', { n: 1 });
      expect((await peer.get('ours:text')).value?.toString()).toBe('wörld');
      expect(JSON.parse((await peer.get('ours:obj')).value!.toString())).toEqual({ n: 1 });
      expect(await mc.getMany(['peer:bytes', 'ours:text', 'none'])).toEqual(
        new Map<string, unknown>([
          ['peer:bytes', bytes],
          ['ours:text', 'wörld'],
        ]),
      );
    } finally {
      peer.close();
      await mc.close();
    }
  });

  test.each([
    ['with failover', {}],
    ['without failover (the connection backoff alone)', { failover: false as const }],
  ])(
    'a wrong password %s: MemcachedAuthError within the timeout, and a bounded number of connection attempts',
    async (_name, extra) => {
      const before = await serverStats(server);
      const mc = new MemcachedClient({
        servers: server.address,
        protocol: 'binary',
        auth: { username: 'alice', password: 'not-her-password' },
        connectTimeout: 500,
        timeout: 500,
        ...extra,
      });
      const errors: unknown[] = [];
      try {
        const started = performance.now();
        errors.push(await mc.get('k').catch((e: unknown) => e));
        expect(performance.now() - started).toBeLessThan(500);
        // Keep calling for 2 s, every 10 ms: a client that reconnects for each call would open
        // ~200 connections.
        const until = performance.now() + 2000;
        while (performance.now() < until) {
          errors.push(await mc.set('k', 1).catch((e: unknown) => e));
          await sleep(10);
        }
      } finally {
        await mc.close();
      }
      expect(errors.length).toBeGreaterThan(50);
      for (const e of errors) expect(e).toBeInstanceOf(MemcachedAuthError);
      expect((errors[0] as Error).message).toMatch(/SASL/);
      const after = await serverStats(server);
      // Less the harness' own stats connection; at most one attempt per backoff (~1 s) or probe.
      const attempts = Number(after.total_connections) - Number(before.total_connections) - 1;
      expect(attempts).toBeGreaterThanOrEqual(1);
      expect(attempts).toBeLessThanOrEqual(5);
      expect(Number(after.auth_errors) - Number(before.auth_errors)).toBe(attempts);
    },
  );

  test('no credentials against a SASL server: MemcachedAuthError', async () => {
    const mc = new MemcachedClient({ servers: server.address, protocol: 'binary' });
    try {
      await expect(mc.get('k')).rejects.toThrow(MemcachedAuthError);
    } finally {
      await mc.close();
    }
  });

  test('credentials against a server without SASL: MemcachedAuthError that names -S', async () => {
    const plain = await startMemcached();
    const mc = new MemcachedClient({
      servers: plain.address,
      protocol: 'binary',
      auth: alice,
      failover: false,
    });
    try {
      const err = await mc.get('k').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MemcachedAuthError);
      expect((err as Error).message).toMatch(/-S/);
    } finally {
      await mc.close();
    }
  });
});

/**
 * Tests of the test harness itself: every server here is one the harness
 * spawned on a free loopback port or a private unix socket.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import {
  ipv6Available,
  memcachedAvailable,
  rawRequest,
  serverStats,
  startMemcached,
  startMemcacheds,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';
import { makeTlsMaterial, removeTlsMaterial, type TlsMaterial } from '../harness/tls.js';

const HAS_IPV6 = await ipv6Available();
if (!HAS_IPV6) {
  console.warn('harness.test: ::1 is not available on this machine, skipping the IPv6 test');
}
const itIpv6 = HAS_IPV6 ? it : it.skip;

const VERSION = /^VERSION \d+\.\d+\.\d+\r\n$/;

/** Resolves true when a plain TCP connection to host:port is refused. */
function connectionRefused(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      socket.destroy();
      resolve(error.code === 'ECONNREFUSED');
    });
  });
}

/** Sends `text` over plain TCP; what came back and whether the server closed within 2 s. */
function plainExchange(
  host: string,
  port: number,
  text: string,
): Promise<{ reply: string; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let reply = '';
    const done = (closedByServer: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ reply, closedByServer });
    };
    const timer = setTimeout(() => done(false), 2000);
    socket.setEncoding('utf8');
    socket.once('connect', () => socket.write(text));
    socket.on('data', (chunk: string) => (reply += chunk));
    socket.once('close', () => done(true));
    socket.once('error', () => done(true));
  });
}

/** `version` over TLS, verifying the server against `ca` with SNI/hostname `servername`. */
function tlsVersion(proc: MemcachedProcess, ca: Buffer, servername = 'localhost'): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: proc.host, port: proc.port, ca, servername });
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no reply over TLS, got ${JSON.stringify(reply)}`));
    }, 3000);
    socket.once('secureConnect', () => socket.write('version\r\n'));
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      reply += chunk;
      if (reply.endsWith('\r\n')) {
        clearTimeout(timer);
        socket.destroy();
        resolve(reply);
      }
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    });
  });
}

afterAll(async () => {
  await stopAllMemcached();
});

describe('memcached harness', () => {
  it('finds the memcached binary', () => {
    expect(memcachedAvailable()).toBe(true);
  });

  it('starts a server on a free loopback port and stops it', async () => {
    const proc = await startMemcached();
    expect(proc.running).toBe(true);
    expect(proc.host).toBe('127.0.0.1');
    expect(proc.port).toBeGreaterThan(0);
    expect(proc.port).not.toBe(11211);
    expect(proc.address).toBe(`127.0.0.1:${proc.port}`);
    expect(proc.serverId).toBe(proc.address);
    expect(proc.args).toEqual(expect.arrayContaining(['-U', '0', '-l', '127.0.0.1']));
    if (process.getuid?.() === 0) expect(proc.args).toContain('-u');

    expect(await rawRequest(proc, 'version\r\n')).toMatch(VERSION);
    expect(await rawRequest(proc, 'set k 0 0 5\r\nhello\r\nget k\r\n')).toBe(
      'STORED\r\nVALUE k 0 5\r\nhello\r\nEND\r\n',
    );

    await proc.stop();
    expect(proc.running).toBe(false);
    expect(await connectionRefused('127.0.0.1', proc.port)).toBe(true);
    await expect(rawRequest(proc, 'version\r\n')).rejects.toThrow(/ECONNREFUSED/);
    await proc.stop(); // idempotent
  });

  it('starts several independent servers on distinct ports', async () => {
    const procs = await startMemcacheds(3);
    expect(new Set(procs.map((p) => p.port)).size).toBe(3);
    await rawRequest(procs[0]!, 'set only-here 0 0 1\r\nx\r\n');
    expect(await rawRequest(procs[0]!, 'get only-here\r\n')).toBe(
      'VALUE only-here 0 1\r\nx\r\nEND\r\n',
    );
    expect(await rawRequest(procs[1]!, 'get only-here\r\n')).toBe('END\r\n');
    expect(await rawRequest(procs[2]!, 'get only-here\r\n')).toBe('END\r\n');
    await Promise.all(procs.map((p) => p.stop()));
    expect(procs.every((p) => !p.running)).toBe(true);
  });

  it('kills a server abruptly and restarts it on the same port with empty memory', async () => {
    const proc = await startMemcached();
    const { port, address } = proc;
    const firstPid = proc.pid;
    expect(await rawRequest(proc, 'set k 0 0 1\r\n1\r\n')).toBe('STORED\r\n');

    await proc.kill();
    expect(proc.running).toBe(false);
    expect(await connectionRefused('127.0.0.1', port)).toBe(true);

    await proc.restart();
    expect(proc.running).toBe(true);
    expect(proc.port).toBe(port);
    expect(proc.address).toBe(address);
    expect(proc.pid).not.toBe(firstPid);
    expect(await rawRequest(proc, 'get k\r\n')).toBe('END\r\n');
    expect(await rawRequest(proc, 'version\r\n')).toMatch(VERSION);

    // restart() of a running server stops it first
    await proc.restart();
    expect(proc.running).toBe(true);
    expect(await rawRequest(proc, 'version\r\n')).toMatch(VERSION);
  });

  it('pauses a server (accepts connections, answers nothing) and resumes it', async () => {
    const proc = await startMemcached();
    await rawRequest(proc, 'set k 0 0 2\r\nok\r\n');

    proc.pause();
    expect(proc.paused).toBe(true);
    expect(proc.running).toBe(true);
    expect(await connectionRefused('127.0.0.1', proc.port)).toBe(false); // kernel still accepts
    expect(await rawRequest(proc, 'version\r\n', undefined, 300)).toBe('');

    // A request sent while paused is answered once resumed.
    let answered = false;
    const pending = rawRequest(proc, 'get k\r\n', undefined, 5000).then((reply) => {
      answered = true;
      return reply;
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(answered).toBe(false);
    proc.resume();
    expect(proc.paused).toBe(false);
    expect(await pending).toBe('VALUE k 0 2\r\nok\r\nEND\r\n');
  });

  it('stops a paused server', async () => {
    const proc = await startMemcached();
    proc.pause();
    const before = Date.now();
    await proc.stop();
    expect(proc.running).toBe(false);
    expect(Date.now() - before).toBeLessThan(1900); // SIGTERM took effect, no SIGKILL fallback
  });

  itIpv6('listens on ::1 (IPv6)', async () => {
    const proc = await startMemcached({ host: '::1' });
    expect(proc.host).toBe('::1');
    expect(proc.address).toBe(`[::1]:${proc.port}`);
    expect(proc.serverId).toBe(`[::1]:${proc.port}`);
    expect(await rawRequest(proc, 'version\r\n')).toMatch(VERSION);
    await proc.kill();
    expect(await connectionRefused('::1', proc.port)).toBe(true);
    await proc.restart();
    expect(await rawRequest(proc, 'version\r\n')).toMatch(VERSION);
  });

  it('listens on a unix socket in a temp dir', async () => {
    const proc = await startMemcached({ unixSocket: true });
    expect(proc.port).toBe(0);
    expect(proc.socketPath).toMatch(/memcached\.sock$/);
    expect(proc.host).toBe(proc.socketPath);
    expect(proc.address).toBe(proc.socketPath);
    expect(proc.serverId).toBe(proc.socketPath);
    expect(proc.args).toEqual(expect.arrayContaining(['-s', proc.socketPath!, '-a', '0700']));
    expect(proc.args).not.toContain('-p');
    expect(statSync(proc.socketPath!).isSocket()).toBe(true);
    expect(await rawRequest(proc, 'set u 0 0 3\r\nabc\r\nget u\r\n')).toBe(
      'STORED\r\nVALUE u 0 3\r\nabc\r\nEND\r\n',
    );
    await proc.kill();
    await expect(rawRequest(proc, 'version\r\n')).rejects.toThrow(/ECONNREFUSED|ENOENT/);
    await proc.restart();
    expect(await rawRequest(proc, 'version\r\n')).toMatch(VERSION);
  });

  it('rejects a listen failure with memcached’s own message', async () => {
    // Something else accepting on the port must not pass for our server.
    const blocker = net.createServer((socket) => socket.resume());
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as net.AddressInfo;
    try {
      await expect(startMemcached({ port })).rejects.toThrow(/Address already in use/);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it('does not mistake another memcached on the port for the one it started', async () => {
    const first = await startMemcached();
    await expect(startMemcached({ port: first.port })).rejects.toThrow(
      /exited during startup.*Address already in use/s,
    );
    expect(first.running).toBe(true);
    expect((await serverStats(first))['pid']).toBe(String(first.pid));
  });

  it('rejects invalid args with memcached’s stderr', async () => {
    await expect(startMemcached({ args: ['-I', '512'] })).rejects.toThrow(
      /Item max size cannot be less than 1024 bytes/,
    );
  });

  it('refuses non-loopback hosts and port 11211 without starting anything', async () => {
    await expect(startMemcached({ host: '0.0.0.0' })).rejects.toThrow(/non-loopback/);
    await expect(startMemcached({ port: 11211 })).rejects.toThrow(/11211/);
  });

  it('applies -I (with a matching slab_chunk_max) and -m', async () => {
    const proc = await startMemcached({ args: ['-I', '2k', '-m', '8'] });
    const settings = await rawRequest(proc, 'stats settings\r\n');
    expect(settings).toContain('STAT item_size_max 2048\r\n');
    expect(settings).toContain('STAT maxbytes 8388608\r\n');
    const small = 'a'.repeat(1000);
    const big = 'b'.repeat(3000);
    expect(await rawRequest(proc, `set small 0 0 ${small.length}\r\n${small}\r\n`)).toBe(
      'STORED\r\n',
    );
    expect(await rawRequest(proc, `set big 0 0 ${big.length}\r\n${big}\r\n`)).toMatch(
      /^SERVER_ERROR object too large for cache\r\n$/,
    );
    expect((await serverStats(proc))['limit_maxbytes']).toBe('8388608');
  });

  it('reports stats: counters move with traffic', async () => {
    const proc = await startMemcached();
    const before = await serverStats(proc);
    expect(before['pid']).toBe(String(proc.pid));
    expect(before['cmd_get']).toBe('0');
    expect(before['cmd_set']).toBe('0');
    expect(before['curr_items']).toBe('0');
    expect(Number(before['total_connections'])).toBeGreaterThan(0);

    await rawRequest(proc, 'set a 0 0 1\r\n1\r\nset b 0 0 1\r\n2\r\nget a b c\r\n');
    const after = await serverStats(proc);
    expect(after['cmd_set']).toBe('2');
    expect(after['curr_items']).toBe('2');
    expect(after['get_hits']).toBe('2');
    expect(after['get_misses']).toBe('1');
    expect(Number(after['total_connections'])).toBe(Number(before['total_connections']) + 2);
  });

  it('waits for every pipelined reply, honours noreply, and supports a custom `until`', async () => {
    const proc = await startMemcached();
    expect(
      await rawRequest(proc, 'set q 0 0 1 noreply\r\nz\r\nincr n 1\r\nmn\r\nget q\r\nversion\r\n'),
    ).toMatch(/^NOT_FOUND\r\nMN\r\nVALUE q 0 1\r\nz\r\nEND\r\nVERSION [\d.]+\r\n$/);
    expect(await rawRequest(proc, 'ms m 2\r\nhi\r\nmg m v\r\n')).toBe('HD\r\nVA 2\r\nhi\r\n');
    expect(await rawRequest(proc, 'stats\r\n', /STAT pid \d+\r\n/)).toMatch(/^STAT pid \d+\r\n/);
    // `until` never matching: resolves with what arrived once timeoutMs passed.
    const t0 = Date.now();
    expect(await rawRequest(proc, 'version\r\n', /NEVER/, 300)).toMatch(VERSION);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  });
});

describe('TLS', () => {
  let material: TlsMaterial;
  let otherCa: TlsMaterial;

  beforeAll(async () => {
    [material, otherCa] = await Promise.all([makeTlsMaterial(), makeTlsMaterial()]);
  });

  afterAll(async () => {
    await Promise.all([material, otherCa].filter(Boolean).map((m) => removeTlsMaterial(m)));
  });

  it('makes a CA and a server certificate for localhost, 127.0.0.1 and ::1', () => {
    const cert = new X509Certificate(material.cert);
    const ca = new X509Certificate(material.caCert);
    expect(cert.subjectAltName).toBe(
      'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    );
    expect(cert.checkIssued(ca)).toBe(true);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(ca.ca).toBe(true);
    expect(cert.ca).toBe(false);
    expect(cert.checkPrivateKey(createPrivateKey(material.key))).toBe(true);
    expect(cert.checkIssued(new X509Certificate(otherCa.caCert))).toBe(false);
    expect(readFileSync(material.certPath)).toEqual(material.cert);
    expect(readFileSync(material.caCertPath)).toEqual(material.caCert);
  });

  it('serves TLS that verifies against the right CA', async () => {
    const proc = await startMemcached({ tls: material });
    expect(proc.tls).toBe(material);
    expect(proc.args).toContain('-Z');
    expect(await tlsVersion(proc, material.caCert)).toMatch(VERSION);
    // rawRequest / serverStats speak TLS to a TLS server
    expect(await rawRequest(proc, 'set t 0 0 2\r\nok\r\nget t\r\n')).toBe(
      'STORED\r\nVALUE t 0 2\r\nok\r\nEND\r\n',
    );
    expect((await serverStats(proc))['cmd_set']).toBe('1');
  });

  it('is refused by a client trusting a different CA, a wrong name, or plain text', async () => {
    const proc = await startMemcached({ tls: material });
    // memcached sends the CA along (it is in its ssl_ca_cert store), hence "in chain".
    await expect(tlsVersion(proc, otherCa.caCert)).rejects.toMatchObject({
      code: expect.stringMatching(/^(SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)$/),
    });
    await expect(tlsVersion(proc, material.caCert, 'example.com')).rejects.toMatchObject({
      code: 'ERR_TLS_CERT_ALTNAME_INVALID',
    });
    // Plain text on the TLS port: memcached drops the connection without answering.
    expect(await plainExchange(proc.host, proc.port, 'version\r\n')).toEqual({
      reply: '',
      closedByServer: true,
    });
    // The server survived all of it.
    expect(await tlsVersion(proc, material.caCert)).toMatch(VERSION);
  });

  it('refuses TLS on a unix socket (memcached would serve plain text there)', async () => {
    await expect(startMemcached({ tls: material, unixSocket: true })).rejects.toThrow(
      /TLS on unix sockets/,
    );
  });

  itIpv6('serves TLS on ::1 (the certificate names ::1)', async () => {
    const proc = await startMemcached({ tls: material, host: '::1' });
    expect(await tlsVersion(proc, material.caCert)).toMatch(VERSION);
  });
});

describe('auth file (-Y)', () => {
  it('accepts the right user/password and rejects a wrong one', async () => {
    const proc = await startMemcached({
      auth: [
        { username: 'alice', password: 's3cret' },
        { username: 'bob', password: 'hunter2' },
      ],
    });
    expect(proc.args).toContain('-Y');
    expect(proc.credentials.map((c) => c.username)).toEqual(['alice', 'bob']);
    const before = await serverStats(proc); // authenticates as alice first

    expect(await rawRequest(proc, 'version\r\n')).toBe('CLIENT_ERROR unauthenticated\r\n');
    expect(await rawRequest(proc, 'set x 0 0 12\r\nalice s3cret\r\nversion\r\n')).toMatch(
      /^STORED\r\nVERSION [\d.]+\r\n$/,
    );
    expect(await rawRequest(proc, 'set x 0 0 11\r\nbob hunter2\r\nversion\r\n')).toMatch(
      /^STORED\r\nVERSION [\d.]+\r\n$/,
    );
    expect(await rawRequest(proc, 'set x 0 0 11\r\nalice wrong\r\n')).toBe(
      'CLIENT_ERROR authentication failure\r\n',
    );
    expect(await rawRequest(proc, 'set x 0 0 13\r\nbob s3cret xx\r\n')).toBe(
      'CLIENT_ERROR authentication failure\r\n',
    );

    const after = await serverStats(proc);
    const delta = (name: string): number => Number(after[name]) - Number(before[name]);
    expect(delta('auth_cmds')).toBe(5); // 4 above + this serverStats
    expect(delta('auth_errors')).toBe(2);
  });

  it('authenticates with a single credential object', async () => {
    const proc = await startMemcached({ auth: { username: 'u', password: 'p' } });
    expect(await rawRequest(proc, 'set x 0 0 3\r\nu p\r\nversion\r\n')).toMatch(
      /^STORED\r\nVERSION /,
    );
    await expect(startMemcached({ auth: { username: 'a:b', password: 'p' } })).rejects.toThrow(
      /invalid username/,
    );
  });
});

describe('stopAllMemcached', () => {
  it('stops every started server and removes its temp files', async () => {
    const [tcp, unix, auth] = await Promise.all([
      startMemcached(),
      startMemcached({ unixSocket: true }),
      startMemcached({ auth: { username: 'u', password: 'p' } }),
    ]);
    const authFile = auth.args[auth.args.indexOf('-Y') + 1]!;
    expect(existsSync(authFile)).toBe(true);
    unix.pause(); // even a paused one
    await stopAllMemcached();
    for (const proc of [tcp, unix, auth]) expect(proc.running).toBe(false);
    expect(existsSync(unix.socketPath!)).toBe(false);
    expect(existsSync(authFile)).toBe(false);
    expect(await connectionRefused('127.0.0.1', tcp.port)).toBe(true);
  });
});

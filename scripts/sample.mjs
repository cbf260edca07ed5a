#!/usr/bin/env node
// Starts the sample app (dist-sample/, built by `npm run build:sample`) against memcached:
//
// 1. MEMCACHED_SERVERS set            → use it;
// 2. else a memcached answers on 127.0.0.1:11211 (300 ms connect + `version`) → use it;
// 3. else start a memcached of our own on a free loopback port (installing it with apt-get when
//    missing and running as root, else print the one-line fix), and stop it on exit.
//
// PORT (default 3000) is the HTTP port. Ctrl+C / SIGTERM stop the app, then our memcached.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import net from 'node:net';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const say = (message) => console.log(`[sample] ${message}`);

/** Resolves the first line a memcached at host:port answers to `version`, or undefined. */
function probe(host, port, timeoutMs = 300) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let reply = '';
    const done = (value) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    socket.once('connect', () => socket.write('version\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n'))
        done(/^VERSION \S+/.test(reply) ? reply.split('\r\n')[0] : undefined);
    });
    socket.once('error', () => done(undefined));
    socket.once('close', () => done(undefined));
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function findMemcached() {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  dirs.push('/usr/bin', '/usr/sbin', '/usr/local/bin', '/usr/local/sbin', '/opt/homebrew/bin');
  for (const dir of dirs) {
    try {
      accessSync(join(dir, 'memcached'), constants.X_OK);
      return join(dir, 'memcached');
    } catch {
      // not here
    }
  }
  return undefined;
}

function dropUser() {
  try {
    const users = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .map((line) => line.split(':')[0]);
    return users.includes('memcache') ? 'memcache' : 'nobody';
  } catch {
    return 'nobody';
  }
}

async function startOwnMemcached() {
  let binary = findMemcached();
  if (binary === undefined) {
    // Installs with apt-get when root (prints why not otherwise) and exits 1 when it cannot.
    const result = spawnSync(
      process.execPath,
      [join(root, 'scripts/require-memcached.mjs'), '--install'],
      {
        stdio: 'inherit',
      },
    );
    binary = result.status === 0 ? findMemcached() : undefined;
    if (binary === undefined) {
      console.error(
        '[sample] no memcached: install it ("sudo apt-get install -y memcached" or "brew install memcached") or set MEMCACHED_SERVERS=host:port',
      );
      process.exit(1);
    }
  }
  const port = await freePort();
  const args = ['-l', '127.0.0.1', '-p', String(port), '-U', '0', '-m', '64'];
  if (process.getuid?.() === 0) args.unshift('-u', dropUser());
  const child = spawn(binary, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    if (await probe('127.0.0.1', port)) return { child, exited, address: `127.0.0.1:${port}` };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  child.kill('SIGKILL');
  console.error(
    `[sample] memcached did not start on 127.0.0.1:${port} (${binary} ${args.join(' ')})`,
  );
  process.exit(1);
}

let own;
const env = { ...process.env };
if (env.MEMCACHED_SERVERS) {
  say(`using MEMCACHED_SERVERS=${env.MEMCACHED_SERVERS}`);
} else if (await probe('127.0.0.1', 11211)) {
  env.MEMCACHED_SERVERS = '127.0.0.1:11211';
  say('MEMCACHED_SERVERS is not set; using the memcached that answers on 127.0.0.1:11211');
} else {
  own = await startOwnMemcached();
  env.MEMCACHED_SERVERS = own.address;
  say(
    `MEMCACHED_SERVERS is not set and nothing answers on 127.0.0.1:11211: started memcached on ${own.address} (pid ${own.child.pid}); it stops with the sample`,
  );
}
const port = env.PORT ?? '3000';
env.PORT = port;
say(`starting the app on http://localhost:${port} (PORT overrides)`);

const app = spawn(process.execPath, [join(root, 'dist-sample/sample/main.js')], {
  stdio: 'inherit',
  env,
});

async function stopOwnMemcached() {
  if (own === undefined || own.child.exitCode !== null) return;
  own.child.kill('SIGTERM');
  const timer = setTimeout(() => own.child.kill('SIGKILL'), 2000);
  await own.exited;
  clearTimeout(timer);
  say(`stopped memcached on ${own.address}`);
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    if (app.exitCode === null) app.kill(signal);
  });
}

app.once('exit', async (code, signal) => {
  await stopOwnMemcached();
  process.exit(code ?? (signal ? 0 : 1));
});

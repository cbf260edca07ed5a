#!/usr/bin/env node
// Checks that the `memcached` binary is available: the tests (and the sample)
// start their own memcached servers from it.
//
//   node scripts/require-memcached.mjs            exit 0 silently, or print one line and exit 1
//   node scripts/require-memcached.mjs --install  install it with apt-get when missing and allowed
//                                                 (root + apt-get); same with MEMCACHED_AUTO_INSTALL=1;
//                                                 elsewhere print the one-line fix and exit 1
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

const MISSING =
  'memcached is not installed: run "sudo apt-get install -y memcached" (Debian/Ubuntu), ' +
  '"brew install memcached" (macOS) or see https://memcached.org — the tests start their own ' +
  'servers from that binary.';

function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function findOnPath(name, extraDirs = []) {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean).concat(extraDirs);
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function findMemcached() {
  return findOnPath('memcached', ['/usr/bin', '/usr/sbin', '/usr/local/bin', '/usr/local/sbin']);
}

function run(command, args, env) {
  const result = spawnSync(command, args, { stdio: 'inherit', env: { ...process.env, ...env } });
  if (result.error) {
    console.error(`${command} ${args.join(' ')}: ${result.error.message}`);
    return false;
  }
  return result.status === 0;
}

function tryInstall() {
  const isRoot = process.getuid?.() === 0;
  const aptGet = findOnPath('apt-get', ['/usr/bin']);
  // Only where it is allowed: as root with apt-get. Elsewhere the one-line fix is printed.
  if (!isRoot || !aptGet) return false;
  console.error('memcached is missing: installing it with apt-get...');
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  return run(aptGet, ['update'], env) && run(aptGet, ['install', '-y', 'memcached'], env);
}

if (findMemcached()) process.exit(0);

const wantsInstall =
  process.argv.slice(2).includes('--install') || process.env.MEMCACHED_AUTO_INSTALL === '1';
if (wantsInstall && tryInstall() && findMemcached()) process.exit(0);

console.error(MISSING);
process.exit(1);

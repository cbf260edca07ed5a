#!/usr/bin/env node
// Checks that the `memcached` binary is available: the tests (and the sample)
// start their own memcached servers from it.
//
//   node scripts/require-memcached.mjs            exit 0 silently, or print one line and exit 1
//   node scripts/require-memcached.mjs --install  install it with apt-get when missing and allowed
//                                                 (root + apt-get); same with MEMCACHED_AUTO_INSTALL=1;
//                                                 elsewhere print the one-line fix and exit 1. Also
//                                                 installs, where allowed, what some tests use:
//                                                 sasl2-bin (saslpasswd2, the SASL tests),
//                                                 python3-lz4 (the lz4 tests read values from Python)
//                                                 and nutcracker (twemproxy, the twemproxy tests)
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

function tryInstall(packages) {
  const isRoot = process.getuid?.() === 0;
  const aptGet = findOnPath('apt-get', ['/usr/bin']);
  // Only where it is allowed: as root with apt-get. Elsewhere the one-line fix is printed.
  if (!isRoot || !aptGet) return false;
  console.error(`${packages.join(', ')} missing: installing with apt-get...`);
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  return run(aptGet, ['update'], env) && run(aptGet, ['install', '-y', ...packages], env);
}

/** Test helpers beyond memcached: installed where allowed, otherwise their tests say what is missing. */
function missingExtras() {
  const out = [];
  if (!findOnPath('saslpasswd2', ['/usr/sbin', '/usr/bin'])) out.push('sasl2-bin');
  const python = spawnSync('/usr/bin/python3', ['-c', 'import lz4.block'], { stdio: 'ignore' });
  if (python.status !== 0) out.push('python3-lz4');
  if (!findOnPath('nutcracker', ['/usr/sbin', '/usr/bin'])) out.push('nutcracker');
  return out;
}

const wantsInstall =
  process.argv.slice(2).includes('--install') || process.env.MEMCACHED_AUTO_INSTALL === '1';

if (findMemcached()) {
  const extras = wantsInstall ? missingExtras() : [];
  if (extras.length > 0) tryInstall(extras);
  process.exit(0);
}

if (wantsInstall && tryInstall(['memcached', ...missingExtras()]) && findMemcached()) {
  process.exit(0);
}

console.error(MISSING);
process.exit(1);

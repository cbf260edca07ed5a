#!/usr/bin/env node
// Installs the npm dependencies (`npm ci`) when node_modules is missing or older than
// package-lock.json, so `npm test` and `npm run sample` work on a fresh clone.
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}

const installed = mtime(join(root, 'node_modules', '.package-lock.json'));
const lock = mtime(join(root, 'package-lock.json'));
if (installed !== undefined && lock !== undefined && installed >= lock) process.exit(0);

console.error('[setup] npm dependencies missing or out of date: running npm ci');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const result = spawnSync(npm, ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
process.exit(result.status ?? 1);

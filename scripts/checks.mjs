#!/usr/bin/env node
// Runs the static checks of `npm test` — `npm run typecheck`, `npm run lint` and
// `npm run format:check` — at the same time (each is one CPU-bound process, so on a machine with
// several cores this takes about as long as the slowest of them), prints each one's output once
// it is done, and fails when any of them failed.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const CHECKS = ['typecheck', 'lint', 'format:check'];

function run(script) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(npm, ['run', '--silent', script], { cwd: root, shell: false });
    const output = [];
    child.stdout.on('data', (chunk) => output.push(chunk));
    child.stderr.on('data', (chunk) => output.push(chunk));
    child.on('error', (error) => {
      output.push(Buffer.from(String(error)));
      resolve({ script, code: 1, output, seconds: (Date.now() - started) / 1000 });
    });
    child.on('close', (code) =>
      resolve({ script, code: code ?? 1, output, seconds: (Date.now() - started) / 1000 }),
    );
  });
}

const results = await Promise.all(CHECKS.map(run));
let failed = 0;
for (const r of results) {
  const status = r.code === 0 ? 'ok' : `FAILED (exit ${r.code})`;
  process.stdout.write(`[checks] npm run ${r.script}: ${status}, ${r.seconds.toFixed(1)} s\n`);
  const text = Buffer.concat(r.output).toString('utf8').trimEnd();
  if (text !== '') process.stdout.write(`${text}\n`);
  if (r.code !== 0) failed++;
}
process.exit(failed === 0 ? 0 : 1);

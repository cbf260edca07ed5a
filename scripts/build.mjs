#!/usr/bin/env node
// Builds the package: the ES module output (dist/) and the CommonJS output (dist/cjs/, marked
// by its own {"type": "commonjs"} package.json), each with its typings. The two compilations run
// in parallel; the CommonJS one never type-checks (`noCheck` in tsconfig.build.cjs.json: the
// sources are the same). `--no-check` skips type checking in the ESM one too, for callers that
// have just type-checked (the packaging test after `npm run typecheck`).
import { spawn } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const noCheck = process.argv.includes('--no-check');

function compile(project, extra = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [tsc, '-p', project, ...extra], {
      cwd: root,
      stdio: 'inherit',
    });
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`tsc -p ${project} exited with ${code}`)),
    );
  });
}

await rm(new URL('../dist', import.meta.url), { recursive: true, force: true });
try {
  await Promise.all([
    compile('tsconfig.build.json', noCheck ? ['--noCheck'] : []),
    compile('tsconfig.build.cjs.json'),
  ]);
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
}
await writeFile(
  new URL('../dist/cjs/package.json', import.meta.url),
  `${JSON.stringify({ type: 'commonjs' }, null, 2)}\n`,
);

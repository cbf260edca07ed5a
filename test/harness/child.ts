/**
 * Child processes that use the package: a build of lib/ (ESM, transpiled file by file) under
 * .tmp/, and a runner that executes a script with it. Cross-process guarantees (cas, leases) are
 * tested with real processes, not with several clients in one.
 */
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildPackage } from './package-build.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A build of the package under `.tmp/<name>-<pid>/`; `entry` is the client entry point's URL. */
export interface ChildBuild {
  dir: string;
  entry: string;
  remove(): Promise<void>;
}

export async function buildForChildren(name: string): Promise<ChildBuild> {
  const dir = join(root, '.tmp', `${name}-${process.pid}`);
  const outDir = join(dir, 'lib');
  await buildPackage(outDir);
  return {
    dir,
    entry: pathToFileURL(join(outDir, 'client', 'index.js')).href,
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

export interface ChildResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node --unhandled-rejections=strict script ...args` (from the repository root by default). */
export function runChild(
  script: string,
  args: readonly string[],
  cwd: string = root,
): Promise<ChildResult> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['NODE_OPTIONS']; // jest's --experimental-vm-modules
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--unhandled-rejections=strict', script, ...args],
      { cwd, env, timeout: 30_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** The JSON after `REPORT ` on a child's stdout. */
export function report<T>(result: ChildResult): T {
  const line = result.stdout.split('\n').find((l) => l.startsWith('REPORT '));
  if (line === undefined) {
    throw new Error(
      `child printed no REPORT (exit ${result.code}): ${result.stderr || result.stdout}`,
    );
  }
  return JSON.parse(line.slice(7)) as T;
}

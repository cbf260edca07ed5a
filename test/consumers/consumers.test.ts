/**
 * The packed package as users get it: `npm pack` (which builds the ESM and the CommonJS output),
 * installed into copies of two small apps in a temp dir — an ESM NestJS 12 app and a CommonJS
 * NestJS 11 app (terminus 12 resp. 11) — compiled with tsc against the installed typings, and run
 * against a harness memcached. Plus one process that loads both builds at once.
 *
 * Needs the npm registry (or npm's cache) for the apps' dependencies. Fails, never skips.
 */
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  rawRequest,
  startMemcached,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const tsc = join(root, 'node_modules/typescript/bin/tsc');

/** The environment for child processes: no jest NODE_OPTIONS, no npm lifecycle variables. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const keep = new Set(['npm_config_cache', 'npm_config_registry', 'npm_config_userconfig']);
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (name === 'NODE_OPTIONS' || name === 'INIT_CWD') continue;
    if (name.toLowerCase().startsWith('npm_') && !keep.has(name.toLowerCase())) continue;
    env[name] = value;
  }
  return { ...env, ...extra };
}

function run(
  command: string,
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      command,
      args,
      {
        cwd: options.cwd,
        env: options.env ?? childEnv(),
        timeout: options.timeoutMs ?? 120_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        if (error) {
          reject(
            new Error(
              `\`${command} ${args.join(' ')}\` in ${options.cwd} failed: ${error.message}\n` +
                `--- stdout ---\n${stdout.slice(-4000)}\n--- stderr ---\n${stderr.slice(-4000)}`,
            ),
          );
        } else {
          resolvePromise(stdout);
        }
      },
    );
  });
}

function report<T>(stdout: string): T {
  const line = stdout.split('\n').find((l) => l.startsWith('REPORT '));
  if (line === undefined) throw new Error(`no REPORT line in the output:\n${stdout}`);
  return JSON.parse(line.slice('REPORT '.length)) as T;
}

interface HealthServer {
  status: string;
  error?: string;
}
interface AppReport {
  entry: string;
  health: string;
  nest: string;
  route: Array<{ status: number; body: unknown }>;
  direct: unknown[];
  calls: { controller: number; service: number };
  healthCheck: {
    status: number;
    body: {
      status: string;
      details: Record<
        string,
        { status: string; message?: string; servers: Record<string, HealthServer> }
      >;
    };
  };
}

let work: string;
let live: MemcachedProcess;
let deadAddress: string;
let tarball: string;
const apps: Record<string, string> = {};

async function prepareApp(name: string): Promise<void> {
  const dir = join(work, name);
  await cp(join(here, name), dir, {
    recursive: true,
    filter: (source) => !/[\\/](node_modules|dist)$/.test(source),
  });
  const pkgPath = join(dir, 'package.json');
  const pkg = JSON.parse(await readFile(pkgPath, 'utf8')) as {
    dependencies: Record<string, string>;
  };
  pkg.dependencies['nestjs-memcached'] = `file:${tarball}`;
  await writeFile(pkgPath, JSON.stringify(pkg, null, 2));
  await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], {
    cwd: dir,
    timeoutMs: 180_000,
  });
  await run(
    process.execPath,
    [tsc, '-p', 'tsconfig.json', '--typeRoots', join(root, 'node_modules/@types')],
    {
      cwd: dir,
    },
  );
  apps[name] = dir;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'nestjs-memcached-consumers-'));
  // The ESM and CommonJS builds (without type checking: `npm test` has just type-checked),
  // then the tarball (without the prepack script, which would build again).
  await run(process.execPath, [join(root, 'scripts/build.mjs'), '--no-check'], { cwd: root });
  await run('npm', ['pack', '--ignore-scripts', '--pack-destination', work, '--loglevel=error'], {
    cwd: root,
    timeoutMs: 180_000,
  });
  const packed = (await readdir(work)).filter((f) => f.endsWith('.tgz'));
  expect(packed).toHaveLength(1);
  tarball = join(work, packed[0]!);
  live = await startMemcached();
  const doomed = await startMemcached();
  deadAddress = doomed.address;
  await doomed.stop();
  await Promise.all([prepareApp('esm-nest12'), prepareApp('cjs-nest11')]);
}, 300_000);

afterAll(async () => {
  await stopAllMemcached();
  if (work !== undefined && process.env['KEEP_CONSUMERS_TMP'] !== '1') {
    await rm(work, { recursive: true, force: true });
  }
});

async function storedOnLive(key: string): Promise<boolean> {
  return (await rawRequest(live, `get ${key}\r\n`)).startsWith(`VALUE ${key} `);
}

function appEnv(): NodeJS.ProcessEnv {
  return childEnv({
    MEMCACHED_SERVERS: live.address,
    PAIR_MEMCACHED_SERVERS: `${live.address},${deadAddress}`,
  });
}

function checkCommon(r: AppReport, by: string): void {
  expect(r.route).toHaveLength(5);
  for (const reply of r.route) expect(reply).toEqual({ status: 200, body: { id: '1', by } });
  expect(r.direct).toEqual([
    { id: '2', by },
    { id: '2', by },
    { id: '2', by },
  ]);
  // The route body ran once; the service method once for item 1 and once for item 2.
  expect(r.calls).toEqual({ controller: 1, service: 2 });
  const pair = r.healthCheck.body.details['pair']!;
  expect(pair.message).toBe('1 of 2 memcached servers do not answer');
  expect(pair.servers[live.serverId]!.status).toBe('up');
  expect(pair.servers[deadAddress]!.status).toBe('down');
  expect(r.healthCheck.body.details['memcached']!.status).toBe('up');
}

test('the tarball holds the ESM and CommonJS builds and their typings, no sources or maps', async () => {
  const list = (await run('tar', ['-tzf', tarball], { cwd: work })).split('\n');
  for (const file of [
    'package/dist/index.js',
    'package/dist/index.d.ts',
    'package/dist/health/index.js',
    'package/dist/health/index.d.ts',
    'package/dist/cjs/index.js',
    'package/dist/cjs/index.d.ts',
    'package/dist/cjs/package.json',
    'package/dist/cjs/health/index.js',
    'package/dist/cjs/health/index.d.ts',
    'package/README.md',
    'package/package.json',
  ]) {
    expect(list).toContain(file);
  }
  expect(list.filter((f) => f.endsWith('.map') || f.startsWith('package/lib/'))).toEqual([]);
  // Only the health entry point loads @nestjs/terminus (an optional peer).
  const js = list.filter((f) => f.endsWith('.js')).map((f) => f.replace(/^package\//, ''));
  const importsTerminus: string[] = [];
  for (const file of js) {
    const text = await readFile(join(root, file), 'utf8');
    if (/from ['"]@nestjs\/terminus['"]|require\(['"]@nestjs\/terminus['"]\)/.test(text)) {
      importsTerminus.push(file);
    }
  }
  expect(importsTerminus.sort()).toEqual([
    'dist/cjs/health/memcached-health.module.js',
    'dist/cjs/health/memcached.health.js',
    'dist/health/memcached-health.module.js',
    'dist/health/memcached.health.js',
  ]);
});

test('ESM app on NestJS 12 and terminus 12 (import)', async () => {
  const stdout = await run(process.execPath, ['dist/main.js'], {
    cwd: apps['esm-nest12']!,
    env: appEnv(),
    timeoutMs: 60_000,
  });
  const r = report<AppReport>(stdout);
  expect(r.nest).toBe('12.5.1');
  expect(r.entry).toMatch(/\/node_modules\/nestjs-memcached\/dist\/index\.js$/);
  expect(r.health).toMatch(/\/node_modules\/nestjs-memcached\/dist\/health\/index\.js$/);
  checkCommon(r, 'esm-nest12');
  // terminus 12: one of two servers down is "degraded", still HTTP 200.
  expect(r.healthCheck.status).toBe(200);
  expect(r.healthCheck.body.status).toBe('degraded');
  expect(r.healthCheck.body.details['pair']!.status).toBe('degraded');
  expect(await storedOnLive('esm12:route:1')).toBe(true);
  expect(await storedOnLive('esm12:item:2')).toBe(true);
}, 90_000);

test('CommonJS app on NestJS 11 and terminus 11 (require)', async () => {
  const compiled = await readFile(join(apps['cjs-nest11']!, 'dist/main.js'), 'utf8');
  expect(compiled).toContain('require("nestjs-memcached")');
  expect(compiled).toContain('require("nestjs-memcached/health")');
  expect(compiled).not.toMatch(/\bimport\s*\(|^import /m);
  const stdout = await run(process.execPath, ['dist/main.js'], {
    cwd: apps['cjs-nest11']!,
    env: appEnv(),
    timeoutMs: 60_000,
  });
  const r = report<AppReport>(stdout);
  expect(r.nest).toBe('11.2.10');
  expect(r.entry).toMatch(/\/node_modules\/nestjs-memcached\/dist\/cjs\/index\.js$/);
  expect(r.health).toMatch(/\/node_modules\/nestjs-memcached\/dist\/cjs\/health\/index\.js$/);
  checkCommon(r, 'cjs-nest11');
  // terminus 11 has no degraded state: "up" with the message and per-server detail.
  expect(r.healthCheck.status).toBe(200);
  expect(r.healthCheck.body.status).toBe('ok');
  expect(r.healthCheck.body.details['pair']!.status).toBe('up');
  expect(await storedOnLive('cjs11:route:1')).toBe(true);
  expect(await storedOnLive('cjs11:item:2')).toBe(true);
}, 90_000);

test('both builds in one process share the class token and wrap methods once', async () => {
  const stdout = await run(process.execPath, [join(here, 'dual-copies.mjs')], {
    cwd: root,
    env: childEnv({ MEMCACHED_SERVERS: live.address }),
    timeoutMs: 60_000,
  });
  const r = report<{
    entries: string[];
    sameClass: boolean;
    sameModule: boolean;
    sameToken: boolean;
    injectedIsDefault: boolean;
    instanceOfBoth: boolean;
    named: string;
    results: unknown[];
    later: unknown;
    calls: number;
    stored: unknown;
  }>(stdout);
  expect(r.entries[0]).toMatch(/\/dist\/index\.js$/);
  expect(r.entries[1]).toMatch(/\/dist\/cjs\/index\.js$/);
  expect(r.sameClass).toBe(true);
  expect(r.sameModule).toBe(false);
  expect(r.sameToken).toBe(true);
  expect(r.injectedIsDefault).toBe(true);
  expect(r.instanceOfBoth).toBe(true);
  expect(r.named).toBe('esm-side');
  expect(r.results).toEqual([
    { id: '1', calls: 1 },
    { id: '1', calls: 1 },
    { id: '1', calls: 1 },
  ]);
  expect(r.later).toEqual({ id: '1', calls: 1 });
  expect(r.calls).toBe(1);
  expect(r.stored).toEqual({ id: '1', calls: 1 });
}, 90_000);

/**
 * The packed package as users get it: `npm pack` (the CommonJS build and the ES module wrappers
 * over it), installed into copies of two small apps in a temp dir — an ESM NestJS 12 app and a
 * CommonJS NestJS 11 app (terminus 12 resp. 11) — compiled with tsc against the installed
 * typings, and run against a harness memcached. In those apps, fresh processes load each entry
 * point by `import` and by `require` and list what got loaded (`nestjs-memcached/client` must
 * load nothing of Nest). Plus one process that loads the package both ways at once and checks
 * that both ways give the same classes.
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
  client: string;
  sameClient: boolean;
  keyError: boolean;
  nest: string;
  route: Array<{ status: number; body: unknown }>;
  direct: unknown[];
  calls: { controller: number; service: number };
  metrics: string[];
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
  await cp(join(here, 'load-probe.mjs'), join(dir, 'load-probe.mjs'));
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
  // The build (without type checking: `npm test` has just type-checked),
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
  expect(r.sameClient).toBe(true);
  expect(r.keyError).toBe(true);
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
  // nestjs-memcached/prometheus counted the cache-aside reads of the route and the service: 3
  // misses (route:1, item:1, item:2); the other 6 reads were hits or joined a concurrent read.
  const count = (outcome: string): number => {
    const line = r.metrics.find((l) =>
      l.startsWith(`memcached_cache_requests_total{outcome="${outcome}"} `),
    );
    return line === undefined ? 0 : Number(line.split(' ')[1]);
  };
  expect(count('miss')).toBe(3);
  expect(count('hit') + count('coalesced')).toBe(6);
  expect(count('coalesced')).toBeGreaterThanOrEqual(2);
  expect(r.metrics).toHaveLength(count('hit') > 0 ? 3 : 2);
}

test('the tarball holds the CommonJS build, the ES module wrappers and their typings', async () => {
  const list = (await run('tar', ['-tzf', tarball], { cwd: work }))
    .split('\n')
    .filter((f) => f !== '');
  for (const file of [
    'package/dist/esm/index.mjs',
    'package/dist/esm/index.d.mts',
    'package/dist/esm/client.mjs',
    'package/dist/esm/client.d.mts',
    'package/dist/esm/health.mjs',
    'package/dist/esm/health.d.mts',
    'package/dist/esm/keyv.mjs',
    'package/dist/esm/keyv.d.mts',
    'package/dist/cjs/index.js',
    'package/dist/cjs/index.d.ts',
    'package/dist/cjs/package.json',
    'package/dist/cjs/client/index.js',
    'package/dist/cjs/client/index.d.ts',
    'package/dist/cjs/health/index.js',
    'package/dist/cjs/health/index.d.ts',
    'package/dist/cjs/keyv/index.js',
    'package/dist/cjs/keyv/index.d.ts',
    'package/dist/esm/otel.mjs',
    'package/dist/esm/otel.d.mts',
    'package/dist/cjs/otel/index.js',
    'package/dist/cjs/otel/index.d.ts',
    'package/dist/esm/prometheus.mjs',
    'package/dist/esm/prometheus.d.mts',
    'package/dist/cjs/prometheus/index.js',
    'package/dist/cjs/prometheus/index.d.ts',
    'package/README.md',
    'package/package.json',
  ]) {
    expect(list).toContain(file);
  }
  // No sources, no maps, no second implementation: dist/esm holds only the wrapper files.
  expect(list.filter((f) => f.endsWith('.map') || f.startsWith('package/lib/'))).toEqual([]);
  expect(
    list.filter((f) => !/^package\/dist\/(cjs|esm)\//.test(f) && !/^package\/[^/]+$/.test(f)),
  ).toEqual([]);
  expect(list.filter((f) => f.startsWith('package/dist/esm/')).sort()).toEqual(
    ['client', 'health', 'index', 'keyv', 'otel', 'prometheus'].flatMap((name) => [
      `package/dist/esm/${name}.d.mts`,
      `package/dist/esm/${name}.mjs`,
    ]),
  );
  // Each wrapper only re-exports its CommonJS module.
  for (const [name, cjs] of [
    ['index', 'index.js'],
    ['client', 'client/index.js'],
    ['health', 'health/index.js'],
    ['keyv', 'keyv/index.js'],
    ['otel', 'otel/index.js'],
    ['prometheus', 'prometheus/index.js'],
  ]) {
    const text = await readFile(join(root, `dist/esm/${name}.mjs`), 'utf8');
    expect(text.match(/^import .*$/gm)).toEqual([`import cjs from '../cjs/${cjs}';`]);
    expect(await readFile(join(root, `dist/esm/${name}.d.mts`), 'utf8')).toContain(
      `export * from '../cjs/${cjs}';`,
    );
  }
  // Only the health entry point loads @nestjs/terminus (an optional peer).
  const js = list
    .filter((f) => f.endsWith('.js') || f.endsWith('.mjs'))
    .map((f) => f.replace(/^package\//, ''));
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
  ]);
  // Only the otel and prometheus entry points load their optional peers.
  for (const [peer, files] of [
    ['@opentelemetry/api', ['dist/cjs/otel/instrument.js']],
    ['prom-client', ['dist/cjs/prometheus/collect.js']],
  ] as const) {
    const importers: string[] = [];
    for (const file of js) {
      const text = await readFile(join(root, file), 'utf8');
      if (text.includes(`require("${peer}")`) || text.includes(`from '${peer}'`)) {
        importers.push(file);
      }
    }
    expect([peer, importers.sort()]).toEqual([peer, files]);
  }
});

test('ESM app on NestJS 12 and terminus 12 (import)', async () => {
  const stdout = await run(process.execPath, ['dist/main.js'], {
    cwd: apps['esm-nest12']!,
    env: appEnv(),
    timeoutMs: 60_000,
  });
  const r = report<AppReport>(stdout);
  expect(r.nest).toBe('12.5.1');
  expect(r.entry).toMatch(/\/node_modules\/nestjs-memcached\/dist\/esm\/index\.mjs$/);
  expect(r.health).toMatch(/\/node_modules\/nestjs-memcached\/dist\/esm\/health\.mjs$/);
  expect(r.client).toMatch(/\/node_modules\/nestjs-memcached\/dist\/esm\/client\.mjs$/);
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
  expect(r.client).toMatch(/\/node_modules\/nestjs-memcached\/dist\/cjs\/client\/index\.js$/);
  checkCommon(r, 'cjs-nest11');
  // terminus 11 has no degraded state: "up" with the message and per-server detail.
  expect(r.healthCheck.status).toBe(200);
  expect(r.healthCheck.body.status).toBe('ok');
  expect(r.healthCheck.body.details['pair']!.status).toBe('up');
  expect(await storedOnLive('cjs11:route:1')).toBe(true);
  expect(await storedOnLive('cjs11:item:2')).toBe(true);
}, 90_000);

interface ProbeReport {
  mode: 'import' | 'require';
  specifier: string;
  resolved: string;
  exports: string[];
  loaded: string[];
}

/** Loads `specifier` in a fresh process in an app, by `mode`, and lists what it loaded. */
async function probe(app: string, mode: 'import' | 'require', specifier: string) {
  const stdout = await run(process.execPath, ['load-probe.mjs', mode, specifier], {
    cwd: apps[app]!,
    timeoutMs: 60_000,
  });
  return report<ProbeReport>(stdout);
}

/** The modules of Nest and its decorator machinery among `loaded`. */
function nestModules(loaded: string[]): string[] {
  return loaded.filter((file) =>
    /[\\/]node_modules[\\/](@nestjs[\\/]|reflect-metadata[\\/]|class-validator[\\/])/.test(file),
  );
}

const clientExports = [
  'DefaultSerde',
  'FLAG_BYTES',
  'FLAG_COMPRESSED',
  'FLAG_INTEGER',
  'FLAG_JSON',
  'FLAG_LONG',
  'FLAG_LZ4',
  'FLAG_TAGGED',
  'FLAG_TEXT',
  'MAX_TAGS',
  'MEMCACHED_OPTION_NAMES',
  'MemcachedAuthError',
  'MemcachedBackpressureError',
  'MemcachedClient',
  'MemcachedClientError',
  'MemcachedConflictError',
  'MemcachedConnectionError',
  'MemcachedError',
  'MemcachedKeyError',
  'MemcachedOptionsError',
  'MemcachedProtocolError',
  'MemcachedSerdeError',
  'MemcachedServerError',
  'MemcachedTimeoutError',
  'MemcachedUnknownCommandError',
  'MemcachedValueError',
  'RETRYABLE_COMMANDS',
  'TaggedValue',
  'defaultSerde',
  'parseServer',
];

describe.each([
  ['esm-nest12', 'import'],
  ['esm-nest12', 'require'],
  ['cjs-nest11', 'import'],
  ['cjs-nest11', 'require'],
] as const)('%s, %s', (app, mode) => {
  test('nestjs-memcached/client loads no @nestjs/*, reflect-metadata or class-validator', async () => {
    const r = await probe(app, mode, 'nestjs-memcached/client');
    expect(r.resolved).toMatch(
      mode === 'import'
        ? /\/node_modules\/nestjs-memcached\/dist\/esm\/client\.mjs$/
        : /\/node_modules\/nestjs-memcached\/dist\/cjs\/client\/index\.js$/,
    );
    expect(r.exports).toEqual(clientExports);
    // The probe saw the package being loaded (so it would have seen Nest too)...
    const cjsClient = `node_modules/nestjs-memcached/dist/cjs/client/index.js`;
    expect(r.loaded.some((file) => file.endsWith(cjsClient))).toBe(true);
    expect(
      r.loaded.some((file) => file.endsWith('node_modules/nestjs-memcached/dist/cjs/errors.js')),
    ).toBe(true);
    if (mode === 'import') {
      expect(r.loaded.some((file) => file.endsWith('nestjs-memcached/dist/esm/client.mjs'))).toBe(
        true,
      );
    }
    // ...and nothing of Nest.
    expect(nestModules(r.loaded)).toEqual([]);
  }, 60_000);

  test('nestjs-memcached/keyv loads no @nestjs/*, reflect-metadata or class-validator, nor keyv', async () => {
    const r = await probe(app, mode, 'nestjs-memcached/keyv');
    expect(r.resolved).toMatch(
      mode === 'import'
        ? /\/node_modules\/nestjs-memcached\/dist\/esm\/keyv\.mjs$/
        : /\/node_modules\/nestjs-memcached\/dist\/cjs\/keyv\/index\.js$/,
    );
    expect(r.exports).toEqual(['KeyvMemcached']);
    expect(
      r.loaded.some((file) =>
        file.endsWith('node_modules/nestjs-memcached/dist/cjs/keyv/keyv-memcached.js'),
      ),
    ).toBe(true);
    expect(nestModules(r.loaded)).toEqual([]);
    expect(r.loaded.filter((file) => /[\\/]node_modules[\\/](@keyv|keyv)[\\/]/.test(file))).toEqual(
      [],
    );
  }, 60_000);
  test.each([
    [
      'nestjs-memcached/otel',
      'otel',
      '@opentelemetry/api',
      ['INSTRUMENTATION_SCOPE', 'instrumentMemcached'],
    ],
    [
      'nestjs-memcached/prometheus',
      'prometheus',
      'prom-client',
      ['MEMCACHED_METRIC_NAMES', 'collectMemcachedMetrics'],
    ],
  ])(
    '%s loads its peer and nothing of Nest',
    async (specifier, name, peer, exports) => {
      const r = await probe(app, mode, specifier);
      expect(r.resolved).toMatch(
        mode === 'import'
          ? new RegExp(`/node_modules/nestjs-memcached/dist/esm/${name}\\.mjs$`)
          : new RegExp(`/node_modules/nestjs-memcached/dist/cjs/${name}/index\\.js$`),
      );
      expect(r.exports).toEqual(exports);
      expect(
        r.loaded.some((file) => file.endsWith(`nestjs-memcached/dist/cjs/${name}/index.js`)),
      ).toBe(true);
      expect(r.loaded.some((file) => file.includes(`/node_modules/${peer}/`))).toBe(true);
      expect(nestModules(r.loaded)).toEqual([]);
    },
    60_000,
  );

  test('the check sees Nest being loaded by the main entry point', async () => {
    const r = await probe(app, mode, 'nestjs-memcached');
    expect(r.exports).toEqual(expect.arrayContaining([...clientExports, 'MemcachedModule']));
    const nest = nestModules(r.loaded);
    for (const dependency of ['@nestjs/common', '@nestjs/core', 'reflect-metadata']) {
      expect(nest.some((file) => file.includes(`/node_modules/${dependency}/`))).toBe(true);
    }
  }, 60_000);
});

test('import and require in one process get the same classes, errors and class token', async () => {
  const stdout = await run(process.execPath, [join(here, 'dual-copies.mjs')], {
    cwd: root,
    env: childEnv({ MEMCACHED_SERVERS: live.address }),
    timeoutMs: 60_000,
  });
  const r = report<{
    entries: Record<string, { import: string; require: string }>;
    exportNames: Record<string, { import: string[]; require: string[] }>;
    differing: Record<string, string[]>;
    clientNotInMain: string[];
    errors: Record<string, Record<string, boolean>>;
    sameClass: boolean;
    sameClient: boolean;
    sameIndicator: boolean;
    sameModule: boolean;
    sameToken: boolean;
    injectedIsDefault: boolean;
    instanceOfBoth: boolean;
    clientInstanceOfBoth: boolean;
    named: string;
    results: unknown[];
    later: unknown;
    calls: number;
    stored: unknown;
  }>(stdout);
  // Every export of every entry point is the same value on both sides.
  expect(r.differing).toEqual({
    'nestjs-memcached': [],
    'nestjs-memcached/client': [],
    'nestjs-memcached/health': [],
    'nestjs-memcached/keyv': [],
    'nestjs-memcached/otel': [],
    'nestjs-memcached/prometheus': [],
  });
  for (const names of Object.values(r.exportNames)) {
    expect(names.import.length).toBeGreaterThan(0);
    expect(names.import).toEqual(names.require);
  }
  expect(r.exportNames['nestjs-memcached/client']!.import).toEqual(clientExports);
  expect(r.clientNotInMain).toEqual([]);
  // An error thrown by a client of either side is an instance of every side's classes.
  const everySide = { import: true, require: true, importClient: true, requireClient: true };
  expect(Object.keys(r.errors)).toHaveLength(16);
  for (const [what, sides] of Object.entries(r.errors))
    expect([what, sides]).toEqual([what, everySide]);
  expect(r.sameClient).toBe(true);
  expect(r.sameClass).toBe(true);
  expect(r.sameIndicator).toBe(true);
  expect(r.sameModule).toBe(true);
  expect(r.sameToken).toBe(true);
  expect(r.injectedIsDefault).toBe(true);
  expect(r.instanceOfBoth).toBe(true);
  expect(r.clientInstanceOfBoth).toBe(true);
  expect(r.named).toBe('esm-side');
  expect(r.results).toEqual([
    { id: '1', calls: 1 },
    { id: '1', calls: 1 },
    { id: '1', calls: 1 },
  ]);
  expect(r.later).toEqual({ id: '1', calls: 1 });
  expect(r.calls).toBe(1);
  expect(r.stored).toEqual({ id: '1', calls: 1 });
  // import gets the ES module wrappers, require the CommonJS build behind them.
  expect(r.entries).toEqual({
    'nestjs-memcached': {
      import: expect.stringMatching(/\/dist\/esm\/index\.mjs$/),
      require: expect.stringMatching(/\/dist\/cjs\/index\.js$/),
    },
    'nestjs-memcached/client': {
      import: expect.stringMatching(/\/dist\/esm\/client\.mjs$/),
      require: expect.stringMatching(/\/dist\/cjs\/client\/index\.js$/),
    },
    'nestjs-memcached/health': {
      import: expect.stringMatching(/\/dist\/esm\/health\.mjs$/),
      require: expect.stringMatching(/\/dist\/cjs\/health\/index\.js$/),
    },
    'nestjs-memcached/keyv': {
      import: expect.stringMatching(/\/dist\/esm\/keyv\.mjs$/),
      require: expect.stringMatching(/\/dist\/cjs\/keyv\/index\.js$/),
    },
    'nestjs-memcached/otel': {
      import: expect.stringMatching(/\/dist\/esm\/otel\.mjs$/),
      require: expect.stringMatching(/\/dist\/cjs\/otel\/index\.js$/),
    },
    'nestjs-memcached/prometheus': {
      import: expect.stringMatching(/\/dist\/esm\/prometheus\.mjs$/),
      require: expect.stringMatching(/\/dist\/cjs\/prometheus\/index\.js$/),
    },
  });
}, 90_000);

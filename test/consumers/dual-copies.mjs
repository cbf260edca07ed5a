// Loads nestjs-memcached into one process both by `import` and by `require`, as happens when an
// ESM app uses a CommonJS library that requires the package, and checks that the two sides get
// the same package: the same value for every export of every entry point (classes, error
// classes included, functions, constants), errors thrown on one side are `instanceof` the other
// side's classes, one MemcachedService class token, decorators of either side applied exactly
// once. Run from the repository (self-reference by package name) after `npm run build`; prints
// `REPORT {json}`. Env: MEMCACHED_SERVERS.
import 'reflect-metadata';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const specifiers = [
  'nestjs-memcached',
  'nestjs-memcached/client',
  'nestjs-memcached/health',
  'nestjs-memcached/keyv',
  'nestjs-memcached/otel',
  'nestjs-memcached/prometheus',
];
const imported = {};
const required = {};
for (const specifier of specifiers) {
  imported[specifier] = await import(specifier);
  required[specifier] = require(specifier);
}
const esm = imported['nestjs-memcached'];
const cjs = required['nestjs-memcached'];
const esmClient = imported['nestjs-memcached/client'];
const cjsClient = required['nestjs-memcached/client'];

// Per entry point: the export names of each side, and the names whose values differ.
const exportNames = {};
const differing = {};
for (const specifier of specifiers) {
  const a = imported[specifier];
  const b = required[specifier];
  exportNames[specifier] = {
    import: Object.keys(a).sort(),
    require: Object.keys(b)
      .filter((name) => name !== '__esModule')
      .sort(),
  };
  differing[specifier] = exportNames[specifier].import.filter((name) => a[name] !== b[name]);
}
// The client entry point exports the very values of the main one.
const clientNotInMain = Object.keys(esmClient).filter(
  (name) => esmClient[name] !== esm[name] || cjsClient[name] !== cjs[name],
);

// Errors thrown by a client of one side, checked with the classes of every side.
async function rejection(call) {
  try {
    await call();
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}
function thrown(fn) {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}
const sides = { import: esm, require: cjs, importClient: esmClient, requireClient: cjsClient };
function instanceOfEverySide(error, className) {
  return Object.fromEntries(
    Object.entries(sides).map(([side, mod]) => [
      side,
      error instanceof mod[className] && error instanceof mod.MemcachedError,
    ]),
  );
}
const servers = process.env.MEMCACHED_SERVERS;
const errors = {};
for (const [side, mod] of Object.entries(sides)) {
  const client = new mod.MemcachedClient({ servers });
  errors[`${side}: bad key`] = instanceOfEverySide(
    await rejection(() => client.get('bad key')),
    'MemcachedKeyError',
  );
  errors[`${side}: bad ttl`] = instanceOfEverySide(
    await rejection(() => client.set('k', 'v', { ttl: 1.5 })),
    'MemcachedValueError',
  );
  await client.close();
  errors[`${side}: closed`] = instanceOfEverySide(
    await rejection(() => client.get('k')),
    'MemcachedConnectionError',
  );
  errors[`${side}: bad options`] = instanceOfEverySide(
    thrown(() => new mod.MemcachedClient({ servers: 'host:notaport' })),
    'MemcachedOptionsError',
  );
}
const { Inject, Injectable, Module } = await import('@nestjs/common');
const { NestFactory } = await import('@nestjs/core');

class Users {
  calls = 0;
  constructor(cache) {
    this.cache = cache;
  }
  async find(id) {
    this.calls++;
    await new Promise((resolve) => setTimeout(resolve, 20));
    return { id, calls: this.calls };
  }
}
// @Cacheable from the ESM copy, @Inject of the ESM class token...
Reflect.decorate(
  [esm.Cacheable({ key: (id) => `dual:${id}` })],
  Users.prototype,
  'find',
  Object.getOwnPropertyDescriptor(Users.prototype, 'find'),
);
Inject(esm.MemcachedService)(Users, undefined, 0);
Injectable()(Users);

// ...while the default client is registered by the CommonJS copy (and a named one by the ESM
// copy, so both copies' explorers run).
class AppModule {}
Module({
  imports: [
    cjs.MemcachedModule.forRoot({ servers, keyPrefix: 'dual:' }),
    esm.MemcachedModule.forRoot({ name: 'esm-side', servers, keyPrefix: 'dual-esm:' }),
  ],
  providers: [Users],
})(AppModule);

const app = await NestFactory.createApplicationContext(AppModule, { logger: ['error'] });
const users = app.get(Users);
const results = await Promise.all([users.find('1'), users.find('1'), users.find('1')]);
const later = await users.find('1');
const report = {
  entries: Object.fromEntries(
    specifiers.map((specifier) => [
      specifier,
      { import: import.meta.resolve(specifier), require: require.resolve(specifier) },
    ]),
  ),
  exportNames,
  differing,
  clientNotInMain,
  errors,
  sameClass: esm.MemcachedService === cjs.MemcachedService,
  sameClient: esm.MemcachedClient === cjs.MemcachedClient,
  sameIndicator:
    imported['nestjs-memcached/health'].MemcachedHealthIndicator ===
    required['nestjs-memcached/health'].MemcachedHealthIndicator,
  sameModule: esm.MemcachedModule === cjs.MemcachedModule,
  sameToken: esm.getMemcachedToken('x') === cjs.getMemcachedToken('x'),
  injectedIsDefault: users.cache === app.get(cjs.MemcachedService),
  instanceOfBoth:
    users.cache instanceof esm.MemcachedService && users.cache instanceof cjs.MemcachedService,
  clientInstanceOfBoth:
    users.cache.client instanceof esm.MemcachedClient &&
    users.cache.client instanceof cjsClient.MemcachedClient,
  named: app.get(cjs.getMemcachedToken('esm-side')).name,
  results,
  later,
  calls: users.calls,
  stored: await users.cache.get('dual:1'),
};
await app.close();
console.log(`REPORT ${JSON.stringify(report)}`);

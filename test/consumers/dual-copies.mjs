// Loads the ESM build and the CommonJS build of nestjs-memcached into one process, as happens
// when an ESM app uses a CommonJS library that requires the package, and checks that dependency
// injection stays sane: one MemcachedService class token, decorators of either copy applied
// exactly once. Run from the repository (self-reference by package name) after `npm run build`;
// prints `REPORT {json}`. Env: MEMCACHED_SERVERS.
import 'reflect-metadata';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const esm = await import('nestjs-memcached');
const cjs = require('nestjs-memcached');
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
const servers = process.env.MEMCACHED_SERVERS;
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
  entries: [import.meta.resolve('nestjs-memcached'), require.resolve('nestjs-memcached')],
  sameClass: esm.MemcachedService === cjs.MemcachedService,
  sameModule: esm.MemcachedModule === cjs.MemcachedModule,
  sameToken: esm.getMemcachedToken('x') === cjs.getMemcachedToken('x'),
  injectedIsDefault: users.cache === app.get(cjs.MemcachedService),
  instanceOfBoth:
    users.cache instanceof esm.MemcachedService && users.cache instanceof cjs.MemcachedService,
  named: app.get(cjs.getMemcachedToken('esm-side')).name,
  results,
  later,
  calls: users.calls,
  stored: await users.cache.get('dual:1'),
};
await app.close();
console.log(`REPORT ${JSON.stringify(report)}`);

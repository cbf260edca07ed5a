/**
 * `nestjs-memcached/keyv`: {@link KeyvMemcached}, a Keyv 5 store adapter over the client, for
 * `@nestjs/cache-manager` and any other Keyv user. Framework-free: nothing reachable from here
 * imports `@nestjs/*`, `reflect-metadata` or `class-validator`, nor `keyv` itself.
 */
export { KeyvMemcached } from './keyv-memcached.js';
export type {
  KeyvEnvelope,
  KeyvMemcachedEntry,
  KeyvMemcachedOpts,
  KeyvMemcachedSource,
  KeyvStored,
  MemcachedClientHolder,
} from './keyv-memcached.js';

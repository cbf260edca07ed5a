import { MemcachedService as MemcachedServiceClass } from './memcached.service.impl.js';
import { sharedAcrossCopies } from './utils/shared.js';

export type { GetOrSetOptions } from './memcached.service.impl.js';

/**
 * The injectable memcached client of a Nest app: every `MemcachedClient` method plus `getOrSet`.
 * The default client is injected by this class; named ones with `@InjectMemcached(name)`.
 *
 * The class is shared by the ESM and the CommonJS builds of the package: whichever build loads
 * first defines it and the other one exports that same class, so `MemcachedService` is one
 * injection token (and one `instanceof` target) even when both builds end up in one process.
 */
export const MemcachedService: typeof MemcachedServiceClass = sharedAcrossCopies(
  'MemcachedService',
  MemcachedServiceClass,
);
/** The injectable memcached client of a Nest app (see the `MemcachedService` value). */
export type MemcachedService = MemcachedServiceClass;

import { Inject } from '@nestjs/common';
import { getMemcachedToken } from '../memcached.utils.js';

/**
 * Injects the memcached client registered under `name` (the default client without a name).
 *
 * ```ts
 * constructor(@InjectMemcached('sessions') private readonly sessions: MemcachedService) {}
 * ```
 */
export function InjectMemcached(name?: string): PropertyDecorator & ParameterDecorator {
  return Inject(getMemcachedToken(name));
}

import { DEFAULT_MEMCACHED_NAME, NAMED_CLIENT_TOKEN_PREFIX } from './memcached.constants.js';
import { MemcachedService } from './memcached.service.js';

/** An injection token of a memcached client: the `MemcachedService` class or a symbol. */
export type MemcachedToken = typeof MemcachedService | symbol;

/**
 * The injection token of the client registered under `name`: the `MemcachedService` class for
 * the default client (no name, or `'default'`), else `Symbol.for('nestjs-memcached:client:<name>')`.
 *
 * ```ts
 * moduleRef.get<MemcachedService>(getMemcachedToken('sessions'));
 * ```
 */
export function getMemcachedToken(name?: string): MemcachedToken {
  if (name === undefined || name === DEFAULT_MEMCACHED_NAME) return MemcachedService;
  if (typeof name !== 'string' || name === '') {
    throw new TypeError(
      `memcached client name must be a non-empty string, got ${JSON.stringify(name)}`,
    );
  }
  return Symbol.for(`${NAMED_CLIENT_TOKEN_PREFIX}${name}`);
}

/** A readable description of a client name for messages. */
export function describeClient(name: string | undefined): string {
  return name === undefined || name === DEFAULT_MEMCACHED_NAME
    ? 'the default memcached client'
    : `memcached client "${name}"`;
}

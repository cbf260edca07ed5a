/**
 * One valid value for every client option, shared by the tests that check that the client and
 * the Nest module accept the same options. Typed so that an option added to MemcachedOptions
 * without a value here fails to compile; the tests also check it at run time.
 */
import { MemcachedTimeoutError } from '../../lib/errors.js';
import type { MemcachedOptions } from '../../lib/options.js';
import { DefaultSerde } from '../../lib/serde/default-serde.js';

export type OptionValues = {
  [K in keyof MemcachedOptions]-?: Exclude<MemcachedOptions[K], undefined>;
};

/**
 * A valid, non-default value of every option. `servers` is the given address; nothing here makes
 * the client connect by itself (no connection is opened before the first command).
 */
export function validOptionValues(servers: string): OptionValues {
  return {
    servers: [servers],
    envPrefix: 'APP',
    keyPrefix: 'opt:',
    hashing: 'rendezvous',
    poolSize: 3,
    connectTimeout: 500,
    timeout: 400,
    retry: { attempts: 2, delay: 1, retryOn: [MemcachedTimeoutError], unsafeCommands: ['incr'] },
    failover: { failureThreshold: 2, deadTimeout: 100, retryTimeout: 50 },
    ignoreErrors: true,
    serde: new DefaultSerde(),
    compression: { threshold: 1024, level: 9 },
    tls: { rejectUnauthorized: false },
    auth: { username: 'user', password: 'secret' },
    protocol: 'meta',
    maxValueSize: 512 * 1024,
    defaultTtl: 60,
    keepAlive: false,
    autoBatch: false,
    maxPending: 10,
    routeBy: (key) => key.split(':')[0]!,
    // A real memcached answers `config get cluster` with ERROR: a discoveryError event, and the
    // client keeps `servers`.
    discovery: { endpoint: servers, interval: 30_000 },
  };
}

/** `{ [name]: value }` for one option, or throws when the option has no test value. */
export function withValidValue(name: string, servers: string): MemcachedOptions {
  const values: Record<string, unknown> = validOptionValues(servers);
  if (!Object.hasOwn(values, name)) {
    throw new Error(
      `no test value for option ${JSON.stringify(name)}: add one to option-values.ts`,
    );
  }
  return { [name]: values[name] } as MemcachedOptions;
}

import type * as tls from 'node:tls';
import { MemcachedOptionsError } from './errors.js';
import {
  parseServer,
  resolveServers,
  type ServerConfig,
  type ServerSpec,
} from './cluster/servers.js';
import type { Serde } from './serde/serde.js';
import { defaultSerde } from './serde/default-serde.js';
import { normalizeCompressionOptions, type CompressionOptions } from './serde/compression.js';

export type HashingScheme = 'ketama' | 'rendezvous' | 'modula';

/**
 * Wire protocols: `'text'` (the classic text protocol, every memcached and proxy), `'meta'`
 * (memcached's meta commands, memcached ≥ 1.6.10: leases and stale-while-revalidate) and
 * `'binary'` (memcached's binary protocol, the one that carries SASL).
 */
export type MemcachedProtocol = 'text' | 'meta' | 'binary';

/** Every value `protocol` accepts. */
export const MEMCACHED_PROTOCOLS = [
  'text',
  'meta',
  'binary',
] as const satisfies readonly MemcachedProtocol[];

/** Commands a retry policy may repeat (the names `retry.unsafeCommands` accepts). */
export const RETRYABLE_COMMANDS = [
  'get',
  'gets',
  'getMany',
  'getsMany',
  'getAndTouch',
  'touch',
  'set',
  'setMany',
  'delete',
  'deleteMany',
  'add',
  'replace',
  'append',
  'prepend',
  'cas',
  'incr',
  'decr',
  'version',
  'stats',
  'flushAll',
] as const;

/** Commands a retry policy may repeat. */
export type RetryableCommand = (typeof RETRYABLE_COMMANDS)[number];

export interface RetryOptions {
  /** Total attempts including the first (>= 1). */
  attempts: number;
  /** Wait between attempts, ms. */
  delay?: number;
  /** Error classes to retry on (default: connection errors and timeouts). */
  retryOn?: ReadonlyArray<new (...args: never[]) => Error>;
  /** Error classes never to retry on (wins over retryOn). */
  doNotRetryOn?: ReadonlyArray<new (...args: never[]) => Error>;
  /**
   * Commands that are not safe to repeat (incr, decr, append, prepend, cas, add) are never
   * retried unless listed here.
   */
  unsafeCommands?: readonly RetryableCommand[];
}

export interface FailoverOptions {
  /** Consecutive failures (connect errors, timeouts) before a server is marked dead. */
  failureThreshold?: number;
  /** How long a dead server stays out of the ring before it is probed, ms. */
  deadTimeout?: number;
  /** Time between probes of a dead server, ms. */
  retryTimeout?: number;
}

/** Options of {@link MemcachedClient} and of `MemcachedModule`. */
export interface MemcachedOptions {
  /** Servers; see the README for the forms. Default: env, else `127.0.0.1:11211`. */
  servers?: string | readonly ServerSpec[];
  /** Read `<envPrefix>_MEMCACHED_SERVERS` before `MEMCACHED_SERVERS`. */
  envPrefix?: string;
  /** Prepended to every key on the wire, stripped from results. */
  keyPrefix?: string;
  hashing?: HashingScheme;
  /** Connections per server. */
  poolSize?: number;
  /** ms to establish a connection (TCP + TLS + auth). */
  connectTimeout?: number;
  /** ms for a command's reply. */
  timeout?: number;
  retry?: RetryOptions | false;
  failover?: FailoverOptions | false;
  /** Server/network errors on reads become misses, on writes `false`. */
  ignoreErrors?: boolean;
  serde?: Serde;
  compression?: CompressionOptions | false;
  tls?: boolean | tls.ConnectionOptions;
  /**
   * Credentials: ASCII auth (`-Y` auth file) on `'text'`, SASL PLAIN (memcached `-S`) on
   * `'binary'`; `false` or absent: no auth.
   */
  auth?: { username: string; password: string } | false;
  /**
   * Wire protocol: `'text'` (default), `'meta'` (needed by `getOrSet` leases,
   * `staleWhileRevalidate` and `invalidate`) or `'binary'` (memcached's binary protocol, SASL).
   */
  protocol?: MemcachedProtocol;
  /** Largest value (after serialization and compression) accepted, in bytes. */
  maxValueSize?: number;
  /** TTL in seconds applied when a call gives none. */
  defaultTtl?: number;
  /** TCP keep-alive on the sockets (default true). */
  keepAlive?: boolean;
  /**
   * Concurrent `get` calls for one server issued in the same tick go out as one multi-get
   * (default true). Results, misses, errors and timeouts stay per caller.
   */
  autoBatch?: boolean;
  /**
   * Bound on calls waiting for replies, per client (`total`) and per connection
   * (`perConnection`). Beyond it calls fail fast with MemcachedBackpressureError instead of
   * queueing while a server stalls. A number sets `total`.
   */
  maxPending?: number | { total?: number; perConnection?: number };
  /**
   * The string that decides a key's server instead of the key (without prefix): related keys
   * share a server when it maps them to the same string (`k => k.split(':')[1]`).
   */
  routeBy?: (key: string) => string;
  /**
   * AWS ElastiCache auto-discovery: the node list is read from the configuration endpoint
   * (`config get cluster`) at start and every `interval` ms, and applied with setServers when it
   * changes. Without `servers`, the endpoint itself is the only server until the first list.
   */
  discovery?: DiscoveryOptions;
}

/** The `discovery` option: AWS ElastiCache auto-discovery. */
export interface DiscoveryOptions {
  /** The configuration endpoint, `host:port` (port default 11211). */
  endpoint: string;
  /** ms between polls (default 60 000). */
  interval?: number;
}

/** Options with every default applied and validated. */
export interface ResolvedOptions {
  servers: ServerConfig[];
  keyPrefix: string;
  keyPrefixBytes: number;
  hashing: HashingScheme;
  poolSize: number;
  connectTimeout: number;
  timeout: number;
  retry: Required<Omit<RetryOptions, 'retryOn' | 'doNotRetryOn'>> &
    Pick<RetryOptions, 'retryOn' | 'doNotRetryOn'>;
  failover: Required<FailoverOptions> | false;
  ignoreErrors: boolean;
  serde: Serde;
  compression: Required<CompressionOptions> | undefined;
  tls: tls.ConnectionOptions | undefined;
  auth: { username: string; password: string } | undefined;
  protocol: MemcachedProtocol;
  maxValueSize: number;
  defaultTtl: number;
  keepAlive: boolean;
  autoBatch: boolean;
  maxPending: { total: number; perConnection: number };
  routeBy: ((key: string) => string) | undefined;
  discovery: { host: string; port: number; interval: number } | undefined;
}

export const DEFAULTS = {
  poolSize: 2,
  connectTimeout: 1000,
  timeout: 1000,
  maxValueSize: 1024 * 1024,
  maxPending: 100_000,
  maxPendingPerConnection: 20_000,
  failureThreshold: 3,
  deadTimeout: 2000,
  retryTimeout: 1000,
  discoveryInterval: 60_000,
} as const;

/**
 * The name of every option of {@link MemcachedOptions}: the one list the client and
 * `MemcachedModule` check options against (anything else is an unknown option).
 */
export const MEMCACHED_OPTION_NAMES = [
  'servers',
  'envPrefix',
  'keyPrefix',
  'hashing',
  'poolSize',
  'connectTimeout',
  'timeout',
  'retry',
  'failover',
  'ignoreErrors',
  'serde',
  'compression',
  'tls',
  'auth',
  'protocol',
  'maxValueSize',
  'defaultTtl',
  'keepAlive',
  'autoBatch',
  'maxPending',
  'routeBy',
  'discovery',
] as const satisfies readonly (keyof MemcachedOptions)[];

/** The name of an option of {@link MemcachedOptions}. */
export type MemcachedOptionName = (typeof MEMCACHED_OPTION_NAMES)[number];

/**
 * `List` when it names every key of `Keys`, otherwise a type naming the missing ones (so that
 * `list satisfies ListsEvery<...>` fails to compile and the error shows what is missing).
 */
type ListsEvery<Keys extends PropertyKey, List extends readonly PropertyKey[]> = [
  Exclude<Keys, List[number]>,
] extends [never]
  ? List
  : { readonly missingNames: Exclude<Keys, List[number]> };

// An extra name fails the `satisfies` of MEMCACHED_OPTION_NAMES, a missing one fails here.
const KNOWN_OPTIONS: ReadonlySet<string> = new Set<string>(
  MEMCACHED_OPTION_NAMES satisfies ListsEvery<
    keyof MemcachedOptions,
    typeof MEMCACHED_OPTION_NAMES
  >,
);

/** Validates options and applies defaults; throws MemcachedOptionsError naming the option. */
export function resolveOptions(
  input: MemcachedOptions = {},
  env: NodeJS.ProcessEnv = process.env,
): ResolvedOptions {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new MemcachedOptionsError(
      'options',
      `expected an options object, got ${input === null ? 'null' : Array.isArray(input) ? 'an array' : typeof input}`,
    );
  }
  for (const name of Object.keys(input)) {
    if (!KNOWN_OPTIONS.has(name)) {
      throw new MemcachedOptionsError(name, 'unknown option (check the spelling)');
    }
  }
  const envPrefix = optionalString(input.envPrefix, 'envPrefix');
  if (envPrefix !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(envPrefix)) {
    throw new MemcachedOptionsError('envPrefix', 'must be a valid environment variable prefix');
  }
  const keyPrefix = optionalString(input.keyPrefix, 'keyPrefix') ?? '';
  if (hasWhitespaceOrControl(keyPrefix)) {
    throw new MemcachedOptionsError(
      'keyPrefix',
      'must not contain whitespace or control characters',
    );
  }
  const keyPrefixBytes = Buffer.byteLength(keyPrefix, 'utf8');
  if (keyPrefixBytes >= 250) {
    throw new MemcachedOptionsError('keyPrefix', 'must be shorter than 250 bytes');
  }
  const hashing = input.hashing ?? 'ketama';
  if (hashing !== 'ketama' && hashing !== 'rendezvous' && hashing !== 'modula') {
    throw new MemcachedOptionsError(
      'hashing',
      `must be 'ketama', 'rendezvous' or 'modula', got ${JSON.stringify(hashing)}`,
    );
  }
  const protocol = input.protocol ?? 'text';
  if (!(MEMCACHED_PROTOCOLS as readonly unknown[]).includes(protocol)) {
    throw new MemcachedOptionsError(
      'protocol',
      `must be one of ${MEMCACHED_PROTOCOLS.map((p) => `'${p}'`).join(', ')}, got ${show(protocol)}`,
    );
  }
  const serde = input.serde ?? defaultSerde;
  if (
    typeof serde !== 'object' ||
    typeof serde.serialize !== 'function' ||
    typeof serde.deserialize !== 'function'
  ) {
    throw new MemcachedOptionsError(
      'serde',
      'must have serialize(key, value) and deserialize(key, buffer, flags) methods',
    );
  }
  const discovery = resolveDiscovery(input.discovery);
  return {
    servers:
      input.servers === undefined && discovery !== undefined
        ? [discovery.server]
        : resolveServers(input.servers, envPrefix, env),
    keyPrefix,
    keyPrefixBytes,
    hashing,
    poolSize: integer(input.poolSize, 'poolSize', DEFAULTS.poolSize, 1, 64),
    connectTimeout: integer(
      input.connectTimeout,
      'connectTimeout',
      DEFAULTS.connectTimeout,
      1,
      600_000,
    ),
    timeout: integer(input.timeout, 'timeout', DEFAULTS.timeout, 1, 600_000),
    retry: resolveRetry(input.retry),
    failover: resolveFailover(input.failover),
    ignoreErrors: boolean(input.ignoreErrors, 'ignoreErrors', false),
    serde,
    compression: normalizeCompressionOptions(input.compression),
    tls: resolveTls(input.tls),
    auth: resolveAuth(input.auth),
    protocol,
    maxValueSize: integer(
      input.maxValueSize,
      'maxValueSize',
      DEFAULTS.maxValueSize,
      1,
      1024 * 1024 * 1024,
    ),
    defaultTtl: integer(input.defaultTtl, 'defaultTtl', 0, -(2 ** 31), 2 ** 31 - 1),
    keepAlive: boolean(input.keepAlive, 'keepAlive', true),
    autoBatch: boolean(input.autoBatch, 'autoBatch', true),
    maxPending: resolveMaxPending(input.maxPending),
    routeBy: resolveRouteBy(input.routeBy),
    discovery:
      discovery === undefined
        ? undefined
        : { host: discovery.host, port: discovery.port, interval: discovery.interval },
  };
}

function optionalString(value: unknown, option: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') {
    throw new MemcachedOptionsError(option, `must be a string, got ${typeof value}`);
  }
  return value;
}

function integer(
  value: unknown,
  option: string,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new MemcachedOptionsError(
      option,
      `must be an integer from ${min} to ${max}, got ${show(value)}`,
    );
  }
  return value;
}

/** A value as a message shows it: strings quoted, so `'100'` does not pass for `100`. */
function show(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}

function boolean(value: unknown, option: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') {
    throw new MemcachedOptionsError(option, `must be true or false, got ${show(value)}`);
  }
  return value;
}

/** Throws for a key of the nested option `option` that is not in `known` (a typo, usually). */
function onlyKeys(value: object, option: string, known: readonly string[]): void {
  for (const name of Object.keys(value)) {
    if (!known.includes(name)) {
      throw new MemcachedOptionsError(
        `${option}.${name}`,
        `unknown option (expected ${known.join(', ')})`,
      );
    }
  }
}

function resolveRetry(input: RetryOptions | false | undefined): ResolvedOptions['retry'] {
  if (input === undefined || input === false) {
    return { attempts: 1, delay: 0, unsafeCommands: [] };
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new MemcachedOptionsError(
      'retry',
      'must be { attempts, delay?, retryOn?, doNotRetryOn?, unsafeCommands? } or false',
    );
  }
  onlyKeys(input, 'retry', ['attempts', 'delay', 'retryOn', 'doNotRetryOn', 'unsafeCommands']);
  const attempts = integer(input.attempts, 'retry.attempts', NaN, 1, 100);
  if (Number.isNaN(attempts))
    throw new MemcachedOptionsError('retry.attempts', 'is required (total attempts, >= 1)');
  const delay = integer(input.delay, 'retry.delay', 0, 0, 600_000);
  for (const name of ['retryOn', 'doNotRetryOn'] as const) {
    const list = input[name];
    if (list !== undefined && (!Array.isArray(list) || list.some((c) => typeof c !== 'function'))) {
      throw new MemcachedOptionsError(`retry.${name}`, 'must be an array of error classes');
    }
  }
  const unsafeCommands = input.unsafeCommands ?? [];
  if (!Array.isArray(unsafeCommands)) {
    throw new MemcachedOptionsError('retry.unsafeCommands', 'must be an array of command names');
  }
  unsafeCommands.forEach((command: unknown, i) => {
    if (!(RETRYABLE_COMMANDS as readonly unknown[]).includes(command)) {
      throw new MemcachedOptionsError(
        `retry.unsafeCommands[${i}]`,
        `must be one of ${RETRYABLE_COMMANDS.join(', ')}, got ${show(command)}`,
      );
    }
  });
  return {
    attempts,
    delay,
    retryOn: input.retryOn,
    doNotRetryOn: input.doNotRetryOn,
    unsafeCommands,
  };
}

function resolveFailover(
  input: FailoverOptions | false | undefined,
): Required<FailoverOptions> | false {
  if (input === false) return false;
  const o = input ?? {};
  if (typeof o !== 'object' || o === null || Array.isArray(o)) {
    throw new MemcachedOptionsError(
      'failover',
      'must be { failureThreshold?, deadTimeout?, retryTimeout? } or false',
    );
  }
  onlyKeys(o, 'failover', ['failureThreshold', 'deadTimeout', 'retryTimeout']);
  return {
    failureThreshold: integer(
      o.failureThreshold,
      'failover.failureThreshold',
      DEFAULTS.failureThreshold,
      1,
      1000,
    ),
    deadTimeout: integer(
      o.deadTimeout,
      'failover.deadTimeout',
      DEFAULTS.deadTimeout,
      1,
      86_400_000,
    ),
    retryTimeout: integer(
      o.retryTimeout,
      'failover.retryTimeout',
      DEFAULTS.retryTimeout,
      1,
      86_400_000,
    ),
  };
}

function resolveTls(
  input: boolean | tls.ConnectionOptions | undefined,
): tls.ConnectionOptions | undefined {
  if (input === undefined || input === false) return undefined;
  if (input === true) return {};
  if (typeof input !== 'object' || input === null) {
    throw new MemcachedOptionsError('tls', 'must be true, false or tls.ConnectionOptions');
  }
  return input;
}

function resolveAuth(input: MemcachedOptions['auth']): ResolvedOptions['auth'] {
  if (input === undefined || input === false) return undefined;
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new MemcachedOptionsError('auth', 'must be { username, password } or false');
  }
  onlyKeys(input, 'auth', ['username', 'password']);
  const { username, password } = input;
  if (typeof username !== 'string' || username === '' || hasWhitespaceOrControl(username)) {
    throw new MemcachedOptionsError(
      'auth.username',
      'must be a non-empty string without whitespace',
    );
  }
  if (
    typeof password !== 'string' ||
    password === '' ||
    password.includes('\r') ||
    password.includes('\n') ||
    password.includes('\0')
  ) {
    throw new MemcachedOptionsError(
      'auth.password',
      'must be a non-empty string without line breaks',
    );
  }
  return { username, password };
}

/** True when `s` has an ASCII space or control character (what a memcached key may not hold). */
function hasWhitespaceOrControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) return true;
  }
  return false;
}

function resolveMaxPending(input: MemcachedOptions['maxPending']): ResolvedOptions['maxPending'] {
  if (input === undefined || typeof input === 'number') {
    const total = integer(input, 'maxPending', DEFAULTS.maxPending, 1, 10_000_000);
    return { total, perConnection: Math.min(total, DEFAULTS.maxPendingPerConnection) };
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new MemcachedOptionsError('maxPending', 'must be a number or { total?, perConnection? }');
  }
  onlyKeys(input, 'maxPending', ['total', 'perConnection']);
  const total = integer(input.total, 'maxPending.total', DEFAULTS.maxPending, 1, 10_000_000);
  const perConnection = integer(
    input.perConnection,
    'maxPending.perConnection',
    Math.min(total, DEFAULTS.maxPendingPerConnection),
    1,
    10_000_000,
  );
  return { total, perConnection };
}

function resolveRouteBy(input: unknown): ResolvedOptions['routeBy'] {
  if (input === undefined) return undefined;
  if (typeof input !== 'function') {
    throw new MemcachedOptionsError(
      'routeBy',
      `must be a function (key) => string, got ${input === null ? 'null' : typeof input}`,
    );
  }
  return input as (key: string) => string;
}

function resolveDiscovery(
  input: unknown,
): { server: ServerConfig; host: string; port: number; interval: number } | undefined {
  if (input === undefined) return undefined;
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new MemcachedOptionsError(
      'discovery',
      "expected { endpoint: 'host:port', interval? }, got " +
        (input === null ? 'null' : Array.isArray(input) ? 'an array' : typeof input),
    );
  }
  for (const name of Object.keys(input)) {
    if (name !== 'endpoint' && name !== 'interval') {
      throw new MemcachedOptionsError(`discovery.${name}`, 'unknown option (check the spelling)');
    }
  }
  const { endpoint, interval } = input as DiscoveryOptions;
  if (typeof endpoint !== 'string') {
    throw new MemcachedOptionsError(
      'discovery.endpoint',
      `must be a 'host:port' string, got ${typeof endpoint}`,
    );
  }
  const server = parseServer(endpoint, 'discovery.endpoint');
  if (server.unix || /:\d+:\d+$/.test(endpoint.trim())) {
    throw new MemcachedOptionsError('discovery.endpoint', `must be 'host:port', got "${endpoint}"`);
  }
  return {
    server,
    host: server.host,
    port: server.port,
    interval: integer(
      interval,
      'discovery.interval',
      DEFAULTS.discoveryInterval,
      100,
      24 * 3600 * 1000,
    ),
  };
}

/** What {@link redactOptions} puts in place of a secret. */
const REDACTED = '[redacted]';

/**
 * A copy of `resolved` safe to show or log: `auth.password` and `tls.passphrase` (when set) read
 * `'[redacted]'`. The copy and its `auth` and `tls` objects are frozen copies (shallow: other
 * nested values are shared); `resolved` itself is unchanged.
 */
export function redactOptions(resolved: ResolvedOptions): Readonly<ResolvedOptions> {
  const { auth, tls } = resolved;
  return Object.freeze({
    ...resolved,
    auth: auth === undefined ? undefined : Object.freeze({ ...auth, password: REDACTED }),
    tls:
      tls === undefined
        ? undefined
        : Object.freeze(
            tls.passphrase === undefined ? { ...tls } : { ...tls, passphrase: REDACTED },
          ),
  });
}

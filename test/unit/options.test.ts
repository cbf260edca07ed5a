import { inspect } from 'node:util';
import { MemcachedOptionsError } from '../../lib/errors.js';
import {
  MEMCACHED_OPTION_NAMES,
  RETRYABLE_COMMANDS,
  redactOptions,
  resolveOptions,
  type MemcachedOptions,
} from '../../lib/options.js';
import { validOptionValues, withValidValue } from '../harness/option-values.js';

const SERVER = '127.0.0.1:11311';
const NO_ENV = {};

function resolve(options: unknown) {
  return resolveOptions(options as MemcachedOptions, NO_ENV);
}

function optionError(options: unknown): MemcachedOptionsError {
  try {
    resolve(options);
  } catch (error) {
    expect(error).toBeInstanceOf(MemcachedOptionsError);
    return error as MemcachedOptionsError;
  }
  throw new Error(`expected ${inspect(options)} to be rejected`);
}

describe('MEMCACHED_OPTION_NAMES', () => {
  it('lists each option once', () => {
    expect(new Set(MEMCACHED_OPTION_NAMES).size).toBe(MEMCACHED_OPTION_NAMES.length);
  });

  it('is exactly the options the tests have a value for', () => {
    expect([...MEMCACHED_OPTION_NAMES].sort()).toEqual(
      Object.keys(validOptionValues(SERVER)).sort(),
    );
  });

  it.each(MEMCACHED_OPTION_NAMES)('resolveOptions accepts %s', (name) => {
    expect(() => resolve(withValidValue(name, SERVER))).not.toThrow();
  });

  it('resolveOptions accepts every option at once and applies them', () => {
    const resolved = resolve(validOptionValues(SERVER));
    expect(resolved.servers.map((s) => `${s.host}:${s.port}`)).toEqual([SERVER]);
    expect(resolved.keyPrefix).toBe('opt:');
    expect(resolved.autoBatch).toBe(false);
    expect(resolved.maxPending).toEqual({ total: 10, perConnection: 10 });
    expect(resolved.auth).toEqual({ username: 'user', password: 'secret' });
    expect(resolved.retry.unsafeCommands).toEqual(['incr']);
  });
});

describe('resolveOptions', () => {
  it.each<[string, unknown, string]>([
    ['a misspelt option', { timout: 100 }, 'timout'],
    ['a misspelt option next to valid ones', { servers: SERVER, severs: SERVER }, 'severs'],
    ['a misspelt retry option', { retry: { attempts: 2, dealy: 5 } }, 'retry.dealy'],
    ['a misspelt failover option', { failover: { deadTimout: 5 } }, 'failover.deadTimout'],
    ['a misspelt auth option', { auth: { user: 'u', password: 'p' } }, 'auth.user'],
    ['a misspelt maxPending option', { maxPending: { totl: 5 } }, 'maxPending.totl'],
    ['a misspelt compression option', { compression: { treshold: 5 } }, 'compression.treshold'],
    ['a bad nested value', { failover: { deadTimeout: -1 } }, 'failover.deadTimeout'],
    ['a string for a number', { timeout: '100' }, 'timeout'],
    ['a non-boolean autoBatch', { autoBatch: 'no' }, 'autoBatch'],
    ['maxPending 0', { maxPending: 0 }, 'maxPending'],
    ['auth: true', { auth: true }, 'auth'],
    ['auth: null', { auth: null }, 'auth'],
    [
      'an unknown unsafe command',
      { retry: { attempts: 2, unsafeCommands: ['incr', 'incrr'] } },
      'retry.unsafeCommands[1]',
    ],
    ['discovery: a string', { discovery: SERVER }, 'discovery'],
    ['discovery without endpoint', { discovery: { interval: 1000 } }, 'discovery.endpoint'],
    [
      'a misspelt discovery option',
      { discovery: { endpoint: SERVER, intervl: 5 } },
      'discovery.intervl',
    ],
    [
      'a discovery endpoint with a bad port',
      { discovery: { endpoint: 'h:0' } },
      'discovery.endpoint',
    ],
    [
      'a unix socket discovery endpoint',
      { discovery: { endpoint: '/tmp/x.sock' } },
      'discovery.endpoint',
    ],
    [
      'a weighted discovery endpoint',
      { discovery: { endpoint: 'h:11211:2' } },
      'discovery.endpoint',
    ],
    [
      'a discovery interval of 10 ms',
      { discovery: { endpoint: SERVER, interval: 10 } },
      'discovery.interval',
    ],
    ['null options', null, 'options'],
    ['array options', [SERVER], 'options'],
    ['string options', SERVER, 'options'],
  ])('rejects %s, naming the option', (_name, options, option) => {
    const error = optionError(options);
    expect(error.option).toBe(option);
    expect(error.message).toContain(`"${option}"`);
  });

  it('says a misspelt option is unknown', () => {
    expect(optionError({ timout: 1 }).message).toMatch(/unknown option/);
    expect(optionError({ failover: { deadTimout: 1 } }).message).toMatch(
      /unknown option \(expected failureThreshold, deadTimeout, retryTimeout\)/,
    );
  });

  it('quotes a string where a number is expected', () => {
    expect(optionError({ poolSize: '2' }).message).toMatch(/got "2"$/);
  });

  it('discovery: the endpoint is the initial server unless servers are given; interval default 60 s', () => {
    const alone = resolve({ discovery: { endpoint: 'cfg.example:11212' } });
    expect(alone.discovery).toEqual({ host: 'cfg.example', port: 11212, interval: 60_000 });
    expect(alone.servers.map((s) => s.id)).toEqual(['cfg.example:11212']);
    const withServers = resolve({
      servers: SERVER,
      discovery: { endpoint: '[::1]', interval: 500 },
    });
    expect(withServers.discovery).toEqual({ host: '::1', port: 11211, interval: 500 });
    expect(withServers.servers.map((s) => s.id)).toEqual([SERVER]);
    expect(resolve({ servers: SERVER }).discovery).toBeUndefined();
  });

  it('auth: false means no auth, like no auth option at all', () => {
    expect(resolve({ auth: false }).auth).toBeUndefined();
    expect(resolve({}).auth).toBeUndefined();
    expect(resolve({ auth: { username: 'u', password: 'p' } }).auth).toEqual({
      username: 'u',
      password: 'p',
    });
  });

  it('accepts every retryable command in retry.unsafeCommands', () => {
    const resolved = resolve({ retry: { attempts: 2, unsafeCommands: [...RETRYABLE_COMMANDS] } });
    expect(resolved.retry.unsafeCommands).toEqual(RETRYABLE_COMMANDS);
  });
});

describe('redactOptions', () => {
  const withAuth = () =>
    resolve({ servers: SERVER, auth: { username: 'app', password: 'hunter2' }, keyPrefix: 'k:' });

  it('replaces auth.password with [redacted] and keeps everything else', () => {
    const resolved = withAuth();
    const redacted = redactOptions(resolved);
    expect(redacted.auth).toEqual({ username: 'app', password: '[redacted]' });
    expect({ ...redacted, auth: undefined }).toEqual({ ...resolved, auth: undefined });
    expect(redacted.keyPrefix).toBe('k:');
    expect(redacted.serde).toBe(resolved.serde);
  });

  it('returns a copy: the resolved options keep the real password', () => {
    const resolved = withAuth();
    const redacted = redactOptions(resolved);
    expect(redacted).not.toBe(resolved);
    expect(resolved.auth).toEqual({ username: 'app', password: 'hunter2' });
  });

  it('the secret shows nowhere in the copy: JSON, inspect, String', () => {
    const redacted = redactOptions(withAuth());
    expect(JSON.stringify(redacted)).not.toContain('hunter2');
    expect(inspect(redacted, { depth: Infinity })).not.toContain('hunter2');
    expect(String(Object.values(redacted.auth ?? {}))).not.toContain('hunter2');
  });

  it('is frozen, its auth too', () => {
    const redacted = redactOptions(withAuth());
    expect(Object.isFrozen(redacted)).toBe(true);
    expect(Object.isFrozen(redacted.auth)).toBe(true);
    expect(() => {
      (redacted.auth as { password: string }).password = 'x';
    }).toThrow(TypeError);
  });

  it('without auth, auth stays undefined', () => {
    expect(redactOptions(resolve({ servers: SERVER })).auth).toBeUndefined();
    expect(redactOptions(resolve({ servers: SERVER, auth: false })).auth).toBeUndefined();
  });

  it('also hides a TLS key passphrase', () => {
    const resolved = resolve({ servers: SERVER, tls: { passphrase: 'p4ss', servername: 'mc' } });
    const redacted = redactOptions(resolved);
    expect(redacted.tls).toEqual({ passphrase: '[redacted]', servername: 'mc' });
    expect(resolved.tls?.passphrase).toBe('p4ss');
    expect(redactOptions(resolve({ servers: SERVER, tls: true })).tls).toEqual({});
    expect(redactOptions(resolve({ servers: SERVER })).tls).toBeUndefined();
  });
});

import { isIP } from 'node:net';
import { MemcachedOptionsError } from '../errors.js';
import type { ServerAddress } from '../connection/connection.js';

/** A server as accepted in the `servers` option. */
export type ServerSpec =
  string | { host: string; port?: number; weight?: number } | { path: string; weight?: number };

/** A parsed server: its address and weight. */
export interface ServerConfig extends ServerAddress {
  weight: number;
}

export const DEFAULT_PORT = 11211;
export const DEFAULT_SERVER = '127.0.0.1:11211';

/**
 * The server list to use: the option when given, else `<PREFIX>_MEMCACHED_SERVERS`, else
 * `MEMCACHED_SERVERS`, else `127.0.0.1:11211`. Strings may hold several servers separated by
 * commas (whitespace around them is ignored).
 */
export function resolveServers(
  servers: string | readonly ServerSpec[] | undefined,
  envPrefix: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): ServerConfig[] {
  let specs: readonly ServerSpec[];
  let option = 'servers';
  if (servers !== undefined) {
    specs = typeof servers === 'string' ? splitList(servers) : servers;
    if (!Array.isArray(specs) && typeof servers !== 'string') {
      throw new MemcachedOptionsError(
        'servers',
        'expected a string or an array of strings / { host, port?, weight? } / { path }',
      );
    }
  } else {
    const prefixed = envPrefix ? env[`${envPrefix}_MEMCACHED_SERVERS`] : undefined;
    const plain = env.MEMCACHED_SERVERS;
    if (prefixed !== undefined && prefixed.trim() !== '') {
      specs = splitList(prefixed);
      option = `${envPrefix}_MEMCACHED_SERVERS`;
    } else if (plain !== undefined && plain.trim() !== '') {
      specs = splitList(plain);
      option = 'MEMCACHED_SERVERS';
    } else {
      specs = [DEFAULT_SERVER];
    }
  }
  const out: ServerConfig[] = [];
  specs.forEach((spec, i) => {
    const name = specs.length === 1 && typeof servers === 'string' ? option : `${option}[${i}]`;
    if (typeof spec === 'string') {
      for (const part of splitList(spec)) out.push(parseServer(part, name));
    } else {
      out.push(parseServerObject(spec, name));
    }
  });
  if (out.length === 0) {
    throw new MemcachedOptionsError(option, 'the server list is empty; give at least one server');
  }
  const seen = new Set<string>();
  for (const s of out) {
    if (seen.has(s.id)) {
      throw new MemcachedOptionsError(option, `server ${s.id} is listed twice`);
    }
    seen.add(s.id);
  }
  return out;
}

function splitList(s: string): string[] {
  return s
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
}

/**
 * Parses one server string: `host`, `host:port`, `host:port:weight`, `[v6]`, `[v6]:port`,
 * `[v6]:port:weight`, `/path.sock`, `unix:/path.sock`, `/path.sock:weight`.
 */
export function parseServer(input: string, option = 'servers'): ServerConfig {
  const s = input.trim();
  if (s === '') throw new MemcachedOptionsError(option, 'empty server address');
  if (s.startsWith('unix:') || s.startsWith('/')) {
    let path = s.startsWith('unix:') ? s.slice(5) : s;
    let weight = 1;
    const m = /^(.*):(\d+)$/.exec(path);
    if (m !== null) {
      path = m[1]!;
      weight = parseWeight(m[2]!, option, s);
    }
    if (!path.startsWith('/')) {
      throw new MemcachedOptionsError(option, `unix socket path must be absolute: "${s}"`);
    }
    return { id: path, host: path, port: 0, unix: true, weight };
  }
  let host: string;
  let rest: string[];
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close === -1) {
      throw new MemcachedOptionsError(option, `unterminated "[" in IPv6 address "${s}"`);
    }
    host = s.slice(1, close);
    if (isIP(host) !== 6) {
      throw new MemcachedOptionsError(option, `"${host}" in "${s}" is not an IPv6 address`);
    }
    const tail = s.slice(close + 1);
    if (tail !== '' && !tail.startsWith(':')) {
      throw new MemcachedOptionsError(option, `unexpected "${tail}" after "]" in "${s}"`);
    }
    rest = tail === '' ? [] : tail.slice(1).split(':');
  } else {
    const parts = s.split(':');
    if (parts.length > 3) {
      throw new MemcachedOptionsError(
        option,
        `"${s}" has too many ":"; write IPv6 addresses in brackets, e.g. "[::1]:11211"`,
      );
    }
    host = parts[0]!;
    rest = parts.slice(1);
  }
  if (host === '') throw new MemcachedOptionsError(option, `missing host in "${s}"`);
  if (!s.startsWith('[') && !/^[A-Za-z0-9.\-_]+$/.test(host)) {
    throw new MemcachedOptionsError(option, `"${host}" is not a valid host name in "${s}"`);
  }
  const port = rest.length > 0 ? parsePort(rest[0]!, option, s) : DEFAULT_PORT;
  const weight = rest.length > 1 ? parseWeight(rest[1]!, option, s) : 1;
  return makeTcp(host, port, weight);
}

function parseServerObject(spec: ServerSpec, option: string): ServerConfig {
  if (spec === null || typeof spec !== 'object') {
    throw new MemcachedOptionsError(
      option,
      'expected a string, { host, port?, weight? } or { path, weight? }',
    );
  }
  const weight =
    'weight' in spec && spec.weight !== undefined
      ? checkWeight(spec.weight, `${option}.weight`)
      : 1;
  if ('path' in spec) {
    if (typeof spec.path !== 'string' || !spec.path.replace(/^unix:/, '').startsWith('/')) {
      throw new MemcachedOptionsError(`${option}.path`, 'must be an absolute unix socket path');
    }
    const path = spec.path.replace(/^unix:/, '');
    return { id: path, host: path, port: 0, unix: true, weight };
  }
  if (typeof spec.host !== 'string' || spec.host.trim() === '') {
    throw new MemcachedOptionsError(`${option}.host`, 'must be a non-empty string');
  }
  let host = spec.host.trim();
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  let port = DEFAULT_PORT;
  if (spec.port !== undefined) {
    if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535) {
      throw new MemcachedOptionsError(
        `${option}.port`,
        `must be an integer 1-65535, got ${String(spec.port)}`,
      );
    }
    port = spec.port;
  }
  if (isIP(host) === 0 && !/^[A-Za-z0-9.\-_]+$/.test(host)) {
    throw new MemcachedOptionsError(`${option}.host`, `"${host}" is not a valid host name`);
  }
  return makeTcp(host, port, weight);
}

function makeTcp(host: string, port: number, weight: number): ServerConfig {
  const id = isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  return { id, host, port, unix: false, weight };
}

function parsePort(text: string, option: string, whole: string): number {
  const port = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new MemcachedOptionsError(option, `bad port "${text}" in "${whole}" (1-65535)`);
  }
  return port;
}

function parseWeight(text: string, option: string, whole: string): number {
  const weight = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(weight) || weight < 1 || weight > 1_000_000) {
    throw new MemcachedOptionsError(
      option,
      `bad weight "${text}" in "${whole}" (a positive integer)`,
    );
  }
  return weight;
}

function checkWeight(weight: unknown, option: string): number {
  if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 1 || weight > 1_000_000) {
    throw new MemcachedOptionsError(option, `must be a positive integer, got ${String(weight)}`);
  }
  return weight;
}

import {
  MemcachedAuthError,
  MemcachedClientError,
  MemcachedError,
  MemcachedProtocolError,
  MemcachedServerError,
  MemcachedUnknownCommandError,
} from '../../errors.js';
import type { Op, Replies, ReplyKind, StoreStatus } from '../request.js';

/**
 * The error for an error line (`ERROR`, `CLIENT_ERROR ...`, `SERVER_ERROR ...`), or undefined when
 * the line is not an error line.
 */
export function errorFromLine(
  line: string,
  command: string,
  server: string,
): MemcachedError | undefined {
  const opts = { server, command };
  if (line === 'ERROR' || line.startsWith('ERROR ')) {
    return new MemcachedUnknownCommandError(
      `memcached ${server} does not know the command "${command}" (it answered ${line}); check the server version`,
      opts,
    );
  }
  if (line === 'CLIENT_ERROR' || line.startsWith('CLIENT_ERROR ')) {
    const msg = line.slice(13);
    if (msg === 'unauthenticated' || msg === 'authentication failure') {
      return new MemcachedAuthError(
        `memcached ${server} refused ${command}: ${msg}; check the auth option (username/password) against the server's -Y auth file`,
        opts,
      );
    }
    return new MemcachedClientError(
      `memcached ${server} rejected ${command}: CLIENT_ERROR ${msg}`,
      opts,
    );
  }
  if (line === 'SERVER_ERROR' || line.startsWith('SERVER_ERROR ')) {
    const msg = line.slice(13);
    const hint = msg.includes('too large')
      ? ' (the value exceeds the server item size limit -I; lower maxValueSize or raise -I)'
      : msg.includes('out of memory')
        ? ' (the server is out of memory; raise -m or store smaller values)'
        : '';
    return new MemcachedServerError(
      `memcached ${server} failed ${command}: SERVER_ERROR ${msg}${hint}`,
      opts,
    );
  }
  return undefined;
}

/** A reply line that does not fit the request: the stream can no longer be trusted. */
export function unexpectedReply(
  what: string,
  kind: ReplyKind,
  command: string,
  server: string,
): MemcachedProtocolError {
  return new MemcachedProtocolError(
    `memcached ${server} sent ${what} in reply to ${command} (expected ${KIND_NAMES[kind]}); the connection was reset`,
    { server, command },
  );
}

const KIND_NAMES: { readonly [K in ReplyKind]: string } = {
  retrieve: 'a retrieval reply',
  store: 'a storage reply',
  delete: 'a delete reply',
  touch: 'a touch reply',
  arith: 'an incr/decr reply',
  ok: 'OK',
  stats: 'a stats reply',
  version: 'a version reply',
  lease: 'a meta lease reply',
};

const STORE_STATUS: Readonly<Record<string, StoreStatus>> = {
  STORED: 'stored',
  NOT_STORED: 'not_stored',
  EXISTS: 'exists',
  NOT_FOUND: 'not_found',
};

const DIGITS = /^[0-9]{1,20}$/;

/**
 * Interprets a single-line reply for a request of `kind` (and `op`). Returns the typed reply;
 * error lines are returned as MemcachedError instances (the request failed, the stream is
 * fine); a line that fits neither throws MemcachedProtocolError (the stream is broken).
 */
export function interpretLine<K extends ReplyKind>(
  kind: K,
  op: Op,
  line: string,
  command: string,
  server: string,
): Replies[K] | MemcachedError {
  const value = lineValue(kind, op, line);
  if (value !== NO_MATCH) return value as Replies[K];
  const error = errorFromLine(line, command, server);
  if (error !== undefined) {
    if (op === 'auth' && error instanceof MemcachedClientError) {
      return new MemcachedAuthError(
        `memcached ${server} refused authentication: ${line}; check that the server runs with -Y and the credentials are right`,
        { server, command: 'auth' },
      );
    }
    return error;
  }
  throw unexpectedReply(JSON.stringify(line.slice(0, 80)), kind, command, server);
}

const NO_MATCH: unique symbol = Symbol('no match');

function lineValue(kind: ReplyKind, op: Op, line: string): Replies[ReplyKind] | typeof NO_MATCH {
  switch (kind) {
    case 'store':
      return STORE_STATUS[line] ?? NO_MATCH;
    case 'delete':
      if (line === 'DELETED') return true;
      if (line === 'NOT_FOUND') return false;
      return NO_MATCH;
    case 'touch':
      if (line === 'TOUCHED') return true;
      if (line === 'NOT_FOUND') return false;
      return NO_MATCH;
    case 'arith': {
      if (line === 'NOT_FOUND') return undefined;
      // decr replies may be space-padded to the old value's length.
      const trimmed = line.replace(/ +$/, '');
      if (DIGITS.test(trimmed)) {
        const n = BigInt(trimmed);
        if (n <= 0xffffffffffffffffn) return n;
      }
      return NO_MATCH;
    }
    case 'version':
      return line.startsWith('VERSION ') ? line.slice(8) : NO_MATCH;
    case 'ok':
      if (op === 'auth') return line === 'STORED' ? true : NO_MATCH;
      if (op === 'fence') return line === 'MN' || line.startsWith('VERSION ') ? true : NO_MATCH;
      return line === 'OK' ? true : NO_MATCH;
    case 'stats':
      // `stats reset` answers one line instead of STAT lines.
      return line === 'RESET' ? {} : NO_MATCH;
    case 'retrieve':
    case 'lease':
      return NO_MATCH;
  }
}

import {
  MemcachedAuthError,
  MemcachedClientError,
  MemcachedError,
  MemcachedProtocolError,
  MemcachedServerError,
  MemcachedUnknownCommandError,
} from '../errors.js';

/** What kind of reply a request expects; decides which reply pieces fit it. */
export type ReplyKind =
  'storage' | 'delete' | 'touch' | 'arith' | 'retrieval' | 'stats' | 'version' | 'ok' | 'auth';

/** Outcome of a storage command as the server stated it. */
export type StorageStatus = 'STORED' | 'NOT_STORED' | 'EXISTS' | 'NOT_FOUND';

/** One item of a retrieval reply. */
export interface RetrievedItem {
  key: string;
  flags: number;
  data: Buffer;
  cas: string | undefined;
  /** Position of `key` in the request's key list. */
  index: number;
}

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
    `memcached ${server} sent ${what} in reply to ${command} (expected a ${kind} reply); the connection was reset`,
    { server, command },
  );
}

const DIGITS = /^[0-9]{1,20}$/;

/**
 * Interprets a single-line reply for a request of `kind`. Returns the result value; error lines
 * are returned as MemcachedError instances (the request failed, the stream is fine); a line that
 * fits neither throws MemcachedProtocolError (the stream is broken).
 */
export function interpretLine(
  kind: ReplyKind,
  line: string,
  command: string,
  server: string,
): unknown {
  switch (kind) {
    case 'storage':
      if (line === 'STORED' || line === 'NOT_STORED' || line === 'EXISTS' || line === 'NOT_FOUND') {
        return line;
      }
      break;
    case 'auth':
      if (line === 'STORED') return true;
      break;
    case 'delete':
      if (line === 'DELETED') return true;
      if (line === 'NOT_FOUND') return false;
      break;
    case 'touch':
      if (line === 'TOUCHED') return true;
      if (line === 'NOT_FOUND') return false;
      break;
    case 'arith': {
      if (line === 'NOT_FOUND') return undefined;
      // decr replies may be space-padded to the old value's length.
      const trimmed = line.replace(/ +$/, '');
      if (DIGITS.test(trimmed)) {
        const n = BigInt(trimmed);
        if (n <= 0xffffffffffffffffn) return n;
      }
      break;
    }
    case 'version':
      if (line.startsWith('VERSION ')) return line.slice(8);
      break;
    case 'ok':
      if (line === 'OK') return true;
      break;
    case 'retrieval':
    case 'stats':
      break;
  }
  const error = errorFromLine(line, command, server);
  if (error !== undefined) {
    if (kind === 'auth' && error instanceof MemcachedClientError) {
      return new MemcachedAuthError(
        `memcached ${server} refused authentication: ${line}; check that the server runs with -Y and the credentials are right`,
        { server, command: 'auth' },
      );
    }
    return error;
  }
  throw unexpectedReply(JSON.stringify(line.slice(0, 80)), kind, command, server);
}

import {
  MemcachedAuthError,
  MemcachedClientError,
  MemcachedError,
  MemcachedProtocolError,
  MemcachedServerError,
  MemcachedUnknownCommandError,
} from '../../../lib/errors.js';
import type { Op, ReplyKind as WireKind } from '../../../lib/protocol/request.js';
import {
  errorFromLine,
  interpretLine,
  unexpectedReply,
} from '../../../lib/protocol/text/replies.js';

const SERVER = '10.0.0.7:11211';

/** The request shapes these tests exercise: a reply kind and a representative op. */
type ReplyKind =
  'storage' | 'delete' | 'touch' | 'arith' | 'retrieval' | 'stats' | 'version' | 'ok' | 'auth';
const SHAPES: Record<ReplyKind, [WireKind, Op]> = {
  storage: ['store', 'set'],
  delete: ['delete', 'delete'],
  touch: ['touch', 'touch'],
  arith: ['arith', 'incr'],
  retrieval: ['retrieve', 'get'],
  stats: ['stats', 'stats'],
  version: ['version', 'version'],
  ok: ['ok', 'flush_all'],
  auth: ['ok', 'auth'],
};

/** interpretLine with the command named after the kind. */
const interpret = (kind: ReplyKind, line: string, command = 'cmd'): unknown =>
  interpretLine(SHAPES[kind][0], SHAPES[kind][1], line, command, SERVER);

/** The MemcachedProtocolError that interpretLine throws for a line that fits no reply. */
function thrownBy(kind: ReplyKind, line: string, command = 'cmd'): MemcachedProtocolError {
  let caught: unknown;
  try {
    interpretLine(SHAPES[kind][0], SHAPES[kind][1], line, command, SERVER);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(MemcachedProtocolError);
  return caught as MemcachedProtocolError;
}

describe('interpretLine on valid replies', () => {
  test.each(['STORED', 'NOT_STORED', 'EXISTS', 'NOT_FOUND'])('storage %s', (line) => {
    expect(interpret('storage', line, 'set')).toBe(line.toLowerCase());
  });

  test('delete', () => {
    expect(interpret('delete', 'DELETED', 'delete')).toBe(true);
    expect(interpret('delete', 'NOT_FOUND', 'delete')).toBe(false);
  });

  test('touch', () => {
    expect(interpret('touch', 'TOUCHED', 'touch')).toBe(true);
    expect(interpret('touch', 'NOT_FOUND', 'touch')).toBe(false);
  });

  test('arith returns a bigint', () => {
    expect(interpret('arith', '0', 'incr')).toBe(0n);
    expect(interpret('arith', '42', 'incr')).toBe(42n);
    expect(interpret('arith', '9007199254740993', 'incr')).toBe(9007199254740993n);
    expect(interpret('arith', '18446744073709551615', 'incr')).toBe(18446744073709551615n);
  });

  test('arith accepts a space-padded decr reply', () => {
    expect(interpret('arith', '5   ', 'decr')).toBe(5n);
    expect(interpret('arith', '0 ', 'decr')).toBe(0n);
    expect(interpret('arith', '18446744073709551615 ', 'decr')).toBe(18446744073709551615n);
  });

  test('arith NOT_FOUND is undefined', () => {
    expect(interpret('arith', 'NOT_FOUND', 'incr')).toBeUndefined();
  });

  test('version', () => {
    expect(interpret('version', 'VERSION 1.6.18', 'version')).toBe('1.6.18');
    expect(interpret('version', 'VERSION 1.4.15-sasl', 'version')).toBe('1.4.15-sasl');
  });

  test('ok', () => {
    expect(interpret('ok', 'OK', 'flush_all')).toBe(true);
    expect(interpret('ok', 'OK', 'verbosity')).toBe(true);
  });

  test('auth STORED', () => {
    expect(interpret('auth', 'STORED', 'auth')).toBe(true);
  });
});

describe('error lines', () => {
  const kinds: ReplyKind[] = [
    'storage',
    'delete',
    'touch',
    'arith',
    'retrieval',
    'stats',
    'version',
    'ok',
  ];

  test.each(kinds)('ERROR for %s is MemcachedUnknownCommandError', (kind) => {
    const result = interpret(kind, 'ERROR', 'gat');
    expect(result).toBeInstanceOf(MemcachedUnknownCommandError);
    const error = result as MemcachedUnknownCommandError;
    expect(error.server).toBe(SERVER);
    expect(error.command).toBe('gat');
    expect(error.name).toBe('MemcachedUnknownCommandError');
    expect(error.message).toContain('"gat"');
    expect(error.message).toContain(SERVER);
  });

  test.each(kinds)('CLIENT_ERROR bad data chunk for %s is MemcachedClientError', (kind) => {
    const result = interpret(kind, 'CLIENT_ERROR bad data chunk', 'set');
    expect(result).toBeInstanceOf(MemcachedClientError);
    expect(result).not.toBeInstanceOf(MemcachedAuthError);
    const error = result as MemcachedClientError;
    expect(error.server).toBe(SERVER);
    expect(error.command).toBe('set');
    expect(error.message).toContain('CLIENT_ERROR bad data chunk');
  });

  test.each(['authentication failure', 'unauthenticated'])(
    'CLIENT_ERROR %s is MemcachedAuthError',
    (msg) => {
      for (const kind of [...kinds, 'auth'] as ReplyKind[]) {
        const result = interpret(kind, `CLIENT_ERROR ${msg}`, 'get');
        expect(result).toBeInstanceOf(MemcachedAuthError);
        const error = result as MemcachedAuthError;
        expect(error.server).toBe(SERVER);
        expect(error.command).toBe('get');
        expect(error.message).toContain(msg);
      }
    },
  );

  test.each(kinds)(
    'SERVER_ERROR object too large for %s is a helpful MemcachedServerError',
    (kind) => {
      const result = interpret(kind, 'SERVER_ERROR object too large for cache', 'set');
      expect(result).toBeInstanceOf(MemcachedServerError);
      const error = result as MemcachedServerError;
      expect(error.server).toBe(SERVER);
      expect(error.command).toBe('set');
      expect(error.message).toContain('SERVER_ERROR object too large for cache');
      expect(error.message).toContain('-I');
      expect(error.message).toContain('maxValueSize');
    },
  );

  test('SERVER_ERROR out of memory hints at -m', () => {
    const result = interpret('storage', 'SERVER_ERROR out of memory storing object', 'add');
    expect(result).toBeInstanceOf(MemcachedServerError);
    expect((result as MemcachedServerError).message).toContain('-m');
  });

  test('other SERVER_ERROR lines carry the message without a hint', () => {
    const result = interpret('arith', 'SERVER_ERROR something odd', 'incr');
    expect(result).toBeInstanceOf(MemcachedServerError);
    const error = result as MemcachedServerError;
    expect(error.message).toBe(`memcached ${SERVER} failed incr: SERVER_ERROR something odd`);
    expect(error.command).toBe('incr');
  });

  test('a CLIENT_ERROR in reply to auth is MemcachedAuthError; other error lines keep their class', () => {
    for (const line of ['CLIENT_ERROR bad data chunk', 'CLIENT_ERROR authentication failure']) {
      const result = interpret('auth', line, 'auth');
      expect(result).toBeInstanceOf(MemcachedAuthError);
      const error = result as MemcachedAuthError;
      expect(error.server).toBe(SERVER);
      expect(error.command).toBe('auth');
      expect(error.message).toContain(line.slice(13));
    }
    expect(interpret('auth', 'SERVER_ERROR out of memory', 'auth')).toBeInstanceOf(
      MemcachedServerError,
    );
    expect(interpret('auth', 'ERROR', 'auth')).toBeInstanceOf(MemcachedUnknownCommandError);
  });

  test('errorFromLine is undefined for non-error lines', () => {
    for (const line of ['STORED', 'END', '42', 'VERSION 1.6.18', 'ERRORS', '', 'OK']) {
      expect(errorFromLine(line, 'set', SERVER)).toBeUndefined();
    }
  });

  test('errorFromLine classifies each error line', () => {
    expect(errorFromLine('ERROR', 'x', SERVER)).toBeInstanceOf(MemcachedUnknownCommandError);
    expect(errorFromLine('ERROR unknown command', 'x', SERVER)).toBeInstanceOf(
      MemcachedUnknownCommandError,
    );
    expect(errorFromLine('CLIENT_ERROR line too long', 'x', SERVER)).toBeInstanceOf(
      MemcachedClientError,
    );
    expect(errorFromLine('SERVER_ERROR busy', 'x', SERVER)).toBeInstanceOf(MemcachedServerError);
    const error = errorFromLine('CLIENT_ERROR unauthenticated', 'touch', SERVER);
    expect(error).toBeInstanceOf(MemcachedAuthError);
    expect(error).toBeInstanceOf(MemcachedError);
    expect(error!.server).toBe(SERVER);
    expect(error!.command).toBe('touch');
  });
});

describe('lines that fit no reply throw MemcachedProtocolError', () => {
  test.each<[ReplyKind, string]>([
    ['delete', 'STORED'],
    ['delete', 'TOUCHED'],
    ['delete', '1'],
    ['touch', 'DELETED'],
    ['touch', 'STORED'],
    ['storage', 'DELETED'],
    ['storage', 'OK'],
    ['storage', 'stored'],
    ['storage', 'STORED '],
    ['storage', ''],
    ['auth', 'NOT_STORED'],
    ['auth', 'EXISTS'],
    ['arith', '18446744073709551616'],
    ['arith', '99999999999999999999'],
    ['arith', '123456789012345678901'],
    ['arith', '-1'],
    ['arith', ' 5'],
    ['arith', '5a'],
    ['arith', '0x10'],
    ['arith', ''],
    ['arith', 'STORED'],
    ['version', 'VALUE k 0 1'],
    ['version', 'VERSION'],
    ['version', 'version 1.6.18'],
    ['version', 'STORED'],
    ['ok', 'STORED'],
    ['ok', 'OK '],
    ['retrieval', 'STORED'],
    ['retrieval', 'NOT_FOUND'],
    ['stats', 'OK'],
    ['stats', 'STAT pid 1'],
  ])('%s reply %j', (kind, line) => {
    const error = thrownBy(kind, line, 'mycmd');
    expect(error.server).toBe(SERVER);
    expect(error.command).toBe('mycmd');
    expect(error.message).toMatch(/\(expected [^)]+\); the connection was reset$/);
    expect(error.message).toContain(JSON.stringify(line));
  });

  test('the reported line is truncated to 80 characters', () => {
    const line = 'X'.repeat(500);
    const error = thrownBy('storage', line);
    expect(error.message).toContain(JSON.stringify('X'.repeat(80)));
    expect(error.message).not.toContain('X'.repeat(81));
  });

  test('unexpectedReply builds the same error', () => {
    const error = unexpectedReply('END', 'store', 'set', SERVER);
    expect(error).toBeInstanceOf(MemcachedProtocolError);
    expect(error.server).toBe(SERVER);
    expect(error.command).toBe('set');
    expect(error.message).toBe(
      `memcached ${SERVER} sent END in reply to set (expected a storage reply); the connection was reset`,
    );
  });
});

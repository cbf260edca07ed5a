import type { MemcachedError } from '../../errors.js';
import type {
  DriverAuth,
  DriverSession,
  ProtocolDriver,
  SessionHost,
  SessionLimits,
} from '../driver.js';
import { Request, type AnyRequest } from '../request.js';
import { encodeBinaryRequest, encodeNoop, encodeSaslPlain } from './encoder.js';
import { BinaryReplyMatcher } from './matcher.js';
import { BinaryResponseParser } from './parser.js';

/**
 * memcached's binary protocol (what memjs speaks), the one that carries SASL: `auth` means SASL
 * PLAIN, sent first on every new connection. noreply writes use the quiet opcodes and are fenced
 * with `noop`; multi-gets are pipelined quiet `getkq`s closed by a `noop`.
 */
export const binaryDriver: ProtocolDriver = {
  protocol: 'binary',
  encode: encodeBinaryRequest,
  session(host: SessionHost, limits: SessionLimits, auth: DriverAuth | undefined): DriverSession {
    return new BinarySession(host, limits, auth);
  },
};

/** One connection's binary-protocol reader: parser → matcher → the host's queue. */
class BinarySession implements DriverSession {
  private readonly parser: BinaryResponseParser;

  constructor(
    host: SessionHost,
    limits: SessionLimits,
    private readonly auth: DriverAuth | undefined,
  ) {
    this.parser = new BinaryResponseParser(new BinaryReplyMatcher(host), {
      maxValueLength: limits.maxValueLength,
    });
  }

  feed(chunk: Buffer): void {
    this.parser.feed(chunk);
  }

  fence(): Request<'ok'> {
    return new Request<'ok'>('noreply fence', { op: 'fence' }, encodeNoop(), noop, noop);
  }

  handshake(done: () => void, failed: (error: MemcachedError) => void): AnyRequest[] {
    const auth = this.auth;
    if (auth === undefined) return [];
    const spec = { op: 'auth', username: auth.username, password: auth.password } as const;
    return [
      new Request<'ok'>('auth', spec, encodeSaslPlain(auth.username, auth.password), done, failed),
    ];
  }

  reset(): void {
    this.parser.reset();
  }
}

function noop(): void {}

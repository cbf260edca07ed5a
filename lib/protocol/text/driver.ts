import type { MemcachedError } from '../../errors.js';
import type {
  DriverAuth,
  DriverSession,
  ProtocolDriver,
  SessionHost,
  SessionLimits,
} from '../driver.js';
import { Request, type AnyRequest } from '../request.js';
import { encodeTextRequest, encodeVersion } from './encoder.js';
import { TextReplyMatcher } from './matcher.js';
import { ReplyParser } from './parser.js';

const MN = Buffer.from('mn\r\n');

/** memcached's text protocol (the default): works with every memcached and with proxies. */
export const textDriver: ProtocolDriver = {
  protocol: 'text',
  encode: encodeTextRequest,
  session(host: SessionHost, limits: SessionLimits, auth: DriverAuth | undefined): DriverSession {
    return new TextSession(host, limits, auth);
  },
};

/** One connection's text-protocol reader: parser → matcher → the host's queue. */
class TextSession implements DriverSession {
  private readonly matcher: TextReplyMatcher;
  private readonly parser: ReplyParser;

  constructor(
    host: SessionHost,
    limits: SessionLimits,
    private readonly auth: DriverAuth | undefined,
  ) {
    this.matcher = new TextReplyMatcher(host);
    this.parser = new ReplyParser(this.matcher, limits);
  }

  feed(chunk: Buffer): void {
    this.parser.feed(chunk);
  }

  fence(): Request<'ok'> {
    // `mn` once the server said it is 1.6 or newer; `version` (known to every server) until then.
    const data = this.matcher.metaNoop ? MN : encodeVersion();
    return new Request<'ok'>('noreply fence', { op: 'fence' }, data, noop, noop);
  }

  handshake(done: () => void, failed: (error: MemcachedError) => void): AnyRequest[] {
    const auth = this.auth;
    if (auth === undefined) return [];
    const spec = { op: 'auth', username: auth.username, password: auth.password } as const;
    return [new Request<'ok'>('auth', spec, encodeTextRequest(spec), done, failed)];
  }

  reset(): void {
    this.parser.reset();
    // A new socket may reach another server at the same address: learn its version again.
    this.matcher.metaNoop = false;
  }
}

function noop(): void {}

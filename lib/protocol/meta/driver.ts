import { MemcachedConnectionError, type MemcachedError } from '../../errors.js';
import type {
  DriverAuth,
  DriverSession,
  ProtocolDriver,
  SessionHost,
  SessionLimits,
} from '../driver.js';
import { Request, type AnyRequest } from '../request.js';
import { encodeMetaRequest } from './encoder.js';
import { metaFeatures, type MetaFeatures } from './features.js';
import { MetaReplyMatcher, type MetaSessionHooks } from './matcher.js';
import { MetaReplyParser } from './parser.js';

export type { MetaSessionHooks } from './matcher.js';

const MN = Buffer.from('mn\r\n');
const VERSION = Buffer.from('version\r\n');

/**
 * memcached's meta protocol (`mg`/`ms`/`md`/`ma`/`mn`, memcached ≥ 1.6.10). Each connection first
 * reads the server's version (after authenticating, when `auth` is set): an older server fails the
 * connection with a MemcachedConnectionError naming the version needed, and the features of a
 * newer one are kept per connection.
 */
export function createMetaDriver(hooks: MetaSessionHooks = {}): ProtocolDriver {
  return {
    protocol: 'meta',
    encode: encodeMetaRequest,
    session(host: SessionHost, limits: SessionLimits, auth: DriverAuth | undefined): MetaSession {
      return new MetaSession(host, limits, auth, hooks);
    },
  };
}

/** One connection's meta-protocol reader: parser → matcher → the host's queue. */
export class MetaSession implements DriverSession {
  private readonly matcher: MetaReplyMatcher;
  private readonly parser: MetaReplyParser;

  constructor(
    private readonly host: SessionHost,
    limits: SessionLimits,
    private readonly auth: DriverAuth | undefined,
    hooks: MetaSessionHooks,
  ) {
    this.matcher = new MetaReplyMatcher(host, hooks);
    this.parser = new MetaReplyParser(this.matcher, limits);
  }

  /** What the server of this connection can do (from its version). */
  get features(): MetaFeatures {
    return this.matcher.features;
  }

  feed(chunk: Buffer): void {
    this.parser.feed(chunk);
  }

  fence(): Request<'ok'> {
    return new Request<'ok'>('noreply fence', { op: 'fence' }, MN, noop, noop);
  }

  handshake(done: () => void, failed: (error: MemcachedError) => void): AnyRequest[] {
    const steps: AnyRequest[] = [];
    const auth = this.auth;
    if (auth !== undefined) {
      const spec = { op: 'auth', username: auth.username, password: auth.password } as const;
      // Success moves on to the version check, written right behind it.
      steps.push(new Request<'ok'>('auth', spec, encodeMetaRequest(spec), noop, failed));
    }
    const server = this.host.server;
    const onVersion = (version: string): void => {
      const features = metaFeatures(version);
      if (typeof features === 'string') {
        failed(new MemcachedConnectionError(`${server}: ${features}`, { server }));
        return;
      }
      this.matcher.features = features;
      done();
    };
    steps.push(
      new Request<'version'>('version', { op: 'version' }, VERSION, onVersion, (error) =>
        failed(error),
      ),
    );
    return steps;
  }

  reset(): void {
    this.parser.reset();
    this.matcher.reset();
  }
}

function noop(): void {}

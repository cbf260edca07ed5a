/**
 * Error classes of nestjs-memcached. Every error extends {@link MemcachedError} and carries the
 * server it concerns (when one is involved) and the command that failed.
 */

export interface MemcachedErrorOptions {
  /** Server id (`host:port`, `[v6]:port` or a socket path) the error concerns. */
  server?: string;
  /** The memcached command (`get`, `set`, ...) or client method that failed. */
  command?: string;
  /** The underlying error, if any. */
  cause?: unknown;
}

export class MemcachedError extends Error {
  readonly server: string | undefined;
  readonly command: string | undefined;

  constructor(message: string, options: MemcachedErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.server = options.server;
    this.command = options.command;
  }
}

/** A key failed validation; nothing was sent. */
export class MemcachedKeyError extends MemcachedError {
  /** The offending key (as given, without the prefix). */
  readonly key: unknown;
  constructor(message: string, key: unknown, options: MemcachedErrorOptions = {}) {
    super(message, options);
    this.key = key;
  }
}

/**
 * A value, ttl, delta, cas token or flags failed validation (nothing was sent), or a numeric reply
 * does not fit the requested type (then `value` holds the exact result the server applied).
 */
export class MemcachedValueError extends MemcachedError {
  /** For incr/decr results above 2^53 - 1 with a `number` delta: the exact result. */
  readonly value: bigint | undefined;
  constructor(message: string, options: MemcachedErrorOptions & { value?: bigint } = {}) {
    super(message, options);
    this.value = options.value;
  }
}

/** The server answered `CLIENT_ERROR <message>`. */
export class MemcachedClientError extends MemcachedError {}

/** The server answered `SERVER_ERROR <message>`. */
export class MemcachedServerError extends MemcachedError {}

/** The server answered `ERROR` (it does not know the command). */
export class MemcachedUnknownCommandError extends MemcachedError {}

/** Cannot connect, connection lost, client closed, or no live server. */
export class MemcachedConnectionError extends MemcachedError {}

/**
 * Too many calls are already waiting (the `maxPending` bound): the call failed fast without
 * being sent. Usually a server is stalled or far slower than the request rate.
 */
export class MemcachedBackpressureError extends MemcachedError {}

/** The call did not complete within its timeout. */
export class MemcachedTimeoutError extends MemcachedError {}

/** Authentication was refused by the server. */
export class MemcachedAuthError extends MemcachedError {}

/** A value could not be serialized or deserialized (e.g. unknown flags). */
export class MemcachedSerdeError extends MemcachedError {}

/** Options given to the client or module are invalid. */
export class MemcachedOptionsError extends MemcachedError {
  /** The option at fault, e.g. `servers[1]` or `failover.deadTimeout`. */
  readonly option: string;
  constructor(option: string, message: string) {
    super(`Invalid memcached option "${option}": ${message}`);
    this.option = option;
  }
}

/** The server sent bytes that are not a valid reply to the pending request. */
export class MemcachedProtocolError extends MemcachedError {}

/**
 * `update` gave up: the value changed between its read and its write on every attempt (other
 * writers keep winning). Retry later, or raise `attempts`.
 */
export class MemcachedConflictError extends MemcachedError {}

import type { MemcachedError } from '../errors.js';
import type { AnyRequest, CommandSpec, Request } from './request.js';

/** What a driver session needs from the connection it serves. */
export interface SessionHost {
  /** Server id, for errors. */
  readonly server: string;
  /** The written request whose reply comes next, or undefined when none is waiting. */
  head(): AnyRequest | undefined;
  /** Removes the head request from the queue (its reply is complete); the caller settles it. */
  shift(): void;
  /** An error reply that belongs to a noreply request: no caller waits for it. */
  stray(error: MemcachedError): void;
}

/** Limits a session enforces on replies. */
export interface SessionLimits {
  /** Longest reply line, bytes. */
  maxLineLength: number;
  /** Largest value delivered; larger ones are read, dropped and fail only their caller. */
  maxValueLength: number;
}

/** Credentials for a connection's handshake. */
export interface DriverAuth {
  username: string;
  password: string;
}

/**
 * The per-connection half of a protocol driver: parses the reply stream and matches each reply
 * to the request at the head of the connection's queue. It knows no socket.
 */
export interface DriverSession {
  /**
   * Feeds bytes exactly as they arrive (split anywhere). Settles requests as their replies
   * complete. Throws MemcachedProtocolError when the stream cannot be trusted any more; the
   * connection must then be dropped.
   */
  feed(chunk: Buffer): void;
  /**
   * A request to write right after a run of noreply requests: its reply proves that they were
   * processed, and any error reply that comes before it belongs to them.
   */
  fence(): Request<'ok'>;
  /**
   * Requests to send, alone and in order, on a new connection before any other (authentication,
   * a version check). `done` is called once all succeeded, `failed` with the first error.
   */
  handshake(done: () => void, failed: (error: MemcachedError) => void): AnyRequest[];
  /** Forgets partial state (a new socket). */
  reset(): void;
}

/**
 * A wire protocol: how requests become bytes, and how a connection's reply stream is read.
 * Everything protocol-specific lives behind this interface.
 */
export interface ProtocolDriver {
  readonly protocol: 'text' | 'meta' | 'binary';
  /** The bytes of a request. */
  encode(spec: CommandSpec): Buffer | Buffer[];
  /** A session for one connection. */
  session(host: SessionHost, limits: SessionLimits, auth: DriverAuth | undefined): DriverSession;
}

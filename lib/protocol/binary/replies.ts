import {
  MemcachedAuthError,
  MemcachedClientError,
  MemcachedError,
  MemcachedProtocolError,
  MemcachedServerError,
  MemcachedUnknownCommandError,
} from '../../errors.js';
import { OPCODE_NAMES, Status } from './constants.js';

/**
 * The error for a non-success status, with the same class the text protocol gives the same
 * failure (`SERVER_ERROR object too large` ⇔ status 0x03, `CLIENT_ERROR cannot increment` ⇔
 * 0x06, ...). `message` is the text the server sent in the body.
 */
export function errorFromStatus(
  status: number,
  message: string,
  command: string,
  server: string,
): MemcachedError {
  const opts = { server, command };
  const said = message === '' ? `status 0x${status.toString(16).padStart(4, '0')}` : message;
  switch (status) {
    case Status.tooLarge:
      return new MemcachedServerError(
        `memcached ${server} failed ${command}: object too large for cache (${said}) (the value exceeds the server item size limit -I; lower maxValueSize or raise -I)`,
        opts,
      );
    case Status.outOfMemory:
      return new MemcachedServerError(
        `memcached ${server} failed ${command}: out of memory storing object (${said}) (the server is out of memory; raise -m or store smaller values)`,
        opts,
      );
    case Status.nonNumeric:
      return new MemcachedClientError(
        `memcached ${server} rejected ${command}: cannot increment or decrement non-numeric value (${said})`,
        opts,
      );
    case Status.invalidArguments:
      return new MemcachedClientError(
        `memcached ${server} rejected ${command}: invalid arguments (${said})`,
        opts,
      );
    case Status.authError:
    case Status.authContinue:
      return new MemcachedAuthError(
        `memcached ${server} refused ${command}: authentication required or refused (${said}); check the auth option (username/password) against the server's SASL database (memcached -S)`,
        opts,
      );
    case Status.unknownCommand:
    case Status.notSupported:
      return new MemcachedUnknownCommandError(
        `memcached ${server} does not know the command "${command}" (${said}); check the server version`,
        opts,
      );
    default:
      return new MemcachedServerError(`memcached ${server} failed ${command}: ${said}`, opts);
  }
}

/** A packet that does not fit the request at the head of the queue: the stream can no longer be trusted. */
export function unexpectedPacket(
  opcode: number,
  status: number,
  expected: string,
  command: string,
  server: string,
): MemcachedProtocolError {
  const name = OPCODE_NAMES[opcode] ?? `0x${opcode.toString(16).padStart(2, '0')}`;
  return new MemcachedProtocolError(
    `memcached ${server} sent a ${name} reply (status 0x${status.toString(16).padStart(4, '0')}) to ${command} (expected ${expected}); the connection was reset`,
    { server, command },
  );
}

/** The cas value of a header as the decimal token the text protocol shows. */
export function casToken(high: number, low: number): string {
  return high === 0 ? String(low) : ((BigInt(high) << 32n) | BigInt(low)).toString();
}

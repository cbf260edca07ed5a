/**
 * Publishing one command on the `memcached:command` TracingChannel, with the event order of
 * `TracingChannel.traceCallback`: `start` and `end` around the synchronous part (the dispatch),
 * then `error` (on failure), `asyncStart`, the caller's continuation, `asyncEnd` when the command
 * settles. A command refused at once (dead server, backpressure) settles inside the dispatch,
 * so its `error` / `asyncStart` / `asyncEnd` come before its `end`, as with `traceCallback`.
 *
 * Callers check `commandChannel.hasSubscribers` first and call these only when it is true, so
 * that no context is built and nothing is allocated for a channel nobody listens to.
 */
import type { ServerAddress } from '../connection/socket.js';
import { commandChannel, type MemcachedCommandContext } from './channels.js';

export { commandChannel } from './channels.js';

/** The context of a command about to be sent to `address`. */
export function commandContext(
  command: string,
  method: string,
  keys: readonly string[],
  noreply: boolean,
  address: ServerAddress,
  protocol: MemcachedCommandContext['protocol'],
): MemcachedCommandContext {
  // A copy: the request's own key list is matched against the reply.
  const copy = keys.slice();
  return address.unix
    ? {
        command,
        method,
        keys: copy,
        keyCount: copy.length,
        server: address.id,
        serverAddress: address.host,
        protocol,
        noreply,
      }
    : {
        command,
        method,
        keys: copy,
        keyCount: copy.length,
        server: address.id,
        serverAddress: address.host,
        serverPort: address.port,
        protocol,
        noreply,
      };
}

/** Runs `send` (the dispatch) between `start` and `end`, inside the stores bound to `start`. */
export function traceStart(context: MemcachedCommandContext, send: () => void): void {
  commandChannel.start.runStores(context, runThenEnd, undefined, context, send);
}

function runThenEnd(context: MemcachedCommandContext, send: () => void): void {
  try {
    send();
  } finally {
    commandChannel.end.publish(context);
  }
}

/** The command succeeded: `asyncStart`, `then(value)`, `asyncEnd`. */
export function traceSucceeded<T>(
  context: MemcachedCommandContext,
  hits: number | undefined,
  then: (value: T) => void,
  value: T,
): void {
  if (hits !== undefined) context.hits = hits;
  try {
    commandChannel.asyncStart.runStores(context, then, undefined, value);
  } finally {
    commandChannel.asyncEnd.publish(context);
  }
}

/** The command failed: `error`, `asyncStart`, `then(error)`, `asyncEnd`. */
export function traceFailed<E>(
  context: MemcachedCommandContext,
  error: E,
  then: (error: E) => void,
): void {
  context.error = error;
  commandChannel.error.publish(context);
  try {
    commandChannel.asyncStart.runStores(context, then, undefined, error);
  } finally {
    commandChannel.asyncEnd.publish(context);
  }
}

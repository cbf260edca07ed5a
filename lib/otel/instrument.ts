import {
  SpanKind,
  SpanStatusCode,
  context,
  diag,
  metrics,
  trace,
  type Attributes,
  type MeterProvider,
  type Span,
  type TracerProvider,
} from '@opentelemetry/api';
import {
  MEMCACHED_CHANNELS,
  commandChannel,
  type MemcachedCommandContext,
} from '../observability/channels.js';
import { DURATION_BUCKETS } from '../observability/conventions.js';

/** Options of {@link instrumentMemcached}. */
export interface InstrumentMemcachedOptions {
  /** Where spans go; default: the global tracer provider (`trace.getTracerProvider()`). */
  tracerProvider?: TracerProvider;
  /** Where the duration histogram goes; default: the global meter provider. */
  meterProvider?: MeterProvider;
  /**
   * Put the keys of each command on its span: `db.memcached.key` for a one-key command,
   * `db.memcached.keys` (a string array) for a multi-get. Keys are as sent, with `keyPrefix`.
   * Off by default, since keys often carry user data; a function maps every key first (to hash
   * or shorten it).
   */
  recordKeys?: boolean | ((key: string) => string);
}

/** The instrumentation scope of the spans and metrics. */
export const INSTRUMENTATION_SCOPE = 'nestjs-memcached';

interface Live {
  span: Span;
  /** performance.now() at start. */
  started: number;
  errorType: string | undefined;
}

/**
 * Turns the `memcached:command` TracingChannel into OpenTelemetry spans and the
 * `db.client.operation.duration` histogram, with the stable database semantic conventions:
 *
 * - one `CLIENT` span per command, named by the command (`get`, `set`, `delete`, ...), child of
 *   the context active where the call was made;
 * - attributes `db.system.name: 'memcached'`, `db.operation.name`, `server.address`,
 *   `server.port` (TCP only), `db.operation.batch.size` (multi-gets, the number of keys),
 *   and on failure `error.type` (the error class name), the exception event and an `ERROR`
 *   status;
 * - the histogram, in seconds, with `db.system.name`, `db.operation.name`, `server.address`,
 *   `server.port` and `error.type`.
 *
 * Values are never recorded; keys only with `recordKeys`. Returns a function that turns the
 * instrumentation off: commands that start afterwards make no span (those in flight still end
 * theirs). Works with any client of this package in the process, and loads no Nest.
 *
 * ```ts
 * import { instrumentMemcached } from 'nestjs-memcached/otel';
 * const off = instrumentMemcached(); // global providers
 * ```
 */
export function instrumentMemcached(options: InstrumentMemcachedOptions = {}): () => void {
  if (options === null || typeof options !== 'object') {
    throw new TypeError('instrumentMemcached: options must be an object');
  }
  const { tracerProvider, meterProvider, recordKeys = false } = options;
  if (tracerProvider !== undefined && typeof tracerProvider.getTracer !== 'function') {
    throw new TypeError(
      'instrumentMemcached: tracerProvider must be an OpenTelemetry TracerProvider',
    );
  }
  if (meterProvider !== undefined && typeof meterProvider.getMeter !== 'function') {
    throw new TypeError(
      'instrumentMemcached: meterProvider must be an OpenTelemetry MeterProvider',
    );
  }
  if (typeof recordKeys !== 'boolean' && typeof recordKeys !== 'function') {
    throw new TypeError('instrumentMemcached: recordKeys must be a boolean or a function of a key');
  }
  const tracer = (tracerProvider ?? trace.getTracerProvider()).getTracer(INSTRUMENTATION_SCOPE);
  const meter = (meterProvider ?? metrics.getMeterProvider()).getMeter(INSTRUMENTATION_SCOPE);
  const duration = meter.createHistogram('db.client.operation.duration', {
    description: 'Duration of database client operations.',
    unit: 's',
    advice: { explicitBucketBoundaries: [...DURATION_BUCKETS] },
  });
  const mapKey = typeof recordKeys === 'function' ? recordKeys : undefined;
  // This instrumentation's state on each context (several instrumentations may coexist).
  const LIVE = Symbol(`${MEMCACHED_CHANNELS.command} span`);
  type Traced = MemcachedCommandContext & { [LIVE]?: Live };
  let inFlight = 0;
  let stopped = false;

  const onStart = (message: unknown): void => {
    const c = message as Traced;
    const attributes: Attributes = {
      'db.system.name': 'memcached',
      'db.operation.name': c.command,
      'server.address': c.serverAddress,
    };
    if (c.serverPort !== undefined) attributes['server.port'] = c.serverPort;
    if (c.keyCount > 1) attributes['db.operation.batch.size'] = c.keyCount;
    if (recordKeys !== false && c.keyCount > 0) {
      try {
        if (c.keyCount === 1) {
          attributes['db.memcached.key'] = mapKey === undefined ? c.keys[0] : mapKey(c.keys[0]!);
        } else {
          attributes['db.memcached.keys'] = mapKey === undefined ? [...c.keys] : c.keys.map(mapKey);
        }
      } catch (error) {
        // A throwing subscriber would crash the process (diagnostics_channel rethrows).
        diag.error('nestjs-memcached/otel: recordKeys threw; the keys are not recorded', error);
      }
    }
    const span = tracer.startSpan(
      c.command,
      { kind: SpanKind.CLIENT, attributes },
      context.active(),
    );
    c[LIVE] = { span, started: performance.now(), errorType: undefined };
    inFlight++;
  };

  const onError = (message: unknown): void => {
    const c = message as Traced;
    const live = c[LIVE];
    if (live === undefined) return;
    const error = c.error;
    live.errorType = errorType(error);
    live.span.setAttribute('error.type', live.errorType);
    if (error instanceof Error) live.span.recordException(error);
    live.span.setStatus({
      code: SpanStatusCode.ERROR,
      message: error instanceof Error ? error.message : String(error),
    });
  };

  const onAsyncEnd = (message: unknown): void => {
    const c = message as Traced;
    const live = c[LIVE];
    if (live === undefined) return;
    c[LIVE] = undefined;
    // Measured before the span ends: the span processors (an exporter) are not the command.
    const ended = performance.now();
    live.span.end();
    const attributes: Attributes = {
      'db.system.name': 'memcached',
      'db.operation.name': c.command,
      'server.address': c.serverAddress,
    };
    if (c.serverPort !== undefined) attributes['server.port'] = c.serverPort;
    if (live.errorType !== undefined) attributes['error.type'] = live.errorType;
    duration.record((ended - live.started) / 1000, attributes);
    inFlight--;
    if (stopped && inFlight === 0) unsubscribeRest();
  };

  const unsubscribeRest = (): void => {
    commandChannel.error.unsubscribe(onError);
    commandChannel.asyncEnd.unsubscribe(onAsyncEnd);
  };

  commandChannel.start.subscribe(onStart);
  commandChannel.error.subscribe(onError);
  commandChannel.asyncEnd.subscribe(onAsyncEnd);
  return () => {
    if (stopped) return;
    stopped = true;
    commandChannel.start.unsubscribe(onStart);
    if (inFlight === 0) unsubscribeRest();
  };
}

/** `error.type`: the error's class name (`MemcachedTimeoutError`, ...), else `_OTHER`. */
function errorType(error: unknown): string {
  if (error instanceof Error) {
    const name = error.constructor?.name;
    return typeof name === 'string' && name !== '' ? name : error.name;
  }
  return '_OTHER';
}

/**
 * The subscribers of the tracing bench clients: `ours-traced` (a plain subscriber on every event
 * of the `memcached:command` TracingChannel, doing almost nothing) and `ours-otel` (the
 * `nestjs-memcached/otel` bridge into the OpenTelemetry SDK: spans through a batch processor to
 * an exporter that drops them, the duration histogram aggregated by a metric reader). Each is
 * attached only while its client runs: channels are process-wide, and `ours` must run with
 * nobody listening.
 */
import * as dc from 'node:diagnostics_channel';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  type ReadableSpan,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import type { MemcachedCommandContext } from '../lib/index.js';
import { instrumentMemcached } from '../lib/otel/index.js';

/** Attaches a subscriber; returns what detaches it. */
export type Attach = () => () => void;

/** Events seen by the plain subscriber (read so that the work is not optimized away). */
export let tracedEvents = 0;

/** A subscriber on all five events that reads the context and counts. */
export const attachPlainSubscriber: Attach = () => {
  const channel = dc.tracingChannel('memcached:command');
  const seen = (message: unknown): void => {
    tracedEvents += (message as MemcachedCommandContext).keyCount > 0 ? 1 : 0;
  };
  const handlers = { start: seen, end: seen, asyncStart: seen, asyncEnd: seen, error: seen };
  channel.subscribe(handlers);
  return () => channel.unsubscribe(handlers);
};

class DroppingExporter implements SpanExporter {
  exported = 0;
  export(spans: ReadableSpan[], done: (result: { code: 0 }) => void): void {
    this.exported += spans.length;
    done({ code: 0 });
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

class IdleReader extends MetricReader {
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

let otel: { tracerProvider: BasicTracerProvider; meterProvider: MeterProvider } | undefined;

/** The OpenTelemetry bridge with an SDK tracer and meter provider (made once). */
export const attachOtel: Attach = () => {
  otel ??= {
    tracerProvider: new BasicTracerProvider({
      spanProcessors: [new BatchSpanProcessor(new DroppingExporter(), { maxQueueSize: 65_536 })],
    }),
    meterProvider: new MeterProvider({ readers: [new IdleReader()] }),
  };
  return instrumentMemcached(otel);
};

import { trace } from '@opentelemetry/api';
import {
  BasicTracerProvider,
  ConsoleSpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { instrumentMemcached } from '../lib/otel/index.js';

/**
 * With `OTEL=console`: an OpenTelemetry tracer provider that prints every span to the console,
 * registered globally, and the memcached instrumentation on it. Returns what turns both off.
 */
export function setupTracing(env: NodeJS.ProcessEnv = process.env): () => Promise<void> {
  if (env['OTEL'] !== 'console') return () => Promise.resolve();
  const provider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(new ConsoleSpanExporter())],
  });
  trace.setGlobalTracerProvider(provider);
  const off = instrumentMemcached();
  return async () => {
    off();
    trace.disable();
    await provider.shutdown();
  };
}

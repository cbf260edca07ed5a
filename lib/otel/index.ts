/**
 * `nestjs-memcached/otel`: OpenTelemetry spans and metrics from the client's
 * `node:diagnostics_channel` channels. Needs `@opentelemetry/api` (an optional peer dependency);
 * loads no Nest.
 */
export { instrumentMemcached, INSTRUMENTATION_SCOPE } from './instrument.js';
export type { InstrumentMemcachedOptions } from './instrument.js';

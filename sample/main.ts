import { Logger } from '@nestjs/common';
import { createApp } from './app.js';
import { setupTracing } from './tracing.js';

async function main(): Promise<void> {
  // OTEL=console: every memcached command as an OpenTelemetry span on stdout.
  setupTracing();
  const app = await createApp();
  app.enableShutdownHooks();
  const port = Number(process.env['PORT'] ?? 3000);
  await app.startAllMicroservices();
  await app.listen(port);
  const base = `http://localhost:${port}`;
  const logger = new Logger('Sample');
  logger.log(`memcached servers: ${process.env['MEMCACHED_SERVERS'] ?? '127.0.0.1:11211'}`);
  logger.log(
    [
      `listening on ${base}; try:`,
      `  curl ${base}/products              (slow the first time, then cached for 30 s)`,
      `  curl ${base}/products/1            (the service method is cached for 60 s)`,
      `  curl ${base}/products/1/page       (meta client: one render under a lease, then served`,
      `                                       stale for 5 min past its 60 s while one request re-renders)`,
      `  curl -X PATCH ${base}/products/1 -H 'content-type: application/json' -d '{"price": 199}'`,
      `                                       (evicts product:1 and the list, marks page:1 stale)`,
      `  curl -i ${base}/stock              (CacheInterceptor + KeyvMemcached: X-Cache MISS, then HIT)`,
      `  curl ${base}/health                (terminus: ok / degraded / 503)`,
      `  curl ${base}/metrics               (Prometheus: commands, durations, cache hits, servers)`,
      `  (start with OTEL=console to print every memcached command as an OpenTelemetry span,`,
      `   with SAMPLE_TCP_PORT=3001 to serve the cached product.price message handler over TCP)`,
    ].join('\n'),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

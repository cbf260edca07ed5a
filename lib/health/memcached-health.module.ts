import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { MemcachedHealthIndicator } from './memcached.health.js';

/**
 * Provides {@link MemcachedHealthIndicator} (and imports `TerminusModule` for it). Alternatively
 * list `MemcachedHealthIndicator` in your own `providers` beside `TerminusModule`.
 */
@Module({
  imports: [TerminusModule],
  providers: [MemcachedHealthIndicator],
  exports: [MemcachedHealthIndicator],
})
export class MemcachedHealthModule {}

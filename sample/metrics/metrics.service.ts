import { Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { Registry } from 'prom-client';
import { InjectMemcached, MemcachedService } from '../../lib/index.js';
import { collectMemcachedMetrics } from '../../lib/prometheus/index.js';

/** The app's Prometheus registry, with the metrics of both memcached clients. */
@Injectable()
export class MetricsService implements OnModuleInit, OnModuleDestroy {
  readonly register = new Registry();
  private stop: (() => void) | undefined;

  constructor(
    private readonly cache: MemcachedService,
    @InjectMemcached('counters') private readonly counters: MemcachedService,
  ) {}

  onModuleInit(): void {
    this.stop = collectMemcachedMetrics({
      register: this.register,
      clients: [this.cache, this.counters],
    });
  }

  onModuleDestroy(): void {
    this.stop?.();
  }
}

import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService, type HealthCheckResult } from '@nestjs/terminus';
import { MemcachedHealthIndicator } from '../../lib/health/index.js';

@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly memcached: MemcachedHealthIndicator,
  ) {}

  /** 200 `ok` (all servers up), 200 `degraded` (some down), 503 (a client has no server up). */
  @Get()
  @HealthCheck()
  check(): Promise<HealthCheckResult> {
    return this.health.check([
      () => this.memcached.pingCheck('memcached', { timeout: 300 }),
      () => this.memcached.pingCheck('memcached-counters', { name: 'counters', timeout: 300 }),
    ]);
  }
}

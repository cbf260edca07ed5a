import { Injectable } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import type { MemcachedService } from '../memcached.service.js';
import { describeClient, getMemcachedToken } from '../memcached.utils.js';

/** Options of {@link MemcachedHealthIndicator.pingCheck}. */
export interface MemcachedPingCheckOptions {
  /** Name of the memcached client to check; default: the default client. */
  name?: string;
  /** ms each server has to answer `version`; default: the client's `timeout`. */
  timeout?: number;
}

/** One server in the result of {@link MemcachedHealthIndicator.pingCheck}. */
export interface MemcachedServerHealth {
  status: 'up' | 'down';
  /** Round-trip time of `version`, ms (also given for a failed attempt). */
  latencyMs?: number;
  /** Why the server is down. */
  error?: string;
}

/** Extra data of the indicator result, beside `status`. */
export interface MemcachedHealthDetails {
  /** Every server of the client, keyed by server id. */
  servers: Record<string, MemcachedServerHealth>;
  /** Set when not every server is up. */
  message?: string;
}

/**
 * A terminus health indicator for memcached clients (terminus 11 and 12).
 *
 * `pingCheck(key)` sends `version` to every server of the client:
 * - every server answers → `up`;
 * - some do → `degraded` on terminus 12 (the overall check stays HTTP 200 with status
 *   `degraded`); terminus 11 has no degraded state, there it is `up` with a `message` and the
 *   per-server detail;
 * - none does → `down` (the check fails with 503).
 *
 * The result always carries `servers: { [serverId]: { status, latencyMs?, error? } }`. It never
 * throws, and it uses the client's own connections (no extra sockets per check).
 *
 * ```ts
 * @Get('health') @HealthCheck()
 * check() { return this.health.check([() => this.memcached.pingCheck('memcached', { timeout: 300 })]); }
 * ```
 */
@Injectable()
export class MemcachedHealthIndicator {
  constructor(
    private readonly indicators: HealthIndicatorService,
    private readonly moduleRef: ModuleRef,
  ) {}

  /**
   * Checks the servers of the client named `options.name` (default client without it).
   * @param key - the key of this indicator in the health check result.
   */
  async pingCheck<const Key extends string>(
    key: Key,
    options: MemcachedPingCheckOptions = {},
  ): Promise<HealthIndicatorResult<Key>> {
    const session = this.indicators.check(key);
    try {
      let service: MemcachedService;
      try {
        service = this.moduleRef.get<MemcachedService>(getMemcachedToken(options.name), {
          strict: false,
        });
      } catch {
        return session.down({ message: `${describeClient(options.name)} is not registered` });
      }
      const timeout =
        typeof options.timeout === 'number' &&
        options.timeout > 0 &&
        Number.isFinite(options.timeout)
          ? Math.ceil(options.timeout)
          : undefined;
      const results = await service.client.ping(timeout);
      const servers: Record<string, MemcachedServerHealth> = {};
      let up = 0;
      for (const [id, result] of Object.entries(results)) {
        const latencyMs = Math.round(result.latencyMs * 10) / 10;
        if (result.ok) {
          up++;
          servers[id] = { status: 'up', latencyMs };
        } else {
          servers[id] = {
            status: 'down',
            latencyMs,
            error: result.error?.message ?? 'no answer',
          };
        }
      }
      const total = Object.keys(servers).length;
      if (total > 0 && up === total) return session.up({ servers });
      const message = `${total - up} of ${total} memcached servers do not answer`;
      if (up === 0) return session.down({ message, servers });
      const withDegraded = session as typeof session & { degraded?: unknown };
      if (typeof withDegraded.degraded === 'function') {
        return session.degraded({ message, servers });
      }
      return session.up({ message, servers });
    } catch (error) {
      return session.down({
        message: `memcached health check failed: ${error instanceof Error ? error.message : String(error)}`,
      });
    }
  }
}

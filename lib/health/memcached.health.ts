import { Injectable } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import type { MemcachedClient } from '../client/memcached-client.js';
import type { MemcachedService } from '../memcached.service.js';
import type { ServerPoolStats } from '../observability/pool-stats.js';
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
  /**
   * The client marks the server dead (failover: its keys go to the other servers until a probe
   * succeeds): reported `down` even when it answers the ping.
   */
  dead?: true;
  /** With `dead`: since when (ISO 8601). */
  deadSince?: string;
}

/** Extra data of the indicator result, beside `status`. */
export interface MemcachedHealthDetails {
  /** Every server of the client, keyed by server id. */
  servers: Record<string, MemcachedServerHealth>;
  /** Set when not every server is up. */
  message?: string;
}

/** The client's pool and failover state, or nothing for a client without `poolStats`. */
function poolStatsOf(service: MemcachedService): Partial<Record<string, ServerPoolStats>> {
  const client = service.client as Partial<Pick<MemcachedClient, 'poolStats'>>;
  return typeof client.poolStats === 'function' ? client.poolStats() : {};
}

/** A server the client marks dead: `down`, whatever the ping said. */
function deadServer(
  pool: ServerPoolStats,
  latencyMs: number,
  answered: boolean,
): MemcachedServerHealth {
  const since = pool.deadSince?.toISOString();
  const last = pool.lastError === undefined ? '' : ` after: ${pool.lastError}`;
  const ping = answered
    ? '; it answers ping now and rejoins when its next probe succeeds'
    : '; it does not answer ping';
  return {
    status: 'down',
    latencyMs,
    dead: true,
    ...(since === undefined ? {} : { deadSince: since }),
    error: `marked dead by the client${since === undefined ? '' : ` since ${since}`}${last}${ping}`,
  };
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
 * The result always carries `servers: { [serverId]: { status, latencyMs?, error?, dead?,
 * deadSince? } }`. A server the client marks dead (failover) is `down` with `dead: true` and
 * `deadSince` even when it answers the ping: the client sends it no calls until a probe brings
 * it back. It never throws, and it uses the client's own connections (no extra sockets per
 * check).
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
      const pools = poolStatsOf(service);
      const servers: Record<string, MemcachedServerHealth> = {};
      let up = 0;
      let deadAnswering = 0;
      for (const [id, result] of Object.entries(results)) {
        const latencyMs = Math.round(result.latencyMs * 10) / 10;
        const pool = pools[id];
        if (pool?.dead === true) {
          if (result.ok) deadAnswering++;
          servers[id] = deadServer(pool, latencyMs, result.ok);
        } else if (result.ok) {
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
      const message =
        deadAnswering === 0
          ? `${total - up} of ${total} memcached servers do not answer`
          : `${total - up} of ${total} memcached servers are down (${deadAnswering} of them answer but the client marks them dead)`;
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

import type { Logger } from '@nestjs/common';

/** Default quiet period after a logged cache failure of one kind, ms. */
export const DEFAULT_REPORT_INTERVAL_MS = 30_000;

/**
 * Logs cache failures without flooding: at most one warning per error kind (the error's class
 * name) per `intervalMs`; the next warning of that kind says how many were left out meanwhile.
 * Uses timestamps only, so it keeps no timer alive.
 * @internal
 */
export class CacheErrorReporter {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly logger: Pick<Logger, 'warn'>,
    private readonly clientName: string,
    private readonly intervalMs = DEFAULT_REPORT_INTERVAL_MS,
  ) {}

  /**
   * Reports `error`, met while `doing` (e.g. `reading "product:1"`), unless one of its kind was
   * reported less than `intervalMs` ago.
   */
  report(doing: string, error: unknown): void {
    const kind = error instanceof Error ? error.name : typeof error;
    const now = Date.now();
    const entry = this.last.get(kind);
    if (entry !== undefined && now - entry.at < this.intervalMs) {
      entry.suppressed++;
      return;
    }
    const suppressed = entry?.suppressed ?? 0;
    this.last.set(kind, { at: now, suppressed: 0 });
    const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    const message = /[.?!]$/.test(text) ? text : `${text}.`;
    const more =
      suppressed > 0
        ? ` ${suppressed} more ${kind} failure(s) were not logged before this one.`
        : '';
    this.logger.warn(
      `memcached client "${this.clientName}": cache failure while ${doing}; the call went on without the cache: ${message}${more} Further ${kind} failures are logged at most once per ${Math.round(this.intervalMs / 1000)} s.`,
    );
  }
}

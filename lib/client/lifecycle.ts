import { MemcachedConnectionError } from '../errors.js';

interface Sleeper {
  timer: NodeJS.Timeout;
  resolve: () => void;
  reject: (error: MemcachedConnectionError) => void;
  command: string;
}

/**
 * Whether a client is closed, and the waits it started (retry delays): closing settles every
 * one of them at once and leaves no timer behind.
 */
export class Lifecycle {
  private isClosed = false;
  private readonly sleepers = new Set<Sleeper>();

  get closed(): boolean {
    return this.isClosed;
  }

  /** The error of a call made after close(). */
  closedError(command: string): MemcachedConnectionError {
    return new MemcachedConnectionError(
      `${command}: the memcached client is closed; create a new client`,
      { command },
    );
  }

  /** Waits `ms`; rejects at once with MemcachedConnectionError if the client closes meanwhile. */
  sleep(ms: number, command: string): Promise<void> {
    if (this.isClosed) return Promise.reject(this.closedError(command));
    return new Promise<void>((resolve, reject) => {
      const sleeper: Sleeper = {
        timer: setTimeout(() => {
          this.sleepers.delete(sleeper);
          resolve();
        }, ms),
        resolve,
        reject,
        command,
      };
      this.sleepers.add(sleeper);
    });
  }

  /** Marks the client closed and rejects every wait in progress. */
  close(): void {
    this.isClosed = true;
    for (const s of this.sleepers) {
      clearTimeout(s.timer);
      s.reject(
        new MemcachedConnectionError(
          `${s.command}: the memcached client was closed while the call waited to be retried`,
          { command: s.command },
        ),
      );
    }
    this.sleepers.clear();
  }
}

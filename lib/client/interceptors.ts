import {
  MemcachedAuthError,
  MemcachedBackpressureError,
  MemcachedConnectionError,
  MemcachedError,
  MemcachedProtocolError,
  MemcachedServerError,
  MemcachedTimeoutError,
} from '../errors.js';
import type { ResolvedOptions } from '../options.js';

/** What an interceptor knows about the call it wraps. */
export interface CommandContext {
  /** Client method name (`get`, `getMany`, `incr`, ...). */
  readonly command: string;
  /** The keys of the call, as given (without prefix). */
  readonly keys: readonly string[];
  /** 1 for the first attempt; incremented by the retry interceptor. */
  attempt: number;
  /** What the call resolves to when its error is ignored (a miss or `false`). */
  readonly fallback: unknown;
}

/**
 * Wraps a command: may call `next()` (the rest of the chain and the command) zero or more times
 * and return or transform its result.
 */
export type Interceptor = (ctx: CommandContext, next: () => Promise<unknown>) => Promise<unknown>;

/** Commands that are never repeated by retry unless listed in `retry.unsafeCommands`. */
export const UNSAFE_COMMANDS: ReadonlySet<string> = new Set([
  'incr',
  'decr',
  'append',
  'prepend',
  'cas',
  'add',
]);

/** Errors that mean the server or the network failed, or is overloaded (not the caller's input). */
export function isIgnorableError(error: unknown): error is MemcachedError {
  return (
    error instanceof MemcachedConnectionError ||
    error instanceof MemcachedBackpressureError ||
    error instanceof MemcachedTimeoutError ||
    error instanceof MemcachedProtocolError ||
    error instanceof MemcachedServerError ||
    error instanceof MemcachedAuthError
  );
}

const DEFAULT_RETRY_ON: ReadonlyArray<new (...args: never[]) => Error> = [
  MemcachedConnectionError,
  MemcachedTimeoutError,
  MemcachedProtocolError,
];

/** Waits between attempts; rejects at once when the client closes. */
export type Sleep = (ms: number, command: string) => Promise<void>;

/** Retries safe commands on transient errors, waiting `delay` ms between attempts. */
export function retryInterceptor(policy: ResolvedOptions['retry'], sleep: Sleep): Interceptor {
  const retryOn = policy.retryOn ?? DEFAULT_RETRY_ON;
  const doNotRetryOn = policy.doNotRetryOn ?? [];
  const optIn = new Set<string>(policy.unsafeCommands);
  return async (ctx, next) => {
    const repeatable = !UNSAFE_COMMANDS.has(ctx.command) || optIn.has(ctx.command);
    for (;;) {
      try {
        return await next();
      } catch (err) {
        const retry =
          repeatable &&
          ctx.attempt < policy.attempts &&
          retryOn.some((c) => err instanceof c) &&
          !doNotRetryOn.some((c) => err instanceof c);
        if (!retry) throw err;
        ctx.attempt++;
        if (policy.delay > 0) await sleep(policy.delay, ctx.command);
      }
    }
  };
}

/** Turns server and network errors into the call's fallback (a miss or `false`), reporting them. */
export function ignoreErrorsInterceptor(
  report: (command: string, error: MemcachedError) => void,
): Interceptor {
  return async (ctx, next) => {
    try {
      return await next();
    } catch (err) {
      if (!isIgnorableError(err)) throw err;
      report(ctx.command, err);
      return ctx.fallback;
    }
  };
}

/** The interceptor chain for a client's options, outermost first. */
export function buildInterceptors(
  options: ResolvedOptions,
  report: (command: string, error: MemcachedError) => void,
  sleep: Sleep,
): Interceptor[] {
  const chain: Interceptor[] = [];
  if (options.ignoreErrors) chain.push(ignoreErrorsInterceptor(report));
  if (options.retry.attempts > 1) chain.push(retryInterceptor(options.retry, sleep));
  return chain;
}

/**
 * Runs `run` through the chain: each interceptor's `next` runs the rest of the chain and may be
 * called again (retry). Never throws synchronously.
 */
export function runIntercepted<T>(
  chain: readonly Interceptor[],
  ctx: CommandContext,
  run: () => Promise<T>,
): Promise<T> {
  const start = (): Promise<T> => {
    try {
      return run();
    } catch (err) {
      return Promise.reject(err);
    }
  };
  if (chain.length === 0) return start();
  const call = (index: number): Promise<unknown> =>
    index === chain.length ? start() : chain[index]!(ctx, () => call(index + 1));
  return call(0) as Promise<T>;
}

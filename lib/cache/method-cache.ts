import { MemcachedOptionsError } from '../errors.js';
import type { MemcachedProtocol } from '../options.js';
import type { CacheCall } from './cache-aside.js';
import { defaultCacheKey } from './method-key.js';
import { resolveCachePolicy, type CachePolicy } from './options.js';
import { checkTags } from './tags.js';

/**
 * The per-call logic of `@Cacheable` / `@CacheEvict` (and the error policy `getOrSet` shares):
 * option checks, key derivation, `condition` / `unless`, eviction. Framework-free: the Nest
 * explorer only finds the decorated methods, resolves their client and calls `compile*` here.
 *
 * Error policy: a cache failure (a server down, a key function that throws, a value that cannot
 * be stored) is reported through the client's rate-limited reporter and the call goes on
 * without the cache; it never fails the decorated call. Errors of the method itself propagate.
 *
 * Per-call options resolved from the arguments go through {@link CacheablePlan} /
 * {@link EvictPlan}: a new one (such as `tags`, a string array or a function of the arguments)
 * is a field of the raw options, one {@link stringListOption} call in `compileCacheable` /
 * `compileEvict`, a field of the plan, and what the target does with it (`run` gets it with the
 * call; an eviction calls a new `MethodCacheTarget` method such as `invalidateTags`).
 */

/** What decorated methods need from one client. Registered per `MemcachedService`. */
export interface MethodCacheTarget {
  /** The client as messages name it (`the default memcached client`, `memcached client "x"`). */
  readonly description: string;
  readonly protocol: MemcachedProtocol;
  readonly keyPrefix: string;
  /** The client's cache-aside flow (single flights, leases); never rejects for cache failures. */
  run(
    key: string,
    compute: () => unknown,
    policy: CachePolicy,
    call: Omit<CacheCall, 'report'>,
  ): Promise<unknown>;
  /** Logs a cache failure (rate-limited). */
  report(doing: string, error: unknown): void;
  /** Deletes keys (marking values being computed for them as not to be stored). */
  delete(keys: readonly string[]): Promise<unknown>;
  /** Marks a key stale (meta protocol). */
  invalidate(key: string): Promise<unknown>;
  /** Invalidates tags (every value stored under them becomes a miss). */
  invalidateTags(tags: readonly string[]): Promise<unknown>;
}

const targets = new WeakMap<object, MethodCacheTarget>();

/** @internal Records what the decorated methods using `owner` (a MemcachedService) need. */
export function registerMethodCacheTarget(owner: object, target: MethodCacheTarget): void {
  targets.set(owner, target);
}

/** @internal The target of a MemcachedService, if it is one of this package's own. */
export function methodCacheTargetOf(owner: object): MethodCacheTarget | undefined {
  return targets.get(owner);
}

/** Runs `compute` through the target's cache-aside flow, reporting failures through it. */
export function runCached(
  target: MethodCacheTarget,
  key: string,
  compute: () => unknown,
  policy: CachePolicy,
  call: Omit<CacheCall, 'report'> = {},
): Promise<unknown> {
  return target.run(key, compute, policy, call);
}

/** Deletes (or, with `stale`, invalidates) `keys`; failures are reported, never thrown. */
export async function evictKeys(
  target: MethodCacheTarget,
  keys: readonly string[],
  stale: boolean,
  label?: string,
): Promise<void> {
  if (keys.length === 0) return;
  try {
    if (stale) await Promise.all(keys.map((key) => target.invalidate(key)));
    else await target.delete(keys);
  } catch (error) {
    const what = keys.map((k) => `"${k}"`).join(', ');
    target.report(
      `${stale ? 'invalidating' : 'evicting'} ${what}${label === undefined ? '' : ` (${label})`}`,
      error,
    );
  }
}

/** Invalidates `tags`; failures are reported, never thrown. */
export async function evictTags(
  target: MethodCacheTarget,
  tags: readonly string[],
  label?: string,
): Promise<void> {
  if (tags.length === 0) return;
  try {
    await target.invalidateTags(tags);
  } catch (error) {
    const what = tags.map((t) => `"${t}"`).join(', ');
    target.report(
      `invalidating the tags ${what}${label === undefined ? '' : ` (${label})`}`,
      error,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Per-call values: a constant, or a function of the method's arguments.

type ArgsFn = (...args: unknown[]) => unknown;

/** A per-call value resolved from the arguments (`key`, `keys`, `tags`). */
export type ArgsResolver<V> = (args: readonly unknown[]) => V;

/**
 * Checks an option that is a non-empty string or a function of the arguments returning one,
 * and returns its resolver (throwing TypeError at call time for a bad returned value).
 */
export function stringOption(
  value: unknown,
  where: string,
  name: string,
): ArgsResolver<string> | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string' && value !== '') return () => value;
  if (typeof value !== 'function') {
    throw new TypeError(
      `${where}: ${name} must be a non-empty string or a function of the arguments`,
    );
  }
  const fn = value as ArgsFn;
  return (args) => {
    const result = fn(...args);
    if (typeof result !== 'string' || result === '') {
      throw new TypeError(
        `the ${name} function returned ${JSON.stringify(result)}, not a non-empty string`,
      );
    }
    return result;
  };
}

/**
 * Checks an option that is a string array or a function of the arguments returning one (`keys`
 * of `@CacheEvict`; the same shape suits tags), and returns its resolver: deduplicated non-empty
 * strings, TypeError at call time otherwise.
 */
export function stringListOption(
  value: unknown,
  where: string,
  name: string,
): ArgsResolver<string[]> | undefined {
  if (value === undefined) return undefined;
  const check = (raw: unknown): string[] => {
    if (typeof raw === 'string' && raw !== '') return [raw];
    if (!Array.isArray(raw) || !raw.every((k) => typeof k === 'string' && k !== '')) {
      throw new TypeError(`the ${name} must be non-empty strings, got ${JSON.stringify(raw)}`);
    }
    return [...new Set(raw as string[])];
  };
  if (Array.isArray(value)) {
    const list = check(value);
    return () => list;
  }
  if (typeof value !== 'function') {
    throw new TypeError(`${where}: ${name} must be a string array or a function of the arguments`);
  }
  const fn = value as ArgsFn;
  return (args) => check(fn(...args));
}

/**
 * Checks `tags`: a string array (checked now, so a bad tag fails the boot with
 * MemcachedKeyError) or a function of the arguments returning one (checked at call time; a bad
 * result throws, and the caller bypasses the cache or skips the invalidation, logged).
 */
export function tagsOption(
  value: unknown,
  where: string,
): ArgsResolver<readonly string[]> | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) {
    const tags = checkTags(value, `${where}: tags`);
    return () => tags;
  }
  if (typeof value !== 'function') {
    throw new TypeError(`${where}: tags must be a string array or a function of the arguments`);
  }
  const fn = value as ArgsFn;
  return (args) => checkTags(fn(...args), 'the tags function returned a bad value');
}

function functionOption(value: unknown, where: string, name: string): ArgsFn | undefined {
  if (value !== undefined && typeof value !== 'function') {
    throw new TypeError(`${where}: ${name} must be a function`);
  }
  return value as ArgsFn | undefined;
}

// ---------------------------------------------------------------------------------------------
// Compiled decorations

/** Where a decorated method lives: names for keys and messages. */
export interface MethodSite {
  /** `<host module>/<class>`, the scope of default keys (see cacheScope). */
  readonly scope: string;
  readonly className: string;
  readonly methodName: string;
  /** Logs a warning (once-only decisions such as "results are Observables"). */
  readonly warn: (message: string) => void;
}

/** The original method (or the next wrapper), called with the instance and the arguments. */
export type NextCall = (self: unknown, args: unknown[]) => unknown;

/** One decoration of one method for one client, ready to call. */
export type CompiledCall = (self: unknown, args: unknown[], next: NextCall) => unknown;

/**
 * What `@Cacheable` resolves per call from the arguments. New per-call options (such as tags)
 * become fields here, resolved in {@link compileCacheable} with {@link stringListOption}.
 */
export interface CacheablePlan {
  readonly key: string;
  /** Tags of the result (empty: untagged). */
  readonly tags: readonly string[];
}

/** What `@CacheEvict` resolves per call from the arguments. */
export interface EvictPlan {
  readonly keys: string[];
  readonly tags: readonly string[];
}

/** @Cacheable options as the explorer reads them from the metadata (unchecked). */
export interface RawCacheableOptions {
  key?: unknown;
  ttl?: unknown;
  condition?: unknown;
  unless?: unknown;
  staleWhileRevalidate?: unknown;
  lease?: unknown;
  tags?: unknown;
}

/** @CacheEvict options as read from the metadata (unchecked). */
export interface RawEvictOptions {
  key?: unknown;
  keys?: unknown;
  tags?: unknown;
  beforeInvocation?: unknown;
  stale?: unknown;
}

/**
 * Checks `@Cacheable` options against the client (throws the boot errors: bad options, lease /
 * staleWhileRevalidate on a non-meta client) and returns the call.
 */
export function compileCacheable(
  options: RawCacheableOptions,
  site: MethodSite,
  target: MethodCacheTarget,
): CompiledCall {
  const label = `${site.className}.${site.methodName}`;
  const where = `@Cacheable on ${label}`;
  const { ttl, staleWhileRevalidate, lease } = options;
  if (ttl !== undefined && (typeof ttl !== 'number' || !Number.isInteger(ttl))) {
    throw new TypeError(`${where}: ttl must be an integer number of seconds, got ${String(ttl)}`);
  }
  const explicitKey = stringOption(options.key, where, 'key');
  const condition = functionOption(options.condition, where, 'condition');
  const unless = functionOption(options.unless, where, 'unless');
  const policy = resolveCachePolicy(
    { ttl, staleWhileRevalidate, lease },
    target.protocol,
    `${where} (${target.description})`,
  );
  const tagsOf = tagsOption(options.tags, where);
  const keyOf: ArgsResolver<string> =
    explicitKey ?? ((args) => defaultCacheKey(site.scope, site.methodName, args, target.keyPrefix));
  const plan = (args: readonly unknown[]): CacheablePlan => ({
    key: keyOf(args),
    tags: tagsOf === undefined ? [] : tagsOf(args),
  });
  // The policy of each tag list (a constant list: one).
  const policyFor = (tags: readonly string[]): CachePolicy =>
    tags.length === 0 ? policy : { ...policy, tags };
  let passThrough = false;
  const onUncacheable = (): void => {
    if (passThrough) return;
    passThrough = true;
    site.warn(
      `${label} returned an Observable or a stream: such results are not cached; later calls skip the cache`,
    );
  };
  return (self, args, next) => {
    if (passThrough) return next(self, args);
    return (async () => {
      if (condition !== undefined) {
        let use: boolean;
        try {
          use = condition(...args) !== false;
        } catch (error) {
          target.report(`evaluating "condition" of ${label}`, error);
          use = false;
        }
        if (!use) return next(self, args);
      }
      let planned: CacheablePlan;
      try {
        planned = plan(args);
      } catch (error) {
        target.report(`computing the cache key or tags of ${label}`, error);
        return next(self, args);
      }
      return runCached(target, planned.key, () => next(self, args), policyFor(planned.tags), {
        label,
        unless: unless === undefined ? undefined : (result) => Boolean(unless(result, ...args)),
        onUncacheable,
      });
    })();
  };
}

/** Checks `@CacheEvict` options against the client and returns the call. */
export function compileEvict(
  options: RawEvictOptions,
  site: MethodSite,
  target: MethodCacheTarget,
): CompiledCall {
  const label = `${site.className}.${site.methodName}`;
  const where = `@CacheEvict on ${label}`;
  const { key, keys, beforeInvocation, stale } = options;
  if (stale !== undefined && typeof stale !== 'boolean') {
    throw new TypeError(`${where}: stale must be true or false`);
  }
  if (key !== undefined && keys !== undefined) {
    throw new TypeError(`${where}: give one of key and keys, not both`);
  }
  if (key === undefined && keys === undefined && options.tags === undefined) {
    throw new TypeError(`${where}: give key, keys or tags`);
  }
  if (Array.isArray(key)) {
    throw new TypeError(`${where}: key must be a non-empty string or a function of the arguments`);
  }
  if (typeof keys === 'string') {
    throw new TypeError(`${where}: keys must be a string array or a function of the arguments`);
  }
  const one = stringOption(key, where, 'key');
  const many = stringListOption(keys, where, 'keys to evict');
  if (stale === true && target.protocol !== 'meta') {
    throw new MemcachedOptionsError(
      'protocol',
      `${where} asks for stale: true, which marks entries stale with the meta protocol; ${target.description} uses protocol '${target.protocol}' (register it with protocol: 'meta', or drop stale)`,
    );
  }
  const tagsOf = tagsOption(options.tags, where);
  const plan = (args: readonly unknown[]): EvictPlan => {
    let keys: string[] = [];
    let tags: readonly string[] = [];
    try {
      keys = one !== undefined ? [one(args)] : many !== undefined ? many(args) : [];
    } catch (error) {
      target.report(`computing the keys to evict of ${label}`, error);
    }
    try {
      tags = tagsOf === undefined ? [] : tagsOf(args);
    } catch (error) {
      target.report(`computing the tags to invalidate of ${label}`, error);
    }
    return { keys, tags };
  };
  const evict = async (args: readonly unknown[]): Promise<void> => {
    const planned = plan(args);
    await Promise.all([
      evictKeys(target, planned.keys, stale === true, label),
      evictTags(target, planned.tags, label),
    ]);
  };
  return async (self, args, next) => {
    if (beforeInvocation === true) await evict(args);
    const result = await next(self, args);
    if (beforeInvocation !== true) await evict(args);
    return result;
  };
}

/** The calls of one method (`@CacheEvict` around `@Cacheable` when it has both) as one call. */
export function composeCalls(calls: readonly CompiledCall[]): CompiledCall {
  return calls.reduce<CompiledCall>(
    (inner, outer) => (self, args, next) => outer(self, args, (s, a) => inner(s, a, next)),
    (self, args, next) => next(self, args),
  );
}

import type { MemcachedProtocol } from './options.js';
import 'reflect-metadata';
import { Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, ModuleRef } from '@nestjs/core';
import { resolveCachePolicy } from './cache/options.js';
import type { CacheableOptions, CacheEvictOptions } from './decorators/cache-options.js';
import { MemcachedOptionsError } from './errors.js';
import { CACHEABLE_METADATA, CACHE_EVICT_METADATA, WRAPPED_METHOD } from './memcached.constants.js';
import type { MemcachedService } from './memcached.service.js';
import { describeClient, getMemcachedToken } from './memcached.utils.js';
import { defaultCacheKey } from './utils/cache-key.js';

type AnyMethod = (this: unknown, ...args: unknown[]) => unknown;
type Call = (self: unknown, args: unknown[]) => unknown;

/** Whether `type` (from `design:returntype`) is an Observable class. */
function isObservableClass(type: unknown): boolean {
  if (typeof type !== 'function') return false;
  const proto = (type as { prototype?: Record<string, unknown> }).prototype;
  return (
    proto !== undefined &&
    typeof proto['subscribe'] === 'function' &&
    typeof proto['pipe'] === 'function'
  );
}

/** The protocol of a registered client. */
function protocolOf(service: MemcachedService): MemcachedProtocol {
  return service.client.options?.protocol ?? 'text';
}

function checkTtl(ttl: unknown, where: string): void {
  if (ttl !== undefined && (typeof ttl !== 'number' || !Number.isInteger(ttl))) {
    throw new TypeError(`${where}: ttl must be an integer number of seconds, got ${String(ttl)}`);
  }
}

/**
 * Wraps the methods of controllers and providers that carry `@Cacheable` / `@CacheEvict`
 * metadata. Runs once per application: from `MemcachedCoreModule.configure()` in HTTP
 * applications (that is before Nest registers the routes, which capture the handler functions),
 * else from `onModuleInit`.
 *
 * The wrapper is installed as an own property of the instance (the class prototype is left
 * alone, so several applications in one process do not interfere); it carries every metadata
 * key of the original method, so route, guard, interceptor and other decorators keep working.
 * @internal
 */
@Injectable()
export class MemcachedExplorer implements OnModuleInit {
  private readonly logger = new Logger('MemcachedCache');
  private explored = false;

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly moduleRef: ModuleRef,
  ) {}

  onModuleInit(): void {
    this.explore();
  }

  /** Wraps every decorated method once. Throws on invalid decorator options. */
  explore(): void {
    if (this.explored) return;
    this.explored = true;
    const warnedClasses = new Set<unknown>();
    for (const wrapper of [...this.discovery.getControllers(), ...this.discovery.getProviders()]) {
      if (wrapper.isAlias) continue;
      const candidates: unknown[] = wrapper.isTransient
        ? wrapper.getStaticTransientInstances().map((host) => host?.instance)
        : [wrapper.instance];
      const isStatic = wrapper.isDependencyTreeStatic();
      for (const instance of candidates) {
        if (typeof instance !== 'object' || instance === null) continue;
        const prototype: unknown = Object.getPrototypeOf(instance);
        if (typeof prototype !== 'object' || prototype === null || prototype === Object.prototype) {
          continue;
        }
        for (const methodName of this.scanner.getAllMethodNames(prototype)) {
          const decorated = (prototype as Record<string, unknown>)[methodName];
          if (typeof decorated !== 'function') continue;
          const cacheable = Reflect.getMetadata(CACHEABLE_METADATA, decorated) as
            CacheableOptions | undefined;
          const evict = Reflect.getMetadata(CACHE_EVICT_METADATA, decorated) as
            CacheEvictOptions | undefined;
          if (cacheable === undefined && evict === undefined) continue;
          const className = (instance as object).constructor.name;
          if (!isStatic) {
            if (!warnedClasses.has(prototype)) {
              warnedClasses.add(prototype);
              this.logger.warn(
                `${className} is request-scoped: its @Cacheable/@CacheEvict methods are not wrapped; put them on a singleton provider it calls`,
              );
            }
            continue;
          }
          this.wrap(
            instance as Record<string, unknown>,
            prototype,
            methodName,
            decorated as AnyMethod,
            {
              className,
              cacheable,
              evict,
            },
          );
        }
      }
    }
  }

  private resolveClient(name: string | undefined, where: string): MemcachedService {
    try {
      return this.moduleRef.get<MemcachedService>(getMemcachedToken(name), { strict: false });
    } catch {
      const register =
        name === undefined
          ? 'MemcachedModule.forRoot(...) / forRootAsync(...)'
          : `MemcachedModule.forRoot({ name: '${name}', ... })`;
      throw new Error(
        `${where} uses ${describeClient(name)}, which is not registered: import ${register}`,
      );
    }
  }

  private wrap(
    instance: Record<string, unknown>,
    prototype: object,
    methodName: string,
    decorated: AnyMethod,
    meta: { className: string; cacheable?: CacheableOptions; evict?: CacheEvictOptions },
  ): void {
    const current = instance[methodName] as AnyMethod;
    if ((current as unknown as Record<symbol, unknown>)[WRAPPED_METHOD] === true) return;
    const label = `${meta.className}.${methodName}`;
    const returnType: unknown = Reflect.getMetadata('design:returntype', prototype, methodName);
    if (isObservableClass(returnType)) {
      this.logger.warn(
        `${label} returns an Observable: @Cacheable/@CacheEvict do not apply to Observable-returning methods and leave it as is`,
      );
      return;
    }
    let call: Call = (self, args) => current.apply(self, args);
    if (meta.cacheable !== undefined) {
      call = this.cacheableCall(call, meta.cacheable, label, meta.className, methodName);
    }
    if (meta.evict !== undefined) call = this.evictCall(call, meta.evict, label);
    const outer = call;
    const wrapper = function (this: unknown, ...args: unknown[]): unknown {
      return outer(this, args);
    };
    for (const source of new Set([decorated, current])) {
      for (const key of Reflect.getMetadataKeys(source) as unknown[]) {
        Reflect.defineMetadata(key, Reflect.getMetadata(key, source), wrapper);
      }
    }
    Object.defineProperty(wrapper, 'name', { value: current.name, configurable: true });
    Object.defineProperty(wrapper, 'length', { value: current.length, configurable: true });
    Object.defineProperty(wrapper, WRAPPED_METHOD, { value: true });
    Object.defineProperty(instance, methodName, {
      value: wrapper,
      writable: true,
      configurable: true,
      enumerable: false,
    });
  }

  private cacheableCall(
    next: Call,
    options: CacheableOptions,
    label: string,
    className: string,
    methodName: string,
  ): Call {
    const where = `@Cacheable on ${label}`;
    const { key, ttl, condition, unless, staleWhileRevalidate, lease } = options;
    checkTtl(ttl, where);
    if (
      key !== undefined &&
      !(typeof key === 'function' || (typeof key === 'string' && key !== ''))
    ) {
      throw new TypeError(
        `${where}: key must be a non-empty string or a function of the arguments`,
      );
    }
    for (const [name, fn] of [
      ['condition', condition],
      ['unless', unless],
    ] as const) {
      if (fn !== undefined && typeof fn !== 'function') {
        throw new TypeError(`${where}: ${name} must be a function`);
      }
    }
    const service = this.resolveClient(options.client, where);
    // Throws for lease / staleWhileRevalidate on a client without protocol 'meta', or bad numbers.
    const policy = resolveCachePolicy(
      { ttl, staleWhileRevalidate, lease },
      protocolOf(service),
      `${where} (${describeClient(options.client)})`,
    );
    const keyPrefix = service.client.options.keyPrefix;
    const logger = this.logger;
    let passThrough = false;
    const onUncacheable = (): void => {
      if (passThrough) return;
      passThrough = true;
      logger.warn(
        `${label} returned an Observable or a stream: such results are not cached; later calls skip the cache`,
      );
    };
    return (self, args) => {
      if (passThrough) return next(self, args);
      return (async () => {
        if (condition !== undefined) {
          let use: boolean;
          try {
            use = condition(...args) !== false;
          } catch (error) {
            service.reporter.report(`evaluating "condition" of ${label}`, error);
            use = false;
          }
          if (!use) return next(self, args);
        }
        let cacheKey: unknown;
        try {
          cacheKey =
            typeof key === 'string'
              ? key
              : typeof key === 'function'
                ? key(...args)
                : defaultCacheKey(className, methodName, args, keyPrefix);
          if (typeof cacheKey !== 'string' || cacheKey === '') {
            throw new TypeError(
              `the key function returned ${JSON.stringify(cacheKey)}, not a non-empty string`,
            );
          }
        } catch (error) {
          service.reporter.report(`computing the cache key of ${label}`, error);
          return next(self, args);
        }
        return service.cacheAside(cacheKey, () => next(self, args), {
          policy,
          label,
          unless: unless === undefined ? undefined : (result) => unless(result, ...args),
          onUncacheable,
        });
      })();
    };
  }

  private evictCall(next: Call, options: CacheEvictOptions, label: string): Call {
    const where = `@CacheEvict on ${label}`;
    const { key, keys, beforeInvocation, stale } = options;
    if (stale !== undefined && typeof stale !== 'boolean') {
      throw new TypeError(`${where}: stale must be true or false`);
    }
    const valid = (v: unknown): boolean =>
      typeof v === 'function' || (typeof v === 'string' && v !== '') || Array.isArray(v);
    if ((key === undefined) === (keys === undefined)) {
      throw new TypeError(`${where}: give exactly one of key and keys`);
    }
    if (key !== undefined && (!valid(key) || Array.isArray(key))) {
      throw new TypeError(
        `${where}: key must be a non-empty string or a function of the arguments`,
      );
    }
    if (keys !== undefined && (!valid(keys) || typeof keys === 'string')) {
      throw new TypeError(`${where}: keys must be a string array or a function of the arguments`);
    }
    const service = this.resolveClient(options.client, where);
    if (stale === true && protocolOf(service) !== 'meta') {
      throw new MemcachedOptionsError(
        'protocol',
        `${where} asks for stale: true, which marks entries stale with the meta protocol; ${describeClient(options.client)} uses protocol '${protocolOf(service)}' (register it with protocol: 'meta', or drop stale)`,
      );
    }
    const keysOf = (args: unknown[]): string[] => {
      try {
        const raw: unknown =
          key !== undefined
            ? typeof key === 'function'
              ? key(...args)
              : key
            : typeof keys === 'function'
              ? keys(...args)
              : keys;
        const list = Array.isArray(raw) ? (raw as unknown[]) : [raw];
        if (!list.every((k) => typeof k === 'string' && k !== '')) {
          throw new TypeError(
            `the keys to evict must be non-empty strings, got ${JSON.stringify(raw)}`,
          );
        }
        return [...new Set(list as string[])];
      } catch (error) {
        service.reporter.report(`computing the keys to evict of ${label}`, error);
        return [];
      }
    };
    return async (self, args) => {
      if (beforeInvocation === true) await service.evict(keysOf(args), label, stale === true);
      const result = await next(self, args);
      if (beforeInvocation !== true) await service.evict(keysOf(args), label, stale === true);
      return result;
    };
  }
}

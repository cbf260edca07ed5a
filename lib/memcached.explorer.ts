import 'reflect-metadata';
import {
  Injectable,
  Logger,
  type BeforeApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { DiscoveryService, MetadataScanner, ModuleRef } from '@nestjs/core';
import type { InstanceWrapper } from '@nestjs/core/injector/instance-wrapper.js';
import {
  compileCacheable,
  compileEvict,
  composeCalls,
  methodCacheTargetOf,
  type CompiledCall,
  type MethodCacheTarget,
  type MethodSite,
  type RawCacheableOptions,
  type RawEvictOptions,
} from './cache/method-cache.js';
import { cacheScope } from './cache/method-key.js';
import {
  decoratedMethodOf,
  MethodCacheApp,
  type DecoratedMethod,
} from './cache/method-registry.js';
import { CACHEABLE_METADATA, CACHE_EVICT_METADATA } from './memcached.constants.js';
import type { MemcachedService } from './memcached.service.js';
import { describeClient, getMemcachedToken } from './memcached.utils.js';

type Class = abstract new (...args: never[]) => unknown;

/**
 * Finds the controllers and providers with `@Cacheable` / `@CacheEvict` methods when the
 * application initializes, checks their options against the clients (invalid ones fail the
 * boot) and registers each instance and class with the application's compiled calls (see
 * lib/cache/method-registry.ts). The decorators installed the wrappers on the prototypes, so
 * the order of Nest's boot steps does not matter: a wrapper looks its application up per call.
 * The registrations are dropped before the application shuts down.
 * @internal
 */
@Injectable()
export class MemcachedExplorer implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('MemcachedCache');
  private app: MethodCacheApp | undefined;

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly moduleRef: ModuleRef,
  ) {}

  onModuleInit(): void {
    this.explore();
  }

  beforeApplicationShutdown(): void {
    this.app?.close();
  }

  /** Registers every decorated method once. Throws on invalid decorator options. */
  explore(): void {
    if (this.app !== undefined) return;
    const app = new MethodCacheApp((message) => this.logger.warn(message));
    const wrappers = [...this.discovery.getControllers(), ...this.discovery.getProviders()];
    const pending: Array<() => void> = [];
    /** `scope.method` of default keys → class, to refuse two classes sharing default keys. */
    const defaultKeys = new Map<string, Class>();
    for (const wrapper of wrappers) {
      for (const instance of this.instancesOf(wrapper)) app.addMember(instance);
    }
    for (const wrapper of wrappers) {
      if (wrapper.isAlias) continue;
      const cls = this.classOf(wrapper);
      if (cls === undefined) continue;
      const prototype = cls.prototype as object;
      const moduleName = wrapper.host?.metatype?.name || 'Module';
      const scope = cacheScope(moduleName, cls.name);
      const calls = new Map<DecoratedMethod, CompiledCall>();
      for (const methodName of this.scanner.getAllMethodNames(prototype)) {
        const fn = (prototype as Record<string, unknown>)[methodName];
        if (typeof fn !== 'function') continue;
        const cacheable = Reflect.getMetadata(CACHEABLE_METADATA, fn) as
          (RawCacheableOptions & { client?: string }) | undefined;
        const evict = Reflect.getMetadata(CACHE_EVICT_METADATA, fn) as
          (RawEvictOptions & { client?: string }) | undefined;
        if (cacheable === undefined && evict === undefined) continue;
        const label = `${cls.name}.${methodName}`;
        const decorated = decoratedMethodOf(fn);
        if (decorated === undefined) {
          this.logger.warn(
            `${label} returns an Observable: @Cacheable/@CacheEvict do not apply to Observable-returning methods and leave it as is`,
          );
          continue;
        }
        const site: MethodSite = {
          scope,
          className: cls.name,
          methodName,
          warn: (message) => this.logger.warn(message),
        };
        const compiled: CompiledCall[] = [];
        if (cacheable !== undefined) {
          const target = this.resolveTarget(cacheable.client, `@Cacheable on ${label}`);
          compiled.push(compileCacheable(cacheable, site, target));
          if (cacheable.key === undefined) {
            const id = `${target.description}:${scope}.${methodName}`;
            const other = defaultKeys.get(id);
            if (other !== undefined && other !== cls) {
              throw new Error(
                `@Cacheable on ${label}: two different classes named ${cls.name} in modules named ${moduleName} would share the default keys ${scope}.${methodName}(...); give @Cacheable a key, or rename one class or module`,
              );
            }
            defaultKeys.set(id, cls);
          }
        }
        if (evict !== undefined) {
          const target = this.resolveTarget(evict.client, `@CacheEvict on ${label}`);
          compiled.push(compileEvict(evict, site, target));
        }
        calls.set(decorated, composeCalls(compiled));
      }
      if (calls.size === 0) continue;
      const instances = this.instancesOf(wrapper);
      pending.push(() => app.bind(cls, instances, calls));
    }
    // Bind only once every option checked out: a failing boot leaves nothing registered.
    for (const bind of pending) bind();
    this.app = app;
  }

  /** The instances Nest created at boot (none for request-scoped providers). */
  private instancesOf(wrapper: InstanceWrapper): object[] {
    let candidates: unknown[];
    try {
      if (!wrapper.isDependencyTreeStatic()) return [];
      candidates = wrapper.isTransient
        ? wrapper.getStaticTransientInstances().map((host) => host?.instance)
        : [wrapper.instance];
    } catch {
      return [];
    }
    return candidates.filter(
      (c): c is object => (typeof c === 'object' || typeof c === 'function') && c !== null,
    );
  }

  /** The class whose prototype holds the provider's methods, if it is a class provider. */
  private classOf(wrapper: InstanceWrapper): Class | undefined {
    const [instance] = this.instancesOf(wrapper);
    if (instance !== undefined && typeof instance === 'object') {
      const ctor = (instance as { constructor?: unknown }).constructor;
      if (typeof ctor === 'function' && ctor !== Object) return ctor as Class;
    }
    const metatype = wrapper.metatype;
    if (
      (wrapper.inject === undefined || wrapper.inject === null) &&
      typeof metatype === 'function' &&
      typeof metatype.prototype === 'object' &&
      metatype.prototype !== null
    ) {
      return metatype as Class;
    }
    return undefined;
  }

  private resolveTarget(name: string | undefined, where: string): MethodCacheTarget {
    let service: MemcachedService;
    try {
      service = this.moduleRef.get<MemcachedService>(getMemcachedToken(name), { strict: false });
    } catch {
      const register =
        name === undefined
          ? 'MemcachedModule.forRoot(...) / forRootAsync(...)'
          : `MemcachedModule.forRoot({ name: '${name}', ... })`;
      throw new Error(
        `${where} uses ${describeClient(name)}, which is not registered: import ${register}`,
      );
    }
    const target = methodCacheTargetOf(service);
    if (target === undefined) {
      throw new Error(
        `${where}: the provider of ${describeClient(name)} is not a MemcachedService of this package`,
      );
    }
    return target;
  }
}

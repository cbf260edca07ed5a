import 'reflect-metadata';
import type { CompiledCall } from './method-cache.js';

/**
 * The prototype-level wrappers of `@Cacheable` / `@CacheEvict` and how they find their cache.
 *
 * The decorator replaces the method on the class prototype, at decoration time, with a wrapper
 * that carries every metadata key of the original (so route, guard, pattern and resolver
 * decorators applied before or after it keep working, and every handler Nest binds, HTTP,
 * microservice, gateway or resolver, goes through it). At call time the wrapper looks up `this`:
 *
 * 1. an instance an application registered (its singletons and static transient instances):
 *    that application's compiled call;
 * 2. otherwise (an instance created later: request-scoped, transient resolved on demand) the
 *    live applications that registered its class: if exactly one did, that one; if several did,
 *    the one that owns an object the instance holds in an own property (its injected
 *    dependencies); if that still leaves more than one, the call bypasses the cache (logged
 *    once per class), so an instance never reads another application's cache;
 * 3. no application (before init, after close, a plain `new` outside Nest): the original
 *    method, as if undecorated.
 */

type Method = (this: unknown, ...args: unknown[]) => unknown;
type Class = abstract new (...args: never[]) => unknown;

/** Marks (and holds the record of) a wrapper installed by the decorators. */
const DECORATED = Symbol.for('nestjs-memcached:decorated-method');

/** One decorated method of one class. */
export interface DecoratedMethod {
  /** The method the wrapper calls. */
  readonly original: Method;
  /** The wrapper on the prototype. */
  readonly wrapper: Method;
  /** Metadata keys written by the decorators on it (`CACHEABLE_METADATA`, ...). */
  readonly kinds: Set<string>;
}

/** The compiled calls of one class's decorated methods, for one application and host module. */
export type MethodCalls = ReadonlyMap<DecoratedMethod, CompiledCall>;

/** The record of a decorator wrapper, or `undefined` for any other function. */
export function decoratedMethodOf(fn: unknown): DecoratedMethod | undefined {
  if (typeof fn !== 'function') return undefined;
  return (fn as unknown as Record<symbol, DecoratedMethod | undefined>)[DECORATED];
}

/**
 * Installs the wrapper of `descriptor.value` (or adds `metadataKey` to the one already there)
 * and stores `value` under `metadataKey` on it. Returns the descriptor to use.
 */
export function decorateMethod(
  descriptor: PropertyDescriptor,
  metadataKey: string,
  value: object,
  wrap: boolean,
): PropertyDescriptor {
  const current = descriptor.value as Method;
  const existing = decoratedMethodOf(current);
  if (existing !== undefined) {
    existing.kinds.add(metadataKey);
    Reflect.defineMetadata(metadataKey, value, current);
    return descriptor;
  }
  if (!wrap) {
    Reflect.defineMetadata(metadataKey, value, current);
    return descriptor;
  }
  const original = current;
  const wrapper = function (this: unknown, ...args: unknown[]): unknown {
    const call = findCall(this, record);
    if (call === undefined) return original.apply(this, args);
    return call(this, args, (self, a) => original.apply(self, a));
  };
  const record: DecoratedMethod = { original, wrapper, kinds: new Set([metadataKey]) };
  for (const key of Reflect.getOwnMetadataKeys(original) as unknown[]) {
    Reflect.defineMetadata(key, Reflect.getOwnMetadata(key, original), wrapper);
  }
  Reflect.defineMetadata(metadataKey, value, wrapper);
  Object.defineProperty(wrapper, 'name', { value: original.name, configurable: true });
  Object.defineProperty(wrapper, 'length', { value: original.length, configurable: true });
  Object.defineProperty(wrapper, DECORATED, { value: record });
  return { ...descriptor, value: wrapper };
}

// ---------------------------------------------------------------------------------------------
// Registrations

interface ClassBinding {
  readonly app: MethodCacheApp;
  readonly calls: MethodCalls;
}

interface RegistryState {
  readonly byInstance: WeakMap<object, ClassBinding>;
  readonly byClass: WeakMap<Class, ClassBinding[]>;
  readonly warnedAmbiguous: WeakSet<Class>;
}

/**
 * One registry per process, also when the package is loaded twice (two copies in one
 * `node_modules` tree): a wrapper installed by one copy's decorator then finds the registrations
 * of the other copy's module (the wrapper record is under a registered symbol too).
 */
const REGISTRY = Symbol.for('nestjs-memcached:method-registry@1');
const state: RegistryState = ((globalThis as Record<symbol, RegistryState | undefined>)[
  REGISTRY
] ??= {
  byInstance: new WeakMap(),
  byClass: new WeakMap(),
  warnedAmbiguous: new WeakSet(),
});
const { byInstance, byClass, warnedAmbiguous } = state;

/**
 * The decorated methods of one application. The Nest explorer creates one per application,
 * binds every instance and class it found, and closes it on shutdown.
 */
export class MethodCacheApp {
  private live = true;
  /** Every instance the application holds (to tell which application an unknown instance uses). */
  private readonly members = new WeakSet<object>();
  private readonly classes = new Set<Class>();

  constructor(private readonly warn: (message: string) => void) {}

  /** Records an object of this application (a provider or controller instance). */
  addMember(instance: object): void {
    this.members.add(instance);
  }

  /** Binds the instances of `cls` found by the application (and later ones) to `calls`. */
  bind(cls: Class, instances: readonly object[], calls: MethodCalls): void {
    const binding: ClassBinding = { app: this, calls };
    for (const instance of instances) byInstance.set(instance, binding);
    const list = byClass.get(cls) ?? [];
    list.push(binding);
    byClass.set(cls, list);
    this.classes.add(cls);
  }

  /** Whether the application holds `value`. */
  owns(value: object): boolean {
    return this.members.has(value);
  }

  get isLive(): boolean {
    return this.live;
  }

  /** Unbinds everything: later calls of the application's instances run uncached. */
  close(): void {
    if (!this.live) return;
    this.live = false;
    for (const cls of this.classes) {
      const list = byClass.get(cls)?.filter((b) => b.app !== this) ?? [];
      if (list.length === 0) byClass.delete(cls);
      else byClass.set(cls, list);
    }
    this.classes.clear();
  }

  /** @internal */
  warnOnce(cls: Class, message: string): void {
    if (warnedAmbiguous.has(cls)) return;
    warnedAmbiguous.add(cls);
    this.warn(message);
  }
}

function findCall(self: unknown, method: DecoratedMethod): CompiledCall | undefined {
  if ((typeof self !== 'object' && typeof self !== 'function') || self === null) return undefined;
  const known = byInstance.get(self);
  if (known !== undefined && known.app.isLive) return known.calls.get(method);
  const cls = (self as { constructor?: unknown }).constructor;
  if (typeof cls !== 'function') return undefined;
  const candidates = byClass.get(cls as Class)?.filter((b) => b.calls.has(method));
  if (candidates === undefined || candidates.length === 0) return undefined;
  let chosen: ClassBinding | undefined = candidates.length === 1 ? candidates[0] : undefined;
  if (chosen === undefined) {
    // Several live applications (or host modules) registered this class: the one owning the
    // instance's injected dependencies, if exactly one does.
    const owners = new Set<ClassBinding>();
    for (const value of Object.values(self)) {
      if (typeof value !== 'object' || value === null) continue;
      for (const candidate of candidates) if (candidate.app.owns(value)) owners.add(candidate);
    }
    if (owners.size === 1) chosen = [...owners][0];
  }
  if (chosen === undefined) {
    candidates[0]!.app.warnOnce(
      cls as Class,
      `${(cls as Class).name} is registered by ${candidates.length} live applications (or modules) and this instance could not be told apart by its dependencies: its @Cacheable/@CacheEvict methods run without the cache`,
    );
    return undefined;
  }
  byInstance.set(self, chosen);
  return chosen.calls.get(method);
}

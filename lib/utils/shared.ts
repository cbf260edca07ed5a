/**
 * One value per process realm for `name`, shared by every copy of this package that is loaded
 * (the ESM build and the CommonJS build, say): the first copy to ask stores its value, later
 * copies get that one. Used for the class that serves as an injection token, so that
 * `MemcachedService` is the same class whichever build a file imported it from.
 * @internal
 */
export function sharedAcrossCopies<T>(name: string, value: T): T {
  const registry = globalThis as unknown as Record<symbol, T | undefined>;
  const key = Symbol.for(`nestjs-memcached@1:${name}`);
  const existing = registry[key];
  if (existing !== undefined) return existing;
  Object.defineProperty(registry, key, { value, configurable: false, enumerable: false });
  return value;
}

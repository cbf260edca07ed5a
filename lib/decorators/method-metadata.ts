import 'reflect-metadata';
import { decorateMethod } from '../cache/method-registry.js';

/** Whether `type` (from `design:returntype`) is an Observable class. */
export function isObservableClass(type: unknown): boolean {
  if (typeof type !== 'function') return false;
  const proto = (type as { prototype?: Record<string, unknown> }).prototype;
  return (
    proto !== undefined &&
    typeof proto['subscribe'] === 'function' &&
    typeof proto['pipe'] === 'function'
  );
}

/**
 * A method decorator that stores `value` under `key` on the method and replaces the method on
 * the prototype with the caching wrapper (see lib/cache/method-registry.ts), refusing anything
 * that is not a method. A method declared to return an Observable keeps its function (only the
 * metadata is written; the explorer warns that it is not cached).
 * @internal
 */
export function methodMetadataDecorator(
  decoratorName: string,
  key: string,
  value: object,
): (target: object, propertyKey: string | symbol, descriptor: PropertyDescriptor) => void {
  return (target, propertyKey, descriptor) => {
    const method: unknown = descriptor.value;
    if (typeof method !== 'function') {
      const owner =
        typeof target === 'function'
          ? (target as { name: string }).name
          : (target as { constructor: { name: string } }).constructor.name;
      throw new TypeError(
        `@${decoratorName}() goes on methods; ${owner}.${String(propertyKey)} is not a method`,
      );
    }
    const returnType: unknown = Reflect.getMetadata('design:returntype', target, propertyKey);
    const next = decorateMethod(descriptor, key, value, !isObservableClass(returnType));
    if (next.value === descriptor.value) return;
    // In place, for callers that pass one descriptor to several decorators (applyDecorators)...
    descriptor.value = next.value;
    // ...and on the prototype at once, for callers that do not define the descriptor they get
    // back (`Reflect.decorate` called directly). TypeScript defines it again afterwards.
    const own = Object.getOwnPropertyDescriptor(target, propertyKey);
    if (own !== undefined && own.value === method && own.configurable === true) {
      Object.defineProperty(target, propertyKey, { ...own, value: next.value });
    }
  };
}

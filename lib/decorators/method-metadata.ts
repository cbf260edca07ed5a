import 'reflect-metadata';

/**
 * A method decorator that stores `value` under `key` on the method function (as Nest's
 * `SetMetadata` does), refusing anything that is not a method.
 * @internal
 */
export function methodMetadataDecorator(
  decoratorName: string,
  key: string,
  value: object,
): MethodDecorator {
  return (target, propertyKey, descriptor) => {
    const method: unknown = descriptor.value;
    if (typeof method !== 'function') {
      const owner = typeof target === 'function' ? target.name : target.constructor.name;
      throw new TypeError(
        `@${decoratorName}() goes on methods; ${owner}.${String(propertyKey)} is not a method`,
      );
    }
    Reflect.defineMetadata(key, value, method);
    return descriptor;
  };
}

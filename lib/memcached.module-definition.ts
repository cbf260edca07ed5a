import { ConfigurableModuleBuilder, type DynamicModule, type Provider } from '@nestjs/common';
import { MemcachedOptionsError } from './errors.js';
import type { MemcachedOptions } from './options.js';
import {
  DEFAULT_MEMCACHED_NAME,
  MEMCACHED_CLIENT_NAME,
  MEMCACHED_MODULE_OPTIONS,
} from './memcached.constants.js';
import { MemcachedCoreModule } from './memcached-core.module.js';
import { validateMemcachedOptions } from './memcached.options.js';
import { MemcachedService } from './memcached.service.js';
import { describeClient, getMemcachedToken } from './memcached.utils.js';

/** Extra options of `forRoot` / `forRootAsync` (beside the client options). */
export interface MemcachedModuleExtras {
  /** Register the client globally (no need to import the module elsewhere). Default `false`. */
  isGlobal?: boolean;
  /**
   * Name of the client, for several clients side by side; inject it with
   * `@InjectMemcached(name)`. Default: the default client, injected as `MemcachedService`.
   */
  name?: string;
}

/** Options of `MemcachedModule.forRoot` and what a `forRootAsync` factory returns. */
export type MemcachedModuleOptions = MemcachedOptions;

/** @internal */
export const {
  ConfigurableModuleClass: ConfigurableMemcachedModule,
  OPTIONS_TYPE: MEMCACHED_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: MEMCACHED_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<MemcachedModuleOptions>({
  optionsInjectionToken: MEMCACHED_MODULE_OPTIONS,
})
  .setClassMethodName('forRoot')
  .setFactoryMethodName('createMemcachedOptions')
  .setExtras<MemcachedModuleExtras>(
    { isGlobal: false, name: DEFAULT_MEMCACHED_NAME },
    (definition, extras) => withClient(definition, extras),
  )
  .build();

/**
 * Validates the options (class-validator rules, then the client's own checks) and creates the
 * service; a problem fails the application's boot with a message naming the option and client.
 * @internal
 */
export function createMemcachedService(options: unknown, name: string): MemcachedService {
  try {
    validateMemcachedOptions(options);
    return new MemcachedService(options as MemcachedOptions, name);
  } catch (error) {
    if (error instanceof MemcachedOptionsError) {
      const detail = error.message.replace(/^Invalid memcached option "[^"]*": /, '');
      throw new MemcachedOptionsError(error.option, `${detail} (${describeClient(name)})`);
    }
    throw error;
  }
}

function withClient(definition: DynamicModule, extras: MemcachedModuleExtras): DynamicModule {
  const name = extras.name ?? DEFAULT_MEMCACHED_NAME;
  const token = getMemcachedToken(name);
  const providers: Provider[] = [
    ...(definition.providers ?? []),
    { provide: MEMCACHED_CLIENT_NAME, useValue: name },
    {
      provide: token,
      useFactory: createMemcachedService,
      inject: [MEMCACHED_MODULE_OPTIONS, MEMCACHED_CLIENT_NAME],
    },
  ];
  return {
    ...definition,
    global: extras.isGlobal === true,
    imports: [...(definition.imports ?? []), MemcachedCoreModule],
    providers,
    exports: [...(definition.exports ?? []), token],
  };
}

/** Options of `MemcachedModule.forRoot`: client options plus `isGlobal` and `name`. */
export type MemcachedModuleForRootOptions = typeof MEMCACHED_OPTIONS_TYPE;
/** Options of `MemcachedModule.forRootAsync`: `imports`, `inject`, `useFactory` | `useClass` | `useExisting`, plus `isGlobal` and `name`. */
export type MemcachedModuleAsyncOptions = typeof MEMCACHED_ASYNC_OPTIONS_TYPE;

/**
 * Implement it on a class used with `forRootAsync({ useClass })` or `useExisting`.
 */
export interface MemcachedOptionsFactory {
  createMemcachedOptions(): MemcachedModuleOptions | Promise<MemcachedModuleOptions>;
}

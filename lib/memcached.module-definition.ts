import { ConfigurableModuleBuilder, type DynamicModule, type Provider } from '@nestjs/common';
import { MemcachedOptionsError } from './errors.js';
import { resolveOptions, type MemcachedOptions } from './options.js';
import {
  DEFAULT_MEMCACHED_NAME,
  MEMCACHED_CLIENT_NAME,
  MEMCACHED_MODULE_OPTIONS,
} from './memcached.constants.js';
import { MemcachedCoreModule } from './memcached-core.module.js';
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
 * Validates the options with the client's own `resolveOptions` (the one validator and list of
 * option names `new MemcachedClient` uses) and creates the service; a problem fails the
 * application's boot with a message naming the option and the client.
 * @internal
 */
export function createMemcachedService(options: unknown, name: string): MemcachedService {
  try {
    if (options === undefined) {
      // resolveOptions() would take this as "all defaults"; here it is a factory that forgot to
      // return its options.
      throw new MemcachedOptionsError('options', 'expected an options object, got undefined');
    }
    resolveOptions(options as MemcachedOptions);
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

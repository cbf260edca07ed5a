/**
 * MemcachedModule, MemcachedService, @Cacheable / @CacheEvict and the lifecycle, in Nest
 * testing modules against memcached servers started by the harness.
 */
import 'reflect-metadata';
import type { EventEmitter } from 'node:events';
import {
  Controller,
  Get,
  Header,
  HttpCode,
  Inject,
  Injectable,
  Module,
  Param,
  SetMetadata,
  UseGuards,
  type CanActivate,
  type ExecutionContext,
  type INestApplication,
  type INestApplicationContext,
  type ModuleMetadata,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { isObservable, lastValueFrom, Observable, of, toArray } from 'rxjs';
import request from 'supertest';
import {
  Cacheable,
  CacheEvict,
  defaultCacheKey,
  getMemcachedToken,
  InjectMemcached,
  MemcachedClient,
  MemcachedConnectionError,
  MemcachedModule,
  MemcachedOptionsError,
  MemcachedService,
  type MemcachedOptionsFactory,
} from '../../lib/index.js';
import {
  rawGet,
  serverStats,
  startMemcached,
  startMemcacheds,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';
import { CaptureLogger } from '../harness/nest.js';
import { validOptionValues, withValidValue } from '../harness/option-values.js';
import { MEMCACHED_OPTION_NAMES } from '../../lib/options.js';

// ---------------------------------------------------------------------------------------------
// Helpers

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const logger = new CaptureLogger();
const open: INestApplicationContext[] = [];

/** Compiles and initializes a testing module (an HTTP app with `http`). */
async function boot(metadata: ModuleMetadata): Promise<INestApplicationContext>;
async function boot(metadata: ModuleMetadata, http: true): Promise<INestApplication>;
async function boot(metadata: ModuleMetadata, http = false): Promise<INestApplicationContext> {
  const moduleRef = await Test.createTestingModule(metadata).setLogger(logger).compile();
  const app = http ? moduleRef.createNestApplication({ logger }) : moduleRef;
  open.push(app);
  await app.init();
  return app;
}

/** The boot error of `metadata` (compile or init). */
async function bootError(metadata: ModuleMetadata): Promise<Error> {
  try {
    const moduleRef = await Test.createTestingModule(metadata).setLogger(logger).compile();
    open.push(moduleRef);
    await moduleRef.init();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the application to fail to boot');
}

let s1: MemcachedProcess;
let s2: MemcachedProcess;
let s3: MemcachedProcess;

beforeAll(async () => {
  [s1, s2, s3] = (await startMemcacheds(3)) as [
    MemcachedProcess,
    MemcachedProcess,
    MemcachedProcess,
  ];
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((app) => app.close()));
  logger.messages.length = 0;
});

afterAll(async () => {
  await stopAllMemcached();
});

// ---------------------------------------------------------------------------------------------
// Type-level checks: MemcachedService has every public method of MemcachedClient, with a
// compatible type (`npm run typecheck` fails otherwise).

type MethodsOf<T> = {
  [K in keyof T as T[K] extends (...args: never[]) => unknown ? K : never]: T[K];
};
type ClientMethods = Omit<MethodsOf<MemcachedClient>, keyof EventEmitter>;
type Assert<T extends true> = T;
export type ServiceHasClientMethods = Assert<
  MethodsOf<MemcachedService> extends ClientMethods ? true : false
>;
/** Every client method by name (the `satisfies` fails when the client gains or loses one). */
const CLIENT_METHODS = {
  get: true,
  getMany: true,
  gets: true,
  getsMany: true,
  getAndTouch: true,
  set: true,
  setMany: true,
  add: true,
  replace: true,
  append: true,
  prepend: true,
  cas: true,
  delete: true,
  deleteMany: true,
  incr: true,
  decr: true,
  touch: true,
  flushAll: true,
  stats: true,
  version: true,
  ping: true,
  poolStats: true,
  serverFor: true,
  update: true,
  setServers: true,
  refreshServers: true,
  resetDeadServers: true,
  getOrSet: true,
  invalidate: true,
  invalidateTags: true,
  close: true,
} as const satisfies Record<keyof ClientMethods, true>;
export type NoExtraMethods = Assert<
  Exclude<keyof typeof CLIENT_METHODS, keyof ClientMethods> extends never ? true : false
>;

// ---------------------------------------------------------------------------------------------
// Fixtures

const CONFIG = Symbol('CONFIG');

@Injectable()
class NeedsCache {
  constructor(readonly cache: MemcachedService) {}
}

@Module({ providers: [NeedsCache], exports: [NeedsCache] })
class FeatureModule {}

interface Item {
  id: string;
  n: number;
}

@Injectable()
class Catalog {
  readonly calls: Record<string, number> = {};

  private hit(name: string): number {
    this.calls[name] = (this.calls[name] ?? 0) + 1;
    return this.calls[name];
  }

  @Cacheable({ key: (id: string) => `item:${id}`, ttl: 60 })
  async byKeyFn(id: string): Promise<Item> {
    const n = this.hit('byKeyFn');
    await sleep(50);
    return { id, n };
  }

  @Cacheable()
  async byDefaultKey(filter: Record<string, unknown>, page: number): Promise<Item> {
    return { id: `${JSON.stringify(filter)}/${page}`, n: this.hit('byDefaultKey') };
  }

  @Cacheable({ key: (id: string) => `cond:${id}`, condition: (id: string) => id !== 'skip' })
  async conditional(id: string): Promise<Item> {
    return { id, n: this.hit('conditional') };
  }

  @Cacheable({
    key: (id: string) => `unless:${id}`,
    unless: (result: { keep: boolean }) => !result.keep,
  })
  async withUnless(id: string, keep: boolean): Promise<{ id: string; keep: boolean; n: number }> {
    return { id, keep, n: this.hit('withUnless') };
  }

  @Cacheable({ key: (id: string) => `sync:${id}` })
  syncMethod(id: string): Item {
    return { id, n: this.hit('syncMethod') };
  }

  @Cacheable({ key: 'undefined-result' })
  async returnsUndefined(): Promise<undefined> {
    this.hit('returnsUndefined');
    return undefined;
  }

  @Cacheable({ key: 'observable' })
  observable(): Observable<number> {
    this.hit('observable');
    return of(1, 2, 3);
  }

  @Cacheable({ key: 'observable-untyped' })
  observableUntyped(): unknown {
    this.hit('observableUntyped');
    return of(4, 5);
  }

  @CacheEvict({ key: (id: string) => `item:${id}` })
  async evictAfter(id: string, fail = false): Promise<string> {
    this.hit('evictAfter');
    if (fail) throw new Error(`update of ${id} failed`);
    return `updated ${id}`;
  }

  @CacheEvict({ keys: (id: string) => [`item:${id}`, `sync:${id}`], beforeInvocation: true })
  async evictBefore(id: string, fail = false): Promise<string> {
    this.hit('evictBefore');
    if (fail) throw new Error(`update of ${id} failed`);
    return `updated ${id}`;
  }
}

const ROLES = 'test:roles';

@Injectable()
class RolesGuard implements CanActivate {
  constructor(private readonly reflector: Reflector) {}
  canActivate(context: ExecutionContext): boolean {
    const roles = this.reflector.get<string[] | undefined>(ROLES, context.getHandler());
    const response = context
      .switchToHttp()
      .getResponse<{ setHeader(n: string, v: string): void }>();
    response.setHeader('x-roles-seen', (roles ?? []).join(','));
    return roles?.includes('reader') ?? false;
  }
}

@Controller('items')
@UseGuards(RolesGuard)
class ItemsController {
  calls = 0;

  @Get(':id')
  @HttpCode(203)
  @Header('x-route', 'items')
  @SetMetadata(ROLES, ['reader'])
  @Cacheable({ key: (id: string) => `route:${id}` })
  find(@Param('id') id: string): Item {
    this.calls++;
    return { id, n: this.calls };
  }
}

// ---------------------------------------------------------------------------------------------

describe('MemcachedModule registration', () => {
  test('forRoot registers the default client, injectable as MemcachedService', async () => {
    const app = await boot({
      imports: [MemcachedModule.forRoot({ servers: [s1.address], keyPrefix: 'root:' })],
      providers: [NeedsCache],
    });
    const service = app.get(MemcachedService);
    expect(service).toBeInstanceOf(MemcachedService);
    expect(app.get(NeedsCache).cache).toBe(service);
    expect(getMemcachedToken()).toBe(MemcachedService);
    expect(getMemcachedToken('default')).toBe(MemcachedService);
    expect(service.name).toBe('default');
    expect(service.client).toBeInstanceOf(MemcachedClient);
    expect(service.servers).toEqual([s1.serverId]);
    expect(await service.set('k', { a: 1 })).toBe(true);
    expect(await service.get('k')).toEqual({ a: 1 });
    expect(await rawGet(s1, 'root:k')).toBe('{"a":1}');
  });

  test('forRootAsync with useFactory and inject', async () => {
    @Module({
      providers: [{ provide: CONFIG, useValue: { servers: s2.address, prefix: 'fac:' } }],
      exports: [CONFIG],
    })
    class ConfigLikeModule {}
    const app = await boot({
      imports: [
        MemcachedModule.forRootAsync({
          imports: [ConfigLikeModule],
          inject: [CONFIG],
          useFactory: async (config: { servers: string; prefix: string }) => {
            await sleep(5);
            return { servers: config.servers, keyPrefix: config.prefix };
          },
        }),
      ],
    });
    const service = app.get(MemcachedService);
    expect(service.client.options.keyPrefix).toBe('fac:');
    await service.set('f', 'factory');
    expect(await rawGet(s2, 'fac:f')).toBe('factory');
  });

  test('forRootAsync with useClass', async () => {
    @Injectable()
    class OptionsFromClass implements MemcachedOptionsFactory {
      createMemcachedOptions() {
        return { servers: [s3.address], keyPrefix: 'cls:' };
      }
    }
    const app = await boot({
      imports: [MemcachedModule.forRootAsync({ useClass: OptionsFromClass })],
    });
    const service = app.get(MemcachedService);
    await service.set('c', 'class');
    expect(await rawGet(s3, 'cls:c')).toBe('class');
  });

  test('forRootAsync with useExisting', async () => {
    @Injectable()
    class ExistingOptions implements MemcachedOptionsFactory {
      readonly used: string[] = [];
      async createMemcachedOptions() {
        this.used.push('yes');
        return { servers: [s1.address], keyPrefix: 'ex:' };
      }
    }
    @Module({ providers: [ExistingOptions], exports: [ExistingOptions] })
    class OptionsModule {}
    const app = await boot({
      imports: [
        OptionsModule,
        MemcachedModule.forRootAsync({ imports: [OptionsModule], useExisting: ExistingOptions }),
      ],
    });
    expect(app.get(ExistingOptions).used).toEqual(['yes']);
    await app.get(MemcachedService).set('e', 'existing');
    expect(await rawGet(s1, 'ex:e')).toBe('existing');
  });

  test('isGlobal makes the client injectable in modules that do not import MemcachedModule', async () => {
    const app = await boot({
      imports: [MemcachedModule.forRoot({ isGlobal: true, servers: [s1.address] }), FeatureModule],
    });
    expect(app.get(NeedsCache).cache).toBe(app.get(MemcachedService));

    const error = await bootError({
      imports: [MemcachedModule.forRoot({ servers: [s1.address] }), FeatureModule],
    });
    expect(error.message).toMatch(/can't resolve dependencies of the NeedsCache/);
    expect(error.message).toMatch(/MemcachedService/);
  });

  test('named clients side by side, injected with @InjectMemcached, each on its own servers', async () => {
    @Injectable()
    class UsesThree {
      constructor(
        readonly main: MemcachedService,
        @InjectMemcached('sessions') readonly sessions: MemcachedService,
        @InjectMemcached('rates') readonly rates: MemcachedService,
      ) {}
    }
    const app = await boot({
      imports: [
        MemcachedModule.forRoot({ servers: [s1.address], keyPrefix: 'named:' }),
        MemcachedModule.forRoot({ name: 'sessions', servers: [s2.address], keyPrefix: 'named:' }),
        MemcachedModule.forRootAsync({
          name: 'rates',
          useFactory: () => ({ servers: [s3.address], keyPrefix: 'named:' }),
        }),
      ],
      providers: [UsesThree],
    });
    const { main, sessions, rates } = app.get(UsesThree);
    expect(new Set([main, sessions, rates]).size).toBe(3);
    expect([main.name, sessions.name, rates.name]).toEqual(['default', 'sessions', 'rates']);
    expect(app.get(getMemcachedToken('sessions'))).toBe(sessions);
    expect(getMemcachedToken('sessions')).toBe(Symbol.for('nestjs-memcached:client:sessions'));

    await main.set('who', 'main');
    await sessions.set('who', 'sessions');
    await rates.set('who', 'rates');
    expect(await rawGet(s1, 'named:who')).toBe('main');
    expect(await rawGet(s2, 'named:who')).toBe('sessions');
    expect(await rawGet(s3, 'named:who')).toBe('rates');
    await sessions.set('only-sessions', 1);
    expect(await rawGet(s1, 'named:only-sessions')).toBeUndefined();
    expect(await rawGet(s2, 'named:only-sessions')).toBe('1');
    expect(await rawGet(s3, 'named:only-sessions')).toBeUndefined();
  });

  test('invalid options fail the boot with a message naming the option (and the client)', async () => {
    let error = await bootError({ imports: [MemcachedModule.forRoot({ poolSize: 0 })] });
    expect(error).toBeInstanceOf(MemcachedOptionsError);
    expect(error.message).toMatch(/^Invalid memcached option "poolSize": /);
    expect(error.message).toMatch(/must be an integer from 1 to 64, got 0/);
    expect(error.message).toMatch(/the default memcached client/);
    expect((error as MemcachedOptionsError).option).toBe('poolSize');

    error = await bootError({
      imports: [
        MemcachedModule.forRoot({
          name: 'sessions',
          servers: [s1.address],
          failover: { deadTimeout: -5 },
        }),
      ],
    });
    expect(error.message).toMatch(/^Invalid memcached option "failover.deadTimeout": /);
    expect(error.message).toMatch(/memcached client "sessions"/);

    error = await bootError({
      imports: [
        MemcachedModule.forRootAsync({
          useFactory: () => ({ servers: [s1.address], timeout: '100' as unknown as number }),
        }),
      ],
    });
    expect(error.message).toMatch(
      /^Invalid memcached option "timeout": must be an integer .*, got "100" \(the default/,
    );

    error = await bootError({
      imports: [MemcachedModule.forRoot({ servers: [s1.address], severs: 'x' } as never)],
    });
    expect(error.message).toMatch(/^Invalid memcached option "severs": unknown option/);

    // The same checks as the client's, server address syntax included.
    error = await bootError({
      imports: [MemcachedModule.forRoot({ servers: `${s1.address},${s1.address}` })],
    });
    expect(error).toBeInstanceOf(MemcachedOptionsError);
    expect(error.message).toMatch(/^Invalid memcached option "servers/);
    expect(error.message).toMatch(/listed twice/);
  });
});

describe('MemcachedModule accepts the same options as MemcachedClient', () => {
  /** The error `fn` throws (synchronously or not). */
  async function thrown(fn: () => unknown): Promise<unknown> {
    try {
      await fn();
    } catch (error) {
      return error;
    }
    throw new Error('expected an error');
  }

  function expectOptionError(error: unknown, option: string): void {
    expect(error).toBeInstanceOf(MemcachedOptionsError);
    expect((error as MemcachedOptionsError).option).toBe(option);
    expect((error as Error).message).toContain(`"${option}"`);
  }

  test.each(MEMCACHED_OPTION_NAMES)('forRoot accepts %s', async (name) => {
    const options = { servers: [s1.address], ...withValidValue(name, s1.address) };
    const app = await boot({ imports: [MemcachedModule.forRoot(options)] });
    expect(app.get(MemcachedService).client).toBeInstanceOf(MemcachedClient);
  });

  test.each(MEMCACHED_OPTION_NAMES)('forRootAsync({ useFactory }) accepts %s', async (name) => {
    const options = { servers: [s1.address], ...withValidValue(name, s1.address) };
    const app = await boot({
      imports: [MemcachedModule.forRootAsync({ name: 'async', useFactory: () => options })],
    });
    expect(app.get<MemcachedService>(getMemcachedToken('async')).client).toBeInstanceOf(
      MemcachedClient,
    );
  });

  test.each(MEMCACHED_OPTION_NAMES)('new MemcachedClient accepts %s', async (name) => {
    const client = new MemcachedClient({
      servers: [s1.address],
      ...withValidValue(name, s1.address),
    });
    await client.close();
  });

  test('all options at once work against a server', async () => {
    const { tls: _tls, auth: _auth, ...options } = validOptionValues(s1.address);
    const app = await boot({ imports: [MemcachedModule.forRoot(options)] });
    const service = app.get(MemcachedService);
    expect(await service.set('all', 'options')).toBe(true);
    expect(await service.get('all')).toBe('options');
    expect(await rawGet(s1, 'opt:all')).toBe('options');
  });

  test('a misspelt option fails forRoot, forRootAsync and new MemcachedClient, naming it', async () => {
    const options = { servers: [s1.address], timout: 100 } as never;
    expectOptionError(await bootError({ imports: [MemcachedModule.forRoot(options)] }), 'timout');
    const asyncError = await bootError({
      imports: [MemcachedModule.forRootAsync({ name: 'sessions', useFactory: () => options })],
    });
    expectOptionError(asyncError, 'timout');
    expect((asyncError as Error).message).toMatch(/unknown option/);
    expect((asyncError as Error).message).toMatch(/\(memcached client "sessions"\)$/);
    expectOptionError(await thrown(() => new MemcachedClient(options)), 'timout');
  });

  test('auth: false means no auth, everywhere', async () => {
    const options = { servers: [s1.address], auth: false } as const;
    let app = await boot({ imports: [MemcachedModule.forRoot(options)] });
    expect(app.get(MemcachedService).client.options.auth).toBeUndefined();
    expect(await app.get(MemcachedService).set('noauth', 1)).toBe(true);
    app = await boot({
      imports: [MemcachedModule.forRootAsync({ name: 'async', useFactory: () => options })],
    });
    expect(app.get<MemcachedService>(getMemcachedToken('async')).client.options.auth).toBe(
      undefined,
    );
    const client = new MemcachedClient(options);
    expect(client.options.auth).toBeUndefined();
    expect(await client.get('noauth')).toBe(1);
    await client.close();
  });

  test('a bad nested value is named by its path, in the module and the client', async () => {
    const options = { servers: [s1.address], failover: { deadTimeout: -1 } };
    const rootError = await bootError({
      imports: [MemcachedModule.forRoot({ name: 'sessions', ...options })],
    });
    expectOptionError(rootError, 'failover.deadTimeout');
    expect(rootError.message).toMatch(/\(memcached client "sessions"\)$/);
    expectOptionError(
      await bootError({ imports: [MemcachedModule.forRootAsync({ useFactory: () => options })] }),
      'failover.deadTimeout',
    );
    expectOptionError(await thrown(() => new MemcachedClient(options)), 'failover.deadTimeout');
  });
});

describe('MemcachedService', () => {
  let service: MemcachedService;

  beforeEach(async () => {
    const app = await boot({
      imports: [MemcachedModule.forRoot({ servers: [s1.address], keyPrefix: 'svc:' })],
    });
    service = app.get(MemcachedService);
    await service.flushAll();
  });

  test('getOrSet: 20 concurrent callers of a missing key run the factory once', async () => {
    let runs = 0;
    const factory = async (): Promise<{ v: number }> => {
      runs++;
      await sleep(50);
      return { v: 42 };
    };
    const values = await Promise.all(
      Array.from({ length: 20 }, () => service.getOrSet('so', factory, { ttl: 60 })),
    );
    expect(runs).toBe(1);
    for (const value of values) expect(value).toEqual({ v: 42 });
    expect(await service.get('so')).toEqual({ v: 42 });
    expect(await service.getOrSet('so', factory)).toEqual({ v: 42 });
    expect(runs).toBe(1);
  });

  test('getOrSet: a failing factory rejects every waiting caller and stores nothing', async () => {
    let runs = 0;
    const failing = async (): Promise<string> => {
      runs++;
      await sleep(20);
      throw new Error('database down');
    };
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, () => service.getOrSet('fail', failing)),
    );
    expect(runs).toBe(1);
    for (const r of results) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toEqual(new Error('database down'));
    }
    expect(await service.get('fail')).toBeUndefined();
    expect(await service.getOrSet('fail', () => 'now ok')).toBe('now ok');
    expect(await service.get('fail')).toBe('now ok');
  });

  test('getOrSet: undefined and `unless` results are returned but not stored', async () => {
    expect(await service.getOrSet('undef', () => undefined)).toBeUndefined();
    expect(await rawGet(s1, 'svc:undef')).toBeUndefined();
    expect(await service.getOrSet('unless', () => 7, { unless: (v) => v > 5 })).toBe(7);
    expect(await rawGet(s1, 'svc:unless')).toBeUndefined();
    expect(await service.getOrSet('kept', () => 3, { unless: (v) => v > 5 })).toBe(3);
    expect(await rawGet(s1, 'svc:kept')).toBe('3');
  });

  test('a delete while a value is being computed keeps that (stale) value out of the cache', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const pending = service.getOrSet('race', async () => {
      await gate;
      return 'computed from old data';
    });
    await sleep(20);
    await service.delete('race');
    release();
    expect(await pending).toBe('computed from old data');
    expect(await service.get('race')).toBeUndefined();
  });

  test('has every MemcachedClient method, delegating to .client', async () => {
    for (const name of Object.keys(CLIENT_METHODS)) {
      expect([name, typeof (service as unknown as Record<string, unknown>)[name]]).toEqual([
        name,
        'function',
      ]);
    }
    expect(await service.incr('n')).toBeUndefined();
    await service.set('n', 5);
    expect(await service.incr('n', 2)).toBe(7);
    expect(await service.decr('n', 10n)).toBe(0n);
    const [id] = service.servers;
    expect(Object.keys(await service.version())).toEqual([id]);
    expect((await service.ping())[id!]).toMatchObject({ ok: true });
  });
});

describe('@Cacheable and @CacheEvict on a provider', () => {
  let catalog: Catalog;
  let service: MemcachedService;

  beforeEach(async () => {
    const app = await boot({
      imports: [MemcachedModule.forRoot({ servers: [s2.address], keyPrefix: 'deco:' })],
      providers: [Catalog],
    });
    catalog = app.get(Catalog);
    service = app.get(MemcachedService);
    await service.flushAll();
  });

  test('key function: the body runs once, the value is stored under the key', async () => {
    expect(await catalog.byKeyFn('1')).toEqual({ id: '1', n: 1 });
    expect(await catalog.byKeyFn('1')).toEqual({ id: '1', n: 1 });
    expect(await catalog.byKeyFn('2')).toEqual({ id: '2', n: 2 });
    expect(catalog.calls['byKeyFn']).toBe(2);
    expect(await rawGet(s2, 'deco:item:1')).toBe('{"id":"1","n":1}');
  });

  test('20 concurrent calls that miss one key run the body once', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => catalog.byKeyFn('c')));
    expect(catalog.calls['byKeyFn']).toBe(1);
    for (const r of results) expect(r).toEqual({ id: 'c', n: 1 });
  });

  test('default key: host module, class, method and stable JSON of the arguments (key order does not matter); long ones hashed', async () => {
    const first = await catalog.byDefaultKey({ b: 2, a: 1 }, 1);
    expect(await catalog.byDefaultKey({ a: 1, b: 2 }, 1)).toEqual(first);
    expect(catalog.calls['byDefaultKey']).toBe(1);
    // Catalog is a provider of the testing module's root module.
    const key = defaultCacheKey('RootTestModule/Catalog', 'byDefaultKey', [{ a: 1, b: 2 }, 1]);
    expect(key).toBe('RootTestModule/Catalog.byDefaultKey({"a":1,"b":2},1)');
    expect(await rawGet(s2, `deco:${key}`)).toBe(JSON.stringify(first));

    const long = { text: 'x'.repeat(400), spaces: 'not a valid key' };
    await catalog.byDefaultKey(long, 2);
    await catalog.byDefaultKey(long, 2);
    expect(catalog.calls['byDefaultKey']).toBe(2);
    const hashed = defaultCacheKey('RootTestModule/Catalog', 'byDefaultKey', [long, 2], 'deco:');
    expect(hashed).toMatch(/^RootTestModule\/Catalog\.byDefaultKey#[A-Za-z0-9_-]{43}$/);
    expect(await rawGet(s2, `deco:${hashed}`)).toBeDefined();
    // Always fits, even with a long prefix.
    const prefix = 'p'.repeat(220);
    const tight = defaultCacheKey('Catalog', 'byDefaultKey', [long, 2], prefix);
    expect(Buffer.byteLength(prefix + tight)).toBeLessThanOrEqual(250);
  });

  test('condition false bypasses the cache: no read, no write', async () => {
    const before = Number((await serverStats(s2))['cmd_get']);
    await catalog.conditional('skip');
    await catalog.conditional('skip');
    const after = Number((await serverStats(s2))['cmd_get']);
    expect(catalog.calls['conditional']).toBe(2);
    expect(after - before).toBe(0);
    expect(await rawGet(s2, 'deco:cond:skip')).toBeUndefined();
    await catalog.conditional('go');
    await catalog.conditional('go');
    expect(catalog.calls['conditional']).toBe(3);
  });

  test('unless true keeps the result out of the cache', async () => {
    await catalog.withUnless('u', false);
    await catalog.withUnless('u', false);
    expect(catalog.calls['withUnless']).toBe(2);
    expect(await rawGet(s2, 'deco:unless:u')).toBeUndefined();
    await catalog.withUnless('u', true);
    const cached = await catalog.withUnless('u', false);
    expect(cached).toEqual({ id: 'u', keep: true, n: 3 });
    expect(catalog.calls['withUnless']).toBe(3);
  });

  test('a synchronous method becomes async and is cached', async () => {
    const result: unknown = catalog.syncMethod('s');
    expect(result).toBeInstanceOf(Promise);
    expect(await result).toEqual({ id: 's', n: 1 });
    expect(await catalog.syncMethod('s')).toEqual({ id: 's', n: 1 });
    expect(catalog.calls['syncMethod']).toBe(1);
  });

  test('undefined results are not stored', async () => {
    expect(await catalog.returnsUndefined()).toBeUndefined();
    expect(await catalog.returnsUndefined()).toBeUndefined();
    expect(catalog.calls['returnsUndefined']).toBe(2);
  });

  test('Observable-returning methods are passed through, never cached', async () => {
    // Declared Observable return type: left unwrapped (still synchronous), warned at boot.
    const obs = catalog.observable();
    expect(isObservable(obs)).toBe(true);
    expect(await lastValueFrom(obs.pipe(toArray()))).toEqual([1, 2, 3]);
    catalog.observable();
    expect(catalog.calls['observable']).toBe(2);
    expect(await rawGet(s2, 'deco:observable')).toBeUndefined();

    // No usable return type: found out on the first call, not stored, later calls pass through.
    logger.messages.length = 0;
    const first = (await catalog.observableUntyped()) as Observable<number>;
    expect(isObservable(first)).toBe(true);
    expect(await lastValueFrom(first.pipe(toArray()))).toEqual([4, 5]);
    const second = catalog.observableUntyped();
    expect(isObservable(second)).toBe(true);
    expect(catalog.calls['observableUntyped']).toBe(2);
    expect(await rawGet(s2, 'deco:observable-untyped')).toBeUndefined();
    expect(logger.messages.filter((m) => m.includes('Catalog.observableUntyped'))).toHaveLength(1);
  });

  test('@CacheEvict evicts after a successful call, not after a failed one', async () => {
    await catalog.byKeyFn('e');
    await expect(catalog.evictAfter('e', true)).rejects.toThrow('update of e failed');
    expect(await rawGet(s2, 'deco:item:e')).toBeDefined();
    expect(await catalog.evictAfter('e')).toBe('updated e');
    expect(await rawGet(s2, 'deco:item:e')).toBeUndefined();
    expect(await catalog.byKeyFn('e')).toEqual({ id: 'e', n: 2 });
  });

  test('@CacheEvict beforeInvocation evicts every key even when the method throws', async () => {
    await catalog.byKeyFn('b');
    await catalog.syncMethod('b');
    await expect(catalog.evictBefore('b', true)).rejects.toThrow('update of b failed');
    expect(await rawGet(s2, 'deco:item:b')).toBeUndefined();
    expect(await rawGet(s2, 'deco:sync:b')).toBeUndefined();
    expect(catalog.calls['evictBefore']).toBe(1);
  });

  test('an eviction during a computation keeps the stale result out of the cache', async () => {
    const pending = catalog.byKeyFn('r'); // sleeps 50 ms in the body
    await sleep(10);
    await catalog.evictAfter('r');
    await pending;
    expect(await rawGet(s2, 'deco:item:r')).toBeUndefined();
  });
});

describe('@Cacheable failures and configuration errors', () => {
  test('a dead server never fails the call; the failure is logged once per kind', async () => {
    const doomed = await startMemcached();
    const app = await boot({
      imports: [
        MemcachedModule.forRoot({ servers: [doomed.address], timeout: 300, connectTimeout: 300 }),
      ],
      providers: [Catalog],
    });
    const catalog = app.get(Catalog);
    const service = app.get(MemcachedService);
    expect(await catalog.byKeyFn('ok')).toEqual({ id: 'ok', n: 1 });
    await doomed.kill();
    logger.messages.length = 0;
    for (let i = 0; i < 6; i++) {
      expect(await catalog.byKeyFn(`down${i}`)).toEqual({ id: `down${i}`, n: i + 2 });
    }
    expect(await service.getOrSet('down', () => 'from the factory')).toBe('from the factory');
    expect(await catalog.evictAfter('x')).toBe('updated x');
    // 6 failed reads and writes, a failed getOrSet and a failed eviction: logged once.
    const failures = logger.messages.filter((m) => m.includes('cache failure'));
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatch(
      /^memcached client "default": cache failure while reading "item:down0" \(Catalog\.byKeyFn\); the call went on without the cache: MemcachedConnectionError: /,
    );
    expect(failures[0]).toMatch(
      /Further MemcachedConnectionError failures are logged at most once per 30 s/,
    );
  });

  test('failover transitions are logged: a server marked dead, then back', async () => {
    const flaky = await startMemcached();
    const app = await boot({
      imports: [
        MemcachedModule.forRoot({
          servers: [flaky.address],
          failover: { failureThreshold: 1, deadTimeout: 100, retryTimeout: 50 },
        }),
      ],
    });
    const service = app.get(MemcachedService);
    expect(await service.set('f', 1)).toBe(true);
    logger.messages.length = 0;
    await flaky.kill();
    const until = performance.now() + 3000;
    while (performance.now() < until && !logger.messages.some((m) => m.includes('marked dead'))) {
      await service.get('f').catch(() => undefined);
      await sleep(20);
    }
    expect(logger.messages).toContainEqual(
      expect.stringMatching(/^memcached client "default": 127\.0\.0\.1:\d+ marked dead \(/),
    );
    await flaky.restart();
    const back = performance.now() + 5000;
    let value: unknown;
    while (performance.now() < back && value === undefined) {
      value = await service
        .set('f', 2)
        .then(() => service.get('f'))
        .catch(() => undefined);
      await sleep(50);
    }
    expect(value).toBe(2);
  });

  test('a decorator naming an unregistered client fails the boot', async () => {
    @Injectable()
    class UsesMissing {
      @Cacheable({ client: 'nope' })
      async find(): Promise<number> {
        return 1;
      }
    }
    const error = await bootError({
      imports: [MemcachedModule.forRoot({ servers: [s1.address] })],
      providers: [UsesMissing],
    });
    expect(error.message).toMatch(
      /@Cacheable on UsesMissing\.find uses memcached client "nope", which is not registered/,
    );
  });

  test('invalid decorator options fail the boot with the class and method', async () => {
    @Injectable()
    class BadTtl {
      @Cacheable({ ttl: 1.5 })
      async find(): Promise<number> {
        return 1;
      }
    }
    let error = await bootError({
      imports: [MemcachedModule.forRoot({ servers: [s1.address] })],
      providers: [BadTtl],
    });
    expect(error.message).toMatch(/@Cacheable on BadTtl\.find: ttl must be an integer/);

    @Injectable()
    class BadEvict {
      @CacheEvict({} as never)
      async update(): Promise<void> {}
    }
    error = await bootError({
      imports: [MemcachedModule.forRoot({ servers: [s1.address] })],
      providers: [BadEvict],
    });
    expect(error.message).toMatch(/@CacheEvict on BadEvict\.update: give key, keys or tags/);
  });
});

describe('controllers', () => {
  test('a cached route keeps its route, status, header and guard metadata', async () => {
    const app = await boot(
      {
        imports: [MemcachedModule.forRoot({ servers: [s3.address], keyPrefix: 'http:' })],
        controllers: [ItemsController],
        providers: [RolesGuard],
      },
      true,
    );
    await app.get(MemcachedService).flushAll();
    const http = app.getHttpServer();
    const first = await request(http).get('/items/7');
    expect(first.status).toBe(203);
    expect(first.headers['x-route']).toBe('items');
    expect(first.headers['x-roles-seen']).toBe('reader');
    expect(first.body).toEqual({ id: '7', n: 1 });
    const second = await request(http).get('/items/7');
    expect(second.status).toBe(203);
    expect(second.body).toEqual({ id: '7', n: 1 });
    expect(app.get(ItemsController).calls).toBe(1);
    expect(await rawGet(s3, 'http:route:7')).toBe('{"id":"7","n":1}');
  });
});

describe('lifecycle', () => {
  test('app.close() closes every socket of every client', async () => {
    const sockets = (): number =>
      process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
    const connections = async (s: MemcachedProcess): Promise<number> =>
      Number((await serverStats(s))['curr_connections']);
    const baseSockets = sockets();
    const baseConnections = [await connections(s1), await connections(s2)];

    const moduleRef = await Test.createTestingModule({
      imports: [
        MemcachedModule.forRoot({ servers: [s1.address], poolSize: 2 }),
        MemcachedModule.forRoot({ name: 'other', servers: [s2.address], poolSize: 2 }),
      ],
    })
      .setLogger(logger)
      .compile();
    const app = await moduleRef.init();
    const main = app.get(MemcachedService);
    const other = app.get<MemcachedService>(getMemcachedToken('other'));
    await Promise.all(Array.from({ length: 8 }, (_, i) => main.set(`k${i}`, i)));
    await Promise.all(Array.from({ length: 8 }, (_, i) => other.set(`k${i}`, i)));
    expect(sockets()).toBeGreaterThan(baseSockets);
    expect(await connections(s1)).toBeGreaterThan(baseConnections[0]!);

    await app.close();
    for (let i = 0; i < 50 && sockets() > baseSockets; i++) await sleep(20);
    expect(sockets()).toBeLessThanOrEqual(baseSockets);
    let now = [await connections(s1), await connections(s2)];
    for (let i = 0; i < 50 && now.join() !== baseConnections.join(); i++) {
      await sleep(20);
      now = [await connections(s1), await connections(s2)];
    }
    expect(now).toEqual(baseConnections);
    await expect(main.get('k1')).rejects.toBeInstanceOf(MemcachedConnectionError);
    await expect(other.get('k1')).rejects.toBeInstanceOf(MemcachedConnectionError);
  });

  test('the class token is the same object injected by @Inject(getMemcachedToken())', async () => {
    @Injectable()
    class Both {
      constructor(
        @Inject(getMemcachedToken()) readonly a: MemcachedService,
        @InjectMemcached() readonly b: MemcachedService,
        readonly c: MemcachedService,
      ) {}
    }
    const app = await boot({
      imports: [MemcachedModule.forRoot({ servers: [s1.address] })],
      providers: [Both],
    });
    const both = app.get(Both);
    expect(both.a).toBe(both.b);
    expect(both.b).toBe(both.c);
  });
});

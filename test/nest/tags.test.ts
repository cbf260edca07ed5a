/**
 * `@Cacheable({ tags })` and `@CacheEvict({ tags })` (API.md section 10) in Nest testing modules
 * against memcached. Two applications stand for two processes (each has its own client, single
 * flights and provider instances; they share only the server): an eviction by tag in one makes
 * the other's values under that tag misses, without flush_all.
 */
import 'reflect-metadata';
import {
  Injectable,
  type INestApplicationContext,
  type LoggerService,
  type ModuleMetadata,
} from '@nestjs/common';
import {
  Cacheable,
  CacheEvict,
  MemcachedClient,
  MemcachedKeyError,
  MemcachedModule,
  MemcachedOptionsError,
  MemcachedService,
  TaggedValue,
  type GetOrSetOptions,
} from '../../lib/index.js';
import {
  serverStats,
  startMemcached,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';
import { CaptureLogger, TestApps } from '../harness/nest.js';
import { PROTOCOLS } from '../harness/protocols.js';

let server: MemcachedProcess;
const apps = new TestApps();
let run = 0;

beforeAll(async () => {
  server = await startMemcached();
});

afterEach(async () => {
  await apps.closeAll();
});

afterAll(async () => {
  expect((await serverStats(server))['cmd_flush']).toBe('0');
  await stopAllMemcached();
});

const boot = (
  metadata: ModuleMetadata,
  logger: LoggerService = new CaptureLogger(),
): Promise<INestApplicationContext> => apps.boot(metadata, logger);
const bootError = (metadata: ModuleMetadata): Promise<Error> =>
  apps.bootError(metadata, new CaptureLogger());

/** Keys and tags of this run: the server is never flushed. */
const ns = (): string => `${process.pid}-${++run}`;
let scope = ns();

@Injectable()
class Catalog {
  readonly calls: Record<string, number> = {};

  private hit(name: string): number {
    this.calls[name] = (this.calls[name] ?? 0) + 1;
    return this.calls[name];
  }

  @Cacheable({ key: () => `list:${scope}`, tags: () => [`products:${scope}`] })
  async list(): Promise<string[]> {
    return [`list#${this.hit('list')}`];
  }

  @Cacheable({
    key: (id: string) => `product:${scope}:${id}`,
    tags: (id: string) => [`products:${scope}`, `product:${scope}:${id}`],
  })
  async findOne(id: string): Promise<string> {
    return `${id}#${this.hit(`findOne:${id}`)}`;
  }

  @Cacheable({ key: () => `users:${scope}`, tags: () => [`users:${scope}`] })
  async users(): Promise<string> {
    return `users#${this.hit('users')}`;
  }

  /** Only tags: every product list and page. */
  @CacheEvict({ tags: () => [`products:${scope}`] })
  async updateAll(): Promise<void> {}

  /** One product (its own tag), and the list with it by key. */
  @CacheEvict({
    key: (_id: string) => `list:${scope}`,
    tags: (id: string) => [`product:${scope}:${id}`],
  })
  async updateOne(id: string): Promise<string> {
    return id;
  }

  /** A tags function that returns something that is not a tag list. */
  @Cacheable({ key: () => `bad:${scope}`, tags: () => 'not a list' as unknown as string[] })
  async badTags(): Promise<string> {
    return `bad#${this.hit('bad')}`;
  }
}

describe.each(PROTOCOLS)('protocol %s', (protocol) => {
  const appWith = (logger?: CaptureLogger): Promise<INestApplicationContext> =>
    boot(
      {
        imports: [MemcachedModule.forRoot({ servers: server.address, protocol })],
        providers: [Catalog],
      },
      logger,
    );

  beforeEach(() => {
    scope = ns();
  });

  test('@CacheEvict({ tags }) in one application makes the other one miss the values under them, and only those', async () => {
    const [a, b] = await Promise.all([appWith(), appWith()]);
    const catA = a.get(Catalog);
    const catB = b.get(Catalog);
    expect(catA).not.toBe(catB);
    expect(await catA.list()).toEqual(['list#1']);
    expect(await catA.findOne('1')).toBe('1#1');
    expect(await catA.findOne('2')).toBe('2#1');
    expect(await catA.users()).toBe('users#1');
    // b hits what a stored.
    expect(await catB.list()).toEqual(['list#1']);
    expect(catB.calls).toEqual({});
    const flushes = (await serverStats(server))['cmd_flush'];

    await catB.updateAll(); // tags only
    expect(await catA.list()).toEqual(['list#2']);
    expect(await catA.findOne('1')).toBe('1#2');
    expect(await catA.findOne('2')).toBe('2#2');
    expect(await catA.users()).toBe('users#1'); // another tag: still a hit
    expect(await catA.findOne('1')).toBe('1#2');

    await catB.updateOne('1'); // product 1's tag, and the list by key
    expect(await catA.findOne('1')).toBe('1#3');
    expect(await catA.findOne('2')).toBe('2#2');
    expect(await catA.list()).toEqual(['list#3']);
    expect((await serverStats(server))['cmd_flush']).toBe(flushes);
    // What the decorated methods store is a tagged envelope.
    const plain = await a.get(MemcachedService).get(`product:${scope}:2`);
    expect(plain).toBeInstanceOf(TaggedValue);
    expect((plain as TaggedValue).value).toBe('2#2');
  });

  test('a tags function returning something else: the call bypasses the cache (logged), nothing is stored', async () => {
    const logger = new CaptureLogger();
    const app = await appWith(logger);
    const cat = app.get(Catalog);
    expect(await cat.badTags()).toBe('bad#1');
    expect(await cat.badTags()).toBe('bad#2');
    expect(await app.get(MemcachedService).get(`bad:${scope}`)).toBeUndefined();
    expect(logger.messages.join('\n')).toMatch(
      /computing the cache key or tags of Catalog\.badTags.*tags must be an array of strings, got string/s,
    );
  });
});

describe('boot checks', () => {
  const withProvider = (
    cls: new () => unknown,
    protocol: 'text' | 'meta' = 'text',
  ): ModuleMetadata => ({
    imports: [MemcachedModule.forRoot({ servers: server.address, protocol })],
    providers: [cls],
  });

  test('a bad constant tag fails the boot with MemcachedKeyError', async () => {
    @Injectable()
    class BadTag {
      @Cacheable({ key: 'k', tags: ['ok', 'has space'] })
      async m(): Promise<number> {
        return 1;
      }
    }
    const error = await bootError(withProvider(BadTag));
    expect(error).toBeInstanceOf(MemcachedKeyError);
    expect(error.message).toMatch(
      /@Cacheable on BadTag\.m: tags: tag "has space" contains a space/,
    );
  });

  test('tags that are neither a list nor a function, and a @CacheEvict with nothing to evict, fail the boot', async () => {
    @Injectable()
    class NotAList {
      @CacheEvict({ tags: 'products' as unknown as string[] })
      async m(): Promise<void> {}
    }
    expect((await bootError(withProvider(NotAList))).message).toMatch(
      /@CacheEvict on NotAList\.m: tags must be a string array or a function of the arguments/,
    );
    @Injectable()
    class Nothing {
      @CacheEvict({ beforeInvocation: true } as unknown as { tags: string[] })
      async m(): Promise<void> {}
    }
    expect((await bootError(withProvider(Nothing))).message).toMatch(
      /@CacheEvict on Nothing\.m: give key, keys or tags/,
    );
  });

  test('tags with lease: fails the boot on text (lease needs meta), works on meta', async () => {
    @Injectable()
    class Leased {
      n = 0;
      @Cacheable({ key: () => `leased:${scope}`, tags: () => [`t:${scope}`], lease: true })
      async m(): Promise<number> {
        return ++this.n;
      }

      @CacheEvict({ tags: () => [`t:${scope}`] })
      async evict(): Promise<void> {}
    }
    const error = await bootError(withProvider(Leased));
    expect(error).toBeInstanceOf(MemcachedOptionsError);
    expect((error as MemcachedOptionsError).option).toBe('protocol');
    scope = ns();
    const app = await boot(withProvider(Leased, 'meta'));
    const leased = app.get(Leased);
    expect(await leased.m()).toBe(1);
    expect(await leased.m()).toBe(1);
    await leased.evict();
    expect(await leased.m()).toBe(2);
  });
});

describe('a MemcachedService over a client it does not know (another copy of the package)', () => {
  test("tagged getOrSet goes through that client's own getOrSet: hits, and misses after invalidateTags", async () => {
    const real = new MemcachedClient({ servers: server.address });
    // Not this copy's client (nothing registered for it): only its public methods.
    const standIn = {
      options: real.options,
      get: (key: string) => real.get(key),
      set: (key: string, value: unknown) => real.set(key, value),
      getMany: (keys: string[]) => real.getMany(keys),
      version: () => real.version(),
      getOrSet: <T>(key: string, f: () => T | Promise<T>, o?: GetOrSetOptions<T>) =>
        real.getOrSet(key, f, o),
      invalidateTags: (tags: readonly string[]) => real.invalidateTags(tags),
      close: () => real.close(),
    } as unknown as MemcachedClient;
    const service = new MemcachedService(standIn);
    try {
      const s = ns();
      let runs = 0;
      const factory = (): string => `v${++runs}`;
      expect(await service.getOrSet(`k:${s}`, factory, { tags: [`t:${s}`] })).toBe('v1');
      expect(await service.getOrSet(`k:${s}`, factory, { tags: [`t:${s}`] })).toBe('v1');
      await service.invalidateTags([`t:${s}`]);
      expect(await service.getOrSet(`k:${s}`, factory, { tags: [`t:${s}`] })).toBe('v2');
      expect(runs).toBe(2);
    } finally {
      await service.close();
    }
  });
});

/**
 * @Cacheable({ lease, staleWhileRevalidate }) and @CacheEvict({ stale: true }) (API.md section 8)
 * in Nest testing modules against memcached: on a meta client they work across applications (two
 * apps stand for two processes: each has its own client and single flight); on a text client
 * they fail the application's boot with MemcachedOptionsError naming `protocol`.
 */
import 'reflect-metadata';
import { Injectable, type ModuleMetadata } from '@nestjs/common';
import {
  Cacheable,
  CacheEvict,
  MemcachedClient,
  MemcachedModule,
  MemcachedOptionsError,
  MemcachedValueError,
} from '../../lib/index.js';
import { startMemcached, stopAllMemcached, type MemcachedProcess } from '../harness/memcached.js';
import { TestApps } from '../harness/nest.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let server: MemcachedProcess;
let admin: MemcachedClient;
const apps = new TestApps();

beforeAll(async () => {
  server = await startMemcached();
  admin = new MemcachedClient({ servers: server.address, protocol: 'meta' });
});

beforeEach(async () => {
  await admin.flushAll();
  await admin.set('runs', 0);
});

afterEach(async () => {
  await apps.closeAll();
});

afterAll(async () => {
  await admin.close();
  await stopAllMemcached();
});

const { boot, bootError } = apps;

@Injectable()
class Products {
  version = 'v1';

  @Cacheable({
    key: (id: string) => `product:${id}`,
    ttl: 1,
    lease: true,
    staleWhileRevalidate: 30,
  })
  async findOne(id: string): Promise<string> {
    await admin.incr('runs');
    await sleep(200);
    return `${id}@${this.version}`;
  }

  @CacheEvict({ key: (id: string) => `product:${id}`, stale: true })
  async update(id: string): Promise<string> {
    this.version = 'v2';
    return id;
  }
}

const metaRoot = (): ModuleMetadata => ({
  imports: [MemcachedModule.forRoot({ servers: [server.address], protocol: 'meta' })],
  providers: [Products],
});

describe('on a meta client', () => {
  test('@Cacheable({ lease }): concurrent misses in two applications run the method once', async () => {
    const [a, b] = await Promise.all([boot(metaRoot()), boot(metaRoot())]);
    const calls = [a, b].flatMap((app) =>
      Array.from({ length: 5 }, () => app.get(Products).findOne('1')),
    );
    expect(await Promise.all(calls)).toEqual(Array(10).fill('1@v1'));
    expect(await admin.get('runs')).toBe(1);
  });

  test('@CacheEvict({ stale: true }) marks the entry stale: @Cacheable({ staleWhileRevalidate }) serves the old result at once and refreshes it once', async () => {
    const app = await boot(metaRoot());
    const products = app.get(Products);
    expect(await products.findOne('2')).toBe('2@v1');
    expect(await products.update('2')).toBe('2');
    expect(await admin.get('product:2')).toBeUndefined(); // stale: a miss for plain reads
    // That plain read was handed the refresh token and gives it back in the background; until
    // it is back, a reader sees the token as taken and only serves the stale value.
    await sleep(200);
    expect(await products.findOne('2')).toBe('2@v1'); // served stale...
    for (let i = 0; i < 250 && (await admin.get('product:2')) !== '2@v2'; i++) await sleep(20);
    expect(await admin.get('product:2')).toBe('2@v2'); // ...refreshed in the background
    expect(await admin.get('runs')).toBe(2);
  });

  test('a named meta client next to a text default: the decorators use the client they name', async () => {
    @Injectable()
    class Named {
      @Cacheable({ key: 'named', client: 'meta', lease: { ttl: 5, wait: 500 } })
      async value(): Promise<number> {
        return 7;
      }

      @CacheEvict({ key: 'named', client: 'meta', stale: true })
      async evict(): Promise<void> {}
    }
    const app = await boot({
      imports: [
        MemcachedModule.forRoot({ servers: [server.address] }),
        MemcachedModule.forRoot({ name: 'meta', servers: [server.address], protocol: 'meta' }),
      ],
      providers: [Named],
    });
    expect(await app.get(Named).value()).toBe(7);
    expect(await admin.get('named')).toBe(7);
    await app.get(Named).evict();
    expect(await admin.get('named')).toBeUndefined();
  });
});

describe('on a text client the application fails to boot', () => {
  const textRoot = (): ReturnType<typeof MemcachedModule.forRoot> =>
    MemcachedModule.forRoot({ servers: [server.address] });

  test.each<[string, () => unknown]>([
    [
      '@Cacheable({ lease: true })',
      () => {
        @Injectable()
        class C {
          @Cacheable({ key: 'k', lease: true })
          async m(): Promise<number> {
            return 1;
          }
        }
        return C;
      },
    ],
    [
      '@Cacheable({ staleWhileRevalidate: 10 })',
      () => {
        @Injectable()
        class C {
          @Cacheable({ key: 'k', staleWhileRevalidate: 10 })
          async m(): Promise<number> {
            return 1;
          }
        }
        return C;
      },
    ],
    [
      '@CacheEvict({ stale: true })',
      () => {
        @Injectable()
        class C {
          @CacheEvict({ key: 'k', stale: true })
          async m(): Promise<number> {
            return 1;
          }
        }
        return C;
      },
    ],
  ])('%s: MemcachedOptionsError naming protocol', async (_label, make) => {
    const Provider = make() as new () => object;
    const error = await bootError({ imports: [textRoot()], providers: [Provider] });
    expect(error).toBeInstanceOf(MemcachedOptionsError);
    expect((error as MemcachedOptionsError).option).toBe('protocol');
    expect(error.message).toMatch(/protocol/);
    expect(error.message).toMatch(/on C\.m/);
  });

  test('a bad lease value fails the boot of a meta app too, naming it', async () => {
    @Injectable()
    class Bad {
      @Cacheable({ key: 'k', lease: { ttl: 0 } })
      async m(): Promise<number> {
        return 1;
      }
    }
    const error = await bootError({
      imports: [MemcachedModule.forRoot({ servers: [server.address], protocol: 'meta' })],
      providers: [Bad],
    });
    expect(error).toBeInstanceOf(MemcachedValueError);
    expect(error.message).toMatch(/@Cacheable on Bad\.m .*lease\.ttl must be a whole number/);
  });
});

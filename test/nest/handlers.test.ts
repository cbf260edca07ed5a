/**
 * @Cacheable / @CacheEvict on every kind of handler and scope (API.md section 10): TCP
 * microservice message and event handlers, a WebSocket gateway, handlers bound the way gateways
 * and resolvers bind them (ExternalContextCreator), HTTP routes with the decorator on either
 * side of the route decorators, request-scoped and transient providers, two applications in
 * one process, and two same-named classes in two modules. Against memcached servers started by
 * the harness; handler runs are counted on the server (`incr`), cached values read raw.
 */
import 'reflect-metadata';
import {
  applyDecorators,
  Controller,
  Get,
  Injectable,
  Module,
  Param,
  Scope,
  SetMetadata,
  type DynamicModule,
  type INestApplication,
  type INestApplicationContext,
  type INestMicroservice,
  type ModuleMetadata,
} from '@nestjs/common';
import { ContextIdFactory, ExternalContextCreator, Reflector } from '@nestjs/core';
import { PATTERN_METADATA } from '@nestjs/microservices/constants.js';
import {
  ClientProxyFactory,
  EventPattern,
  MessagePattern,
  Payload,
  Transport,
  type ClientProxy,
} from '@nestjs/microservices';
import { WsAdapter } from '@nestjs/platform-ws';
import { MessageBody, SubscribeMessage, WebSocketGateway } from '@nestjs/websockets';
import { Test } from '@nestjs/testing';
import { lastValueFrom } from 'rxjs';
import request from 'supertest';
import WebSocket from 'ws';
import {
  Cacheable,
  CacheEvict,
  MemcachedClient,
  MemcachedModule,
  MemcachedService,
} from '../../lib/index.js';
import {
  freePort,
  rawGet,
  rawRequest,
  serverStats,
  startMemcached,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';
import { CaptureLogger } from '../harness/nest.js';

// ---------------------------------------------------------------------------------------------
// Helpers

const logger = new CaptureLogger();
let a: MemcachedProcess;
let b: MemcachedProcess;
/** Counts handler runs on server a (`incr <name>`), so no in-process counter can fake it. */
let counter: MemcachedClient;
const open: Array<{ close(): Promise<unknown> }> = [];

beforeAll(async () => {
  [a, b] = await Promise.all([startMemcached(), startMemcached()]);
  counter = new MemcachedClient({ servers: a.address, keyPrefix: 'runs:' });
});

beforeEach(async () => {
  await Promise.all([rawRequest(a, 'flush_all\r\n'), rawRequest(b, 'flush_all\r\n')]);
  logger.messages.length = 0;
});

afterEach(async () => {
  for (const app of open.splice(0).reverse()) await app.close();
});

afterAll(async () => {
  await counter.close();
  await stopAllMemcached();
});

async function run(name: string): Promise<void> {
  if ((await counter.incr(name)) === undefined) await counter.set(name, '1');
}

async function runs(name: string): Promise<number> {
  return Number((await counter.get<string>(name)) ?? 0);
}

async function getHits(server: MemcachedProcess): Promise<number> {
  return Number((await serverStats(server))['get_hits']);
}

function cacheOn(server: MemcachedProcess, keyPrefix = 'h:'): DynamicModule {
  return MemcachedModule.forRoot({ servers: [server.address], keyPrefix });
}

async function context(metadata: ModuleMetadata): Promise<INestApplicationContext> {
  const moduleRef = await Test.createTestingModule(metadata).setLogger(logger).compile();
  open.push(moduleRef);
  await moduleRef.init();
  return moduleRef;
}

async function eventually(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('condition not met');
}

// ---------------------------------------------------------------------------------------------
// Microservice (TCP)

@Controller()
class ProductsHandlers {
  // @Cacheable applied after the pattern decorator (it is above it).
  @Cacheable({ key: (id: string) => `mp:${id}`, ttl: 60 })
  @MessagePattern('product.get')
  async find(@Payload() id: string): Promise<{ id: string; at: number }> {
    await run('mp');
    return { id, at: await runs('mp') };
  }

  // @Cacheable applied before the pattern decorator.
  @MessagePattern('product.name')
  @Cacheable({ key: (id: string) => `name:${id}` })
  async name(@Payload() id: string): Promise<string> {
    await run('name');
    return `name of ${id}`;
  }

  @EventPattern('product.updated')
  @CacheEvict({ keys: (id: string) => [`mp:${id}`, `name:${id}`] })
  async updated(@Payload() id: string): Promise<void> {
    await run(`updated:${id}`);
  }
}

describe('TCP microservice handlers', () => {
  let client: ClientProxy;

  beforeEach(async () => {
    const port = await freePort();
    const moduleRef = await Test.createTestingModule({
      imports: [cacheOn(a)],
      controllers: [ProductsHandlers],
    })
      .setLogger(logger)
      .compile();
    const app: INestMicroservice = moduleRef.createNestMicroservice({
      transport: Transport.TCP,
      options: { host: '127.0.0.1', port },
    });
    app.useLogger(logger);
    open.push(app);
    await app.listen();
    client = ClientProxyFactory.create({
      transport: Transport.TCP,
      options: { host: '127.0.0.1', port },
    });
    open.push(client);
    await client.connect();
  });

  test('@MessagePattern + @Cacheable: the second request is served from memcached', async () => {
    const first = await lastValueFrom(client.send<{ id: string; at: number }>('product.get', '7'));
    expect(first).toEqual({ id: '7', at: 1 });
    expect(await rawGet(a, 'h:mp:7')).toBe('{"id":"7","at":1}');
    const hits = await getHits(a);
    expect(await lastValueFrom(client.send('product.get', '7'))).toEqual(first);
    // One hit: the cached read (the handler, which reads its counter, did not run).
    expect((await getHits(a)) - hits).toBe(1);
    expect(await runs('mp')).toBe(1);
  });

  test('both decorator orders keep the pattern and cache', async () => {
    expect(Reflect.getMetadata(PATTERN_METADATA, ProductsHandlers.prototype.find)).toEqual([
      'product.get',
    ]);
    expect(Reflect.getMetadata(PATTERN_METADATA, ProductsHandlers.prototype.name)).toEqual([
      'product.name',
    ]);
    expect(await lastValueFrom(client.send('product.name', '3'))).toBe('name of 3');
    expect(await lastValueFrom(client.send('product.name', '3'))).toBe('name of 3');
    expect(await runs('name')).toBe(1);
    expect(await rawGet(a, 'h:name:3')).toBe('name of 3');
  });

  test('@EventPattern + @CacheEvict deletes the keys on the server', async () => {
    await lastValueFrom(client.send('product.get', '9'));
    await lastValueFrom(client.send('product.name', '9'));
    expect(await rawGet(a, 'h:mp:9')).toBeDefined();
    await lastValueFrom(client.emit('product.updated', '9'));
    await eventually(async () => (await runs('updated:9')) === 1);
    await eventually(async () => (await rawGet(a, 'h:name:9')) === undefined);
    expect(await rawGet(a, 'h:mp:9')).toBeUndefined();
    expect(await lastValueFrom(client.send('product.get', '9'))).toEqual({ id: '9', at: 2 });
  });
});

// ---------------------------------------------------------------------------------------------
// WebSocket gateway and ExternalContextCreator (how gateways and GraphQL resolvers bind)

@WebSocketGateway()
class PricesGateway {
  @SubscribeMessage('price')
  @Cacheable({ key: (id: string) => `ws:${id}` })
  async price(@MessageBody() id: string): Promise<{ event: string; data: string }> {
    await run('ws');
    return { event: 'price', data: `price of ${id}` };
  }
}

@Injectable()
class Resolver {
  @SetMetadata('resolver:field', 'price')
  @Cacheable({ key: (id: string) => `gql:${id}` })
  async price(id: string): Promise<string> {
    await run('gql');
    return `price ${id}`;
  }
}

function wsRequest(port: number, message: object): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}`);
    socket.once('error', reject);
    socket.once('open', () => socket.send(JSON.stringify(message)));
    socket.once('message', (data: Buffer) => {
      socket.close();
      socket.once('close', () => resolve(JSON.parse(data.toString('utf8'))));
    });
  });
}

describe('gateways and resolvers', () => {
  test('@SubscribeMessage + @Cacheable on a ws gateway: the second message is a hit', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [cacheOn(a)],
      providers: [PricesGateway],
    })
      .setLogger(logger)
      .compile();
    const app: INestApplication = moduleRef.createNestApplication({ logger });
    app.useWebSocketAdapter(new WsAdapter(app));
    open.push(app);
    await app.listen(0, '127.0.0.1');
    const address = app.getHttpServer().address() as { port: number };
    const reply = { event: 'price', data: 'price of 5' };
    expect(await wsRequest(address.port, { event: 'price', data: '5' })).toEqual(reply);
    expect(await wsRequest(address.port, { event: 'price', data: '5' })).toEqual(reply);
    expect(await runs('ws')).toBe(1);
    expect(await rawGet(a, 'h:ws:5')).toBe(JSON.stringify(reply));
  });

  test('a handler bound by ExternalContextCreator (as resolvers are) is cached', async () => {
    const app = await context({ imports: [cacheOn(a)], providers: [Resolver] });
    const resolver = app.get(Resolver);
    const creator = app.get(ExternalContextCreator);
    const handler = creator.create(
      resolver,
      resolver.price as (...args: unknown[]) => unknown,
      'price',
    ) as (id: string) => Promise<string>;
    expect(await handler('1')).toBe('price 1');
    expect(await handler('1')).toBe('price 1');
    expect(await runs('gql')).toBe(1);
    expect(await rawGet(a, 'h:gql:1')).toBe('price 1');
    expect(app.get(Reflector).get('resolver:field', resolver.price)).toBe('price');
  });
});

// ---------------------------------------------------------------------------------------------
// HTTP: the decorator above the route decorators

/** A composed decorator: Nest's applyDecorators passes one descriptor to each. */
const CachedGet = (path: string): MethodDecorator =>
  applyDecorators(
    Get(path),
    Cacheable({ key: (...args: unknown[]) => `composed:${String(args[0])}` }),
  );

@Controller('http')
class HttpItems {
  @CachedGet('composed/:id')
  async composed(@Param('id') id: string): Promise<string> {
    await run('composed');
    return `composed ${id}`;
  }

  @Cacheable({ key: (id: string) => `http:${id}` })
  @Get(':id')
  async find(@Param('id') id: string): Promise<{ id: string }> {
    await run('http');
    return { id };
  }
}

test('HTTP: @Cacheable above @Get, or composed with applyDecorators, keeps the route and caches it', async () => {
  const moduleRef = await Test.createTestingModule({
    imports: [cacheOn(a)],
    controllers: [HttpItems],
  })
    .setLogger(logger)
    .compile();
  const app = moduleRef.createNestApplication({ logger });
  open.push(app);
  await app.init();
  await request(app.getHttpServer()).get('/http/4').expect(200, { id: '4' });
  await request(app.getHttpServer()).get('/http/4').expect(200, { id: '4' });
  expect(await runs('http')).toBe(1);
  expect(await rawGet(a, 'h:http:4')).toBe('{"id":"4"}');
  await request(app.getHttpServer()).get('/http/composed/5').expect(200, 'composed 5');
  await request(app.getHttpServer()).get('/http/composed/5').expect(200, 'composed 5');
  expect(await runs('composed')).toBe(1);
  expect(await rawGet(a, 'h:composed:5')).toBe('composed 5');
});

// ---------------------------------------------------------------------------------------------
// Scopes

@Injectable({ scope: Scope.REQUEST })
class PerRequest {
  @Cacheable({ key: (id: string) => `req:${id}` })
  async find(id: string): Promise<string> {
    await run('req');
    return `req ${id}`;
  }
}

@Injectable({ scope: Scope.TRANSIENT })
class PerInjection {
  @Cacheable({ key: (id: string) => `tr:${id}` })
  async find(id: string): Promise<string> {
    await run('tr');
    return `tr ${id}`;
  }
}

@Injectable()
class UsesTransient {
  constructor(readonly transient: PerInjection) {}
}

@Controller('req')
class PerRequestController {
  constructor(private readonly perRequest: PerRequest) {}

  @Get(':id')
  find(@Param('id') id: string): Promise<string> {
    return this.perRequest.find(id);
  }
}

describe('request-scoped and transient providers', () => {
  test('request-scoped: instances of different requests share the cache; no warning', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [cacheOn(a)],
      controllers: [PerRequestController],
      providers: [PerRequest],
    })
      .setLogger(logger)
      .compile();
    const app = moduleRef.createNestApplication({ logger });
    open.push(app);
    await app.init();
    await request(app.getHttpServer()).get('/req/1').expect(200, 'req 1');
    await request(app.getHttpServer()).get('/req/1').expect(200, 'req 1');
    expect(await runs('req')).toBe(1);
    expect(await rawGet(a, 'h:req:1')).toBe('req 1');
    const one = await app.resolve(PerRequest, ContextIdFactory.create());
    const two = await app.resolve(PerRequest, ContextIdFactory.create());
    expect(one).not.toBe(two);
    expect(await one.find('2')).toBe('req 2');
    expect(await two.find('2')).toBe('req 2');
    expect(await runs('req')).toBe(2);
    expect(logger.messages.filter((m) => m.includes('PerRequest'))).toEqual([]);
  });

  test('transient: injected and resolved instances are cached', async () => {
    const app = await context({ imports: [cacheOn(a)], providers: [PerInjection, UsesTransient] });
    const injected = app.get(UsesTransient).transient;
    expect(await injected.find('1')).toBe('tr 1');
    expect(await injected.find('1')).toBe('tr 1');
    const resolved = await app.resolve(PerInjection);
    expect(resolved).not.toBe(injected);
    expect(await resolved.find('1')).toBe('tr 1');
    expect(await runs('tr')).toBe(1);
    expect(await rawGet(a, 'h:tr:1')).toBe('tr 1');
  });
});

// ---------------------------------------------------------------------------------------------
// Applications and classes

@Injectable()
class Shared {
  @Cacheable({ key: (id: string) => `shared:${id}` })
  find(id: string): string {
    return `shared ${id}`;
  }
}

@Injectable({ scope: Scope.REQUEST })
class SharedPerRequest {
  constructor(readonly cache: MemcachedService) {}

  @Cacheable({ key: (id: string) => `spr:${id}` })
  async find(id: string): Promise<string> {
    return `spr ${id}`;
  }
}

@Injectable({ scope: Scope.REQUEST })
class Anonymous {
  @Cacheable({ key: (id: string) => `anon:${id}` })
  async find(id: string): Promise<string> {
    return `anon ${id}`;
  }
}

describe('applications', () => {
  test('two apps with different clients never use each other’s client', async () => {
    const appA = await context({ imports: [cacheOn(a)], providers: [Shared, SharedPerRequest] });
    const appB = await context({ imports: [cacheOn(b)], providers: [Shared, SharedPerRequest] });
    const setsA = Number((await serverStats(a))['cmd_set']);
    await appB.get(Shared).find('1');
    expect(await rawGet(b, 'h:shared:1')).toBe('shared 1');
    expect(await rawGet(a, 'h:shared:1')).toBeUndefined();
    await appA.get(Shared).find('2');
    expect(await rawGet(a, 'h:shared:2')).toBe('shared 2');
    expect(await rawGet(b, 'h:shared:2')).toBeUndefined();
    // Request-scoped instances created later: told apart by what they hold.
    await (await appB.resolve(SharedPerRequest, ContextIdFactory.create())).find('3');
    expect(await rawGet(b, 'h:spr:3')).toBe('spr 3');
    expect(await rawGet(a, 'h:spr:3')).toBeUndefined();
    await (await appA.resolve(SharedPerRequest, ContextIdFactory.create())).find('4');
    expect(await rawGet(a, 'h:spr:4')).toBe('spr 4');
    expect(await rawGet(b, 'h:spr:4')).toBeUndefined();
    expect(Number((await serverStats(a))['cmd_set']) - setsA).toBe(2);
  });

  test('two apps and an instance nothing tells apart: no cache, one warning; one app: cached', async () => {
    const appA = await context({ imports: [cacheOn(a)], providers: [Anonymous] });
    const appB = await context({ imports: [cacheOn(b)], providers: [Anonymous] });
    const before = [
      Number((await serverStats(a))['cmd_get']),
      Number((await serverStats(b))['cmd_get']),
    ];
    await (await appA.resolve(Anonymous, ContextIdFactory.create())).find('1');
    await (await appB.resolve(Anonymous, ContextIdFactory.create())).find('1');
    expect(Number((await serverStats(a))['cmd_get'])).toBe(before[0]);
    expect(Number((await serverStats(b))['cmd_get'])).toBe(before[1]);
    expect(await rawGet(a, 'h:anon:1')).toBeUndefined();
    expect(await rawGet(b, 'h:anon:1')).toBeUndefined();
    expect(logger.messages.filter((m) => m.includes('Anonymous is registered by 2'))).toHaveLength(
      1,
    );
    await appB.close();
    await (await appA.resolve(Anonymous, ContextIdFactory.create())).find('2');
    expect(await rawGet(a, 'h:anon:2')).toBe('anon 2');
  });

  test('before init, after close and outside Nest the method runs uncached', async () => {
    expect(new Shared().find('x')).toBe('shared x'); // still synchronous: no application
    const moduleRef = await Test.createTestingModule({ imports: [cacheOn(a)], providers: [Shared] })
      .setLogger(logger)
      .compile();
    const shared = moduleRef.get(Shared);
    expect(shared.find('y')).toBe('shared y');
    await moduleRef.init();
    expect(await shared.find('y')).toBe('shared y');
    expect(await rawGet(a, 'h:shared:y')).toBe('shared y');
    const connections = Number((await serverStats(a))['curr_connections']);
    await moduleRef.close();
    expect(shared.find('z')).toBe('shared z');
    expect(await rawGet(a, 'h:shared:z')).toBeUndefined();
    // app.close() closed the client's sockets.
    expect(Number((await serverStats(a))['curr_connections'])).toBeLessThan(connections);
  });
});

// ---------------------------------------------------------------------------------------------
// Same-named classes

function itemsModule(moduleName: string, value: string): DynamicModule {
  @Injectable()
  class Items {
    @Cacheable()
    async find(id: string): Promise<string> {
      await run(`items:${value}`);
      return `${value} ${id}`;
    }
  }
  class Feature {}
  Object.defineProperty(Feature, 'name', { value: moduleName });
  Module({})(Feature);
  return { module: Feature, providers: [Items], exports: [Items] };
}

describe('default keys', () => {
  test('two same-named classes in two modules never share a cached value', async () => {
    const one = itemsModule('CatalogModule', 'catalog');
    const two = itemsModule('ArchiveModule', 'archive');
    const app = await context({ imports: [cacheOn(a), one, two] });
    const [ItemsOne] = one.providers as [new () => { find(id: string): Promise<string> }];
    const [ItemsTwo] = two.providers as [new () => { find(id: string): Promise<string> }];
    expect(ItemsOne.name).toBe(ItemsTwo.name);
    expect(await app.get(ItemsOne).find('1')).toBe('catalog 1');
    expect(await app.get(ItemsTwo).find('1')).toBe('archive 1');
    expect(await app.get(ItemsTwo).find('1')).toBe('archive 1');
    expect(await rawGet(a, 'h:CatalogModule/Items.find("1")')).toBe('catalog 1');
    expect(await rawGet(a, 'h:ArchiveModule/Items.find("1")')).toBe('archive 1');
    expect(await runs('items:archive')).toBe(1);
  });

  test('same-named classes in same-named modules fail the boot', async () => {
    const error = await Test.createTestingModule({
      imports: [cacheOn(a), itemsModule('Feature', 'x'), itemsModule('Feature', 'y')],
    })
      .setLogger(logger)
      .compile()
      .then(async (moduleRef) => {
        open.push(moduleRef);
        await moduleRef.init();
        return undefined;
      })
      .catch((e: unknown) => e as Error);
    expect(error?.message).toMatch(
      /two different classes named Items in modules named Feature would share the default keys/,
    );
  });
});

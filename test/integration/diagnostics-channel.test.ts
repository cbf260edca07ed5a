/**
 * The `node:diagnostics_channel` channels against real memcached servers: the
 * `memcached:command` TracingChannel (events, their order, the context of each command), the
 * failover point channels and the cache-aside outcomes. Values never appear in a context.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import * as dc from 'node:diagnostics_channel';
import {
  MemcachedClient,
  MemcachedClientError,
  MemcachedConnectionError,
  MemcachedService,
  MemcachedValueError,
  type MemcachedCacheEvent,
  type MemcachedCommandContext,
  type MemcachedOptions,
  type MemcachedServerEvent,
} from '../../lib/index.js';
import {
  rawRequest,
  startMemcached,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';
import { startProxy, type FaultProxy } from '../harness/proxy.js';

type EventName = 'start' | 'end' | 'asyncStart' | 'asyncEnd' | 'error';
const EVENTS: readonly EventName[] = ['start', 'end', 'asyncStart', 'asyncEnd', 'error'];

/** Every event published on `tracing:memcached:command:*`, in order. */
class CommandRecorder {
  readonly events: Array<{ event: EventName; context: MemcachedCommandContext }> = [];
  private readonly channel = dc.tracingChannel('memcached:command');
  private readonly handlers = Object.fromEntries(
    EVENTS.map((event) => [
      event,
      (message: unknown): void =>
        void this.events.push({ event, context: message as MemcachedCommandContext }),
    ]),
  ) as Record<EventName, (message: unknown) => void>;

  constructor() {
    this.channel.subscribe(this.handlers);
  }

  stop(): void {
    this.channel.unsubscribe(this.handlers);
  }

  /** The distinct contexts, in the order their commands started. */
  get contexts(): MemcachedCommandContext[] {
    return [...new Set(this.events.filter((e) => e.event === 'start').map((e) => e.context))];
  }

  /** The events of one command, in order. */
  of(context: MemcachedCommandContext): EventName[] {
    return this.events.filter((e) => e.context === context).map((e) => e.event);
  }

  clear(): void {
    this.events.length = 0;
  }
}

/** Every message of a point channel. */
function record<T>(name: string): { messages: T[]; stop(): void } {
  const messages: T[] = [];
  const onMessage = (message: unknown): void => void messages.push(message as T);
  dc.subscribe(name, onMessage);
  return { messages, stop: () => dc.unsubscribe(name, onMessage) };
}

/**
 * Every string reachable from `root` (own properties, symbol-keyed ones too, array items, error
 * messages and causes, Buffers as latin1 text), for checking that no value leaks.
 */
function reachableText(root: unknown): string[] {
  const out: string[] = [];
  const seen = new Set<unknown>();
  const walk = (v: unknown): void => {
    if (typeof v === 'string') out.push(v);
    else if (typeof v === 'bigint' || typeof v === 'number') out.push(String(v));
    else if (Buffer.isBuffer(v) || v instanceof Uint8Array) {
      out.push(Buffer.from(v).toString('latin1'));
    } else if ((typeof v === 'object' || typeof v === 'function') && v !== null && !seen.has(v)) {
      seen.add(v);
      if (v instanceof Error) {
        walk(v.message);
        walk(v.stack);
        walk((v as { cause?: unknown }).cause);
      }
      if (v instanceof Map) {
        for (const [k, x] of v) {
          walk(k);
          walk(x);
        }
      }
      for (const key of Reflect.ownKeys(v)) {
        const d = Object.getOwnPropertyDescriptor(v, key);
        if (d !== undefined && 'value' in d) walk(d.value);
      }
    }
  };
  walk(root);
  return out;
}

let server: MemcachedProcess;
let socketServer: MemcachedProcess;
const clients: MemcachedClient[] = [];
let recorder: CommandRecorder | undefined;
const stops: Array<() => void> = [];

beforeAll(async () => {
  [server, socketServer] = await Promise.all([
    startMemcached(),
    startMemcached({ unixSocket: true }),
  ]);
});

afterEach(async () => {
  recorder?.stop();
  recorder = undefined;
  for (const stop of stops.splice(0)) stop();
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await rawRequest(server, 'flush_all\r\n');
});

afterAll(async () => {
  await stopAllMemcached();
});

function client(options: MemcachedOptions = {}): MemcachedClient {
  const c = new MemcachedClient({ servers: server.address, timeout: 1000, ...options });
  clients.push(c);
  return c;
}

function listen(): CommandRecorder {
  recorder = new CommandRecorder();
  return recorder;
}

describe.each([
  ['autoBatch on', true],
  ['autoBatch off', false],
])('memcached:command (%s)', (_label, autoBatch) => {
  test('get, set, getMany and delete: start, end, asyncStart, asyncEnd with their context', async () => {
    const mc = client({ keyPrefix: 'app:', autoBatch });
    const r = listen();
    expect(await mc.get('user:1')).toBeUndefined();
    expect(await mc.set('user:1', { name: 'Ada' }, { ttl: 60 })).toBe(true);
    expect(await mc.get('user:1')).toEqual({ name: 'Ada' });
    expect((await mc.getMany(['user:1', 'user:2', 'user:3'])).size).toBe(1);
    expect(await mc.delete('user:1')).toBe(true);
    r.stop();

    const tcp = { server: server.serverId, serverAddress: '127.0.0.1', serverPort: server.port };
    const common = { protocol: 'text', noreply: false, ...tcp };
    const contexts = r.contexts;
    expect(contexts).toEqual([
      { command: 'get', method: 'get', keys: ['app:user:1'], keyCount: 1, hits: 0, ...common },
      { command: 'set', method: 'set', keys: ['app:user:1'], keyCount: 1, ...common },
      { command: 'get', method: 'get', keys: ['app:user:1'], keyCount: 1, hits: 1, ...common },
      {
        command: 'get',
        method: 'getMany',
        keys: ['app:user:1', 'app:user:2', 'app:user:3'],
        keyCount: 3,
        hits: 1,
        ...common,
      },
      { command: 'delete', method: 'delete', keys: ['app:user:1'], keyCount: 1, ...common },
    ]);
    for (const c of contexts) {
      expect(r.of(c)).toEqual(['start', 'end', 'asyncStart', 'asyncEnd']);
      expect(c.serverPort).toBe(server.port);
    }
    // Every event was published with one of these contexts.
    expect(r.events.every((e) => contexts.includes(e.context))).toBe(true);
  });

  test('a failed command publishes error (with the error on the context) before asyncStart and asyncEnd', async () => {
    const mc = client({ autoBatch });
    await mc.set('text', 'not a number');
    const r = listen();
    const failure = await mc.incr('text').catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(MemcachedClientError);
    const [c] = r.contexts;
    expect(r.contexts).toHaveLength(1);
    expect(c).toMatchObject({ command: 'incr', method: 'incr', keys: ['text'], keyCount: 1 });
    expect(c!.error).toBe(failure);
    expect(r.of(c!)).toEqual(['start', 'end', 'error', 'asyncStart', 'asyncEnd']);
  });

  test('a connection failure of a get is published as an error of that get', async () => {
    const gone = await startMemcached();
    const address = gone.address;
    await gone.stop();
    const mc = client({ servers: address, autoBatch, failover: false, timeout: 300 });
    const r = listen();
    const failure = await mc.get('k').catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(MemcachedConnectionError);
    expect(r.contexts).toHaveLength(1);
    const [c] = r.contexts;
    expect(c).toMatchObject({ command: 'get', keys: ['k'], server: address });
    expect(c!.error).toBe(failure);
    expect(c!.hits).toBeUndefined();
    expect(r.of(c!)).toEqual(['start', 'end', 'error', 'asyncStart', 'asyncEnd']);
  });
});

describe('memcached:command', () => {
  test('over a unix socket, serverAddress is the socket path and there is no serverPort', async () => {
    const mc = client({ servers: socketServer.address });
    const r = listen();
    await mc.set('s', 1);
    await mc.get('s');
    expect(r.contexts).toHaveLength(2);
    for (const c of r.contexts) {
      expect(c.serverAddress).toBe(socketServer.socketPath);
      expect(c.server).toBe(socketServer.socketPath);
      expect('serverPort' in c).toBe(false);
    }
  });

  test('no context ever holds a value: every command, every event, every reachable string', async () => {
    const mc = client({ autoBatch: false });
    const batched = client();
    const r = listen();
    const marker = `V4LUE-${Math.random().toString(36).slice(2)}`;
    const value = { secret: marker, nested: [marker, Buffer.from(marker)] };
    await mc.set('a', value);
    await mc.add('b', marker);
    await mc.replace('b', `${marker}!`);
    await mc.append('b', marker);
    await mc.prepend('b', marker);
    const token = (await mc.gets('a'))!.cas;
    await mc.cas('a', value, token);
    await mc.setMany({ c: marker, d: value }, { noreply: true });
    await mc.setMany([['e', Buffer.from(marker)]]);
    await mc.get('a');
    await Promise.all(['a', 'b', 'c', 'd', 'e'].map((k) => batched.get(k)));
    await mc.getMany(['a', 'b', 'c', 'd', 'e']);
    await mc.getsMany(['a', 'b']);
    await mc.getAndTouch('a', 60);
    await mc.incr('b').catch(() => undefined); // an error whose context is scanned too
    await mc.touch('a', 60);
    await mc.stats();
    await mc.version();
    await mc.deleteMany(['a', 'b']);
    await mc.flushAll();
    r.stop();
    expect(r.contexts.length).toBeGreaterThanOrEqual(25);
    const methods = new Set(r.contexts.map((c) => c.method));
    for (const m of ['set', 'add', 'cas', 'setMany', 'get', 'getMany', 'getsMany', 'stats']) {
      expect(methods).toContain(m);
    }
    // The context as each subscriber saw it, at every event.
    for (const { context } of r.events) {
      const leaked = reachableText(context).filter((s) => s.includes(marker));
      expect(leaked).toEqual([]);
    }
  });

  test('one context per request: a getMany over two servers, setMany one per key', async () => {
    const other = await startMemcached();
    const mc = client({ servers: [server.address, other.address] });
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    const r = listen();
    await mc.setMany(keys.map((k) => [k, k] as const));
    const sets = r.contexts;
    expect(sets).toHaveLength(40);
    expect(
      sets.every((c) => c.command === 'set' && c.method === 'setMany' && c.keyCount === 1),
    ).toBe(true);
    expect(sets.map((c) => c.keys[0]).sort()).toEqual([...keys].sort());
    r.clear();
    await mc.getMany(keys);
    const gets = r.contexts;
    expect(gets).toHaveLength(2);
    expect(new Set(gets.map((c) => c.server))).toEqual(new Set([server.serverId, other.serverId]));
    for (const c of gets) {
      expect(c.keyCount).toBe(c.keys.length);
      expect(c.hits).toBe(c.keyCount);
      for (const k of c.keys) expect(mc.serverFor(k)).toBe(c.server);
    }
    expect(gets.flatMap((c) => c.keys).sort()).toEqual([...keys].sort());
    await other.stop();
  });

  test('the command succeeds when the server answered, even if the call then fails reading the reply', async () => {
    const mc = client();
    await mc.set('big', String(2n ** 60n));
    const r = listen();
    // The server applied the incr; the result does not fit a number, so the call rejects.
    await expect(mc.incr('big', 1)).rejects.toBeInstanceOf(MemcachedValueError);
    const [c] = r.contexts;
    expect(r.contexts).toHaveLength(1);
    expect(c).toMatchObject({ command: 'incr', keys: ['big'] });
    expect(c!.error).toBeUndefined();
    expect(r.of(c!)).toEqual(['start', 'end', 'asyncStart', 'asyncEnd']);
  });

  test('the keys in a context are a copy: changing them does not change the request', async () => {
    const mc = client({ autoBatch: false });
    await mc.setMany({ x: 1, y: 2 });
    const onStart = (message: unknown): void => {
      (message as { keys: string[] }).keys.splice(0, 2, 'zz', 'zz');
    };
    const channel = dc.tracingChannel('memcached:command');
    channel.start.subscribe(onStart);
    stops.push(() => channel.start.unsubscribe(onStart));
    expect(await mc.getMany(['x', 'y'])).toEqual(
      new Map<string, unknown>([
        ['x', 1],
        ['y', 2],
      ]),
    );
  });

  test('a command refused at once (dead server) still publishes its error', async () => {
    const proxy = await startProxy(server.host, server.port);
    stops.push(() => void proxy.close());
    const mc = client({
      servers: proxy.address,
      failover: { failureThreshold: 1, deadTimeout: 60_000 },
      connectTimeout: 300,
    });
    await proxy.stopListening();
    await expect(mc.set('k', 1)).rejects.toBeInstanceOf(MemcachedConnectionError);
    expect(mc.poolStats()[proxy.address]!.dead).toBe(true);
    const r = listen();
    // The get waits for the tick's batch, so it is refused after `end`; the version is refused
    // synchronously by the dead check, inside the dispatch, so before `end` (the order of
    // TracingChannel.traceCallback with a callback called at once).
    const orders = [
      ['start', 'end', 'error', 'asyncStart', 'asyncEnd'],
      ['start', 'error', 'asyncStart', 'asyncEnd', 'end'],
    ];
    const failures = [
      await mc.get('k').catch((e: unknown) => e),
      await mc.version().catch((e: unknown) => e),
    ];
    expect(r.contexts).toMatchObject([
      { command: 'get', method: 'get', keys: ['k'], keyCount: 1 },
      { command: 'version', method: 'version', keys: [], keyCount: 0 },
    ]);
    r.contexts.forEach((c, i) => {
      expect(failures[i]).toBeInstanceOf(MemcachedConnectionError);
      expect(failures[i]).toHaveProperty('message', expect.stringContaining('marked dead'));
      expect(c.error).toBe(failures[i]);
      expect(r.of(c)).toEqual(orders[i]);
    });
  });
});

describe('memcached:server:down / memcached:server:up', () => {
  let proxy: FaultProxy;

  beforeAll(async () => {
    proxy = await startProxy(server.host, server.port);
  });

  afterAll(async () => {
    await proxy.close();
  });

  test('failover transitions are published with the server id (and the error when down)', async () => {
    const down = record<MemcachedServerEvent>('memcached:server:down');
    const up = record<MemcachedServerEvent>('memcached:server:up');
    stops.push(down.stop, up.stop);
    const mc = client({
      servers: [server.address, proxy.address],
      failover: { failureThreshold: 2, deadTimeout: 300, retryTimeout: 100 },
      connectTimeout: 300,
    });
    const key = Array.from({ length: 100 }, (_, i) => `p${i}`).find(
      (k) => mc.serverFor(k) === proxy.address,
    )!;
    await mc.set(key, 1);
    await proxy.stopListening();
    proxy.dropAll();
    for (let i = 0; i < 20 && down.messages.length === 0; i++) {
      await mc.get(key).catch(() => undefined);
    }
    expect(down.messages).toHaveLength(1);
    expect(down.messages[0]!.server).toBe(proxy.address);
    expect(down.messages[0]!.error).toBeInstanceOf(MemcachedConnectionError);
    expect(mc.poolStats()[proxy.address]).toMatchObject({ dead: true });
    expect(up.messages).toEqual([]);

    await proxy.startListening();
    const deadline = performance.now() + 5000;
    while (up.messages.length === 0 && performance.now() < deadline) {
      await mc.get(key).catch(() => undefined); // traffic drives the probes
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(up.messages).toEqual([{ server: proxy.address }]);
    expect(down.messages).toHaveLength(1);
  });
});

describe('memcached:cache', () => {
  test('getOrSet publishes hit, miss, coalesced and error, with the key as given', async () => {
    const cache = record<MemcachedCacheEvent>('memcached:cache');
    stops.push(cache.stop);
    const service = new MemcachedService({ servers: server.address, keyPrefix: 'svc:' });
    clients.push(service.client);
    let runs = 0;
    const compute = async (): Promise<string> => {
      runs++;
      await new Promise((resolve) => setTimeout(resolve, 30));
      return 'computed';
    };
    const first = await Promise.all([
      service.getOrSet('page', compute),
      service.getOrSet('page', compute),
    ]);
    expect(first).toEqual(['computed', 'computed']);
    expect(await service.getOrSet('page', compute)).toBe('computed');
    expect(runs).toBe(1);
    expect(cache.messages).toEqual([
      { key: 'page', outcome: 'coalesced' },
      { key: 'page', outcome: 'miss' },
      { key: 'page', outcome: 'hit' },
    ]);

    const gone = await startMemcached();
    const address = gone.address;
    await gone.stop();
    const broken = new MemcachedService({ servers: address, failover: false, timeout: 300 });
    clients.push(broken.client);
    cache.messages.length = 0;
    expect(await broken.getOrSet('page', () => 'fallback')).toBe('fallback');
    expect(cache.messages).toEqual([{ key: 'page', outcome: 'error' }]);
  });

  test.each(['text', 'meta'] as const)(
    'with ignoreErrors (%s) a failed read is still an error, not a miss, and reported as getOrSet',
    async (protocol) => {
      const cache = record<MemcachedCacheEvent>('memcached:cache');
      stops.push(cache.stop);
      const gone = await startMemcached();
      await gone.stop();
      const mc = new MemcachedClient({
        servers: gone.address,
        protocol,
        ignoreErrors: true,
        failover: false,
        connectTimeout: 200,
        timeout: 200,
      });
      clients.push(mc);
      const ignored: string[] = [];
      mc.on('ignoredError', ({ command }) => ignored.push(command));
      expect(await mc.getOrSet('page', () => 'fallback')).toBe('fallback');
      expect(cache.messages).toEqual([{ key: 'page', outcome: 'error' }]);
      // The read and the write failed: both reported by getOrSet, as without ignoreErrors.
      expect(ignored).toEqual(['getOrSet', 'getOrSet']);
    },
  );
});

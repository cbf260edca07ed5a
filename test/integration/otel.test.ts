/**
 * `nestjs-memcached/otel` with the real OpenTelemetry SDK (in-memory span exporter, a metric
 * reader collected on demand) against real memcached servers.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from '@jest/globals';
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context,
  diag,
  trace,
  type Context,
  type ContextManager,
} from '@opentelemetry/api';
import {
  AggregationTemporality,
  DataPointType,
  MeterProvider,
  MetricReader,
  type HistogramMetricData,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { AsyncLocalStorage } from 'node:async_hooks';
import { MemcachedClient, MemcachedClientError, type MemcachedOptions } from '../../lib/index.js';
import { instrumentMemcached } from '../../lib/otel/index.js';
import {
  rawRequest,
  startMemcached,
  stopAllMemcached,
  type MemcachedProcess,
} from '../harness/memcached.js';

/** The async-hooks context manager of @opentelemetry/context-async-hooks, in a few lines. */
class AlsContextManager implements ContextManager {
  private readonly storage = new AsyncLocalStorage<Context>();
  active(): Context {
    return this.storage.getStore() ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.storage.run(ctx, () => fn.apply(thisArg, args));
  }
  bind<T>(_ctx: Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    this.storage.disable();
    return this;
  }
}

class TestReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

let server: MemcachedProcess;
let socketServer: MemcachedProcess;
const exporter = new InMemorySpanExporter();
/** Names of the spans started (ended or not). */
const started: string[] = [];
const startCounter: SpanProcessor = {
  onStart: (span) => void started.push(span.name),
  onEnd: () => undefined,
  forceFlush: () => Promise.resolve(),
  shutdown: () => Promise.resolve(),
};
const tracerProvider = new BasicTracerProvider({
  spanProcessors: [new SimpleSpanProcessor(exporter), startCounter],
});
const contextManager = new AlsContextManager();
let reader: TestReader;
let meterProvider: MeterProvider;
const offs: Array<() => void> = [];
const clients: MemcachedClient[] = [];

beforeAll(async () => {
  context.setGlobalContextManager(contextManager);
  [server, socketServer] = await Promise.all([
    startMemcached(),
    startMemcached({ unixSocket: true }),
  ]);
});

afterEach(async () => {
  for (const off of offs.splice(0)) off();
  await Promise.all(clients.splice(0).map((c) => c.close()));
  exporter.reset();
  started.length = 0;
  await rawRequest(server, 'flush_all\r\n');
});

afterAll(async () => {
  context.disable();
  await stopAllMemcached();
});

function client(options: MemcachedOptions = {}): MemcachedClient {
  const c = new MemcachedClient({ servers: server.address, timeout: 1000, ...options });
  clients.push(c);
  return c;
}

function instrument(extra: Parameters<typeof instrumentMemcached>[0] = {}): void {
  reader = new TestReader();
  meterProvider = new MeterProvider({ readers: [reader] });
  offs.push(instrumentMemcached({ tracerProvider, meterProvider, ...extra }));
}

function spans(): ReadableSpan[] {
  return exporter.getFinishedSpans();
}

async function durationHistogram(): Promise<HistogramMetricData | undefined> {
  const { resourceMetrics } = await reader.collect();
  const metric = resourceMetrics.scopeMetrics
    .flatMap((s) => s.metrics)
    .find((m) => m.descriptor.name === 'db.client.operation.duration');
  return metric as HistogramMetricData | undefined;
}

describe('spans', () => {
  test('a get span: named by the command, CLIENT, with the stable database attributes', async () => {
    instrument();
    const mc = client();
    await mc.set('user:1', 'Ada');
    expect(await mc.get('user:1')).toBe('Ada');
    const [set, get] = spans();
    expect(spans()).toHaveLength(2);
    expect(get!.name).toBe('get');
    expect(get!.kind).toBe(SpanKind.CLIENT);
    expect(get!.attributes).toEqual({
      'db.system.name': 'memcached',
      'db.operation.name': 'get',
      'server.address': '127.0.0.1',
      'server.port': server.port,
    });
    expect(get!.status.code).toBe(SpanStatusCode.UNSET);
    expect(get!.instrumentationScope.name).toBe('nestjs-memcached');
    expect(set!.name).toBe('set');
    expect(set!.attributes['db.operation.name']).toBe('set');
  });

  test('a multi-get has db.operation.batch.size; a one-key command has none', async () => {
    instrument();
    const mc = client();
    await mc.getMany(['a', 'b', 'c']);
    await mc.getMany(['a']);
    const [three, one] = spans();
    expect(three!.name).toBe('get');
    expect(three!.attributes['db.operation.batch.size']).toBe(3);
    expect(one!.attributes).not.toHaveProperty('db.operation.batch.size');
  });

  test('a failure: error.type, the exception and an error status', async () => {
    instrument();
    const mc = client();
    await mc.set('text', 'abc');
    const failure = (await mc.incr('text').catch((e: unknown) => e)) as Error;
    expect(failure).toBeInstanceOf(MemcachedClientError);
    const span = spans().find((s) => s.name === 'incr')!;
    expect(span.attributes['error.type']).toBe('MemcachedClientError');
    expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: failure.message });
    expect(span.events.map((e) => e.name)).toEqual(['exception']);
    expect(span.events[0]!.attributes!['exception.message']).toBe(failure.message);
  });

  test("each call's span is a child of the span active where it was made (batched gets too)", async () => {
    instrument();
    const batched = client();
    const direct = client({ autoBatch: false });
    const tracer = tracerProvider.getTracer('test');
    const parents = ['p0', 'p1', 'p2'].map((name) => tracer.startSpan(name));
    await Promise.all(
      parents.map((parent, i) =>
        context.with(trace.setSpan(context.active(), parent), () =>
          Promise.all([batched.get(`k${i}`), direct.get(`k${i}`)]),
        ),
      ),
    );
    const gets = spans().filter((s) => s.name === 'get');
    expect(gets).toHaveLength(6);
    for (const parent of parents) {
      const children = gets.filter(
        (s) => s.parentSpanContext?.spanId === parent.spanContext().spanId,
      );
      expect(children).toHaveLength(2);
      for (const s of children) expect(s.spanContext().traceId).toBe(parent.spanContext().traceId);
    }
  });

  test('keys are not recorded unless asked; recordKeys takes a function to map them', async () => {
    instrument();
    const mc = client();
    await mc.get('secret:1');
    expect(JSON.stringify(spans()[0]!.attributes)).not.toContain('secret');
    for (const off of offs.splice(0)) off();
    exporter.reset();

    instrument({ recordKeys: true });
    await mc.get('secret:1');
    await mc.getMany(['x', 'y']);
    expect(spans()[0]!.attributes['db.memcached.key']).toBe('secret:1');
    expect(spans()[1]!.attributes['db.memcached.keys']).toEqual(['x', 'y']);
    for (const off of offs.splice(0)) off();
    exporter.reset();

    instrument({ recordKeys: (key) => `#${key.length}` });
    await mc.get('secret:1');
    expect(spans()[0]!.attributes['db.memcached.key']).toBe('#8');
    for (const off of offs.splice(0)) off();
    exporter.reset();

    // A throwing function costs the keys, not the span (nor the process).
    const logged: unknown[][] = [];
    diag.setLogger({
      error: (...args: unknown[]) => void logged.push(args),
      warn: () => undefined,
      info: () => undefined,
      debug: () => undefined,
      verbose: () => undefined,
    });
    try {
      instrument({
        recordKeys: () => {
          throw new Error('no');
        },
      });
      expect(await mc.get('secret:1')).toBeUndefined();
      expect(spans()).toHaveLength(1);
      expect(spans()[0]!.attributes).not.toHaveProperty('db.memcached.key');
      expect(String(logged[0]![0])).toContain('recordKeys threw');
    } finally {
      diag.disable();
    }
  });

  test('over a unix socket: server.address is the path, no server.port', async () => {
    instrument();
    const mc = client({ servers: socketServer.address });
    await mc.get('k');
    expect(spans()[0]!.attributes['server.address']).toBe(socketServer.socketPath);
    expect(spans()[0]!.attributes).not.toHaveProperty('server.port');
  });

  test('the function it returns turns it off: no new spans; a span in flight still ends', async () => {
    instrument();
    const mc = client();
    const off = offs.pop()!;
    const inFlight = mc.get('k');
    off();
    off(); // idempotent
    await inFlight;
    expect(spans().map((s) => s.name)).toEqual(['get']);
    await mc.get('k');
    await mc.set('k', 1);
    expect(spans()).toHaveLength(1);
    expect(started).toEqual(['get']);
  });

  test('rejects invalid options', () => {
    expect(() => instrumentMemcached({ tracerProvider: {} as never })).toThrow(/tracerProvider/);
    expect(() => instrumentMemcached({ recordKeys: 'yes' as never })).toThrow(/recordKeys/);
  });
});

describe('db.client.operation.duration', () => {
  test('a histogram in seconds, with the semantic-conventions buckets and attributes', async () => {
    instrument();
    const mc = client();
    await mc.set('k', 1);
    await mc.get('k');
    await mc.get('k');
    await mc.set('text', 'abc');
    await mc.incr('text').catch(() => undefined);
    const h = (await durationHistogram())!;
    expect(h.dataPointType).toBe(DataPointType.HISTOGRAM);
    expect(h.descriptor.unit).toBe('s');
    const points = h.dataPoints.map((p) => ({ attributes: p.attributes, count: p.value.count }));
    const base = {
      'db.system.name': 'memcached',
      'server.address': '127.0.0.1',
      'server.port': server.port,
    };
    expect(points).toEqual(
      expect.arrayContaining([
        { attributes: { ...base, 'db.operation.name': 'set' }, count: 2 },
        { attributes: { ...base, 'db.operation.name': 'get' }, count: 2 },
        {
          attributes: {
            ...base,
            'db.operation.name': 'incr',
            'error.type': 'MemcachedClientError',
          },
          count: 1,
        },
      ]),
    );
    expect(points).toHaveLength(3);
    const get = h.dataPoints.find((p) => p.attributes['db.operation.name'] === 'get')!;
    expect(get.value.buckets.boundaries).toEqual([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]);
    // Seconds: the sum matches the two get spans' durations.
    const spanSeconds = spans()
      .filter((s) => s.name === 'get')
      .reduce((sum, s) => sum + s.duration[0] + s.duration[1] / 1e9, 0);
    expect(get.value.sum).toBeGreaterThan(spanSeconds * 0.5);
    expect(get.value.sum).toBeLessThan(spanSeconds * 2 + 0.0005);
  });

  test('the histogram measures the command, not the span processors: a slow onEnd adds nothing to it', async () => {
    const slowEnd: SpanProcessor = {
      onStart: () => undefined,
      onEnd: () => {
        const until = performance.now() + 30;
        while (performance.now() < until); // a slow exporter, synchronous
      },
      forceFlush: () => Promise.resolve(),
      shutdown: () => Promise.resolve(),
    };
    instrument({ tracerProvider: new BasicTracerProvider({ spanProcessors: [slowEnd] }) });
    const mc = client();
    await mc.set('k', 1);
    await mc.get('k');
    const h = (await durationHistogram())!;
    const get = h.dataPoints.find((p) => p.attributes['db.operation.name'] === 'get')!;
    expect(get.value.count).toBe(1);
    expect(get.value.sum).toBeLessThan(0.025);
  });

  test('no points after the off function', async () => {
    instrument();
    const mc = client();
    await mc.get('k');
    for (const off of offs.splice(0)) off();
    await mc.get('k');
    await mc.get('k');
    const h = (await durationHistogram())!;
    expect(h.dataPoints.map((p) => p.value.count)).toEqual([1]);
  });
});

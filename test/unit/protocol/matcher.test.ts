import fc from 'fast-check';
import {
  MemcachedError,
  MemcachedProtocolError,
  MemcachedTimeoutError,
} from '../../../lib/errors.js';
import type { DriverSession, SessionHost, SessionLimits } from '../../../lib/protocol/driver.js';
import {
  Request,
  type AnyRequest,
  type ArithOp,
  type CommandSpec,
  type ReplyKind,
  type RetrieveOp,
  type RetrievedItem,
  type StoreOp,
} from '../../../lib/protocol/request.js';
import { textDriver } from '../../../lib/protocol/text/driver.js';
import { TextReplyMatcher } from '../../../lib/protocol/text/matcher.js';
import { ReplyParser } from '../../../lib/protocol/text/parser.js';
import { byteByByte, bytes, splitAt } from './chunks.js';

// ---------------------------------------------------------------------------------------------
// An in-memory connection: an array queue of Requests, a text-driver session, and a log of
// every settlement and stray error, in the order they happened.

const SERVER = '10.0.0.7:11211';
/** Small maxValueLength so that tooLarge items are cheap to produce. */
const LIMITS: SessionLimits = { maxLineLength: 8192, maxValueLength: 32 };

/** A retrieval item as logged: data as hex so that logs compare and render exactly. */
interface LoggedItem {
  key: string;
  flags: number;
  data: string;
  cas: string | undefined;
  index: number;
  tooLarge: number;
}

/** One thing that happened: request `i` settled with a reply or an error, or a stray error. */
type Event = { i: number; reply: unknown } | { i: number; error: string } | { stray: string };

const ok = (i: number, reply: unknown): Event => ({ i, reply });
const failed = (i: number, error: string): Event => ({ i, error });
const stray = (error: string): Event => ({ stray: error });
const item = (
  key: string,
  flags: number,
  data: string | Buffer,
  cas: string | undefined,
  index: number,
  tooLarge = 0,
): LoggedItem => ({
  key,
  flags,
  data: (typeof data === 'string' ? Buffer.from(data, 'utf8') : data).toString('hex'),
  cas,
  index,
  tooLarge,
});

function normalize(reply: unknown): unknown {
  if (!Array.isArray(reply)) return reply;
  return (reply as RetrievedItem[]).map(
    ({ key, flags, data, cas, index, tooLarge }): LoggedItem => ({
      key,
      flags,
      data: data.toString('hex'),
      cas,
      index,
      tooLarge,
    }),
  );
}

class World implements SessionHost {
  readonly server = SERVER;
  readonly queue: AnyRequest[] = [];
  readonly events: Event[] = [];
  /** Every error handed to a request or to stray(), in order. */
  readonly errors: MemcachedError[] = [];
  readonly session: DriverSession;
  private count = 0;

  constructor(limits: SessionLimits = LIMITS) {
    this.session = textDriver.session(this, limits, undefined);
  }

  head(): AnyRequest | undefined {
    return this.queue[0];
  }

  shift(): void {
    if (this.queue.length === 0) throw new Error('shift() on an empty queue');
    this.queue.shift();
  }

  stray(error: MemcachedError): void {
    this.errors.push(error);
    this.events.push({ stray: error.name });
  }

  /** The index the next request will get. */
  get next(): number {
    return this.count;
  }

  /** Queues a request (as written), built the way the client builds one. */
  add(spec: CommandSpec, data: Buffer | Buffer[] = textDriver.encode(spec)): AnyRequest {
    const i = this.count++;
    const r = new Request<ReplyKind>(
      spec.op,
      spec,
      data,
      (reply) => this.events.push({ i, reply: normalize(reply) }),
      (error) => {
        this.errors.push(error);
        this.events.push({ i, error: error.name });
      },
    ) as unknown as AnyRequest;
    this.queue.push(r);
    return r;
  }

  /** Queues a fence with the bytes the session would write now (and observable callbacks). */
  fence(): AnyRequest {
    const f = this.session.fence();
    return this.add({ op: 'fence' }, f.data!);
  }

  /** Queues a request and settles it at once, as a deadline would (its reply comes late). */
  late(spec: CommandSpec): AnyRequest {
    const r = this.add(spec);
    r.fail(new MemcachedTimeoutError('timed out', { server: SERVER, command: spec.op }));
    return r;
  }

  /** Feeds the chunks in order; returns what the session threw, if anything. */
  feed(chunks: readonly Buffer[]): unknown {
    try {
      for (const chunk of chunks) this.session.feed(chunk);
    } catch (err) {
      return err;
    }
    return undefined;
  }
}

// Specs as the client builds them (wire keys, validated numbers).
const get = (...keys: string[]): CommandSpec => ({ op: 'get', keys });
const gets = (...keys: string[]): CommandSpec => ({ op: 'gets', keys });
const gat = (ttl: number, ...keys: string[]): CommandSpec => ({ op: 'gat', keys, ttl });
const gats = (ttl: number, ...keys: string[]): CommandSpec => ({ op: 'gats', keys, ttl });
const store = (op: StoreOp, key: string, value = 'v'): CommandSpec => ({
  op,
  key,
  flags: 0,
  ttl: 0,
  value: Buffer.from(value),
  cas: op === 'cas' ? '42' : undefined,
  noreply: false,
});
const del = (key: string): CommandSpec => ({ op: 'delete', key });
const touch = (key: string): CommandSpec => ({ op: 'touch', key, ttl: 10 });
const arith = (op: ArithOp, key: string, delta = 1n): CommandSpec => ({ op, key, delta });
const VERSION: CommandSpec = { op: 'version' };
const STATS: CommandSpec = { op: 'stats' };
const FLUSH: CommandSpec = { op: 'flush_all' };

/** What a run left behind, comparable across chunkings. */
interface Outcome {
  events: Event[];
  /** Class name of what feed() threw. */
  thrown: string | undefined;
  /** Requests still queued. */
  left: number;
}

const render = (o: Outcome): string =>
  JSON.stringify(o, (_k, v: unknown) =>
    typeof v === 'bigint' ? `${v}n` : v === undefined ? 'undefined' : v,
  );

function outcome(w: World, thrown: unknown): Outcome {
  return {
    events: w.events,
    thrown: thrown === undefined ? undefined : (thrown as Error).name,
    left: w.queue.length,
  };
}

// ---------------------------------------------------------------------------------------------
// Recorded memcached 1.6 replies: the requests they answer and what each request must get

const BINARY = Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x45, 0x4e, 0x44, 0x0d, 0x0a, 0x80, 0x0d]);

interface Scenario {
  name: string;
  /** Queues the requests (in write order). */
  build(w: World): void;
  reply: Buffer;
  /** Every settlement and stray, in order. */
  events: Event[];
  /** Default: nothing thrown, nothing left. */
  thrown?: string;
  left?: number;
}

function runScenario(s: Scenario, chunks: readonly Buffer[]): Outcome {
  const w = new World();
  s.build(w);
  return outcome(w, w.feed(chunks));
}

const REPLIES: Scenario[] = [
  {
    name: 'set STORED',
    build: (w) => w.add(store('set', 'k')),
    reply: bytes('STORED\r\n'),
    events: [ok(0, 'stored')],
  },
  {
    name: 'add NOT_STORED, replace NOT_STORED, append STORED, prepend NOT_STORED',
    build: (w) => {
      w.add(store('add', 'k'));
      w.add(store('replace', 'k'));
      w.add(store('append', 'k'));
      w.add(store('prepend', 'k'));
    },
    reply: bytes('NOT_STORED\r\nNOT_STORED\r\nSTORED\r\nNOT_STORED\r\n'),
    events: [ok(0, 'not_stored'), ok(1, 'not_stored'), ok(2, 'stored'), ok(3, 'not_stored')],
  },
  {
    name: 'cas EXISTS, cas NOT_FOUND, cas STORED',
    build: (w) => {
      w.add(store('cas', 'k'));
      w.add(store('cas', 'gone'));
      w.add(store('cas', 'k'));
    },
    reply: bytes('EXISTS\r\nNOT_FOUND\r\nSTORED\r\n'),
    events: [ok(0, 'exists'), ok(1, 'not_found'), ok(2, 'stored')],
  },
  {
    name: 'delete DELETED / NOT_FOUND',
    build: (w) => {
      w.add(del('k'));
      w.add(del('k'));
    },
    reply: bytes('DELETED\r\nNOT_FOUND\r\n'),
    events: [ok(0, true), ok(1, false)],
  },
  {
    name: 'touch TOUCHED / NOT_FOUND',
    build: (w) => {
      w.add(touch('k'));
      w.add(touch('gone'));
    },
    reply: bytes('TOUCHED\r\nNOT_FOUND\r\n'),
    events: [ok(0, true), ok(1, false)],
  },
  {
    name: 'incr, decr with space padding, NOT_FOUND, 2^64-1, 0',
    build: (w) => {
      w.add(arith('incr', 'n', 1n));
      w.add(arith('decr', 'n', 91n));
      w.add(arith('incr', 'gone'));
      w.add(arith('incr', 'big'));
      w.add(arith('decr', 'z', 5n));
    },
    reply: bytes('101\r\n9  \r\nNOT_FOUND\r\n18446744073709551615\r\n0\r\n'),
    events: [ok(0, 101n), ok(1, 9n), ok(2, undefined), ok(3, 18446744073709551615n), ok(4, 0n)],
  },
  {
    name: 'version',
    build: (w) => w.add(VERSION),
    reply: bytes('VERSION 1.6.21\r\n'),
    events: [ok(0, '1.6.21')],
  },
  {
    name: 'flush_all OK',
    build: (w) => w.add(FLUSH),
    reply: bytes('OK\r\n'),
    events: [ok(0, true)],
  },
  {
    name: 'stats',
    build: (w) => w.add(STATS),
    reply: bytes(
      'STAT pid 4242\r\n',
      'STAT uptime 5020\r\n',
      'STAT version 1.6.21\r\n',
      'STAT libevent 2.1.12-stable\r\n',
      'STAT rusage_user 0.123456\r\n',
      'STAT curr_items 0\r\n',
      'END\r\n',
    ),
    events: [
      ok(0, {
        pid: '4242',
        uptime: '5020',
        version: '1.6.21',
        libevent: '2.1.12-stable',
        rusage_user: '0.123456',
        curr_items: '0',
      }),
    ],
  },
  {
    name: 'stats slabs, then an empty stats reply',
    build: (w) => {
      w.add({ op: 'stats', group: 'slabs' });
      w.add({ op: 'stats', group: 'items' });
    },
    reply: bytes(
      'STAT 1:chunk_size 96\r\nSTAT 1:chunks_per_page 10922\r\nSTAT active_slabs 1\r\nEND\r\n',
      'END\r\n',
    ),
    events: [
      ok(0, { '1:chunk_size': '96', '1:chunks_per_page': '10922', active_slabs: '1' }),
      ok(1, {}),
    ],
  },
  {
    name: 'get miss',
    build: (w) => w.add(get('k')),
    reply: bytes('END\r\n'),
    events: [ok(0, [])],
  },
  {
    name: 'multi-get: hits skip misses, index is the position asked',
    build: (w) => w.add(get('a', 'b', 'c', 'd')),
    reply: bytes('VALUE b 3 5\r\nhello\r\nVALUE d 0 0\r\n\r\nEND\r\n'),
    events: [ok(0, [item('b', 3, 'hello', undefined, 1), item('d', 0, '', undefined, 3)])],
  },
  {
    name: 'get of a key asked twice gets it twice',
    build: (w) => w.add(get('a', 'b', 'a')),
    reply: bytes('VALUE a 0 1\r\nx\r\nVALUE a 0 1\r\nx\r\nEND\r\n'),
    events: [ok(0, [item('a', 0, 'x', undefined, 0), item('a', 0, 'x', undefined, 2)])],
  },
  {
    name: 'gets with cas tokens, binary data',
    build: (w) => w.add(gets('k1', 'k2')),
    reply: bytes(
      'VALUE k1 4294967295 11 18446744073709551615\r\n',
      BINARY,
      '\r\nVALUE k2 1 3 7\r\nabc\r\nEND\r\n',
    ),
    events: [
      ok(0, [
        item('k1', 4294967295, BINARY, '18446744073709551615', 0),
        item('k2', 1, 'abc', '7', 1),
      ]),
    ],
  },
  {
    name: 'gat hit, gats hit',
    build: (w) => {
      w.add(gat(60, 'session:abc'));
      w.add(gats(60, 'x', 'session:abc'));
    },
    reply: bytes(
      'VALUE session:abc 16 2\r\n{}\r\nEND\r\nVALUE session:abc 16 2 99\r\n{}\r\nEND\r\n',
    ),
    events: [
      ok(0, [item('session:abc', 16, '{}', undefined, 0)]),
      ok(1, [item('session:abc', 16, '{}', '99', 1)]),
    ],
  },
  {
    name: 'a value over maxValueLength is an item with tooLarge and empty data',
    build: (w) => {
      w.add(gets('big', 'small', 'edge'));
      w.add(store('set', 'k'));
    },
    reply: bytes(
      `VALUE big 5 40 3\r\n${'x'.repeat(38)}\r\n\r\n`,
      'VALUE small 0 2 4\r\nok\r\n',
      `VALUE edge 0 32 5\r\n${'e'.repeat(32)}\r\n`,
      'END\r\nSTORED\r\n',
    ),
    events: [
      ok(0, [
        item('big', 5, '', '3', 0, 40),
        item('small', 0, 'ok', '4', 1),
        item('edge', 0, 'e'.repeat(32), '5', 2),
      ]),
      ok(1, 'stored'),
    ],
  },
  {
    name: 'auth: STORED, then a refusal',
    build: (w) => {
      w.add({ op: 'auth', username: 'u', password: 'p' });
      w.add({ op: 'auth', username: 'u', password: 'bad' });
    },
    reply: bytes('STORED\r\nCLIENT_ERROR authentication failure\r\n'),
    events: [ok(0, true), failed(1, 'MemcachedAuthError')],
  },
  {
    name: 'a pipeline of every kind, each gets its own reply',
    build: (w) => {
      w.add(store('set', 'a'));
      w.add(get('a', 'b'));
      w.add(del('a'));
      w.add(gets('bin'));
      w.add(arith('decr', 'n', 2n));
      w.add(STATS);
      w.add(touch('t'));
      w.add(VERSION);
      w.add(get('zz'));
      w.add(FLUSH);
      w.add(store('add', 'a'));
    },
    reply: bytes(
      'STORED\r\n',
      'VALUE a 0 1\r\nx\r\nEND\r\n',
      'DELETED\r\n',
      'VALUE bin 7 11 5\r\n',
      BINARY,
      '\r\nEND\r\n',
      '11 \r\n',
      'STAT threads 4\r\nSTAT curr_items 0\r\nEND\r\n',
      'NOT_FOUND\r\n',
      'VERSION 1.6.21\r\n',
      'END\r\n',
      'OK\r\n',
      'NOT_STORED\r\n',
    ),
    events: [
      ok(0, 'stored'),
      ok(1, [item('a', 0, 'x', undefined, 0)]),
      ok(2, true),
      ok(3, [item('bin', 7, BINARY, '5', 0)]),
      ok(4, 11n),
      ok(5, { threads: '4', curr_items: '0' }),
      ok(6, false),
      ok(7, '1.6.21'),
      ok(8, []),
      ok(9, true),
      ok(10, 'not_stored'),
    ],
  },
];

const ERRORS: Scenario[] = [
  {
    name: 'an error line fails only the head; the next request gets its reply',
    build: (w) => {
      w.add(store('set', 'k'));
      w.add(get('k'));
      w.add(arith('incr', 'k'));
      w.add(store('set', 'k'));
      w.add(del('k'));
    },
    reply: bytes(
      'SERVER_ERROR out of memory storing object\r\n',
      'VALUE k 0 1\r\nx\r\nEND\r\n',
      'CLIENT_ERROR cannot increment or decrement non-numeric value\r\n',
      'CLIENT_ERROR bad data chunk\r\n',
      'DELETED\r\n',
    ),
    events: [
      failed(0, 'MemcachedServerError'),
      ok(1, [item('k', 0, 'x', undefined, 0)]),
      failed(2, 'MemcachedClientError'),
      failed(3, 'MemcachedClientError'),
      ok(4, true),
    ],
  },
  {
    name: 'ERROR (unknown command) fails the head only',
    build: (w) => {
      w.add(gat(1, 'k'));
      w.add(VERSION);
    },
    reply: bytes('ERROR\r\nVERSION 1.4.5\r\n'),
    events: [failed(0, 'MemcachedUnknownCommandError'), ok(1, '1.4.5')],
  },
  {
    name: 'SERVER_ERROR in the middle of a retrieval fails it; the next gets its reply',
    build: (w) => {
      w.add(get('a', 'b'));
      w.add(store('set', 'k'));
    },
    reply: bytes(
      'VALUE a 0 1\r\nx\r\nSERVER_ERROR out of memory writing get response\r\nSTORED\r\n',
    ),
    events: [failed(0, 'MemcachedServerError'), ok(1, 'stored')],
  },
  {
    name: 'SERVER_ERROR in the middle of a stats reply fails it',
    build: (w) => {
      w.add(STATS);
      w.add(del('k'));
    },
    reply: bytes('STAT pid 1\r\nSERVER_ERROR out of memory\r\nNOT_FOUND\r\n'),
    events: [failed(0, 'MemcachedServerError'), ok(1, false)],
  },
  {
    name: 'errors while the head is a fence are stray; the fence completes on VERSION',
    build: (w) => {
      w.fence();
      w.add(get('k'));
    },
    reply: bytes(
      'CLIENT_ERROR bad data chunk\r\n',
      'ERROR\r\n',
      'SERVER_ERROR out of memory storing object\r\n',
      'VERSION 1.6.21\r\n',
      'END\r\n',
    ),
    events: [
      stray('MemcachedClientError'),
      stray('MemcachedUnknownCommandError'),
      stray('MemcachedServerError'),
      ok(0, true),
      ok(1, []),
    ],
  },
  {
    name: 'an error after the fence completed fails the next request, not stray',
    build: (w) => {
      w.fence();
      w.add(store('set', 'k'));
      w.fence();
    },
    reply: bytes('VERSION 1.5.22\r\nSERVER_ERROR out of memory\r\nERROR\r\nVERSION 1.5.22\r\n'),
    events: [
      ok(0, true),
      failed(1, 'MemcachedServerError'),
      stray('MemcachedUnknownCommandError'),
      ok(2, true),
    ],
  },
  {
    name: 'a fence answered MN (mn fence)',
    build: (w) => {
      w.fence();
      w.add({ op: 'fence' }, Buffer.from('mn\r\n'));
    },
    reply: bytes('VERSION 1.6.9\r\nCLIENT_ERROR bad data chunk\r\nMN\r\n'),
    events: [ok(0, true), stray('MemcachedClientError'), ok(1, true)],
  },
  {
    name: "a timed-out head's late reply is consumed and dropped",
    build: (w) => {
      w.late(get('k'));
      w.add(store('set', 'k'));
      w.late(store('set', 'k'));
      w.late(STATS);
      w.add(arith('incr', 'n'));
      w.late(del('k'));
      w.late(gets('a', 'b'));
      w.add(VERSION);
    },
    reply: bytes(
      'VALUE k 0 5\r\nhello\r\nEND\r\n',
      'STORED\r\n',
      'SERVER_ERROR out of memory storing object\r\n',
      'STAT pid 1\r\nEND\r\n',
      '7\r\n',
      'DELETED\r\n',
      'VALUE b 0 1 9\r\nx\r\nEND\r\n',
      'VERSION 1.6.21\r\n',
    ),
    events: [
      failed(0, 'MemcachedTimeoutError'),
      failed(2, 'MemcachedTimeoutError'),
      failed(3, 'MemcachedTimeoutError'),
      failed(5, 'MemcachedTimeoutError'),
      failed(6, 'MemcachedTimeoutError'),
      ok(1, 'stored'),
      ok(4, 7n),
      ok(7, '1.6.21'),
    ],
  },
];

/** Bad replies: MemcachedProtocolError, and nothing settled beyond what was honestly answered. */
const PROTOCOL: Scenario[] = (
  [
    {
      name: 'VALUE for a store',
      build: (w) => w.add(store('set', 'k')),
      reply: bytes('VALUE k 0 1\r\nx\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'VALUE for a delete, after an honest reply to a get',
      build: (w) => {
        w.add(get('k'));
        w.add(del('k'));
      },
      reply: bytes('END\r\nVALUE k 0 1\r\nx\r\n'),
      events: [ok(0, [])],
      left: 1,
    },
    {
      name: 'VALUE for a fence',
      build: (w) => w.fence(),
      reply: bytes('VALUE k 0 1\r\nx\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'VALUE of a key not asked',
      build: (w) => w.add(get('a', 'b')),
      reply: bytes('VALUE c 0 1\r\nx\r\nEND\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'VALUE of a key asked by the next request',
      build: (w) => {
        w.add(get('a'));
        w.add(get('b'));
      },
      reply: bytes('VALUE b 0 1\r\nx\r\nEND\r\nEND\r\n'),
      events: [],
      left: 2,
    },
    {
      name: 'VALUEs out of order',
      build: (w) => w.add(get('a', 'b')),
      reply: bytes('VALUE b 0 1\r\nx\r\nVALUE a 0 1\r\nx\r\nEND\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'VALUE of a key asked once, twice',
      build: (w) => w.add(get('a', 'b')),
      reply: bytes('VALUE a 0 1\r\nx\r\nVALUE a 0 1\r\nx\r\nEND\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'gets item without cas',
      build: (w) => w.add(gets('a')),
      reply: bytes('VALUE a 0 1\r\nx\r\nEND\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'gats item without cas',
      build: (w) => w.add(gats(5, 'a', 'b')),
      reply: bytes('VALUE a 0 1 3\r\nx\r\nVALUE b 0 1\r\ny\r\nEND\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'END while the head is a store',
      build: (w) => w.add(store('set', 'k')),
      reply: bytes('END\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'END while the head is a fence',
      build: (w) => w.fence(),
      reply: bytes('END\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'STORED while the head is a fence (a noreply request never answers STORED)',
      build: (w) => w.fence(),
      reply: bytes('STORED\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'OK while the head is a fence (a fence is answered by VERSION or MN only)',
      build: (w) => w.fence(),
      reply: bytes('OK\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'STAT for a get',
      build: (w) => w.add(get('k')),
      reply: bytes('STAT pid 1\r\nEND\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'STAT for a version',
      build: (w) => w.add(VERSION),
      reply: bytes('STAT version 1.6.21\r\nEND\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'ERROR in the middle of a retrieval',
      build: (w) => w.add(get('a', 'b')),
      reply: bytes('VALUE a 0 1\r\nx\r\nERROR\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'CLIENT_ERROR in the middle of a retrieval',
      build: (w) => w.add(get('a', 'b')),
      reply: bytes('VALUE a 0 1\r\nx\r\nCLIENT_ERROR bad command line format\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'a store status in the middle of a retrieval',
      build: (w) => {
        w.add(get('a', 'b'));
        w.add(store('set', 'k'));
      },
      reply: bytes('VALUE a 0 1\r\nx\r\nSTORED\r\n'),
      events: [],
      left: 2,
    },
    {
      name: 'ERROR in the middle of a stats reply',
      build: (w) => w.add(STATS),
      reply: bytes('STAT pid 1\r\nERROR\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'a reply with an empty queue',
      build: () => undefined,
      reply: bytes('STORED\r\n'),
      events: [],
      left: 0,
    },
    {
      name: 'END with an empty queue',
      build: () => undefined,
      reply: bytes('END\r\n'),
      events: [],
      left: 0,
    },
    {
      name: 'VALUE with an empty queue',
      build: () => undefined,
      reply: bytes('VALUE k 0 1\r\nx\r\n'),
      events: [],
      left: 0,
    },
    {
      name: 'STAT with an empty queue',
      build: () => undefined,
      reply: bytes('STAT pid 1\r\n'),
      events: [],
      left: 0,
    },
    {
      name: 'an error line with an empty queue (a noreply error after its fence)',
      build: () => undefined,
      reply: bytes('SERVER_ERROR out of memory\r\n'),
      events: [],
      left: 0,
    },
    {
      name: 'one reply too many',
      build: (w) => w.add(store('set', 'k')),
      reply: bytes('STORED\r\nSTORED\r\n'),
      events: [ok(0, 'stored')],
      left: 0,
    },
    {
      name: 'a reply of the wrong kind: STORED for a delete',
      build: (w) => w.add(del('k')),
      reply: bytes('STORED\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'a reply of the wrong kind: DELETED for a touch',
      build: (w) => w.add(touch('k')),
      reply: bytes('DELETED\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'a reply of the wrong kind: OK for a version',
      build: (w) => w.add(VERSION),
      reply: bytes('OK\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'a reply of the wrong kind: a number over 2^64-1 for an incr',
      build: (w) => w.add(arith('incr', 'n')),
      reply: bytes('18446744073709551616\r\n'),
      events: [],
      left: 1,
    },
    {
      name: 'a bad reply for a settled head still throws',
      build: (w) => {
        w.late(store('set', 'k'));
        w.add(get('k'));
      },
      reply: bytes('VALUE k 0 1\r\nx\r\nEND\r\n'),
      events: [failed(0, 'MemcachedTimeoutError')],
      left: 2,
    },
  ] as Scenario[]
).map((s) => ({ ...s, thrown: 'MemcachedProtocolError' }));

describe.each([
  ['replies', REPLIES],
  ['error replies, fences and late replies', ERRORS],
  ['protocol errors', PROTOCOL],
] as const)('TextReplyMatcher: %s', (_group, scenarios) => {
  describe.each(scenarios)('$name', (s: Scenario) => {
    const want: Outcome = { events: s.events, thrown: s.thrown, left: s.left ?? 0 };

    test('whole', () => {
      expect(runScenario(s, [s.reply])).toStrictEqual(want);
    });

    test('split into two chunks at every point', () => {
      const w = render(want);
      const bad: number[] = [];
      for (let i = 0; i <= s.reply.length; i++) {
        if (render(runScenario(s, splitAt(s.reply, [i]))) !== w) bad.push(i);
      }
      expect(bad).toEqual([]);
    });

    test('byte by byte', () => {
      expect(runScenario(s, byteByByte(s.reply))).toStrictEqual(want);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Details the scenario tables do not show

describe('TextReplyMatcher details', () => {
  test('a stray error names the noreply command and the server, and fails nobody', () => {
    const w = new World();
    const f = w.fence();
    const g = w.add(get('k'));
    expect(w.feed([bytes('CLIENT_ERROR bad data chunk\r\n')])).toBeUndefined();
    expect(w.errors).toHaveLength(1);
    expect(w.errors[0]!.command).toBe('a noreply command');
    expect(w.errors[0]!.server).toBe(SERVER);
    expect(w.errors[0]!.message).toContain('bad data chunk');
    expect(f.settled).toBe(false);
    expect(g.settled).toBe(false);
    expect(w.head()).toBe(f);
  });

  test('an error reply carries the failed command and server', () => {
    const w = new World();
    w.add(store('set', 'k'));
    w.feed([bytes('SERVER_ERROR object too large for cache\r\n')]);
    expect(w.errors[0]).toBeInstanceOf(MemcachedError);
    expect(w.errors[0]!.command).toBe('set');
    expect(w.errors[0]!.server).toBe(SERVER);
  });

  test('the protocol error names the server and the command it concerns', () => {
    const w = new World();
    w.add(get('a', 'b'));
    const err = w.feed([bytes('VALUE b 0 1\r\nx\r\nVALUE a 0 1\r\nx\r\n')]) as MemcachedError;
    expect(err).toBeInstanceOf(MemcachedProtocolError);
    expect(err.server).toBe(SERVER);
    expect(err.command).toBe('get');
    expect(err.message).toContain('"a"');
  });

  test('a reply is delivered only once complete: items are not visible before END', () => {
    const w = new World();
    const r = w.add(get('a', 'b'));
    w.feed([bytes('VALUE a 0 1\r\nx\r\nVALUE b 0 1\r\ny\r\nEN')]);
    expect(r.settled).toBe(false);
    expect(w.events).toEqual([]);
    expect(w.head()).toBe(r);
    w.feed([bytes('D\r\n')]);
    expect(r.settled).toBe(true);
    expect(w.queue).toEqual([]);
  });

  test.each([
    ['a line reply', store('set', 'k'), 'STORED\r\n'],
    ['an error line', store('set', 'k'), 'SERVER_ERROR out of memory\r\n'],
    ['a retrieval END', get('k'), 'VALUE k 0 1\r\nx\r\nEND\r\n'],
    ['a stats END', STATS, 'STAT pid 1\r\nEND\r\n'],
    ['a fence reply', { op: 'fence' } as CommandSpec, 'VERSION 1.6.0\r\n'],
  ])(
    'the host is shifted before the request settles on %s (a callback sees the next head)',
    (_what, spec, reply) => {
      const w = new World();
      const seen: (AnyRequest | undefined)[] = [];
      const first = new Request<ReplyKind>(
        spec.op,
        spec,
        textDriver.encode(spec),
        () => seen.push(w.head()),
        () => seen.push(w.head()),
      );
      w.queue.push(first as unknown as AnyRequest);
      const second = w.add(del('k'));
      expect(w.feed([bytes(reply)])).toBeUndefined();
      expect(seen).toEqual([second]);
    },
  );

  test('session.fence() is a fence request, `version` until a VERSION >= 1.6 was seen, then `mn`', () => {
    const w = new World();
    const f1 = w.session.fence();
    expect(f1.op).toBe('fence');
    expect(f1.kind).toBe('ok');
    expect(f1.noreply).toBe(false);
    expect(f1.keys).toEqual([]);
    expect(Buffer.from(f1.data as Buffer).toString()).toBe('version\r\n');
    w.queue.push(f1);
    w.feed([bytes('VERSION 1.6.0\r\n')]);
    expect(f1.settled).toBe(true);
    expect(Buffer.from(w.session.fence().data as Buffer).toString()).toBe('mn\r\n');
  });
});

// ---------------------------------------------------------------------------------------------
// metaNoop: learnt from VERSION replies only

/** metaNoop after `line` answered a request of `spec`, through a bare matcher and parser. */
function metaNoopAfter(spec: CommandSpec, reply: string): boolean {
  const w = new World();
  const matcher = new TextReplyMatcher(w);
  const parser = new ReplyParser(matcher, LIMITS);
  expect(matcher.metaNoop).toBe(false);
  w.add(spec);
  parser.feed(Buffer.from(reply));
  expect(w.queue).toEqual([]);
  return matcher.metaNoop;
}

describe('TextReplyMatcher.metaNoop', () => {
  test.each([
    ['1.4.39', false],
    ['1.5.22', false],
    ['1.5.99', false],
    ['0.9.0', false],
    ['1.6.0', true],
    ['1.6.21', true],
    ['1.10.3', true],
    ['2.0', true],
    ['2.0.0-rc1', true],
  ])('VERSION %s to a version request → %s', (version, want) => {
    expect(metaNoopAfter(VERSION, `VERSION ${version}\r\n`)).toBe(want);
  });

  test.each([
    ['1.5.22', false],
    ['1.6.0', true],
    ['2.0', true],
  ])('VERSION %s to a fence → %s', (version, want) => {
    expect(metaNoopAfter({ op: 'fence' }, `VERSION ${version}\r\n`)).toBe(want);
  });

  test('not flipped by VERSION-like text elsewhere', () => {
    expect(metaNoopAfter(get('k'), 'VALUE k 0 13\r\nVERSION 1.6.0\r\nEND\r\n')).toBe(false);
    expect(metaNoopAfter(STATS, 'STAT version 1.6.21\r\nEND\r\n')).toBe(false);
    expect(metaNoopAfter(VERSION, 'ERROR\r\n')).toBe(false);
    expect(metaNoopAfter({ op: 'fence' }, 'MN\r\n')).toBe(false);
  });

  test('the session writes `version` fences after 1.5.22, `mn` after 1.6 / 2.0', () => {
    for (const [version, fence] of [
      ['1.5.22', 'version\r\n'],
      ['1.6.0', 'mn\r\n'],
      ['2.0', 'mn\r\n'],
    ] as const) {
      const w = new World();
      w.fence();
      w.feed([bytes(`VERSION ${version}\r\n`)]);
      expect(Buffer.from(w.session.fence().data as Buffer).toString()).toBe(fence);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Property: random request sequences and their honest replies

const ALPHABET = ['a', 'b', 'k:1', 'user:42', 'ключ'];
const keyArb = fc.constantFrom(...ALPHABET);
const lateArb = fc.nat(5).map((n) => n === 0);

const ERROR_LINES: readonly [string, string][] = [
  ['ERROR', 'MemcachedUnknownCommandError'],
  ['CLIENT_ERROR bad data chunk', 'MemcachedClientError'],
  ['CLIENT_ERROR bad command line format', 'MemcachedClientError'],
  ['SERVER_ERROR out of memory storing object', 'MemcachedServerError'],
  ['SERVER_ERROR object too large for cache', 'MemcachedServerError'],
];
const errorArb = fc.constantFrom(...ERROR_LINES);
const maybeErrorArb = fc.option(errorArb, { nil: undefined, freq: 6 });

const dataArb = fc.oneof(
  fc.uint8Array({ maxLength: 24 }).map((a) => Buffer.from(a)),
  fc.constantFrom('\r\n', 'END\r\n', 'VALUE a 0 1\r\n', 'STORED\r\n').map((s) => Buffer.from(s)),
  // Over maxValueLength (32): read, dropped, reported as tooLarge.
  fc.integer({ min: 33, max: 80 }).map((n) => Buffer.alloc(n, 0x0d)),
);

const STATUS_LINE = {
  stored: 'STORED',
  not_stored: 'NOT_STORED',
  exists: 'EXISTS',
  not_found: 'NOT_FOUND',
} as const;

type Step =
  | { t: 'store'; op: StoreOp; key: string; status: keyof typeof STATUS_LINE }
  | { t: 'delete' | 'touch'; key: string; found: boolean }
  | { t: 'arith'; op: ArithOp; key: string; value: bigint | undefined; pad: number }
  | { t: 'version'; version: string }
  | { t: 'stats'; stats: [string, string][] }
  | { t: 'flush' }
  | {
      t: 'retrieve';
      op: RetrieveOp;
      keys: string[];
      hits: (null | { flags: number; data: Buffer; cas: string })[];
      /** SERVER_ERROR after the first hit instead of END. */
      cutOff: boolean;
    }
  | { t: 'fence'; strays: [string, string][]; version: string };

type Planned = Step & { late: boolean; error: [string, string] | undefined };

const versionArb = fc.tuple(fc.nat(3), fc.nat(12), fc.nat(30)).map(([a, b, c]) => `${a}.${b}.${c}`);

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    t: fc.constant('store' as const),
    op: fc.constantFrom<StoreOp>('set', 'add', 'replace', 'append', 'prepend', 'cas'),
    key: keyArb,
    status: fc.constantFrom<keyof typeof STATUS_LINE>(
      'stored',
      'not_stored',
      'exists',
      'not_found',
    ),
  }),
  fc.record({
    t: fc.constantFrom('delete' as const, 'touch' as const),
    key: keyArb,
    found: fc.boolean(),
  }),
  fc.record({
    t: fc.constant('arith' as const),
    op: fc.constantFrom<ArithOp>('incr', 'decr'),
    key: keyArb,
    value: fc.option(fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }), { nil: undefined }),
    pad: fc.nat(4),
  }),
  fc.record({ t: fc.constant('version' as const), version: versionArb }),
  fc.record({
    t: fc.constant('stats' as const),
    stats: fc.uniqueArray(
      fc.tuple(
        fc.stringMatching(/^[a-z_:0-9]{1,12}$/).filter((n) => n !== '__proto__'),
        fc.stringMatching(/^[ -~]{0,16}$/),
      ),
      { maxLength: 4, selector: ([name]) => name },
    ),
  }),
  fc.record({ t: fc.constant('flush' as const) }),
  fc
    .record({
      op: fc.constantFrom<RetrieveOp>('get', 'gets', 'gat', 'gats'),
      keys: fc.array(keyArb, { minLength: 1, maxLength: 4 }),
      cutOff: fc.nat(7).map((n) => n === 0),
    })
    .chain(({ op, keys, cutOff }) =>
      fc
        .tuple(
          ...keys.map(() =>
            fc.option(
              fc.record({
                flags: fc.nat(),
                data: dataArb,
                cas: fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }).map(String),
              }),
              { nil: null },
            ),
          ),
        )
        // A key asked twice is the same item both times: a hit or a miss at each of its places.
        .map((hits) => hits.map((_h, j) => hits[keys.indexOf(keys[j]!)] ?? null))
        .map((hits) => ({ t: 'retrieve' as const, op, keys, hits, cutOff })),
    ),
  fc.record({
    t: fc.constant('fence' as const),
    strays: fc.array(errorArb, { maxLength: 3 }),
    version: versionArb,
  }),
);

const plannedArb: fc.Arbitrary<Planned> = fc
  .tuple(stepArb, lateArb, maybeErrorArb)
  .map(([step, late, error]) =>
    step.t === 'fence' ? { ...step, late: false, error: undefined } : { ...step, late, error },
  );

function specOf(s: Planned): CommandSpec {
  switch (s.t) {
    case 'store':
      return store(s.op, s.key);
    case 'delete':
      return del(s.key);
    case 'touch':
      return touch(s.key);
    case 'arith':
      return arith(s.op, s.key);
    case 'version':
      return VERSION;
    case 'stats':
      return STATS;
    case 'flush':
      return FLUSH;
    case 'retrieve':
      return s.op === 'gat' || s.op === 'gats'
        ? { op: s.op, keys: s.keys, ttl: 60 }
        : { op: s.op, keys: s.keys };
    case 'fence':
      return { op: 'fence' };
  }
}

/** Honest reply bytes to `s`, the strays they raise, and what its request settles with. */
function honest(s: Planned, i: number): { reply: Buffer; strays: Event[]; event: Event } {
  if (s.t === 'fence') {
    return {
      reply: bytes(...s.strays.map(([l]) => `${l}\r\n`), `VERSION ${s.version}\r\n`),
      strays: s.strays.map(([, name]) => stray(name)),
      event: ok(i, true),
    };
  }
  if (s.error !== undefined && !(s.t === 'retrieve' && s.cutOff)) {
    return { reply: bytes(`${s.error[0]}\r\n`), strays: [], event: failed(i, s.error[1]) };
  }
  switch (s.t) {
    case 'store':
      return { reply: bytes(`${STATUS_LINE[s.status]}\r\n`), strays: [], event: ok(i, s.status) };
    case 'delete':
      return {
        reply: bytes(s.found ? 'DELETED\r\n' : 'NOT_FOUND\r\n'),
        strays: [],
        event: ok(i, s.found),
      };
    case 'touch':
      return {
        reply: bytes(s.found ? 'TOUCHED\r\n' : 'NOT_FOUND\r\n'),
        strays: [],
        event: ok(i, s.found),
      };
    case 'arith': {
      const line =
        s.value === undefined
          ? 'NOT_FOUND'
          : `${s.value}${s.op === 'decr' ? ' '.repeat(s.pad) : ''}`;
      return { reply: bytes(`${line}\r\n`), strays: [], event: ok(i, s.value) };
    }
    case 'version':
      return { reply: bytes(`VERSION ${s.version}\r\n`), strays: [], event: ok(i, s.version) };
    case 'stats':
      return {
        reply: bytes(...s.stats.map(([n, v]) => `STAT ${n} ${v}\r\n`), 'END\r\n'),
        strays: [],
        event: ok(i, Object.fromEntries(s.stats)),
      };
    case 'flush':
      return { reply: bytes('OK\r\n'), strays: [], event: ok(i, true) };
    case 'retrieve': {
      const withCas = s.op === 'gets' || s.op === 'gats';
      const parts: Buffer[] = [];
      const items: LoggedItem[] = [];
      s.hits.forEach((hit, index) => {
        if (hit === null || (s.cutOff && parts.length > 0)) return;
        const cas = withCas ? hit.cas : undefined;
        const casPart = cas === undefined ? '' : ` ${cas}`;
        parts.push(
          bytes(
            `VALUE ${s.keys[index]} ${hit.flags} ${hit.data.length}${casPart}\r\n`,
            hit.data,
            '\r\n',
          ),
        );
        const big = hit.data.length > LIMITS.maxValueLength;
        items.push(
          item(
            s.keys[index]!,
            hit.flags,
            big ? '' : hit.data,
            cas,
            index,
            big ? hit.data.length : 0,
          ),
        );
      });
      if (s.cutOff) {
        const line = 'SERVER_ERROR out of memory writing get response';
        return {
          reply: bytes(...parts, `${line}\r\n`),
          strays: [],
          event: failed(i, 'MemcachedServerError'),
        };
      }
      return { reply: bytes(...parts, 'END\r\n'), strays: [], event: ok(i, items) };
    }
  }
}

const splitsArb = fc.array(fc.nat(), { maxLength: 40 });

describe('TextReplyMatcher property: honest replies to random pipelines', () => {
  test('at any chunking, every request settles with its own reply, in order', () => {
    fc.assert(
      fc.property(fc.array(plannedArb, { minLength: 1, maxLength: 12 }), splitsArb, (plan, raw) => {
        const w = new World();
        const before: Event[] = [];
        const after: Event[] = [];
        const replies: Buffer[] = [];
        for (const s of plan) {
          const i = w.next;
          if (s.t === 'fence') w.fence();
          else if (s.late) {
            w.late(specOf(s));
            before.push(failed(i, 'MemcachedTimeoutError'));
          } else w.add(specOf(s));
          const h = honest(s, i);
          replies.push(h.reply);
          after.push(...h.strays);
          if (!s.late) after.push(h.event);
        }
        const input = Buffer.concat(replies);
        const chunks = splitAt(
          input,
          raw.map((p) => p % (input.length + 1)),
        );
        const thrown = w.feed(chunks);
        expect(thrown).toBeUndefined();
        expect(w.events).toStrictEqual([...before, ...after]);
        expect(w.queue).toEqual([]);
      }),
      { numRuns: 1500 },
    );
  });

  test('retrieval items are accepted exactly when they follow the keys asked, in order', () => {
    // Model: each item must match a key at or after the cursor; the first such key is its index.
    fc.assert(
      fc.property(
        fc.array(keyArb, { minLength: 1, maxLength: 5 }),
        fc.array(keyArb, { maxLength: 6 }),
        fc.constantFrom<RetrieveOp>('get', 'gets'),
        (asked, returned, op) => {
          const w = new World();
          const r = w.add({ op, keys: asked });
          const cas = op === 'gets' ? ' 1' : '';
          let cursor = 0;
          let honestItems: LoggedItem[] | undefined = [];
          for (const key of returned) {
            let j = cursor;
            while (j < asked.length && asked[j] !== key) j++;
            if (j === asked.length) {
              honestItems = undefined;
              break;
            }
            honestItems.push(item(key, 0, 'x', op === 'gets' ? '1' : undefined, j));
            cursor = j + 1;
          }
          const reply = bytes(...returned.map((k) => `VALUE ${k} 0 1${cas}\r\nx\r\n`), 'END\r\n');
          const thrown = w.feed(byteByByte(reply));
          if (honestItems === undefined) {
            expect(thrown).toBeInstanceOf(MemcachedProtocolError);
            expect(r.settled).toBe(false);
            expect(w.head()).toBe(r);
          } else {
            expect(thrown).toBeUndefined();
            expect(w.events).toStrictEqual([ok(0, honestItems)]);
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// BUG (lib, not fixed here): `stats reset` is accepted by client.stats('reset') (the group check
// allows any /^[a-z_]{1,32}$/ name), and memcached answers it with the single line `RESET`. The
// matcher treats that line as fitting no request and throws MemcachedProtocolError, so the
// connection is reset and every other request in flight on it fails as a bystander.
// test.failing: this passes while the bug is there; when lib is fixed, it fails — then drop
// `.failing`.

describe('stats reset', () => {
  test('`stats reset` answered RESET settles the request with {} and no protocol error', () => {
    const w = new World();
    const r = w.add({ op: 'stats', group: 'reset' });
    const next = w.add(store('set', 'k'));
    expect(w.feed([bytes('RESET\r\nSTORED\r\n')])).toBeUndefined();
    expect(r.settled).toBe(true);
    expect(w.events.at(-1)).toStrictEqual(ok(1, 'stored'));
    expect(next.settled).toBe(true);
  });

  test('RESET after STAT lines is not a stats reply', () => {
    const w = new World();
    w.add({ op: 'stats' });
    expect(w.feed([bytes('STAT pid 1\r\nRESET\r\n')])).toBeInstanceOf(MemcachedProtocolError);
  });
});

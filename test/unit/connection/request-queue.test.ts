import fc from 'fast-check';
import { RequestQueue } from '../../../lib/connection/request-queue.js';
import { MemcachedConnectionError, MemcachedTimeoutError } from '../../../lib/errors.js';
import {
  Request,
  type AnyRequest,
  type CommandSpec,
  type ReplyKind,
} from '../../../lib/protocol/request.js';
import { textDriver } from '../../../lib/protocol/text/driver.js';

// ---------------------------------------------------------------------------------------------
// Requests with names, and a log of what the queue did with them

interface Named {
  request: AnyRequest;
  name: string;
  /** How often each callback ran. */
  replies: number;
  errors: number;
}

const names = new WeakMap<AnyRequest, Named>();
const nameOf = (r: AnyRequest | undefined): string =>
  r === undefined ? '-' : (names.get(r)?.name ?? '?');

function make(name: string, spec: CommandSpec, onError?: () => void): Named {
  const n: Named = { request: undefined as unknown as AnyRequest, name, replies: 0, errors: 0 };
  n.request = new Request<ReplyKind>(
    name,
    spec,
    textDriver.encode(spec),
    () => n.replies++,
    () => {
      n.errors++;
      onError?.();
    },
  ) as unknown as AnyRequest;
  names.set(n.request, n);
  return n;
}

/** A request that expects a reply (`get`). */
const reply = (name: string): Named => make(name, { op: 'get', keys: [name] });
/** A noreply request (`set ... noreply`). */
const noreply = (name: string): Named =>
  make(name, {
    op: 'set',
    key: name,
    flags: 0,
    ttl: 0,
    value: Buffer.from('v'),
    noreply: true,
  });

/** Runs takeUnwritten; returns the wire order (fences as F1, F2, ...), settling noreply ones. */
function take(q: RequestQueue, fences: { count: number } = { count: 0 }): string[] {
  const wire: string[] = [];
  q.takeUnwritten(
    (r) => {
      wire.push(nameOf(r));
      if (r.noreply) r.completeNoreply();
    },
    () => {
      const f = make(`F${++fences.count}`, { op: 'fence' });
      wire.push(f.name);
      return f.request;
    },
  );
  return wire;
}

/** The written requests awaiting replies, head first. */
const written = (q: RequestQueue): string[] => [...q.written()].map(nameOf);

function queueOf(...items: Named[]): RequestQueue {
  const q = new RequestQueue();
  for (const n of items) q.push(n.request);
  return q;
}

/** Shifts every written request; returns their names in order. */
function drain(q: RequestQueue): string[] {
  const out: string[] = [];
  for (let r = q.head(); r !== undefined; r = q.head()) {
    out.push(nameOf(r));
    q.shift();
  }
  return out;
}

const timeout = (): MemcachedTimeoutError => new MemcachedTimeoutError('timed out');

// ---------------------------------------------------------------------------------------------

describe('RequestQueue basics', () => {
  test('an empty queue', () => {
    const q = new RequestQueue();
    expect(q.pending).toBe(0);
    expect(q.hasUnwritten).toBe(false);
    expect(q.head()).toBeUndefined();
    expect(written(q)).toEqual([]);
    expect(take(q)).toEqual([]);
  });

  test('pushed requests are unwritten: no head until written', () => {
    const q = queueOf(reply('a'), reply('b'));
    expect(q.pending).toBe(2);
    expect(q.hasUnwritten).toBe(true);
    expect(q.head()).toBeUndefined();
    expect(written(q)).toEqual([]);
  });

  test('push / take / head / shift keep FIFO order', () => {
    const q = queueOf(reply('a'), reply('b'));
    expect(take(q)).toEqual(['a', 'b']);
    expect(q.hasUnwritten).toBe(false);
    q.push(reply('c').request);
    expect(nameOf(q.head())).toBe('a');
    expect(q.pending).toBe(3);
    q.shift();
    expect(nameOf(q.head())).toBe('b');
    expect(take(q)).toEqual(['c']);
    expect(written(q)).toEqual(['b', 'c']);
    expect(drain(q)).toEqual(['b', 'c']);
    expect(q.pending).toBe(0);
    expect(q.head()).toBeUndefined();
  });

  test('a request pushed while others are written waits behind them, unwritten', () => {
    const q = queueOf(reply('a'));
    take(q);
    q.push(reply('b').request);
    q.shift();
    // `b` is not written yet: it is no head.
    expect(q.head()).toBeUndefined();
    expect(q.pending).toBe(1);
    expect(take(q)).toEqual(['b']);
    expect(nameOf(q.head())).toBe('b');
  });

  test('takeUnwritten writes each request once', () => {
    const q = queueOf(reply('a'), reply('b'));
    expect(take(q)).toEqual(['a', 'b']);
    expect(take(q)).toEqual([]);
    q.push(reply('c').request);
    expect(take(q)).toEqual(['c']);
    expect(written(q)).toEqual(['a', 'b', 'c']);
  });
});

describe('RequestQueue fences', () => {
  test('a run-free batch gets no fence', () => {
    const q = queueOf(reply('a'), reply('b'), reply('c'));
    const fences = { count: 0 };
    expect(take(q, fences)).toEqual(['a', 'b', 'c']);
    expect(fences.count).toBe(0);
  });

  test('exactly one fence right after each run, before the next reply-expecting request', () => {
    const q = queueOf(
      reply('g1'),
      noreply('n1'),
      noreply('n2'),
      reply('g2'),
      noreply('n3'),
      reply('g3'),
      reply('g4'),
    );
    expect(take(q)).toEqual(['g1', 'n1', 'n2', 'F1', 'g2', 'n3', 'F2', 'g3', 'g4']);
    // Noreply requests leave the queue: only reply-expecting requests and fences await replies.
    expect(written(q)).toEqual(['g1', 'F1', 'g2', 'F2', 'g3', 'g4']);
    expect(q.pending).toBe(6);
  });

  test('a run at the end of the batch gets its fence at the end', () => {
    const q = queueOf(reply('g1'), noreply('n1'), noreply('n2'));
    expect(take(q)).toEqual(['g1', 'n1', 'n2', 'F1']);
    expect(written(q)).toEqual(['g1', 'F1']);
  });

  test('a batch of noreply requests only: one fence', () => {
    const ns = [noreply('n1'), noreply('n2'), noreply('n3')];
    const q = queueOf(...ns);
    expect(take(q)).toEqual(['n1', 'n2', 'n3', 'F1']);
    expect(written(q)).toEqual(['F1']);
    expect(q.pending).toBe(1);
    expect(ns.map((n) => [n.replies, n.errors])).toEqual([
      [1, 0],
      [1, 0],
      [1, 0],
    ]);
  });

  test('a run ending a batch is fenced in that batch; the next batch starts clean', () => {
    const fences = { count: 0 };
    const q = queueOf(noreply('n1'));
    expect(take(q, fences)).toEqual(['n1', 'F1']);
    q.push(reply('g1').request);
    expect(take(q, fences)).toEqual(['g1']);
    q.push(noreply('n2').request);
    q.push(reply('g2').request);
    expect(take(q, fences)).toEqual(['n2', 'F2', 'g2']);
    expect(written(q)).toEqual(['F1', 'g1', 'F2', 'g2']);
  });

  test('a settled reply-expecting request inside a run does not split it', () => {
    const dead = reply('dead');
    const q = queueOf(noreply('n1'), dead, noreply('n2'), reply('g'));
    dead.request.fail(timeout());
    expect(take(q)).toEqual(['n1', 'n2', 'F1', 'g']);
    expect(written(q)).toEqual(['F1', 'g']);
  });

  test('a run of settled noreply requests is no run: no fence', () => {
    const n1 = noreply('n1');
    const n2 = noreply('n2');
    const q = queueOf(reply('g1'), n1, n2, reply('g2'));
    n1.request.fail(timeout());
    n2.request.fail(timeout());
    const fences = { count: 0 };
    expect(take(q, fences)).toEqual(['g1', 'g2']);
    expect(fences.count).toBe(0);
  });

  test('the fence goes after written requests still awaiting replies', () => {
    const q = queueOf(reply('g1'), reply('g2'));
    take(q);
    q.push(noreply('n1').request);
    expect(take(q)).toEqual(['n1', 'F1']);
    expect(written(q)).toEqual(['g1', 'g2', 'F1']);
    expect(drain(q)).toEqual(['g1', 'g2', 'F1']);
  });

  test('noreply requests are handed to write (they go on the wire) but are never a head', () => {
    const q = queueOf(noreply('n1'), reply('g'));
    const heads: string[] = [];
    q.takeUnwritten(
      (r) => {
        if (r.noreply) r.completeNoreply();
      },
      () => make('F', { op: 'fence' }).request,
    );
    for (let r = q.head(); r !== undefined; r = q.head()) {
      heads.push(nameOf(r));
      expect(r.noreply).toBe(false);
      q.shift();
    }
    expect(heads).toEqual(['F', 'g']);
  });
});

describe('RequestQueue settled requests', () => {
  test('a request settled before it was written is skipped and leaves the queue', () => {
    const a = reply('a');
    const b = reply('b');
    const q = queueOf(a, b, reply('c'));
    b.request.fail(timeout());
    expect(q.pending).toBe(3);
    expect(take(q)).toEqual(['a', 'c']);
    expect(written(q)).toEqual(['a', 'c']);
    expect(q.pending).toBe(2);
    expect(b.errors).toBe(1);
    expect(b.request.data).toBeDefined(); // never handed to the wire
  });

  test('a written request that settles (timed out) stays until its late reply shifts it', () => {
    const a = reply('a');
    const q = queueOf(a, reply('b'));
    take(q);
    a.request.fail(timeout());
    expect(nameOf(q.head())).toBe('a');
    expect(written(q)).toEqual(['a', 'b']);
    q.shift();
    expect(nameOf(q.head())).toBe('b');
  });

  test('every request of a batch settled before it was written: nothing written', () => {
    const ns = [reply('a'), noreply('n'), reply('b')];
    const q = queueOf(...ns);
    for (const n of ns) n.request.fail(timeout());
    expect(take(q)).toEqual([]);
    expect(q.pending).toBe(0);
    expect(q.hasUnwritten).toBe(false);
  });
});

describe('RequestQueue.pushWritten', () => {
  test('a handshake request goes first, ahead of unwritten ones, and is not written again', () => {
    const q = queueOf(reply('a'), noreply('n'), reply('b'));
    const auth = make('auth', { op: 'auth', username: 'u', password: 'p' });
    q.pushWritten(auth.request);
    expect(nameOf(q.head())).toBe('auth');
    expect(q.pending).toBe(4);
    expect(q.hasUnwritten).toBe(true);
    expect(written(q)).toEqual(['auth']);
    expect(take(q)).toEqual(['a', 'n', 'F1', 'b']);
    expect(written(q)).toEqual(['auth', 'a', 'F1', 'b']);
  });

  test('several handshake steps keep their order', () => {
    const q = queueOf(reply('a'));
    q.pushWritten(make('h1', { op: 'auth', username: 'u', password: 'p' }).request);
    q.pushWritten(make('h2', { op: 'version' }).request);
    expect(written(q)).toEqual(['h1', 'h2']);
    q.shift();
    expect(nameOf(q.head())).toBe('h2');
    q.shift();
    // The handshake is answered; `a` is still unwritten.
    expect(q.head()).toBeUndefined();
    expect(q.pending).toBe(1);
    expect(take(q)).toEqual(['a']);
  });
});

describe('RequestQueue.failAll', () => {
  test('fails every unsettled request once, written or not, and empties the queue', () => {
    const w1 = reply('w1');
    const w2 = reply('w2');
    const u1 = reply('u1');
    const u2 = noreply('u2');
    const gone = reply('gone');
    const q = queueOf(gone, w1, w2);
    take(q);
    q.shift(); // gone answered
    (gone.request as Request<'retrieve'>).complete([]);
    w1.request.fail(timeout()); // timed out, still queued for its late reply
    q.push(u1.request);
    q.push(u2.request);
    const error = new MemcachedConnectionError('lost');
    q.failAll(error);
    expect([gone, w1, w2, u1, u2].map((n) => [n.name, n.replies, n.errors])).toEqual([
      ['gone', 1, 0],
      ['w1', 0, 1],
      ['w2', 0, 1],
      ['u1', 0, 1],
      ['u2', 0, 1],
    ]);
    expect(q.pending).toBe(0);
    expect(q.hasUnwritten).toBe(false);
    expect(q.head()).toBeUndefined();
    expect(take(q)).toEqual([]);
    // Usable again.
    q.push(reply('next').request);
    expect(take(q)).toEqual(['next']);
    expect(nameOf(q.head())).toBe('next');
  });

  test('a request queued by an error callback during failAll survives it', () => {
    const q = new RequestQueue();
    const late = reply('late');
    const first = make('first', { op: 'get', keys: ['x'] }, () => q.push(late.request));
    q.push(first.request);
    q.push(reply('second').request);
    take(q);
    q.failAll(new MemcachedConnectionError('lost'));
    expect(first.errors).toBe(1);
    expect(late.errors).toBe(0);
    expect(q.pending).toBe(1);
    expect(take(q)).toEqual(['late']);
  });

  test('fails a written fence too', () => {
    const q = queueOf(noreply('n'));
    let fence: Named | undefined;
    q.takeUnwritten(
      (r) => r.completeNoreply(),
      () => (fence = make('F', { op: 'fence' })).request,
    );
    q.failAll(new MemcachedConnectionError('lost'));
    expect(fence!.errors).toBe(1);
  });
});

/** The queue's private array (compaction is about its size). */
const internalLength = (q: RequestQueue): number =>
  (q as unknown as { items: unknown[] }).items.length;

describe('RequestQueue compaction', () => {
  test('more than 1024 shifts with requests always pending: order kept, memory bounded', () => {
    const q = new RequestQueue();
    let pushed = 0;
    let expected = 0;
    for (let i = 0; i < 10; i++) q.push(reply(`r${pushed++}`).request);
    take(q);
    let maxLength = 0;
    for (let round = 0; round < 5000; round++) {
      q.push(reply(`r${pushed++}`).request);
      if (round % 7 === 0) q.push(noreply(`n${pushed}`).request);
      take(q);
      // The head is the oldest reply-expecting request not yet shifted (fences aside).
      let head = nameOf(q.head());
      while (head.startsWith('F')) {
        q.shift();
        head = nameOf(q.head());
      }
      expect(head).toBe(`r${expected++}`);
      q.shift();
      maxLength = Math.max(maxLength, internalLength(q));
    }
    expect(maxLength).toBeLessThan(2 * 1024 + 64);
    const rest = drain(q).filter((n) => !n.startsWith('F'));
    expect(rest).toEqual(Array.from({ length: rest.length }, (_, k) => `r${expected + k}`));
  });

  test('compaction with unwritten requests behind keeps them unwritten and in order', () => {
    const q = new RequestQueue();
    for (let i = 0; i < 1100; i++) q.push(reply(`w${i}`).request);
    take(q);
    for (let i = 0; i < 1050; i++) q.push(reply(`u${i}`).request);
    // 2150 slots: shifting 1075 of them compacts the array (first >= 1024, half drained) while
    // 25 written and 1050 unwritten requests remain behind.
    for (let i = 0; i < 1074; i++) q.shift();
    expect(internalLength(q)).toBe(2150);
    q.shift();
    expect(internalLength(q)).toBe(1075);
    expect(nameOf(q.head())).toBe('w1075');
    expect(q.pending).toBe(25 + 1050);
    expect(written(q)).toEqual(Array.from({ length: 25 }, (_, k) => `w${1075 + k}`));
    for (let i = 0; i < 25; i++) q.shift();
    expect(q.head()).toBeUndefined();
    expect(q.hasUnwritten).toBe(true);
    const wire = take(q);
    expect(wire).toEqual(Array.from({ length: 1050 }, (_, k) => `u${k}`));
    expect(drain(q)).toEqual(wire);
  });
});

// ---------------------------------------------------------------------------------------------
// Property: a model of the queue

type Op =
  | { t: 'push'; kind: 'reply' | 'noreply' | 'settled-reply' | 'settled-noreply' }
  | { t: 'pushMany'; n: number; noreplyEvery: number }
  | { t: 'settleUnwritten'; pick: number }
  | { t: 'settleWritten'; pick: number }
  | { t: 'take' }
  | { t: 'shift' }
  | { t: 'shiftMany'; n: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant('push' as const),
      kind: fc.constantFrom('reply', 'noreply', 'settled-reply', 'settled-noreply' as const),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('pushMany' as const),
      n: fc.integer({ min: 1, max: 700 }),
      noreplyEvery: fc.integer({ min: 0, max: 9 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant('settleUnwritten' as const), pick: fc.nat() }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('settleWritten' as const), pick: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('take' as const) }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('shift' as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('shiftMany' as const),
      n: fc.integer({ min: 1, max: 800 }),
    }),
  },
);

describe('RequestQueue property: agrees with a model', () => {
  test('FIFO order of reply-expecting requests and fence positions', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => {
        const q = new RequestQueue();
        // Model: written (awaiting replies, head first) and unwritten, as names.
        const mWritten: Named[] = [];
        const mUnwritten: Named[] = [];
        let serial = 0;
        let fenceSerial = 0;
        const fresh = (noreplyKind: boolean): Named => {
          const n = noreplyKind ? noreply(`n${serial++}`) : reply(`r${serial++}`);
          q.push(n.request);
          mUnwritten.push(n);
          return n;
        };
        const shiftOne = (): void => {
          if (mWritten.length === 0) return;
          expect(q.head()).toBe(mWritten[0]!.request);
          q.shift();
          mWritten.shift();
        };
        for (const op of ops) {
          switch (op.t) {
            case 'push': {
              const n = fresh(op.kind.endsWith('noreply'));
              if (op.kind.startsWith('settled')) n.request.fail(timeout());
              break;
            }
            case 'pushMany':
              for (let k = 0; k < op.n; k++) {
                fresh(op.noreplyEvery > 0 && k % op.noreplyEvery === 0);
              }
              break;
            case 'settleUnwritten':
              if (mUnwritten.length > 0) {
                mUnwritten[op.pick % mUnwritten.length]!.request.fail(timeout());
              }
              break;
            case 'settleWritten':
              if (mWritten.length > 0) mWritten[op.pick % mWritten.length]!.request.fail(timeout());
              break;
            case 'take': {
              // The model of takeUnwritten; fences are placeholders until the queue makes them.
              const base = fenceSerial;
              const wantWire: string[] = [];
              const fence = (): void => {
                const name = `F${++fenceSerial}`;
                wantWire.push(name);
                mWritten.push({ name } as Named);
              };
              let run = false;
              for (const n of mUnwritten) {
                if (n.request.settled) continue;
                if (n.request.noreply) {
                  wantWire.push(n.name);
                  run = true;
                  continue;
                }
                if (run) fence();
                run = false;
                wantWire.push(n.name);
                mWritten.push(n);
              }
              if (run) fence();
              mUnwritten.length = 0;
              expect(take(q, { count: base })).toEqual(wantWire);
              // Bind the placeholders to the fence requests the queue holds at their places.
              const real = [...q.written()];
              expect(real.map(nameOf)).toEqual(mWritten.map((n) => n.name));
              mWritten.forEach((n, k) => {
                if (n.request === undefined) mWritten[k] = names.get(real[k]!)!;
              });
              break;
            }
            case 'shift':
              shiftOne();
              break;
            case 'shiftMany':
              for (let k = 0; k < op.n; k++) shiftOne();
              break;
          }
          // Invariants after every operation.
          expect(q.pending).toBe(mWritten.length + mUnwritten.length);
          expect(q.hasUnwritten).toBe(mUnwritten.length > 0);
          expect(q.head()).toBe(mWritten[0]?.request);
        }
        expect(written(q)).toEqual(mWritten.map((n) => n.name));
        expect(drain(q)).toEqual(mWritten.map((n) => n.name));
      }),
      { numRuns: 300 },
    );
  });
});

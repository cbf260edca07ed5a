/**
 * A checked workload for crosstalk tests and the soak: workers run mixed operations (get, the same
 * key twice in one tick, gets, getMany, set, noreply set, delete) on keys `k:<i>` with unique values `v:<i>:<seq>:<random>`,
 * and every value read is checked against what the key may hold.
 *
 * Model: each key is owned by one worker that runs its operations one after another, so per key
 * there is no concurrency except writes whose outcome is unknown (they failed, timed out or were
 * noreply: the server may still apply them later, e.g. when a stall is released). The values a
 * key may hold are its last acknowledged write (a miss after an acknowledged delete) plus the
 * writes of unknown outcome of the last few seconds. A server restart adds "miss" to every key on
 * that server.
 *
 * Used by test/reliability/crosstalk.test.ts (under jest) and test/soak/soak.ts (plain node), so
 * it imports nothing from jest.
 */
import type { MemcachedClient } from '../../lib/client/memcached-client.js';
import { MemcachedError } from '../../lib/errors.js';
import type { FaultProxy } from '../harness/proxy.js';

/** A miss stands for `undefined` in the sets of possible values. */
const MISS = '\u0000miss';

export type OpName = 'get' | 'getTwice' | 'gets' | 'getMany' | 'set' | 'setNoreply' | 'delete';

export interface Tally {
  ops: number;
  byOp: Record<string, number>;
  okByOp: Record<string, number>;
  /** Errors by class name; anything that is not a MemcachedError is counted as `NOT_MEMCACHED`. */
  errors: Record<string, number>;
  faults: Record<string, number>;
  /** Values (and misses) checked against the model. */
  checkedValues: number;
  /** Values the key cannot hold: must stay 0. */
  wrongValues: number;
  /** Of those, values that belong to another key (crosstalk): must stay 0. */
  foreignValues: number;
  /** Keys in a getMany result that were not asked for: must stay 0. */
  unaskedKeys: number;
  /** Misses where the model says the key holds a value (lost writes). */
  unexpectedMisses: number;
  /** The first few problems, for the report. */
  examples: string[];
}

export function newTally(): Tally {
  return {
    ops: 0,
    byOp: {},
    okByOp: {},
    errors: {},
    faults: {},
    checkedValues: 0,
    wrongValues: 0,
    foreignValues: 0,
    unaskedKeys: 0,
    unexpectedMisses: 0,
    examples: [],
  };
}

/**
 * Values are `v:<i>:<seq>:<random>`, some padded with '.' to 16 KB. The model keeps only an id
 * (`<unpadded>|<length>`): a value read back matches only if its text before the padding and its
 * length are both right, and the padding is nothing but dots (any other byte ends the strip).
 */
const idOf = (value: string): string => `${value.replace(/\.+$/, '')}|${value.length}`;

/**
 * How long a write of unknown outcome may still land: stalls and latency hold requests for well
 * under a second, and a request that was not written when its call failed is never sent.
 */
const UNCERTAIN_MS = 5000;

interface KeyModel {
  /** Ids of the values the key may hold now (MISS for a miss). */
  possible: Set<string>;
  /** Writes of unknown outcome (id → when), possible until they expire. */
  uncertain: Map<string, number>;
  /** Its server is being restarted: an acknowledged write may still be lost. */
  losing: boolean;
}

export interface WorkloadOptions {
  keys: number;
  concurrency: number;
  random: () => number;
  /** Every `n`th key sometimes gets a 16 KB value (spanning TCP segments). Default 16. */
  largeEvery?: number;
}

export const keyName = (i: number): string => `k:${i}`;

export class Workload {
  readonly tally: Tally = newTally();
  private readonly models: KeyModel[] = [];
  private readonly initial: Array<readonly [string, string]> = [];
  private seq = 0;
  private issued = 0;

  constructor(private readonly options: WorkloadOptions) {
    for (let i = 0; i < options.keys; i++) {
      const v = this.newValue(i);
      this.initial.push([keyName(i), v]);
      this.models.push({ possible: new Set([idOf(v)]), uncertain: new Map(), losing: false });
    }
  }

  /** Writes every key's first value (use a client with a generous timeout, no faults). */
  async seed(client: MemcachedClient): Promise<void> {
    for (let i = 0; i < this.initial.length; i += 1000) {
      const notStored = await client.setMany(this.initial.slice(i, i + 1000));
      if (notStored.length > 0) throw new Error(`seed: ${notStored.length} keys not stored`);
    }
    this.initial.length = 0; // the model keeps ids only
  }

  /** Runs `concurrency` workers until `ops` operations were issued or `stop()` says so. */
  async run(
    client: MemcachedClient,
    ops: number,
    stop: () => boolean = () => false,
  ): Promise<void> {
    const workers = Array.from({ length: this.options.concurrency }, (_, w) =>
      this.worker(client, w, ops, stop),
    );
    await Promise.all(workers);
  }

  /** Reads every key once (after faults ended) and checks it. */
  async verifyAll(client: MemcachedClient): Promise<void> {
    const n = this.options.keys;
    for (let i = 0; i < n; i += 200) {
      const chunk: number[] = [];
      for (let j = i; j < Math.min(n, i + 200); j++) chunk.push(j);
      const got = await client.getMany(chunk.map(keyName));
      for (const j of chunk) this.check(j, got.get(keyName(j)), 'verify');
    }
  }

  /**
   * A server is about to lose its data (kill/restart): every key for which `onServer(key)` holds
   * may be a miss from now on. Returns `settle()`, to call once the new process runs and late
   * replies of the old one can no longer arrive: from then on an acknowledged write wins again.
   */
  serverLost(onServer: (key: string) => boolean): () => void {
    const affected: number[] = [];
    for (let i = 0; i < this.models.length; i++) {
      if (!onServer(keyName(i))) continue;
      affected.push(i);
      const m = this.models[i]!;
      m.possible.add(MISS);
      m.losing = true;
    }
    return () => {
      for (const i of affected) this.models[i]!.losing = false;
    };
  }

  private newValue(i: number): string {
    const base = `v:${i}:${++this.seq}:${Math.floor(this.options.random() * 1e9).toString(36)}`;
    const every = this.options.largeEvery ?? 16;
    return i % every === 0 && this.options.random() < 0.3 ? base.padEnd(16 * 1024, '.') : base;
  }

  private note(example: string): void {
    if (this.tally.examples.length < 10) this.tally.examples.push(example);
  }

  private check(i: number, got: unknown, via: string): void {
    const t = this.tally;
    t.checkedValues++;
    const m = this.models[i]!;
    if (got === undefined) {
      if (!m.possible.has(MISS)) {
        t.unexpectedMisses++;
        this.note(`${via} ${keyName(i)}: unexpected miss`);
      }
      return;
    }
    if (typeof got !== 'string' || !m.possible.has(idOf(got))) {
      t.wrongValues++;
      if (typeof got === 'string' && !got.startsWith(`v:${i}:`)) t.foreignValues++;
      const shown = typeof got === 'string' ? got.slice(0, 40) : String(got);
      const may = [...m.possible].map((v) => (v === MISS ? 'miss' : v.slice(0, 30)));
      this.note(`${via} ${keyName(i)}: got ${shown}, may hold ${may.join(' | ')}`);
    }
  }

  private acked(i: number, value: string): void {
    const m = this.models[i]!;
    const now = performance.now();
    m.possible = new Set([value === MISS ? MISS : idOf(value)]);
    for (const [id, at] of m.uncertain) {
      if (now - at > UNCERTAIN_MS) m.uncertain.delete(id);
      else m.possible.add(id);
    }
    if (m.losing) m.possible.add(MISS);
  }

  private unknown(i: number, value: string): void {
    const m = this.models[i]!;
    const id = value === MISS ? MISS : idOf(value);
    m.uncertain.set(id, performance.now());
    m.possible.add(id);
  }

  private failed(error: unknown): void {
    const name = error instanceof MemcachedError ? error.constructor.name : 'NOT_MEMCACHED';
    this.tally.errors[name] = (this.tally.errors[name] ?? 0) + 1;
    if (!(error instanceof MemcachedError)) this.note(`not a MemcachedError: ${String(error)}`);
  }

  private pickOp(): OpName {
    const r = this.options.random();
    if (r < 0.35) return 'get';
    if (r < 0.4) return 'getTwice';
    if (r < 0.55) return 'getMany';
    if (r < 0.6) return 'gets';
    if (r < 0.85) return 'set';
    if (r < 0.9) return 'setNoreply';
    return 'delete';
  }

  private async worker(
    client: MemcachedClient,
    w: number,
    ops: number,
    stop: () => boolean,
  ): Promise<void> {
    const { concurrency, keys, random } = this.options;
    const own: number[] = [];
    for (let i = w; i < keys; i += concurrency) own.push(i);
    if (own.length === 0) return;
    const pick = (): number => own[Math.floor(random() * own.length)]!;
    const t = this.tally;
    while (this.issued < ops && !stop()) {
      this.issued++;
      t.ops++;
      const op = this.pickOp();
      t.byOp[op] = (t.byOp[op] ?? 0) + 1;
      try {
        await this.runOp(client, op, pick, w);
        t.okByOp[op] = (t.okByOp[op] ?? 0) + 1;
      } catch (error) {
        this.failed(error);
      }
    }
  }

  private async runOp(
    client: MemcachedClient,
    op: OpName,
    pick: () => number,
    w: number,
  ): Promise<void> {
    switch (op) {
      case 'get': {
        const i = pick();
        this.check(i, await client.get(keyName(i)), 'get');
        return;
      }
      case 'getTwice': {
        // The same key twice in one tick: one auto-batched request asks for it twice.
        const i = pick();
        const both = await Promise.allSettled([client.get(keyName(i)), client.get(keyName(i))]);
        for (const r of both) {
          if (r.status === 'fulfilled') this.check(i, r.value, 'getTwice');
        }
        for (const r of both) if (r.status === 'rejected') throw r.reason;
        return;
      }
      case 'gets': {
        const i = pick();
        const found = await client.gets(keyName(i));
        this.check(i, found?.value, 'gets');
        return;
      }
      case 'getMany': {
        const n = 2 + Math.floor(this.options.random() * 5);
        const chosen = new Set<number>();
        for (let tries = 0; chosen.size < n && tries < 50; tries++) chosen.add(pick());
        const asked = [...chosen].map(keyName);
        const got = await client.getMany([...asked, `absent:${w}:${this.seq}`]);
        for (const key of got.keys()) {
          if (!asked.includes(key)) {
            this.tally.unaskedKeys++;
            this.note(`getMany returned ${key}, which was not asked for`);
          }
        }
        for (const i of chosen) this.check(i, got.get(keyName(i)), 'getMany');
        return;
      }
      case 'set':
      case 'setNoreply': {
        const i = pick();
        const v = this.newValue(i);
        const noreply = op === 'setNoreply';
        try {
          const ok = await client.set(keyName(i), v, noreply ? { noreply } : undefined);
          if (ok && !noreply) this.acked(i, v);
          else this.unknown(i, v);
        } catch (error) {
          this.unknown(i, v);
          throw error;
        }
        return;
      }
      case 'delete': {
        const i = pick();
        try {
          await client.delete(keyName(i));
          this.acked(i, MISS);
        } catch (error) {
          this.unknown(i, MISS);
          throw error;
        }
        return;
      }
    }
  }
}

export const FAULT_KINDS = [
  'drop',
  'cut',
  'cutReset',
  'stallShort',
  'stallLong',
  'latencyShort',
  'latencyLong',
  'drip',
  'reset',
  'none',
] as const;

export interface FaultOptions {
  proxies: readonly FaultProxy[];
  random: () => number;
  /** The client's timeout: stalls and latency are sized around it. */
  timeout: number;
  /** Pause between faults: `gapMin + random * gapSpread` ms. */
  gapMin: number;
  gapSpread: number;
  running: () => boolean;
  tally: Tally;
  /** Safety bound on the number of faults. */
  maxFaults?: number;
  /**
   * Also wait until this many operations ran since the previous fault (so the number of faults
   * per operation does not depend on how fast the machine is). Default 0.
   */
  opsBetween?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Injects random faults through the proxies until `running()` is false; clears them at the end. */
export async function injectFaults(o: FaultOptions): Promise<void> {
  const max = o.maxFaults ?? 1_000_000;
  // The kinds come from a shuffled deck, dealt again once empty: in random order, but every kind
  // once in each run of FAULT_KINDS.length faults, so a short run still has each of them.
  const deck: Array<(typeof FAULT_KINDS)[number]> = [];
  for (let n = 0; o.running() && n < max; n++) {
    const proxy = o.proxies[Math.floor(o.random() * o.proxies.length)]!;
    if (deck.length === 0) {
      deck.push(...FAULT_KINDS);
      for (let i = deck.length - 1; i > 0; i--) {
        const j = Math.floor(o.random() * (i + 1));
        [deck[i], deck[j]] = [deck[j]!, deck[i]!];
      }
    }
    const kind = deck.pop()!;
    o.tally.faults[kind] = (o.tally.faults[kind] ?? 0) + 1;
    switch (kind) {
      case 'drop':
        proxy.dropNextRequest();
        break;
      case 'cut':
      case 'cutReset':
        proxy.closeMidReply(1 + Math.floor(o.random() * 4000), { reset: kind === 'cutReset' });
        break;
      case 'stallShort':
      case 'stallLong':
        proxy.stall();
        await sleep(kind === 'stallShort' ? o.timeout / 3 : o.timeout * 1.6);
        proxy.resume();
        break;
      case 'latencyShort':
      case 'latencyLong':
        proxy.setLatency(kind === 'latencyShort' ? o.timeout / 4 : o.timeout * 1.2);
        await sleep(o.timeout);
        proxy.setLatency(0);
        break;
      case 'drip':
        proxy.setDrip(true);
        await sleep(60);
        proxy.setDrip(false);
        break;
      case 'reset':
        proxy.resetAll();
        break;
      case 'none':
        break;
    }
    await sleep(o.gapMin + o.random() * o.gapSpread);
    const from = o.tally.ops;
    while (o.running() && o.tally.ops - from < (o.opsBetween ?? 0)) await sleep(5);
  }
  await Promise.all(o.proxies.map((p) => p.clearFaults()));
}

import { MemcachedError, MemcachedProtocolError } from '../../errors.js';
import type { SessionHost } from '../driver.js';
import {
  addStat,
  type AnyRequest,
  type Op,
  type Request,
  type RetrievedItem,
  type StoreStatus,
} from '../request.js';
import { errorFromLine, interpretLine, unexpectedReply } from '../text/replies.js';
import { isBatchRead } from './encoder.js';
import { BASE_FEATURES, type MetaFeatures } from './features.js';
import { echoesKey, type MetaFlags, type MetaReplySink, type MetaStatus } from './parser.js';

/** What a meta session tells the client about. */
export interface MetaSessionHooks {
  /**
   * A plain read (get, gets, getMany, …) of a stale item was handed its refresh token, which it
   * will not use: the client gives it back (`md <key> I C<cas>`), so that a caller that does
   * refresh stale values gets it. `key` is the wire key; `server` the server id; `cas` the item's
   * cas when the read asked for it (else the client reads it first).
   */
  onUnusedToken?(server: string, key: string, cas: string | undefined): void;
}

/** Ops whose reply comes in the text protocol's form (they have no meta command). */
const TEXT_FORM: ReadonlySet<Op> = new Set<Op>(['flush_all', 'stats', 'version', 'auth']);

const STORE_STATUS: { readonly [S in MetaStatus]?: StoreStatus } = {
  HD: 'stored',
  NS: 'not_stored',
  EX: 'exists',
  NF: 'not_found',
};

/** Nominal replies a quiet (noreply) request may still send: `q` hides only the success code. */
const QUIET_LEFTOVERS: ReadonlySet<MetaStatus> = new Set<MetaStatus>([
  'HD',
  'EN',
  'NF',
  'NS',
  'EX',
]);

const DIGITS = /^[0-9]{1,20}$/;

/**
 * Whether a value read by a plain retrieval is not a value at all: an item marked stale (`X`), or
 * the empty placeholder of a lease (an empty item with client flags 0 that the server reports with
 * `W` or `Z`). An empty Buffer that was really stored comes back without `W`/`Z`/`X`: a hit.
 */
export function isPlaceholder(f: MetaFlags, size: number): boolean {
  if (f.stale) return true;
  return (f.win || f.contended) && size === 0 && (f.flags ?? 0) === 0;
}

/**
 * Pairs the pieces of a meta reply stream with the requests of a connection, in order. Every
 * piece must fit the request at the head of the queue — its kind, and for reads the exact key
 * asked (`k`, single-key reads) or, in a batched read, the position: each key's `mg` is answered
 * in order, and the `O<index>` a hit (and a miss, from memcached 1.6.18) echoes must be that
 * position (a `k` sent there anyway is checked too) — so a reply never reaches the wrong caller.
 * Anything else throws MemcachedProtocolError.
 *
 * Quiet mode (`q`) is not noreply: it hides only the nominal reply, so a failure code (`NS`, `EX`,
 * `NF`) or an error line can still come for a noreply write. While the head is a fence, such a
 * failure code is dropped and an error line is reported as stray; `MN` closes the fence. Error
 * lines carry no opaque, and take their key's position in a batched read, which fails as a whole
 * once every key was answered (the stream stays in step).
 */
export class MetaReplyMatcher implements MetaReplySink {
  /** What the server can do (set from its version during the handshake). */
  features: MetaFeatures = BASE_FEATURES;
  /** The first error line of the batched read at the head, reported once all keys were answered. */
  private runError: MemcachedError | undefined;

  constructor(
    private readonly host: SessionHost,
    private readonly hooks: MetaSessionHooks = {},
  ) {}

  /** Forgets the state of a reply in progress (a new socket). */
  reset(): void {
    this.runError = undefined;
  }

  onValue(f: MetaFlags, data: Buffer, tooLarge: number): void {
    const r = this.expect('VA', f);
    const size = tooLarge === 0 ? data.length : tooLarge;
    switch (r.kind) {
      case 'retrieve':
        this.retrieved(r, f, data, tooLarge);
        return;
      case 'lease': {
        this.checkKey(r, r.keys[0]!, f, 'VA', true);
        const cas = this.required(r, f.cas, 'c', 'VA');
        this.host.shift();
        r.complete({
          flags: f.flags ?? 0,
          data,
          cas,
          tooLarge,
          ttl: f.ttl ?? -1,
          win: f.win,
          stale: f.stale,
          contended: f.contended,
        });
        return;
      }
      case 'arith': {
        // `ma … v`: the new value as decimal text (tolerating the padding a decr may leave).
        const text = tooLarge === 0 ? data.toString('latin1').replace(/ +$/, '') : '';
        if (!DIGITS.test(text) || BigInt(text) > 0xffffffffffffffffn) {
          throw this.unexpected(`VA ${size} with ${JSON.stringify(text.slice(0, 40))}`, r);
        }
        this.host.shift();
        r.complete(BigInt(text));
        return;
      }
      default:
        throw this.unexpected(`VA ${size}`, r);
    }
  }

  onStatus(status: MetaStatus, f: MetaFlags): void {
    const r = this.expect(status, f);
    if (r.kind === 'ok' && r.op === 'fence') {
      if (status === 'MN') {
        this.host.shift();
        r.complete(true);
        return;
      }
      // The answer of a noreply request that `q` did not hide: nobody waits for it.
      if (QUIET_LEFTOVERS.has(status)) return;
      throw this.unexpected(status, r);
    }
    switch (r.kind) {
      case 'retrieve': {
        if (isBatchRead(r.keys)) {
          if (status !== 'EN') throw this.unexpected(status, r);
          this.position(r, f, status, this.features.missEchoesFlags);
          this.answered(r);
          return;
        }
        if (status !== 'EN') throw this.unexpected(status, r);
        this.checkKey(r, r.keys[0]!, f, status, this.features.missEchoesFlags);
        this.host.shift();
        r.complete([]);
        return;
      }
      case 'lease':
        if (status !== 'EN') throw this.unexpected(status, r);
        this.checkKey(r, r.keys[0]!, f, status, this.features.missEchoesFlags);
        this.host.shift();
        r.complete(undefined);
        return;
      case 'store': {
        const result = STORE_STATUS[status];
        if (result === undefined) throw this.unexpected(status, r);
        this.host.shift();
        r.complete(result);
        return;
      }
      case 'delete':
        // `md`: HD deleted (or marked stale); NF missing; EX the cas did not match.
        if (status !== 'HD' && status !== 'NF' && status !== 'EX') throw this.unexpected(status, r);
        this.host.shift();
        r.complete(status === 'HD');
        return;
      case 'touch':
        // `mg <key> k T<ttl>`: HD touched, EN missing.
        if (status !== 'HD' && status !== 'EN') throw this.unexpected(status, r);
        this.checkKey(r, r.keys[0]!, f, status, status === 'HD' || this.features.missEchoesFlags);
        this.host.shift();
        r.complete(status === 'HD');
        return;
      case 'arith':
        if (status !== 'NF') throw this.unexpected(status, r);
        this.host.shift();
        r.complete(undefined);
        return;
      default:
        throw this.unexpected(status, r);
    }
  }

  onStat(name: string, value: string): void {
    const r = this.expect('STAT', undefined, name);
    if (r.kind !== 'stats') throw this.unexpected(`STAT ${name}`, r);
    addStat(r, name, value, this.host.server);
  }

  onEnd(): void {
    const r = this.expect('END', undefined);
    if (r.kind !== 'stats') throw this.unexpected('END', r);
    this.host.shift();
    r.complete(r.stats ?? {});
  }

  onLine(line: string): void {
    const r = this.expect(undefined, undefined, line);
    const server = this.host.server;
    if (r.op === 'fence') {
      const stray = errorFromLine(line, 'a noreply command', server);
      if (stray === undefined) throw this.unexpected(JSON.stringify(line.slice(0, 80)), r);
      this.host.stray(stray);
      return;
    }
    if (TEXT_FORM.has(r.op)) {
      if (r.stats !== undefined && !line.startsWith('SERVER_ERROR')) {
        throw this.unexpected(JSON.stringify(line.slice(0, 80)), r);
      }
      const result = interpretLine(r.kind, r.op, line, r.command, server);
      this.host.shift();
      if (result instanceof MemcachedError) r.fail(result);
      else (r as { complete(reply: typeof result): void }).complete(result);
      return;
    }
    const error = errorFromLine(line, r.command, server);
    if (error === undefined) throw this.unexpected(JSON.stringify(line.slice(0, 80)), r);
    if (r.kind === 'retrieve' && isBatchRead(r.keys)) {
      // Errors carry no opaque: this one answers the next key, and the read fails as a whole once
      // every key was answered.
      this.runError ??= error;
      r.cursor++;
      this.answered(r);
      return;
    }
    this.host.shift();
    r.fail(error);
  }

  // -------------------------------------------------------------------------------------------

  /** A `VA` for a get/gets/gat/gats: the item of the key at its position, or a miss. */
  private retrieved(r: Request<'retrieve'>, f: MetaFlags, data: Buffer, tooLarge: number): void {
    const batch = isBatchRead(r.keys);
    const index = batch ? this.position(r, f, 'VA', true) : 0;
    const key = r.keys[index]!;
    // A single-key read asks for `k`; a batched one is matched by position, checked by its
    // opaque (a `k` sent anyway is still checked).
    this.checkKey(r, key, f, 'VA', !batch);
    // The cas string is made only where it is used: gets/gats, and a token to give back.
    const withCas = r.op === 'gets' || r.op === 'gats';
    const cas = withCas ? this.required(r, f.cas, 'c', 'VA') : undefined;
    const size = tooLarge === 0 ? data.length : tooLarge;
    if (isPlaceholder(f, size)) {
      if (f.stale && f.win) {
        const token = f.cas === undefined ? undefined : this.required(r, f.cas, 'c', 'VA');
        this.hooks.onUnusedToken?.(this.host.server, key, token);
      }
    } else {
      const item: RetrievedItem = { key, flags: f.flags ?? 0, data, cas, index, tooLarge };
      if (r.items === undefined) r.items = [item];
      else r.items.push(item);
    }
    if (batch) {
      this.answered(r);
    } else {
      this.host.shift();
      r.complete(r.items ?? []);
    }
  }

  /**
   * The position a reply of a batched read answers: the next one. Its `O<index>` must name that
   * position (`required`: the server always echoes it here, so its absence is an error too).
   */
  private position(r: Request<'retrieve'>, f: MetaFlags, code: string, required: boolean): number {
    const index = r.cursor;
    const echoed = f.opaque;
    if (index >= r.keys.length || (echoed === undefined ? required : echoed !== index)) {
      throw new MemcachedProtocolError(
        `memcached ${this.host.server} sent ${code} with opaque ${echoed === undefined ? '(none)' : Number.isNaN(echoed) ? '(not a position)' : `O${echoed}`} in a ${r.keys.length}-key ${r.command} whose next position is ${index}; the connection was reset`,
        { server: this.host.server, command: r.command },
      );
    }
    r.cursor = index + 1;
    return index;
  }

  /** Completes (or fails) a batched read once every key was answered. */
  private answered(r: Request<'retrieve'>): void {
    if (r.cursor < r.keys.length) return;
    const error = this.runError;
    this.runError = undefined;
    this.host.shift();
    if (error !== undefined) r.fail(error);
    else r.complete(r.items ?? []);
  }

  /**
   * The `k` flag of a reply must name the key asked (base64-decoded when flagged `b`). `required`:
   * the server always echoes it here, so its absence is a protocol error too.
   */
  private checkKey(
    r: AnyRequest,
    key: string,
    f: MetaFlags,
    code: string,
    required: boolean,
  ): void {
    if (echoesKey(f, key)) return;
    const echoed = f.key;
    if (echoed === undefined && !required) return;
    throw new MemcachedProtocolError(
      `memcached ${this.host.server} sent ${code} for key ${echoed === undefined ? '(none)' : JSON.stringify(echoed)} in reply to ${r.command} of ${JSON.stringify(key)}; the connection was reset`,
      { server: this.host.server, command: r.command },
    );
  }

  private required(r: AnyRequest, value: string | undefined, flag: string, code: string): string {
    if (value !== undefined) return value;
    throw new MemcachedProtocolError(
      `memcached ${this.host.server} sent ${code} without the "${flag}" flag asked for in ${r.command}; the connection was reset`,
      { server: this.host.server, command: r.command },
    );
  }

  private unexpected(what: string, r: AnyRequest): MemcachedProtocolError {
    return unexpectedReply(what, r.kind, r.command, this.host.server);
  }

  /** The head request, or a protocol error: a reply came while none is waiting. */
  private expect(code: string | undefined, f: MetaFlags | undefined, detail?: string): AnyRequest {
    const r = this.host.head();
    if (r !== undefined) return r;
    const what =
      code === undefined
        ? JSON.stringify((detail ?? '').slice(0, 80))
        : f?.key !== undefined
          ? `${code} k${f.key}`
          : detail === undefined
            ? code
            : `${code} ${detail}`;
    throw new MemcachedProtocolError(
      `memcached ${this.host.server} sent ${what} but no request is waiting for a reply; the connection was reset`,
      { server: this.host.server },
    );
  }
}

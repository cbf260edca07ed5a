import { MemcachedProtocolError, type MemcachedError } from '../errors.js';

/** Storage commands: what `set`, `add`, ... mean on every protocol. */
export type StoreOp = 'set' | 'add' | 'replace' | 'append' | 'prepend' | 'cas';
/** Retrieval commands: `get`/`gets` (with cas), `gat`/`gats` (touching). */
export type RetrieveOp = 'get' | 'gets' | 'gat' | 'gats';
/** Arithmetic commands. */
export type ArithOp = 'incr' | 'decr';

/**
 * What one request asks of a server, independent of the wire protocol. Keys are wire keys
 * (prefix applied, validated); numbers are validated. A driver turns it into bytes.
 */
export type CommandSpec =
  | { readonly op: RetrieveOp; readonly keys: readonly string[]; readonly ttl?: number }
  | {
      readonly op: StoreOp;
      readonly key: string;
      readonly flags: number;
      readonly ttl: number;
      readonly value: Buffer;
      /** Only for `cas`. */
      readonly cas?: string;
      readonly noreply: boolean;
    }
  | { readonly op: 'delete'; readonly key: string; readonly noreply?: boolean }
  | { readonly op: 'touch'; readonly key: string; readonly ttl: number; readonly noreply?: boolean }
  | { readonly op: ArithOp; readonly key: string; readonly delta: bigint }
  | { readonly op: 'flush_all'; readonly delay?: number }
  | { readonly op: 'stats'; readonly group?: string }
  | { readonly op: 'version' }
  /** Proves that every noreply request written before it was processed. */
  | { readonly op: 'fence' }
  /** Authentication, the first request on a connection. */
  | { readonly op: 'auth'; readonly username: string; readonly password: string }
  // The ops below exist on the meta protocol only (other drivers refuse them).
  /**
   * A read that reports the item's lease state: with `vivify` (seconds), a miss creates an empty
   * placeholder and hands this caller the lease; with `recache` (seconds), the first reader of an
   * item with less TTL left than that is handed the refresh token.
   */
  | {
      readonly op: 'lease';
      readonly key: string;
      readonly vivify?: number;
      readonly recache?: number;
    }
  /** Marks an item stale (optionally with a new TTL, and only while its cas matches). */
  | {
      readonly op: 'invalidate';
      readonly key: string;
      readonly ttl?: number;
      readonly cas?: string;
    }
  /** Deletes an item only while its cas matches (gives a lease back). */
  | { readonly op: 'release'; readonly key: string; readonly cas: string };

export type Op = CommandSpec['op'];

/** One item of a retrieval reply. */
export interface RetrievedItem {
  /** Wire key. */
  key: string;
  flags: number;
  /** The value bytes (empty when `tooLarge`). */
  data: Buffer;
  cas: string | undefined;
  /** Position of `key` in the request's key list. */
  index: number;
  /**
   * The declared size when the value was larger than this client's maxValueSize: it was read
   * and dropped, and only its caller fails. 0 otherwise.
   */
  tooLarge: number;
}

/**
 * The reply to a `lease` read (meta protocol): the item as stored, and what the server said about
 * its lease. A placeholder is an empty item the server created for a lease (`win` for the caller
 * that created it, `contended` for everyone else).
 */
export interface LeasedItem {
  flags: number;
  data: Buffer;
  cas: string;
  /** As for RetrievedItem: the declared size of a value over maxValueSize, else 0. */
  tooLarge: number;
  /** Seconds of TTL left; -1 when it never expires. */
  ttl: number;
  /** This caller holds the token: it should compute (a lease) or refresh (stale, recache). */
  win: boolean;
  /** Marked stale (invalidated). */
  stale: boolean;
  /** Another caller already holds the token. */
  contended: boolean;
}

/** Outcome of a storage command, as every protocol states it. */
export type StoreStatus = 'stored' | 'not_stored' | 'exists' | 'not_found';

/** The typed reply of each kind of request. */
export interface Replies {
  retrieve: RetrievedItem[];
  store: StoreStatus;
  delete: boolean;
  touch: boolean;
  /** `undefined` when the key is missing. */
  arith: bigint | undefined;
  ok: true;
  stats: Record<string, string>;
  version: string;
  /** `undefined` when the key is missing (and no placeholder was created). */
  lease: LeasedItem | undefined;
}

export type ReplyKind = keyof Replies;

/** The kind of reply each op expects. */
export type KindOf<O extends Op> = O extends RetrieveOp
  ? 'retrieve'
  : O extends StoreOp
    ? 'store'
    : O extends 'delete'
      ? 'delete'
      : O extends 'touch'
        ? 'touch'
        : O extends ArithOp
          ? 'arith'
          : O extends 'stats'
            ? 'stats'
            : O extends 'version'
              ? 'version'
              : O extends 'lease'
                ? 'lease'
                : O extends 'invalidate' | 'release'
                  ? 'delete'
                  : 'ok';

const KIND: { readonly [O in Op]: KindOf<O> } = {
  get: 'retrieve',
  gets: 'retrieve',
  gat: 'retrieve',
  gats: 'retrieve',
  set: 'store',
  add: 'store',
  replace: 'store',
  append: 'store',
  prepend: 'store',
  cas: 'store',
  delete: 'delete',
  touch: 'touch',
  incr: 'arith',
  decr: 'arith',
  flush_all: 'ok',
  stats: 'stats',
  version: 'version',
  fence: 'ok',
  auth: 'ok',
  lease: 'lease',
  invalidate: 'delete',
  release: 'delete',
};

/** What a noreply request is taken to have answered once it is written. */
const NOREPLY_REPLY: Partial<{ [K in ReplyKind]: Replies[K] }> = {
  store: 'stored',
  delete: true,
  touch: true,
  ok: true,
};

/** Told when a request settles (the cluster counts calls in flight with it). */
export interface RequestListener {
  onSettled(): void;
}

/**
 * One command on its way to a server and back: built once by the client, passed unchanged
 * through cluster, pool and connection, encoded by the protocol driver, and settled exactly
 * once — with its typed reply, or an error.
 */
export class Request<K extends ReplyKind = ReplyKind> {
  readonly kind: K;
  /** The client method or command name, for errors (`get`, `setMany`, ...). */
  readonly command: string;
  /** Wire keys the request concerns (retrieval: in request order). */
  readonly keys: readonly string[];
  readonly noreply: boolean;
  /** Bytes to write; released once written. */
  data: Buffer | Buffer[] | undefined;
  /** How long the reply may take once the request is written, ms. */
  timeout = 1000;
  /** Absolute deadline (performance clock, ms), set when written. */
  deadline = Infinity;
  /** Settled already; a reply that still comes is read and dropped. */
  settled = false;
  /** Driver state while its reply is being read (items so far, STAT lines, cursor). */
  items: RetrievedItem[] | undefined = undefined;
  stats: Record<string, string> | undefined = undefined;
  cursor = 0;
  /** A fence: how many noreply requests it covers. */
  covers = 0;
  listener: RequestListener | undefined = undefined;

  constructor(
    command: string,
    /** What to do; its op must be one of kind K (the builders in the client pair them). */
    readonly spec: CommandSpec,
    data: Buffer | Buffer[],
    private readonly onReply: (reply: Replies[K]) => void,
    private readonly onError: (error: MemcachedError) => void,
  ) {
    this.kind = KIND[spec.op] as K;
    this.command = command;
    this.data = data;
    const s = spec as { keys?: readonly string[]; key?: string; noreply?: boolean };
    this.keys = s.keys ?? (s.key === undefined ? NO_KEYS : [s.key]);
    this.noreply = s.noreply === true;
  }

  get op(): Op {
    return this.spec.op;
  }

  /** Settles with the reply (ignored when settled already). */
  complete(reply: Replies[K]): void {
    if (this.settled) return;
    this.settled = true;
    this.listener?.onSettled();
    this.onReply(reply);
  }

  /** Settles with an error (ignored when settled already). */
  fail(error: MemcachedError): void {
    if (this.settled) return;
    this.settled = true;
    this.listener?.onSettled();
    this.onError(error);
  }

  /** A noreply request has been written: it settles as if the server had said yes. */
  completeNoreply(): void {
    this.complete(NOREPLY_REPLY[this.kind] as Replies[K]);
  }
}

/** Any request, whatever its kind (a union, so `kind` narrows it). */
export type AnyRequest = { [K in ReplyKind]: Request<K> }[ReplyKind];

const NO_KEYS: readonly string[] = Object.freeze([]);

/** Most stats one reply may carry (`stats conns` of a very busy server stays far below). */
export const MAX_STAT_LINES = 100_000;

/**
 * Adds one stat of a `stats` reply being read to `r.stats`. Past {@link MAX_STAT_LINES} the
 * reply is endless or hostile: a MemcachedProtocolError (the connection is reset).
 */
export function addStat(r: Request<'stats'>, name: string, value: string, server: string): void {
  const stats = (r.stats ??= {});
  if (++r.cursor > MAX_STAT_LINES) {
    throw new MemcachedProtocolError(
      `memcached ${server} sent more than ${MAX_STAT_LINES} stats in reply to ${r.command}; the connection was reset`,
      { server, command: r.command },
    );
  }
  stats[name] = value;
}

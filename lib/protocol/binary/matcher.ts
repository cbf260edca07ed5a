import { MemcachedAuthError, MemcachedProtocolError } from '../../errors.js';
import type { SessionHost } from '../driver.js';
import {
  addStat,
  type AnyRequest,
  type Replies,
  type Request,
  type RetrievedItem,
  type StoreStatus,
} from '../request.js';
import { Opcode, Status } from './constants.js';
import type { ResponseHeader, ResponseSink } from './parser.js';
import { casToken, errorFromStatus, unexpectedPacket } from './replies.js';

/** The opcode a request of each op is answered with (retrievals: see {@link retrieveOpcode}). */
const REPLY_OPCODE: Readonly<Record<string, number>> = {
  set: Opcode.set,
  add: Opcode.add,
  replace: Opcode.replace,
  append: Opcode.append,
  prepend: Opcode.prepend,
  cas: Opcode.set,
  delete: Opcode.delete,
  touch: Opcode.touch,
  incr: Opcode.increment,
  decr: Opcode.decrement,
  flush_all: Opcode.flush,
  stats: Opcode.stat,
  version: Opcode.version,
  auth: Opcode.saslAuth,
};

/**
 * Quiet opcodes of noreply writes: the server answers them only when they fail. Statuses that
 * the text protocol reports as a plain outcome (not stored, exists, not found) are no failure
 * and are dropped, as `noreply` drops them there.
 */
const QUIET_OPCODES: ReadonlySet<number> = new Set([
  Opcode.setq,
  Opcode.addq,
  Opcode.replaceq,
  Opcode.appendq,
  Opcode.prependq,
  Opcode.deleteq,
  Opcode.incrementq,
  Opcode.decrementq,
  Opcode.flushq,
]);

const isOutcome = (status: number): boolean =>
  status === Status.keyNotFound || status === Status.keyExists || status === Status.notStored;

/** `getk` / `gatk` for one key, the quiet `getkq` / `gatkq` for several. */
function retrieveOpcode(r: AnyRequest): number {
  const touching = r.op === 'gat' || r.op === 'gats';
  if (r.keys.length === 1) return touching ? Opcode.gatk : Opcode.getk;
  return touching ? Opcode.gatkq : Opcode.getkq;
}

/**
 * Pairs binary response packets with the requests of a connection, in order. Every packet must
 * fit the request at the head of the queue: its opcode, and for retrievals the exact key asked at
 * that position (the opaque of a quiet get is the key's index) — so a reply can never reach the
 * wrong caller. Anything else throws MemcachedProtocolError (the stream cannot be trusted). An
 * error status fails the head request alone; while the head is a fence, the packet belongs to a
 * noreply request written just before, and a real error is reported as stray.
 */
export class BinaryReplyMatcher implements ResponseSink {
  constructor(private readonly host: SessionHost) {}

  onResponse(
    h: ResponseHeader,
    extras: Buffer,
    key: Buffer,
    value: Buffer,
    tooLarge: number,
  ): void {
    const server = this.host.server;
    const r = this.host.head();
    if (r === undefined) {
      throw new MemcachedProtocolError(
        `memcached ${server} sent a reply (opcode 0x${h.opcode.toString(16)}) but no request is waiting for one; the connection was reset`,
        { server },
      );
    }
    if (r.op === 'fence') {
      this.fence(r as Request<'ok'>, h, value);
      return;
    }
    if (r.kind === 'retrieve') {
      this.retrieve(r, h, extras, key, value, tooLarge);
      return;
    }
    if (h.opcode !== REPLY_OPCODE[r.op]) {
      throw unexpectedPacket(h.opcode, h.status, `a ${r.op} reply`, r.command, server);
    }
    if (r.kind === 'stats') {
      this.stat(r, h, key, value);
      return;
    }
    const status = h.status;
    let result: Replies[typeof r.kind] | undefined;
    switch (r.kind) {
      case 'store':
        result = storeStatus(r.op === 'cas', status);
        break;
      case 'delete':
      case 'touch':
        if (status === Status.ok) result = true;
        else if (status === Status.keyNotFound) result = false;
        break;
      case 'arith':
        if (status === Status.ok) {
          if (value.length !== 8) {
            throw unexpectedPacket(h.opcode, status, 'an 8-byte counter', r.command, server);
          }
          result = value.readBigUInt64BE(0);
        } else if (status === Status.keyNotFound) {
          this.host.shift();
          r.complete(undefined);
          return;
        }
        break;
      case 'version':
        if (status === Status.ok) result = value.toString('latin1');
        break;
      case 'ok':
        if (status === Status.ok) result = true;
        break;
    }
    this.host.shift();
    if (result !== undefined) {
      (r as { complete(reply: NonNullable<typeof result>): void }).complete(result);
      return;
    }
    const message = value.toString('latin1');
    if (r.op === 'auth') {
      r.fail(
        new MemcachedAuthError(
          status === Status.unknownCommand || status === Status.notSupported
            ? `memcached ${server} does not support SASL authentication (${message || 'unknown command'}); start it with -S, or remove the auth option`
            : `memcached ${server} refused SASL PLAIN authentication (${message || `status 0x${status.toString(16)}`}); check the auth option (username/password) against the server's SASL database`,
          { server, command: 'auth' },
        ),
      );
      return;
    }
    r.fail(errorFromStatus(status, message, r.command, server));
  }

  /** A packet while the head is a fence: the fence's own `noop`, or the reply of a noreply write. */
  private fence(r: Request<'ok'>, h: ResponseHeader, value: Buffer): void {
    const status = h.status;
    if (h.opcode === Opcode.noop && status === Status.ok) {
      this.host.shift();
      r.complete(true);
      return;
    }
    const quiet = QUIET_OPCODES.has(h.opcode);
    // A noreply touch goes out as a plain touch (there is no quiet one): its reply is dropped.
    const touch = h.opcode === Opcode.touch;
    if ((quiet || touch) && status !== Status.ok) {
      if (isOutcome(status)) return;
      this.host.stray(
        errorFromStatus(status, value.toString('latin1'), 'a noreply command', this.host.server),
      );
      return;
    }
    if (touch) return;
    throw unexpectedPacket(
      h.opcode,
      status,
      'the noop closing noreply commands',
      r.command,
      this.host.server,
    );
  }

  private retrieve(
    r: Request<'retrieve'>,
    h: ResponseHeader,
    extras: Buffer,
    key: Buffer,
    value: Buffer,
    tooLarge: number,
  ): void {
    const server = this.host.server;
    const single = r.keys.length === 1;
    if (!single && h.opcode === Opcode.noop) {
      if (h.status !== Status.ok) {
        throw unexpectedPacket(h.opcode, h.status, 'an ok noop', r.command, server);
      }
      this.host.shift();
      r.complete(r.items ?? []);
      return;
    }
    const expected = retrieveOpcode(r);
    if (h.opcode !== expected) {
      throw unexpectedPacket(
        h.opcode,
        h.status,
        `a ${single ? 'getk/gatk' : 'getkq/gatkq or noop'} reply`,
        r.command,
        server,
      );
    }
    const status = h.status;
    if (status === Status.ok) {
      const index = single ? 0 : h.opaque;
      const name = key.toString('utf8');
      // The server answers the keys of a multi-get in the order asked, skipping misses: the
      // packet's key must be the one asked at its index, at or after the cursor.
      if (index < r.cursor || index >= r.keys.length || r.keys[index] !== name) {
        throw new MemcachedProtocolError(
          `memcached ${server} returned key ${JSON.stringify(name.slice(0, 250))} which was not asked for (or not in this order) in this ${r.command}; the connection was reset`,
          { server, command: r.command },
        );
      }
      if (extras.length !== 4) {
        throw unexpectedPacket(h.opcode, status, 'a hit with 4 bytes of flags', r.command, server);
      }
      r.cursor = index + 1;
      const withCas = r.op === 'gets' || r.op === 'gats';
      const item: RetrievedItem = {
        key: name,
        flags: extras.readUInt32BE(0),
        data: value,
        cas: withCas ? casToken(h.casHigh, h.casLow) : undefined,
        index,
        tooLarge,
      };
      if (single) {
        this.host.shift();
        r.complete([item]);
        return;
      }
      if (r.items === undefined) r.items = [item];
      else r.items.push(item);
      return;
    }
    if (single) {
      this.host.shift();
      if (status === Status.keyNotFound) {
        if (key.length !== 0 && key.toString('utf8') !== r.keys[0]) {
          throw new MemcachedProtocolError(
            `memcached ${server} reported a miss of a key that was not asked for in this ${r.command}; the connection was reset`,
            { server, command: r.command },
          );
        }
        r.complete([]);
      } else {
        r.fail(errorFromStatus(status, value.toString('latin1'), r.command, server));
      }
      return;
    }
    // A quiet get that failed (not a miss: those are silent): the whole request fails, and its
    // remaining packets up to the noop are read and dropped.
    if (status === Status.keyNotFound) {
      throw unexpectedPacket(h.opcode, status, 'only hits from quiet gets', r.command, server);
    }
    r.fail(errorFromStatus(status, value.toString('latin1'), r.command, server));
  }

  private stat(r: Request<'stats'>, h: ResponseHeader, key: Buffer, value: Buffer): void {
    if (h.status !== Status.ok) {
      this.host.shift();
      // An unknown stats group is "not found" here and `ERROR` (unknown command) on text.
      const status = h.status === Status.keyNotFound ? Status.unknownCommand : h.status;
      r.fail(errorFromStatus(status, value.toString('latin1'), r.command, this.host.server));
      return;
    }
    if (key.length === 0) {
      this.host.shift();
      r.complete(r.stats ?? {});
      return;
    }
    addStat(r, key.toString('utf8'), value.toString('utf8'), this.host.server);
  }
}

function storeStatus(cas: boolean, status: number): StoreStatus | undefined {
  switch (status) {
    case Status.ok:
      return 'stored';
    case Status.notStored:
      return 'not_stored';
    // add of an existing key / replace of a missing one: NOT_STORED on the text protocol.
    case Status.keyExists:
      return cas ? 'exists' : 'not_stored';
    case Status.keyNotFound:
      return cas ? 'not_found' : 'not_stored';
    default:
      return undefined;
  }
}

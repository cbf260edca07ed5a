import { MemcachedError, MemcachedProtocolError } from '../../errors.js';
import type { SessionHost } from '../driver.js';
import { addStat, type AnyRequest, type RetrievedItem } from '../request.js';
import type { ReplySink } from './parser.js';
import { errorFromLine, interpretLine, unexpectedReply } from './replies.js';

/**
 * Pairs the pieces of a text-protocol reply stream with the requests of a connection, in order.
 * Every piece must fit the request at the head of the queue: its kind, and for retrievals the
 * exact keys asked, in order — so a reply can never reach the wrong caller. Anything else throws
 * MemcachedProtocolError (the stream cannot be trusted). An error line is the failure of the
 * head request alone; while the head is a fence, it belongs to a noreply request written just
 * before and is reported as stray.
 */
export class TextReplyMatcher implements ReplySink {
  /** The server said it is 1.6 or newer, so it knows the meta no-op `mn`. */
  metaNoop = false;

  constructor(private readonly host: SessionHost) {}

  onValue(
    key: string,
    flags: number,
    data: Buffer,
    cas: string | undefined,
    tooLarge: number,
  ): void {
    const r = this.expect('VALUE', key);
    if (r.kind !== 'retrieve') {
      throw unexpectedReply(`VALUE ${key}`, r.kind, r.command, this.host.server);
    }
    // memcached answers the keys of a get in the order they were asked, skipping misses: the
    // item must match a key at or after the cursor (a key not asked, out of order or twice
    // means the stream cannot be trusted).
    const keys = r.keys;
    let i = r.cursor;
    while (i < keys.length && keys[i] !== key) i++;
    if (i === keys.length) {
      throw new MemcachedProtocolError(
        `memcached ${this.host.server} returned key "${key}" which was not asked for (or not in this order) in this ${r.command}; the connection was reset`,
        { server: this.host.server, command: r.command },
      );
    }
    r.cursor = i + 1;
    if (cas === undefined && (r.op === 'gets' || r.op === 'gats')) {
      throw unexpectedReply(
        `VALUE ${key} without a cas token`,
        r.kind,
        r.command,
        this.host.server,
      );
    }
    const item: RetrievedItem = { key, flags, data, cas, index: i, tooLarge };
    if (r.items === undefined) r.items = [item];
    else r.items.push(item);
  }

  onStat(name: string, value: string): void {
    const r = this.expect('STAT', name);
    if (r.kind !== 'stats') {
      throw unexpectedReply(`STAT ${name}`, r.kind, r.command, this.host.server);
    }
    addStat(r, name, value, this.host.server);
  }

  onEnd(): void {
    const r = this.expect('END', undefined);
    if (r.kind === 'retrieve') {
      this.host.shift();
      r.complete(r.items ?? []);
    } else if (r.kind === 'stats') {
      this.host.shift();
      r.complete(r.stats ?? {});
    } else {
      throw unexpectedReply('END', r.kind, r.command, this.host.server);
    }
  }

  onLine(line: string): void {
    const r = this.expect(undefined, line);
    const server = this.host.server;
    if (r.op === 'fence') {
      const stray = errorFromLine(line, 'a noreply command', server);
      if (stray !== undefined) {
        this.host.stray(stray);
        return;
      }
    }
    if ((r.items !== undefined || r.stats !== undefined) && !line.startsWith('SERVER_ERROR')) {
      throw unexpectedReply(JSON.stringify(line.slice(0, 80)), r.kind, r.command, server);
    }
    const result = interpretLine(r.kind, r.op, line, r.command, server);
    if (r.kind === 'version' || r.op === 'fence') this.noteVersion(line);
    this.host.shift();
    if (result instanceof MemcachedError) r.fail(result);
    else (r as { complete(reply: typeof result): void }).complete(result);
  }

  /**
   * The head request, or a protocol error: a reply arrived while none is waiting. The reply is
   * described (`VALUE key`, `END`, or a quoted line) only when that error is built.
   */
  private expect(word: string | undefined, detail: string | undefined): AnyRequest {
    const r = this.host.head();
    if (r === undefined) {
      const what =
        word === undefined
          ? JSON.stringify((detail ?? '').slice(0, 80))
          : detail === undefined
            ? word
            : `${word} ${detail}`;
      throw new MemcachedProtocolError(
        `memcached ${this.host.server} sent ${what} but no request is waiting for a reply; the connection was reset`,
        { server: this.host.server },
      );
    }
    return r;
  }

  private noteVersion(line: string): void {
    const m = /^VERSION (\d+)\.(\d+)/.exec(line);
    if (m !== null) this.metaNoop = Number(m[1]) > 1 || (Number(m[1]) === 1 && Number(m[2]) >= 6);
  }
}

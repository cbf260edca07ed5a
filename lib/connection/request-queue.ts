import type { MemcachedError } from '../errors.js';
import type { AnyRequest } from '../protocol/request.js';

/**
 * A connection's pending requests, in the order they go on the wire: `[head, unwritten)` are
 * written and await their replies, in order; `[unwritten, end)` wait to be written.
 */
export class RequestQueue {
  private items: AnyRequest[] = [];
  private first = 0;
  private unwritten = 0;

  /** Requests written or waiting to be written, not yet answered. */
  get pending(): number {
    return this.items.length - this.first;
  }

  get hasUnwritten(): boolean {
    return this.unwritten < this.items.length;
  }

  push(request: AnyRequest): void {
    this.items.push(request);
  }

  /**
   * Puts a request that is being written now ahead of every unwritten one (a handshake step,
   * which goes out alone before anything else).
   */
  pushWritten(request: AnyRequest): void {
    this.items.splice(this.unwritten, 0, request);
    this.unwritten++;
  }

  /** The written request whose reply comes next. */
  head(): AnyRequest | undefined {
    return this.first < this.unwritten ? this.items[this.first] : undefined;
  }

  /** Drops the head request (answered). */
  shift(): void {
    const q = this.items;
    q[this.first] = undefined as unknown as AnyRequest;
    this.first++;
    if (this.first === q.length) {
      q.length = 0;
      this.first = 0;
      this.unwritten = 0;
    } else if (this.first >= 1024 && this.first * 2 >= q.length) {
      q.splice(0, this.first);
      this.unwritten -= this.first;
      this.first = 0;
    }
  }

  /**
   * Hands every unwritten request to `write` in order, and marks them written. Noreply requests
   * settle once written and leave the queue; right after each run of them, `fence()` supplies a
   * request that is written in their place (before the next request that expects a reply).
   */
  takeUnwritten(write: (request: AnyRequest) => void, fence: () => AnyRequest): void {
    const q = this.items;
    let w = this.unwritten;
    let inNoreplyRun = false;
    for (let i = this.unwritten; i < q.length; i++) {
      const r = q[i]!;
      if (r.settled) continue; // settled before it was sent: never sent at all
      if (r.noreply) {
        write(r);
        inNoreplyRun = true;
        continue;
      }
      if (inNoreplyRun) {
        // A noreply run frees at least one slot, so the fence never overtakes the read index.
        q[w++] = fence();
        inNoreplyRun = false;
      }
      write(r);
      q[w++] = r;
    }
    if (inNoreplyRun) q[w++] = fence();
    q.length = w;
    this.unwritten = w;
  }

  /** Written requests whose reply is awaited (head first), for deadline checks. */
  *written(): IterableIterator<AnyRequest> {
    for (let i = this.first; i < this.unwritten; i++) yield this.items[i]!;
  }

  /** Empties the queue, failing every request that is not settled. */
  failAll(error: MemcachedError): void {
    const q = this.items;
    const first = this.first;
    this.items = [];
    this.first = 0;
    this.unwritten = 0;
    for (let i = first; i < q.length; i++) q[i]!.fail(error);
  }
}

/**
 * The raw-socket ceiling: pre-encoded text-protocol requests pipelined on one socket, replies only
 * counted (no decoding, no promises, no per-call objects). Whatever a client does on top of the
 * wire costs the difference between its numbers and these.
 */
import net from 'node:net';
import { LatencyRecorder, now, type LoopOutcome, type RoundLimit } from './measure.js';

const LF = 10;

/**
 * Counts complete text-protocol replies in a byte stream split anywhere: `VALUE` data blocks are
 * skipped by their declared length, and every other line (`END`, `STORED`, `NOT_STORED`, `ERROR`,
 * ...) closes one reply. Lines other than `END`/`STORED`/`DELETED`/`TOUCHED` count as errors.
 */
export class ReplyCounter {
  /** Bytes of value data (plus its CRLF) still to skip. */
  private skip = 0;
  /** An incomplete line carried over from the previous chunk. */
  private partial: Buffer | undefined;
  errors = 0;
  lastError = '';

  /** Consumes a chunk; returns how many replies it completed. */
  feed(chunk: Buffer): number {
    let done = 0;
    let off = 0;
    const len = chunk.length;
    while (off < len) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, len - off);
        this.skip -= n;
        off += n;
        continue;
      }
      const nl = chunk.indexOf(LF, off);
      if (nl === -1) {
        const rest = chunk.subarray(off);
        this.partial =
          this.partial === undefined ? Buffer.from(rest) : Buffer.concat([this.partial, rest]);
        return done;
      }
      let line: Buffer;
      if (this.partial !== undefined) {
        line = Buffer.concat([this.partial, chunk.subarray(off, nl + 1)]);
        this.partial = undefined;
      } else {
        line = chunk.subarray(off, nl + 1);
      }
      off = nl + 1;
      done += this.line(line);
    }
    return done;
  }

  /** `line` includes its `\r\n`. Returns 1 when it closes a reply. */
  private line(line: Buffer): number {
    const c = line[0];
    if (c === 0x56 /* V */ && line.length > 6) {
      // VALUE <key> <flags> <bytes> [<cas>]\r\n
      let field = 0;
      let bytes = 0;
      for (let i = 6; i < line.length - 2; i++) {
        const b = line[i]!;
        if (b === 0x20) {
          if (++field > 2) break;
        } else if (field === 2) {
          bytes = bytes * 10 + (b - 48);
        }
      }
      this.skip = bytes + 2;
      return 0;
    }
    const text = line.toString('latin1', 0, line.length - 2);
    if (text !== 'END' && text !== 'STORED' && text !== 'DELETED' && text !== 'TOUCHED') {
      this.errors++;
      this.lastError = text;
    }
    return 1;
  }
}

/** One socket to a memcached, driving pipelined rounds of pre-encoded requests. */
export class RawPipeline {
  private constructor(private readonly socket: net.Socket) {}

  static connect(host: string, port: number): Promise<RawPipeline> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port, noDelay: true });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new RawPipeline(socket));
      });
    });
  }

  /**
   * Keeps `concurrency` requests outstanding (`request(i)` is the i-th request's bytes) until the
   * limit is reached, then waits for the outstanding replies. Latency of a request: from the write
   * that carried it to the chunk that completed its reply.
   */
  run(
    request: (i: number) => Buffer,
    concurrency: number,
    limit: RoundLimit,
    recorder: LatencyRecorder,
  ): Promise<LoopOutcome> {
    recorder.reset();
    const socket = this.socket;
    const counter = new ReplyCounter();
    const sentAt = new Float64Array(concurrency);
    const maxOps = limit.kind === 'ops' ? limit.ops : Infinity;
    const start = now();
    const deadline = limit.kind === 'duration' ? start + limit.ms : Infinity;
    let issued = 0;
    let completed = 0;
    let stopped = false;

    return new Promise<LoopOutcome>((resolve, reject) => {
      const issue = (n: number, t: number): void => {
        socket.cork();
        for (let k = 0; k < n; k++) {
          sentAt[issued % concurrency] = t;
          socket.write(request(issued));
          issued++;
        }
        socket.uncork();
      };
      const finish = (error?: Error): void => {
        socket.off('data', onData);
        socket.off('error', finish);
        socket.off('close', onClose);
        if (error !== undefined) {
          reject(error);
          return;
        }
        resolve({
          ops: completed - counter.errors,
          errors: counter.errors,
          firstError: counter.errors > 0 ? new Error(counter.lastError) : undefined,
          elapsedMs: now() - start,
        });
      };
      const onClose = (): void => finish(new Error('memcached closed the raw connection'));
      const onData = (chunk: Buffer): void => {
        const n = counter.feed(chunk);
        if (n === 0) return;
        const t = now();
        for (let k = 0; k < n; k++) {
          recorder.add(t - sentAt[completed % concurrency]!);
          completed++;
        }
        if (!stopped && (t >= deadline || issued >= maxOps)) stopped = true;
        if (!stopped) issue(Math.min(n, maxOps - issued), t);
        if (completed === issued) finish();
      };
      socket.on('data', onData);
      socket.on('error', finish);
      socket.on('close', onClose);
      issue(Math.min(concurrency, maxOps), now());
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) {
        resolve();
        return;
      }
      this.socket.once('close', () => resolve());
      this.socket.end();
      this.socket.destroy();
    });
  }
}

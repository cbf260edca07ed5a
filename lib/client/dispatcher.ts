import type { Cluster, ServerNode } from '../cluster/cluster.js';
import { MemcachedError } from '../errors.js';
import {
  commandChannel,
  commandContext,
  traceFailed,
  traceStart,
  traceSucceeded,
} from '../observability/command-trace.js';
import type { ProtocolDriver } from '../protocol/driver.js';
import {
  Request,
  type AnyRequest,
  type CommandSpec,
  type KindOf,
  type Replies,
  type RetrievedItem,
} from '../protocol/request.js';
import { isIgnorableError } from './interceptors.js';

/** The typed reply of a spec. */
export type ReplyOf<S extends CommandSpec> = Replies[KindOf<S['op']>];

/** A failed server of a multi-server call. */
export type ServerFailure = readonly [ServerNode, unknown];

/**
 * Builds requests from specs (encoded once by the protocol driver) and sends them through the
 * cluster: to one server, to every server, or fanned out by key and merged back.
 */
export class Dispatcher {
  constructor(
    readonly cluster: Cluster,
    readonly driver: ProtocolDriver,
    private readonly ignoreErrors: boolean,
    private readonly report: (command: string, error: MemcachedError) => void,
  ) {}

  /** Sends one request to `node`; resolves with `finish(reply)`. Never throws synchronously. */
  send<S extends CommandSpec, T>(
    node: ServerNode,
    command: string,
    spec: S,
    finish: (reply: ReplyOf<S>) => T | PromiseLike<T>,
    data: Buffer | Buffer[] = this.driver.encode(spec),
  ): Promise<T> {
    if (commandChannel.hasSubscribers) return this.sendTraced(node, command, spec, finish, data);
    return new Promise<T>((resolve, reject) => {
      const request = new Request<KindOf<S['op']>>(
        command,
        spec,
        data,
        (reply) => {
          try {
            resolve(finish(reply));
          } catch (err) {
            reject(err);
          }
        },
        reject,
      );
      // AnyRequest is the union of Request's instantiations, which a generic K cannot name.
      this.cluster.dispatch(node, request as unknown as AnyRequest);
    });
  }

  /**
   * {@link send}, published on `memcached:command` (someone listens): one trace per request. It
   * succeeds when the server answered; reading the reply (`finish`: decoding a value, say) is
   * the call's business, after the command.
   */
  private sendTraced<S extends CommandSpec, T>(
    node: ServerNode,
    command: string,
    spec: S,
    finish: (reply: ReplyOf<S>) => T | PromiseLike<T>,
    data: Buffer | Buffer[],
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const settle = (reply: ReplyOf<S>): void => {
        try {
          resolve(finish(reply));
        } catch (err) {
          reject(err);
        }
      };
      const request = new Request<KindOf<S['op']>>(
        command,
        spec,
        data,
        (reply) => {
          const hits = request.kind === 'retrieve' ? (reply as RetrievedItem[]).length : undefined;
          traceSucceeded(trace, hits, settle, reply as ReplyOf<S>);
        },
        (error) => traceFailed(trace, error, reject),
      );
      const trace = commandContext(
        request.op,
        command,
        request.keys,
        request.noreply,
        node.config,
        this.driver.protocol,
      );
      traceStart(trace, () => this.cluster.dispatch(node, request as unknown as AnyRequest));
    });
  }

  /** The same request on every server, keyed by server id (a failed server: see settleFailures). */
  async everyServer<S extends CommandSpec, T>(
    method: string,
    spec: S,
    finish: (reply: ReplyOf<S>) => T,
  ): Promise<Record<string, T>> {
    const out: Record<string, T> = {};
    const failures: ServerFailure[] = [];
    const data = this.driver.encode(spec);
    await Promise.all(
      this.cluster.all.map(async (node) => {
        try {
          out[node.id] = await this.send(node, method, spec, finish, data);
        } catch (err) {
          failures.push([node, err]);
        }
      }),
    );
    this.settleFailures(method, failures);
    return out;
  }

  /**
   * One request per spec, grouped by the server of its user key (pipelined, servers in
   * parallel). Replies come back in input order; a failed server's entries stay `undefined`
   * when its errors are ignored (`ignoreErrors`), otherwise the call rejects naming the servers.
   */
  async fanOut<S extends CommandSpec>(
    method: string,
    entries: ReadonlyArray<{ readonly key: string; readonly spec: S }>,
  ): Promise<Array<ReplyOf<S> | undefined>> {
    // Dense (not holes), so that every/some/map over it see a failed server's undefineds.
    const results = new Array<ReplyOf<S> | undefined>(entries.length).fill(undefined);
    const byNode = new Map<ServerNode, number[]>();
    for (let i = 0; i < entries.length; i++) {
      const node = this.cluster.nodeFor(entries[i]!.key);
      const list = byNode.get(node);
      if (list === undefined) byNode.set(node, [i]);
      else list.push(i);
    }
    const failures: ServerFailure[] = [];
    await Promise.all(
      [...byNode].map(async ([node, indexes]) => {
        const settled = await Promise.allSettled(
          indexes.map((i) =>
            this.send(node, method, entries[i]!.spec, (reply: ReplyOf<S>) => reply),
          ),
        );
        let failed: unknown;
        settled.forEach((s, j) => {
          if (s.status === 'fulfilled') results[indexes[j]!] = s.value;
          else failed ??= s.reason;
        });
        if (failed !== undefined) failures.push([node, failed]);
      }),
    );
    this.settleFailures(method, failures);
    return results;
  }

  /**
   * Failed servers of a multi-server call: with `ignoreErrors` their part counts as missed / not
   * stored (and is reported); otherwise the call rejects naming them.
   */
  settleFailures(method: string, failures: readonly ServerFailure[]): void {
    if (failures.length === 0) return;
    if (!this.ignoreErrors || !failures.every(([, err]) => isIgnorableError(err))) {
      throw multiServerError(method, failures);
    }
    for (const [, err] of failures) this.report(method, err as MemcachedError);
  }
}

function multiServerError(method: string, failures: readonly ServerFailure[]): unknown {
  if (failures.length === 1) return failures[0]![1];
  const first = failures[0]![1];
  const detail = failures
    .map(([node, err]) => `${node.id}: ${err instanceof Error ? err.message : String(err)}`)
    .join('; ');
  const Ctor = (first instanceof MemcachedError ? first.constructor : MemcachedError) as new (
    message: string,
    options: { command: string; cause: unknown },
  ) => MemcachedError;
  return new Ctor(`${method} failed on ${failures.length} servers: ${detail}`, {
    command: method,
    cause: first,
  });
}

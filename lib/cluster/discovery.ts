/**
 * AWS ElastiCache (memcached) auto-discovery: the configuration endpoint answers
 * `config get cluster` with the cluster's node list, which the client polls and applies with
 * setServers when it changes.
 */
import { isIP, Socket, connect as netConnect } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import {
  MemcachedConnectionError,
  MemcachedError,
  MemcachedProtocolError,
  MemcachedTimeoutError,
} from '../errors.js';

/** One node of a cluster configuration. */
export interface ClusterNode {
  /** The node's DNS name. */
  host: string;
  /** Its IP address (may be empty, then `host` is used). */
  ip: string;
  port: number;
}

/** A parsed cluster configuration. */
export interface ClusterConfig {
  /** Incremented by ElastiCache whenever the node list changes. */
  version: number;
  nodes: ClusterNode[];
}

/** The largest configuration reply accepted, in bytes. */
const MAX_REPLY = 1024 * 1024;

const HEADER = /^(?:CONFIG cluster|VALUE AmazonElastiCache:cluster) (\d+) (\d+)$/;

/**
 * How much of `data` is a complete reply: the reply's length when `data` holds a whole one,
 * `undefined` while more bytes are needed. Throws MemcachedProtocolError for what cannot become
 * a configuration reply.
 */
export function clusterReplyLength(data: Buffer): number | undefined {
  const eol = data.indexOf('\r\n');
  if (eol < 0) {
    if (data.length > 8192) throw new MemcachedProtocolError('configuration reply line too long');
    return undefined;
  }
  const line = data.subarray(0, eol).toString('latin1');
  const header = HEADER.exec(line);
  if (header === null) {
    throw new MemcachedProtocolError(
      `configuration endpoint answered ${JSON.stringify(line.slice(0, 200))}, not a cluster configuration`,
    );
  }
  const bytes = Number(header[2]);
  if (bytes > MAX_REPLY) {
    throw new MemcachedProtocolError(`configuration of ${bytes} bytes is too large`);
  }
  const total = eol + 2 + bytes + '\r\nEND\r\n'.length;
  return data.length >= total ? total : undefined;
}

/**
 * Parses one complete reply to `config get cluster` (`CONFIG cluster 0 <bytes>\r\n<version>\n
 * <host>|<ip>|<port> ...\n\r\nEND\r\n`) or to `get AmazonElastiCache:cluster` (the same payload
 * under `VALUE AmazonElastiCache:cluster 0 <bytes>`). Strict: anything else throws
 * MemcachedProtocolError.
 */
export function parseClusterConfig(reply: Buffer): ClusterConfig {
  const length = clusterReplyLength(reply);
  if (length === undefined) throw new MemcachedProtocolError('incomplete configuration reply');
  const eol = reply.indexOf('\r\n');
  const payloadEnd = length - '\r\nEND\r\n'.length;
  if (reply.subarray(payloadEnd, length).toString('latin1') !== '\r\nEND\r\n') {
    throw new MemcachedProtocolError('configuration reply does not end with END');
  }
  if (length !== reply.length) {
    throw new MemcachedProtocolError('unexpected bytes after the configuration reply');
  }
  const payload = reply.subarray(eol + 2, payloadEnd).toString('utf8');
  const lines = payload.split('\n');
  // `<version>\n<nodes>\n`: the last split part is the empty string after the final newline.
  if (lines.length !== 3 || lines[2] !== '') {
    throw new MemcachedProtocolError('configuration must be a version line and a node line');
  }
  const versionText = lines[0]!;
  if (!/^\d{1,15}$/.test(versionText)) {
    throw new MemcachedProtocolError(
      `configuration version ${JSON.stringify(versionText)} is not a number`,
    );
  }
  const nodeText = lines[1]!;
  if (nodeText === '') throw new MemcachedProtocolError('configuration lists no node');
  const seen = new Set<string>();
  const nodes = nodeText.split(' ').map((entry): ClusterNode => {
    const parts = entry.split('|');
    const [host, ip, portText] = parts;
    if (parts.length !== 3 || host === undefined || ip === undefined || portText === undefined) {
      throw new MemcachedProtocolError(`node ${JSON.stringify(entry)} is not <host>|<ip>|<port>`);
    }
    if (!/^[A-Za-z0-9._-]+$/.test(host)) {
      throw new MemcachedProtocolError(`node ${JSON.stringify(entry)} has an invalid host`);
    }
    if (ip !== '' && isIP(ip) === 0) {
      throw new MemcachedProtocolError(`node ${JSON.stringify(entry)} has an invalid ip`);
    }
    const port = /^\d{1,5}$/.test(portText) ? Number(portText) : 0;
    if (port < 1 || port > 65535) {
      throw new MemcachedProtocolError(`node ${JSON.stringify(entry)} has an invalid port`);
    }
    const address = nodeAddress({ host, ip, port });
    if (seen.has(address)) {
      throw new MemcachedProtocolError(`node ${address} is listed twice`);
    }
    seen.add(address);
    return { host, ip, port };
  });
  return { version: Number(versionText), nodes };
}

/** The `servers` entry of a node: its IP when known, else its host name. */
export function nodeAddress(node: ClusterNode): string {
  const host = node.ip !== '' ? node.ip : node.host;
  return isIP(host) === 6 ? `[${host}]:${node.port}` : `${host}:${node.port}`;
}

/** Settings of a {@link ClusterDiscovery}. */
export interface DiscoverySettings {
  host: string;
  port: number;
  /** ms between polls. */
  interval: number;
  /** ms a poll may take (connect + reply). */
  timeout: number;
  tls: ConnectionOptions | undefined;
  /** Applies a new node list; a rejection is reported as a discovery error. */
  apply(servers: string[], config: ClusterConfig): Promise<void>;
  /** A poll failed (the previous list stays). */
  failed(error: MemcachedError): void;
}

/**
 * Polls the configuration endpoint at start and every `interval` on its own short-lived
 * connection; calls `apply` when the version or the node list differs from the last one applied.
 * Its timer is unref'd; stop() clears it and ends a poll in progress.
 */
export class ClusterDiscovery {
  private timer: NodeJS.Timeout | undefined;
  private socket: Socket | undefined;
  private stopped = false;
  private last: string | undefined;
  private current: Promise<void> | undefined;

  constructor(private readonly settings: DiscoverySettings) {}

  get endpoint(): string {
    const { host, port } = this.settings;
    return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  }

  /** Polls now, then every interval. */
  start(): void {
    void this.pollNow();
  }

  /** One poll (the one in progress if any); never rejects. */
  pollNow(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.current !== undefined) return this.current;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.current = this.poll()
      .catch((error: unknown) => {
        if (this.stopped) return;
        this.settings.failed(
          error instanceof MemcachedError
            ? error
            : new MemcachedError(`auto-discovery failed: ${String(error)}`, { cause: error }),
        );
      })
      .finally(() => {
        this.current = undefined;
        if (this.stopped) return;
        this.timer = setTimeout(() => void this.pollNow(), this.settings.interval);
        this.timer.unref();
      });
    return this.current;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.socket?.destroy();
    this.socket = undefined;
  }

  private async poll(): Promise<void> {
    const config = await this.fetch();
    if (this.stopped) return;
    const servers = config.nodes.map(nodeAddress);
    const key = `${config.version} ${[...servers].sort().join(' ')}`;
    if (key === this.last) return;
    await this.settings.apply(servers, config);
    this.last = key;
  }

  private fetch(): Promise<ClusterConfig> {
    const { host, port, tls, timeout } = this.settings;
    const server = this.endpoint;
    return new Promise<ClusterConfig>((resolve, reject) => {
      const socket = tls
        ? tlsConnect({ servername: isIP(host) === 0 ? host : undefined, ...tls, host, port })
        : netConnect({ host, port });
      this.socket = socket;
      let data = Buffer.alloc(0);
      let done = false;
      const finish = (error: MemcachedError | undefined, config?: ClusterConfig): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.destroy();
        if (this.socket === socket) this.socket = undefined;
        if (error !== undefined) reject(error);
        else resolve(config!);
      };
      const timer = setTimeout(
        () =>
          finish(
            new MemcachedTimeoutError(`configuration endpoint gave no reply in ${timeout} ms`, {
              server,
              command: 'config',
            }),
          ),
        timeout,
      );
      timer.unref();
      socket.once(tls ? 'secureConnect' : 'connect', () => socket.write('config get cluster\r\n'));
      socket.on('data', (chunk: Buffer) => {
        data = Buffer.concat([data, chunk]);
        try {
          const length = clusterReplyLength(data);
          if (length === undefined) return;
          finish(undefined, parseClusterConfig(data.subarray(0, length)));
        } catch (error) {
          finish(withServer(error, server));
        }
      });
      socket.on('error', (error) =>
        finish(
          new MemcachedConnectionError(`configuration endpoint: ${error.message}`, {
            server,
            command: 'config',
            cause: error,
          }),
        ),
      );
      socket.on('close', () =>
        finish(
          new MemcachedConnectionError('configuration endpoint closed the connection', {
            server,
            command: 'config',
          }),
        ),
      );
    });
  }
}

function withServer(error: unknown, server: string): MemcachedError {
  const message = error instanceof Error ? error.message : String(error);
  return new MemcachedProtocolError(message, { server, command: 'config', cause: error });
}

/**
 * Spawns real memcached servers for integration tests.
 *
 * Rules this module enforces: tests only ever talk to memcached processes
 * started here, each on a free loopback port (or a unix socket in a private
 * temp dir). It refuses non-loopback hosts and the well-known port 11211, so a
 * test can never reach a developer's or CI machine's own memcached.
 *
 * Every test file that starts servers must call `stopAllMemcached()` from
 * `afterAll`: that stops the processes, waits for them to exit (so
 * `jest --detectOpenHandles` stays clean) and removes their temp files. As a
 * safety net, anything still running is SIGKILLed when the process exits.
 *
 * memcached 1.6 quirks handled here:
 * - As root, memcached refuses to run without `-u`; we pass `-u memcache`
 *   (or `nobody` when there is no such user). It drops privileges before
 *   creating a unix socket and before reading the `-Y` auth file, so those
 *   must be writable/readable by that user (TLS files are read earlier, as
 *   root, but again as that user on `refresh_certs`).
 * - `-I` below 512k fails unless `slab_chunk_max` is lowered too
 *   ("slab_chunk_max (bytes: 524288) cannot be larger than -I"); the chunk
 *   size must be a power of two that divides both -I and the 1 MiB slab page.
 *   We add `-o slab_chunk_max=...` automatically; `-I` cannot go below 1k.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, readdirSync, readFileSync, rmSync } from 'node:fs';
import { chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import tls from 'node:tls';
import type { TlsMaterial } from './tls.js';

export type { TlsMaterial } from './tls.js';

export interface Credentials {
  username: string;
  password: string;
}

export interface SpawnOptions {
  /** Extra memcached args, e.g. `['-I', '2k']` or `['-m', '8']`; they come last, so they win. */
  args?: string[];
  /** Default `'127.0.0.1'`; `'::1'` for IPv6. Only loopback addresses are accepted. */
  host?: string;
  /** Default: a free port. */
  port?: number;
  /** Listen on a unix socket in a temp dir instead of TCP (`-s path -a 0700`); not with `tls`. */
  unixSocket?: boolean;
  /** Enable TLS (`-Z -o ssl_chain_cert=…,ssl_key=…,ssl_ca_cert=…`). */
  tls?: TlsMaterial;
  /** Write an auth file and start with `-Y file`: clients must send `set <any> 0 0 N\r\nuser pass\r\n` first. */
  auth?: Credentials | Credentials[];
  /**
   * Start with SASL (`-S`, binary protocol only): the users go into a sasldb made with
   * `saslpasswd2` in a temp dir, and `SASL_CONF_PATH` points memcached to a `memcached.conf` there
   * with `mech_list: plain`. Not with `auth`.
   */
  sasl?: Credentials | Credentials[];
}

export interface MemcachedProcess {
  /** `'127.0.0.1'`, `'::1'`, or the unix socket path. */
  readonly host: string;
  /** 0 for a unix socket. */
  readonly port: number;
  /** `'127.0.0.1:PORT'`, `'[::1]:PORT'`, or the socket path. */
  readonly serverId: string;
  /** What a client puts in `servers`: `'127.0.0.1:PORT'`, `'[::1]:PORT'`, or `'/path/to.sock'`. */
  readonly address: string;
  readonly running: boolean;
  /** Whether `pause()` was called and not yet `resume()`d. */
  readonly paused: boolean;
  /** The socket path, or undefined for TCP. */
  readonly socketPath: string | undefined;
  /** The TLS material the server was started with, if any. */
  readonly tls: TlsMaterial | undefined;
  /** The credentials in the server's auth file (empty without `auth`). */
  readonly credentials: readonly Credentials[];
  /** The users of the server's SASL database (empty without `sasl`); it speaks only binary then. */
  readonly saslCredentials: readonly Credentials[];
  /** The full memcached argv (without the binary). */
  readonly args: readonly string[];
  /** The PID of the current (or last) memcached process. */
  readonly pid: number | undefined;
  /** memcached's stdout + stderr of the current (or last) run; handy in failure messages. */
  readonly output: string;
  /** SIGTERM, wait for exit (SIGKILL after 2 s). */
  stop(): Promise<void>;
  /** SIGKILL, wait for exit (an abrupt crash). */
  kill(): Promise<void>;
  /** Start again with the same address and args (stopping it first if running); waits until it accepts connections. */
  restart(): Promise<void>;
  /** SIGSTOP: the kernel still accepts connections and bytes, the server answers nothing. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
}

const DEFAULT_HOST = '127.0.0.1';
const FORBIDDEN_PORT = 11211;
const START_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 2000;
const BIND_RETRIES = 5;
const MAX_OUTPUT_CHARS = 64 * 1024;
const DEFAULT_SLAB_CHUNK_MAX = 512 * 1024;

// ---------------------------------------------------------------------------
// Exit cleanup on the *real* process object
// ---------------------------------------------------------------------------

const EXIT_REGISTRY = Symbol.for('nestjs-memcached.test-harness.exit-cleanups');

/**
 * Under jest, the global `process` (and `import process from 'node:process'`)
 * is a per-test-file copy whose 'exit' event never fires. Functions installed
 * from the outer realm, such as `setTimeout`, carry that realm's `Function`
 * constructor, which evaluates code in the outer global scope, where
 * `process` is the real one. Outside jest this is simply `process`.
 */
function realProcess(): NodeJS.Process {
  try {
    const OuterFunction = (setTimeout as unknown as { constructor: FunctionConstructor })
      .constructor;
    const found: unknown = OuterFunction(
      'return typeof process === "object" ? process : undefined',
    )();
    if (found && typeof (found as NodeJS.Process).on === 'function') {
      return found as NodeJS.Process;
    }
  } catch {
    // fall through
  }
  return process;
}

/**
 * Runs `fn` synchronously when the (real) process exits. One 'exit' listener
 * is shared by every test file in a jest worker. Returns an unregister function.
 * @internal shared with ./tls.ts
 */
export function onProcessExit(fn: () => void): () => void {
  const proc = realProcess() as unknown as Record<symbol, Set<() => void> | undefined> &
    NodeJS.Process;
  let callbacks = proc[EXIT_REGISTRY];
  if (!callbacks) {
    const created = new Set<() => void>();
    callbacks = created;
    proc[EXIT_REGISTRY] = created;
    proc.on('exit', () => {
      for (const callback of created) {
        try {
          callback();
        } catch {
          // best effort: keep cleaning up the rest
        }
      }
    });
  }
  const set = callbacks;
  set.add(fn);
  return () => {
    set.delete(fn);
  };
}

// ---------------------------------------------------------------------------
// Binary, user and port helpers
// ---------------------------------------------------------------------------

const executables = new Map<string, string | undefined>();

/**
 * The path of the executable `name` on PATH or in the usual system directories (sbin included:
 * Debian puts saslpasswd2 and nutcracker there), looked up once per name.
 */
export function findExecutable(name: string): string | undefined {
  if (!executables.has(name)) {
    const dirs = (process.env['PATH'] ?? '').split(delimiter).filter(Boolean);
    dirs.push('/usr/bin', '/usr/sbin', '/usr/local/bin', '/usr/local/sbin', '/opt/homebrew/bin');
    let found: string | undefined;
    for (const dir of dirs) {
      const candidate = join(dir, name);
      try {
        accessSync(candidate, fsConstants.X_OK);
        found = candidate;
        break;
      } catch {
        // not here
      }
    }
    executables.set(name, found);
  }
  return executables.get(name);
}

function findBinary(): string | undefined {
  return findExecutable('memcached');
}

/** Whether the `memcached` binary is on PATH (or in /usr/bin, /usr/sbin, /usr/local/bin). */
export function memcachedAvailable(): boolean {
  return findBinary() !== undefined;
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

function lookupUser(name: string): PasswdEntry | undefined {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const fields = line.split(':');
      if (fields[0] === name && fields.length >= 4) {
        return { name, uid: Number(fields[2]), gid: Number(fields[3]) };
      }
    }
  } catch {
    // no /etc/passwd (or unreadable)
  }
  return undefined;
}

/** The user memcached drops privileges to when we run as root. */
function dropUser(): PasswdEntry | undefined {
  return lookupUser('memcache') ?? lookupUser('nobody');
}

function isLoopback(host: string): boolean {
  return host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

const handedOutPorts = new Set<number>();

/**
 * A port nobody listens on right now: bind port 0 on `host`, note the port, close. Also for
 * servers that tests start themselves (microservices, proxies); never the same port twice per
 * worker.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = net.createServer();
      server.unref();
      server.once('error', reject);
      server.listen({ host, port: 0, exclusive: true }, () => {
        const address = server.address();
        const chosen = typeof address === 'object' && address ? address.port : 0;
        server.close(() => resolve(chosen));
      });
    });
    // Avoid handing out a port this worker used before: a test that stopped a
    // server may still expect "connection refused" there.
    if (port !== 0 && port !== FORBIDDEN_PORT && !handedOutPorts.has(port)) {
      handedOutPorts.add(port);
      return port;
    }
  }
  throw new Error(`could not find a free port on ${host}`);
}

/** Whether `::1` can be bound on this machine (IPv6 loopback configured). */
export async function ipv6Available(): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ host: '::1', port: 0, exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------
// Argument helpers
// ---------------------------------------------------------------------------

function parseSize(value: string): number | undefined {
  const match = /^(\d+)([kKmM]?)$/.exec(value.trim());
  if (!match) return undefined;
  const unit = match[2]!.toLowerCase();
  const multiplier = unit === 'k' ? 1024 : unit === 'm' ? 1024 * 1024 : 1;
  return Number(match[1]) * multiplier;
}

/** The `-I` / `--max-item-size` value in `args`, in bytes (last one wins, like getopt). */
function maxItemSize(args: readonly string[]): number | undefined {
  let size: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    let value: string | undefined;
    if (arg === '-I' || arg === '--max-item-size') value = args[i + 1];
    else if (arg.startsWith('--max-item-size=')) value = arg.slice('--max-item-size='.length);
    else if (arg.startsWith('-I') && arg.length > 2) value = arg.slice(2);
    if (value !== undefined) size = parseSize(value) ?? size;
  }
  return size;
}

/**
 * `-o slab_chunk_max=N` that makes `-I size` acceptable to memcached 1.6, or
 * nothing when the default (512k) already works or the caller set it.
 */
function slabChunkArgs(args: readonly string[]): string[] {
  if (args.some((arg) => arg.includes('slab_chunk_max'))) return [];
  const itemSize = maxItemSize(args);
  if (itemSize === undefined) return [];
  if (itemSize >= DEFAULT_SLAB_CHUNK_MAX && itemSize % DEFAULT_SLAB_CHUNK_MAX === 0) return [];
  let chunk = DEFAULT_SLAB_CHUNK_MAX;
  while (chunk > 1 && (chunk > itemSize || itemSize % chunk !== 0)) chunk /= 2;
  // Tiny chunk sizes crash memcached (slab_chunk_max=1 segfaults); let it reject -I itself.
  return chunk >= 512 ? ['-o', `slab_chunk_max=${chunk}`] : [];
}

function normalizeCredentials(auth: SpawnOptions['auth']): Credentials[] {
  if (auth === undefined) return [];
  const list = Array.isArray(auth) ? auth : [auth];
  if (list.length === 0) throw new Error('auth: at least one username/password is required');
  for (const { username, password } of list) {
    if (!username || /[\s:]/.test(username)) {
      throw new Error(`auth: invalid username ${JSON.stringify(username)} (no spaces or ':')`);
    }
    if (!password || /\s/.test(password)) {
      throw new Error('auth: the password must be non-empty and contain no whitespace');
    }
  }
  return list.map(({ username, password }) => ({ username, password }));
}

function findSaslpasswd(): string | undefined {
  return findExecutable('saslpasswd2');
}

/** Whether `saslpasswd2` (Debian's `sasl2-bin`) is installed, which `sasl` servers need. */
export function saslAvailable(): boolean {
  return findSaslpasswd() !== undefined;
}

/**
 * Writes `sasldb` (one entry per user, made with `saslpasswd2`) and the `memcached.conf` that
 * memcached's SASL library reads from `SASL_CONF_PATH` (PLAIN only, that sasldb).
 */
async function writeSaslDatabase(dir: string, users: readonly Credentials[]): Promise<void> {
  const saslpasswd = findSaslpasswd();
  if (saslpasswd === undefined) {
    throw new Error(
      'saslpasswd2 is not installed: run "sudo apt-get install -y sasl2-bin" (Debian/Ubuntu); SASL tests make their user database with it.',
    );
  }
  const db = join(dir, 'sasldb');
  for (const { username, password } of users) {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(saslpasswd, ['-p', '-c', '-a', 'memcached', '-f', db, username], {
        stdio: ['pipe', 'ignore', 'pipe'],
      });
      let err = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      child.once('error', reject);
      child.once('close', (code) =>
        code === 0 ? resolve() : reject(new Error(`saslpasswd2 failed (${code}): ${err}`)),
      );
      child.stdin.end(password);
    });
  }
  await chmod(db, 0o644);
  await writeFile(join(dir, 'memcached.conf'), `mech_list: plain\nsasldb_path: ${db}\n`, {
    mode: 0o644,
  });
}

/** A temp dir memcached can use after dropping privileges to `user`. */
async function makeTempDir(prefix: string, writableByServer: boolean): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const user = isRoot() ? dropUser() : undefined;
  if (writableByServer && user) {
    await chown(dir, user.uid, user.gid);
    await chmod(dir, 0o755);
  } else {
    await chmod(dir, writableByServer && isRoot() ? 0o777 : 0o755);
  }
  return dir;
}

// ---------------------------------------------------------------------------
// The process wrapper
// ---------------------------------------------------------------------------

const started = new Set<Server>();
let unregisterExitHook: (() => void) | undefined;

function killLeftoversSync(): void {
  for (const server of started) server.killSync();
}

function track(server: Server): void {
  started.add(server);
  unregisterExitHook ??= onProcessExit(killLeftoversSync);
}

interface ServerConfig {
  binary: string;
  argv: string[];
  host: string;
  port: number;
  socketPath: string | undefined;
  tls: TlsMaterial | undefined;
  credentials: Credentials[];
  saslCredentials: Credentials[];
  /** Extra environment of the memcached process. */
  env: Record<string, string>;
  tempDirs: string[];
}

class Server implements MemcachedProcess {
  private child: ChildProcess | undefined;
  private exited = true;
  private closed: Promise<void> = Promise.resolve();
  private isPaused = false;
  private outputText = '';

  constructor(private readonly config: ServerConfig) {}

  get host(): string {
    return this.config.socketPath ?? this.config.host;
  }

  get port(): number {
    return this.config.socketPath ? 0 : this.config.port;
  }

  get serverId(): string {
    if (this.config.socketPath) return this.config.socketPath;
    const host = this.config.host.includes(':') ? `[${this.config.host}]` : this.config.host;
    return `${host}:${this.config.port}`;
  }

  get address(): string {
    return this.serverId;
  }

  get running(): boolean {
    return this.child !== undefined && !this.exited;
  }

  get paused(): boolean {
    return this.isPaused && this.running;
  }

  get socketPath(): string | undefined {
    return this.config.socketPath;
  }

  get tls(): TlsMaterial | undefined {
    return this.config.tls;
  }

  get credentials(): readonly Credentials[] {
    return this.config.credentials;
  }

  get saslCredentials(): readonly Credentials[] {
    return this.config.saslCredentials;
  }

  get args(): readonly string[] {
    return this.config.argv;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get output(): string {
    return this.outputText;
  }

  get tempDirs(): readonly string[] {
    return this.config.tempDirs;
  }

  /** Spawns memcached and resolves once it accepts connections. */
  async start(): Promise<void> {
    if (this.running) throw new Error(`memcached ${this.serverId} is already running`);
    this.outputText = '';
    this.isPaused = false;
    this.exited = false;
    const child = spawn(this.config.binary, this.config.argv, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.config.env },
    });
    this.child = child;
    const append = (chunk: string): void => {
      this.outputText = (this.outputText + chunk).slice(-MAX_OUTPUT_CHARS);
    };
    child.stdout?.setEncoding('utf8').on('data', append);
    child.stderr?.setEncoding('utf8').on('data', append);
    let exitInfo = '';
    this.closed = new Promise<void>((resolve) => {
      let done = false;
      const finish = (): void => {
        this.exited = true;
        if (!done) {
          done = true;
          resolve();
        }
      };
      child.once('exit', (code, signal) => {
        this.exited = true;
        exitInfo = signal ? `signal ${signal}` : `exit code ${code}`;
      });
      child.once('close', finish);
      child.once('error', (error) => {
        append(`\n${error.message}`);
        exitInfo = error.message;
        // A spawn failure emits no 'exit'; 'close' may or may not follow.
        if (child.pid === undefined) finish();
      });
    });

    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (this.exited) {
        await this.closed;
        throw new Error(
          `memcached ${this.serverId} exited during startup (${exitInfo}): ` +
            `${this.outputText.trim() || '(no output)'}\n  argv: ${this.config.argv.join(' ')}`,
        );
      }
      if (await this.isOurs()) return;
      await sleep(25);
    }
    await this.kill();
    throw new Error(
      `memcached ${this.serverId} did not accept connections within ${START_TIMEOUT_MS} ms: ` +
        `${this.outputText.trim() || '(no output)'}`,
    );
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child && !this.exited) {
      child.kill('SIGTERM');
      // A stopped process only acts on SIGTERM once continued.
      if (this.isPaused) child.kill('SIGCONT');
      this.isPaused = false;
      const timer = setTimeout(() => {
        if (!this.exited) child.kill('SIGKILL');
      }, STOP_GRACE_MS);
      try {
        await this.closed;
      } finally {
        clearTimeout(timer);
      }
    }
    await this.closed;
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (child && !this.exited) {
      child.kill('SIGKILL');
      this.isPaused = false;
    }
    await this.closed;
  }

  async restart(): Promise<void> {
    await this.stop();
    // Tracked again in case stopAllMemcached() ran in between (its temp files are gone then).
    track(this);
    await this.start();
  }

  pause(): void {
    if (!this.running) throw new Error(`memcached ${this.serverId} is not running`);
    this.child!.kill('SIGSTOP');
    this.isPaused = true;
    // SIGSTOP reaches every thread asynchronously: wait (briefly, synchronously) until the
    // kernel reports the process stopped, so no request sent after pause() gets an answer.
    const pid = this.child!.pid;
    const until = Date.now() + 500;
    while (pid !== undefined && Date.now() < until) {
      try {
        const stopped = readdirSync(`/proc/${pid}/task`).every((tid) => {
          const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'latin1');
          const state = stat.charAt(stat.lastIndexOf(')') + 2);
          return state === 'T' || state === 't';
        });
        if (stopped) break;
      } catch {
        break; // no /proc (not Linux): best effort
      }
    }
  }

  resume(): void {
    if (!this.running) throw new Error(`memcached ${this.serverId} is not running`);
    this.child!.kill('SIGCONT');
    this.isPaused = false;
  }

  /**
   * Whether our child answers on the address: `stats` must report its PID.
   * A bare connect is not enough: when memcached fails to bind because
   * something else (e.g. a parallel jest worker's memcached) took the port,
   * that other listener would accept the probe.
   */
  private async isOurs(): Promise<boolean> {
    try {
      const stats = await fetchStats(this, 500);
      return stats['pid'] === String(this.child?.pid);
    } catch {
      return false; // not listening yet, TLS handshake failed, no/odd reply
    }
  }

  /** Exit-hook cleanup: no awaiting possible there. */
  killSync(): void {
    if (this.child && !this.exited) {
      try {
        this.child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    this.removeTempDirsSync();
  }

  removeTempDirsSync(): void {
    for (const dir of this.config.tempDirs) rmSync(dir, { recursive: true, force: true });
  }

  async removeTempDirs(): Promise<void> {
    await Promise.all(this.config.tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
  }
}

function isBindFailure(output: string): boolean {
  return /address already in use|failed to listen|bind\(\)/i.test(output);
}

/**
 * Starts a memcached on a free loopback port (or a unix socket) and resolves
 * once it accepts connections. Rejects with memcached's output if it exits.
 */
export async function startMemcached(options: SpawnOptions = {}): Promise<MemcachedProcess> {
  const binary = findBinary();
  if (!binary) {
    throw new Error(
      'memcached is not installed: run "sudo apt-get install -y memcached" (Debian/Ubuntu) or ' +
        '"brew install memcached" (macOS); the tests start their own servers from that binary.',
    );
  }
  const host = options.host ?? DEFAULT_HOST;
  if (!options.unixSocket && !isLoopback(host)) {
    throw new Error(`refusing to start memcached on non-loopback host ${host}`);
  }
  if (options.port === FORBIDDEN_PORT) {
    throw new Error('refusing port 11211: tests must not collide with a real memcached');
  }
  if (options.unixSocket && options.port !== undefined) {
    throw new Error('port and unixSocket are mutually exclusive');
  }
  if (options.unixSocket && options.tls) {
    // memcached 1.6 serves plain text on a unix socket even with -Z.
    throw new Error('memcached does not speak TLS on unix sockets: use tls with TCP');
  }
  const credentials = normalizeCredentials(options.auth);
  const saslCredentials = normalizeCredentials(options.sasl);
  if (credentials.length > 0 && saslCredentials.length > 0) {
    throw new Error('auth (-Y, text protocol) and sasl (-S, binary protocol) are exclusive');
  }
  const env: Record<string, string> = {};
  const userArgs = options.args ?? [];

  const tempDirs: string[] = [];
  const base: string[] = [];
  try {
    if (isRoot()) base.push('-u', dropUser()?.name ?? 'memcache');
    base.push('-U', '0');
    let socketPath: string | undefined;
    if (options.unixSocket) {
      const dir = await makeTempDir('memcached-sock-', true);
      tempDirs.push(dir);
      socketPath = join(dir, 'memcached.sock');
    }
    if (options.tls) {
      const { certPath, keyPath, caCertPath } = options.tls;
      base.push(
        '-Z',
        '-o',
        `ssl_chain_cert=${certPath},ssl_key=${keyPath},ssl_ca_cert=${caCertPath}`,
      );
    }
    if (credentials.length > 0) {
      const dir = await makeTempDir('memcached-auth-', false);
      tempDirs.push(dir);
      const authPath = join(dir, 'authfile');
      const text = credentials.map((c) => `${c.username}:${c.password}\n`).join('');
      await writeFile(authPath, text, { mode: 0o644 });
      await chmod(authPath, 0o644);
      base.push('-Y', authPath);
    }
    if (saslCredentials.length > 0) {
      const dir = await makeTempDir('memcached-sasl-', false);
      tempDirs.push(dir);
      await writeSaslDatabase(dir, saslCredentials);
      env['SASL_CONF_PATH'] = dir;
      base.push('-S');
    }
    const tail = [...slabChunkArgs(userArgs), ...userArgs];

    for (let attempt = 1; ; attempt++) {
      const port = socketPath ? 0 : (options.port ?? (await freePort(host)));
      const listen = socketPath
        ? ['-s', socketPath, '-a', '0700']
        : ['-l', host, '-p', String(port)];
      const server = new Server({
        binary,
        argv: [...base, ...listen, ...tail],
        host,
        port,
        socketPath,
        tls: options.tls,
        credentials,
        saslCredentials,
        env,
        tempDirs,
      });
      track(server); // from the spawn on, so the exit hook covers a hung start too
      try {
        await server.start();
      } catch (error) {
        started.delete(server); // start() failures leave no process behind
        const retry =
          !socketPath &&
          options.port === undefined &&
          attempt < BIND_RETRIES &&
          isBindFailure(server.output);
        if (retry) continue;
        throw error;
      }
      return server;
    }
  } catch (error) {
    await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
    throw error;
  }
}

/** Starts `n` servers in parallel (each on its own free port / socket). */
export async function startMemcacheds(
  n: number,
  options: SpawnOptions = {},
): Promise<MemcachedProcess[]> {
  if (options.port !== undefined && n > 1) {
    throw new Error('startMemcacheds: a fixed port cannot be shared by several servers');
  }
  const results = await Promise.allSettled(
    Array.from({ length: n }, () => startMemcached(options)),
  );
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) {
    await Promise.all(
      results.map((r) => (r.status === 'fulfilled' ? r.value.stop() : Promise.resolve())),
    );
    throw failure.reason;
  }
  return results.map((r) => (r as PromiseFulfilledResult<MemcachedProcess>).value);
}

/** Stops every process this module started and removes their temp files (call from afterAll). */
export async function stopAllMemcached(): Promise<void> {
  const servers = [...started];
  started.clear();
  await Promise.all(servers.map((server) => server.stop()));
  await Promise.all(servers.map((server) => server.removeTempDirs()));
  if (unregisterExitHook) {
    unregisterExitHook();
    unregisterExitHook = undefined;
  }
}

// ---------------------------------------------------------------------------
// Raw protocol access
// ---------------------------------------------------------------------------

const STORAGE_COMMANDS = new Set(['set', 'add', 'replace', 'append', 'prepend', 'cas']);
const META_COMMANDS = new Set(['mg', 'md', 'ma', 'me']);

/**
 * How many replies a text-protocol request asks for: one per command, none for
 * `noreply` and quiet (`q`) meta commands, nothing after `quit`.
 */
function expectedReplies(request: Buffer): number {
  let pos = 0;
  let count = 0;
  while (pos < request.length) {
    const newline = request.indexOf(0x0a, pos);
    if (newline < 0) break;
    const line = request.subarray(pos, newline).toString('latin1').replace(/\r$/, '');
    pos = newline + 1;
    const tokens = line.trim().split(/\s+/).filter(Boolean);
    const command = (tokens[0] ?? '').toLowerCase();
    const last = tokens[tokens.length - 1];
    if (STORAGE_COMMANDS.has(command)) {
      const size = Number(tokens[command === 'cas' ? 5 : 4]);
      if (Number.isInteger(size) && size >= 0) pos += size + 2;
      if (last !== 'noreply') count++;
    } else if (command === 'ms') {
      const size = Number(tokens[2]);
      if (Number.isInteger(size) && size >= 0) pos += size + 2;
      if (!tokens.slice(3).includes('q')) count++;
    } else if (META_COMMANDS.has(command)) {
      if (!tokens.slice(2).includes('q')) count++;
    } else if (command === 'quit') {
      break;
    } else if (last !== 'noreply') {
      count++; // includes an empty line, which memcached answers with ERROR
    }
  }
  return count;
}

/**
 * How many complete replies `reply` holds: a retrieval or `stats` reply counts
 * once at its END (or error); a meta `VA` reply once its data arrived; any
 * other line counts as one.
 */
function completeReplies(reply: Buffer): number {
  let pos = 0;
  let count = 0;
  for (;;) {
    const end = reply.indexOf('\r\n', pos, 'latin1');
    if (end < 0) return count;
    const line = reply.subarray(pos, end).toString('latin1');
    pos = end + 2;
    if (line.startsWith('VALUE ')) {
      const size = Number(line.split(' ')[3]);
      if (reply.length < pos + size + 2) return count;
      pos += size + 2;
    } else if (line.startsWith('VA ')) {
      const size = Number(line.split(' ')[1]);
      if (reply.length < pos + size + 2) return count;
      pos += size + 2;
      count++;
    } else if (!/^(STAT|ITEM) /.test(line)) {
      count++;
    }
  }
}

function connectTo(proc: MemcachedProcess): { socket: net.Socket; readyEvent: string } {
  const material = proc.tls;
  const target: net.NetConnectOpts = proc.socketPath
    ? { path: proc.socketPath }
    : { host: proc.host, port: proc.port };
  if (material) {
    const socket = tls.connect({ ...target, ca: material.caCert, servername: 'localhost' });
    return { socket, readyEvent: 'secureConnect' };
  }
  return { socket: net.connect(target), readyEvent: 'connect' };
}

/**
 * The value of `key` read with a raw text `get` on `server` (the full wire key), or undefined on
 * a miss; any other reply throws.
 */
export async function rawGet(server: MemcachedProcess, key: string): Promise<string | undefined> {
  const reply = await rawRequest(server, `get ${key}\r\n`);
  const match = /^VALUE \S+ \d+ \d+\r\n([\s\S]*)\r\nEND\r\n$/.exec(reply);
  if (match) return match[1];
  if (reply !== 'END\r\n')
    throw new Error(`unexpected reply to get ${key}: ${JSON.stringify(reply)}`);
  return undefined;
}

/**
 * Sends raw bytes on a fresh connection (TLS when the server has TLS, verified
 * against its CA) and resolves the reply text (UTF-8) once `until` matches the
 * whole reply so far, or by default once every command in `bytes` has been
 * answered (handles pipelining, `noreply`, `get`/`stats` up to END, meta `VA`).
 * Resolves with whatever arrived when the server closes the connection or
 * after `timeoutMs` (e.g. '' for a paused server). Rejects if the connection
 * (or TLS handshake) fails before any byte arrived.
 *
 * memcached 1.6.18 quirk: before authentication only the last reply of a
 * pipelined batch is sent, so send the auth `set` on its own (or pass `until`).
 */
export async function rawRequest(
  proc: MemcachedProcess,
  bytes: string | Buffer,
  until?: RegExp,
  timeoutMs = 2000,
): Promise<string> {
  const payload = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes;
  const expected = until ? 0 : expectedReplies(payload);
  return new Promise<string>((resolve, reject) => {
    const { socket, readyEvent } = connectTo(proc);
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    const text = (): string => Buffer.concat(chunks, received).toString('utf8');
    const finish = (error?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(text());
    };
    const timer = setTimeout(() => finish(), timeoutMs);
    socket.once(readyEvent, () => {
      socket.write(payload);
    });
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      if (until) {
        until.lastIndex = 0;
        if (until.test(text())) finish();
      } else if (expected > 0 && completeReplies(Buffer.concat(chunks, received)) >= expected) {
        finish();
      }
    });
    socket.once('end', () => finish());
    socket.once('close', () => finish());
    socket.on('error', (error: Error) => finish(received > 0 ? undefined : error));
  });
}

/**
 * Parsed `stats` of a server (authenticating first when it has an auth file),
 * e.g. to prove nothing reached it (cmd_get, cmd_set, curr_items,
 * total_connections). Compare before/after values: this request itself is one
 * more connection (and, with auth, one more `auth_cmds`), and so are the
 * harness' readiness probes (the last one is a `stats` like this).
 */
export async function serverStats(proc: MemcachedProcess): Promise<Record<string, string>> {
  return fetchStats(proc, 5000);
}

async function fetchStats(
  proc: MemcachedProcess,
  timeoutMs: number,
): Promise<Record<string, string>> {
  if (speaksOnlyBinary(proc)) return fetchBinaryStats(proc, timeoutMs);
  let request = 'stats\r\n';
  const credentials = proc.credentials[0];
  if (credentials) {
    const token = `${credentials.username} ${credentials.password}`;
    request = `set auth 0 0 ${Buffer.byteLength(token)}\r\n${token}\r\n${request}`;
  }
  const reply = await rawRequest(
    proc,
    request,
    /(?:^|\r\n)(?:END|ERROR|CLIENT_ERROR[^\r\n]*|SERVER_ERROR[^\r\n]*)\r\n$/,
    timeoutMs,
  );
  if (!/(?:^|\r\n)END\r\n$/.test(reply)) {
    throw new Error(`stats on ${proc.serverId} failed: ${JSON.stringify(reply)}`);
  }
  const stats: Record<string, string> = {};
  for (const line of reply.split('\r\n')) {
    const match = /^STAT (\S+) (.*)$/.exec(line);
    if (match) stats[match[1]!] = match[2]!;
  }
  return stats;
}

// ---------------------------------------------------------------------------
// Binary protocol (SASL servers speak nothing else)

/** One binary-protocol request packet (magic 0x80). */
export function binaryPacket(
  opcode: number,
  key: string | Buffer = '',
  value: string | Buffer = '',
  extras: Buffer = Buffer.alloc(0),
): Buffer {
  const k = typeof key === 'string' ? Buffer.from(key) : key;
  const v = typeof value === 'string' ? Buffer.from(value) : value;
  const header = Buffer.alloc(24);
  header[0] = 0x80;
  header[1] = opcode;
  header.writeUInt16BE(k.length, 2);
  header[4] = extras.length;
  header.writeUInt32BE(extras.length + k.length + v.length, 8);
  return Buffer.concat([header, extras, k, v]);
}

/** A binary-protocol response packet as read by {@link binaryRequest}. */
export interface BinaryResponse {
  opcode: number;
  status: number;
  opaque: number;
  key: string;
  extras: Buffer;
  value: Buffer;
}

/**
 * Sends raw binary-protocol bytes on a fresh connection and resolves the response packets once
 * `done(packets)` says so (default: after the first packet), the server closed the connection,
 * or `timeoutMs` passed.
 */
export async function binaryRequest(
  proc: MemcachedProcess,
  bytes: Buffer,
  done: (packets: readonly BinaryResponse[]) => boolean = (p) => p.length >= 1,
  timeoutMs = 2000,
): Promise<BinaryResponse[]> {
  return new Promise<BinaryResponse[]>((resolve, reject) => {
    const { socket, readyEvent } = connectTo(proc);
    const packets: BinaryResponse[] = [];
    let buffered = Buffer.alloc(0);
    let settled = false;
    const finish = (error?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(packets);
    };
    const timer = setTimeout(() => finish(), timeoutMs);
    socket.once(readyEvent, () => socket.write(bytes));
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 24) {
        const body = buffered.readUInt32BE(8);
        if (buffered.length < 24 + body) break;
        const keyLength = buffered.readUInt16BE(2);
        const extrasLength = buffered[4]!;
        packets.push({
          opcode: buffered[1]!,
          status: buffered.readUInt16BE(6),
          opaque: buffered.readUInt32BE(12),
          extras: buffered.subarray(24, 24 + extrasLength),
          key: buffered.toString('utf8', 24 + extrasLength, 24 + extrasLength + keyLength),
          value: buffered.subarray(24 + extrasLength + keyLength, 24 + body),
        });
        buffered = buffered.subarray(24 + body);
      }
      if (done(packets)) finish();
    });
    socket.once('close', () => finish());
    socket.on('error', (error: Error) => finish(packets.length > 0 ? undefined : error));
  });
}

/** A SASL server (`-S`) or one started with `-B binary` does not speak the text protocol. */
function speaksOnlyBinary(proc: MemcachedProcess): boolean {
  if (proc.saslCredentials.length > 0) return true;
  const args = proc.args;
  return args.some((a, i) => (a === '-B' && args[i + 1] === 'binary') || a === '--protocol=binary');
}

/** `stats` over the binary protocol, after SASL PLAIN with the server's first user if it has SASL. */
async function fetchBinaryStats(
  proc: MemcachedProcess,
  timeoutMs: number,
): Promise<Record<string, string>> {
  const user = proc.saslCredentials[0];
  const auth =
    user === undefined
      ? Buffer.alloc(0)
      : binaryPacket(0x21, 'PLAIN', `\0${user.username}\0${user.password}`);
  const packets = await binaryRequest(
    proc,
    Buffer.concat([auth, binaryPacket(0x10)]),
    (p) => p.some((r) => r.status !== 0 || (r.opcode === 0x10 && r.key === '')),
    timeoutMs,
  );
  const failed = packets.find((r) => r.status !== 0);
  if (failed !== undefined || packets.length === 0) {
    throw new Error(
      `binary stats on ${proc.serverId} failed: ${failed ? `opcode 0x${failed.opcode.toString(16)} status 0x${failed.status.toString(16)} ${failed.value.toString()}` : 'no reply'}`,
    );
  }
  const stats: Record<string, string> = {};
  for (const r of packets) if (r.opcode === 0x10 && r.key !== '') stats[r.key] = r.value.toString();
  return stats;
}

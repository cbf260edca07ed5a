/**
 * Throw-away TLS material for tests: a fresh self-signed CA and a server
 * certificate signed by it, made with the `openssl` CLI in a temp dir.
 *
 * The files are world-readable on purpose: memcached started as root drops
 * privileges to the `memcache` user (`-u memcache`) and must still be able to
 * read them (it reads them again on `refresh_certs`). They are test keys that
 * protect nothing, and the directory is removed on `removeTlsMaterial()` or
 * when the process exits.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onProcessExit } from './memcached.js';

export interface TlsMaterial {
  /** The temp dir holding every file below. */
  dir: string;
  caCertPath: string;
  caCert: Buffer;
  /** The server certificate (signed by the CA), PEM. */
  certPath: string;
  /** The server's private key, PEM. */
  keyPath: string;
  cert: Buffer;
  key: Buffer;
}

const liveDirs = new Set<string>();
let unregisterExitHook: (() => void) | undefined;

function run(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd }, (error, _stdout, stderr) => {
      if (error) {
        reject(new Error(`openssl ${args.join(' ')} failed: ${error.message}\n${stderr}`));
      } else {
        resolve();
      }
    });
  });
}

function serial(): string {
  // Positive 64-bit serial; the leading byte is masked so it never reads as negative.
  const bytes = randomBytes(8);
  bytes[0] = bytes[0]! & 0x7f;
  return `0x${bytes.toString('hex')}`;
}

/**
 * A fresh self-signed CA and a server certificate signed by it
 * (SAN: DNS:localhost, IP:127.0.0.1, IP:::1), made with the `openssl` CLI in a
 * temp dir. Connect with `{ ca: caCert, servername: 'localhost' }`.
 */
export async function makeTlsMaterial(): Promise<TlsMaterial> {
  const dir = await mkdtemp(join(tmpdir(), 'memcached-tls-'));
  liveDirs.add(dir);
  unregisterExitHook ??= onProcessExit(() => {
    for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
  });
  try {
    // memcached (running as `memcache`) must traverse the dir and read the files.
    await chmod(dir, 0o755);
    const caKeyPath = join(dir, 'ca.key');
    const caCertPath = join(dir, 'ca.pem');
    const keyPath = join(dir, 'server.key');
    const csrPath = join(dir, 'server.csr');
    const certPath = join(dir, 'server.pem');
    const extPath = join(dir, 'server.ext');
    const id = randomBytes(4).toString('hex');
    // EC keys: generated in milliseconds, unlike RSA.
    const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

    await run(
      [
        'req',
        '-x509',
        ...ecKey,
        '-keyout',
        caKeyPath,
        '-out',
        caCertPath,
        '-days',
        '7',
        '-set_serial',
        serial(),
        '-subj',
        `/CN=nestjs-memcached test CA ${id}`,
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ],
      dir,
    );
    await run(
      ['req', '-new', ...ecKey, '-keyout', keyPath, '-out', csrPath, '-subj', '/CN=localhost'],
      dir,
    );
    await writeFile(
      extPath,
      [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        'extendedKeyUsage=serverAuth',
        'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
        '',
      ].join('\n'),
    );
    await run(
      [
        'x509',
        '-req',
        '-in',
        csrPath,
        '-CA',
        caCertPath,
        '-CAkey',
        caKeyPath,
        '-set_serial',
        serial(),
        '-days',
        '7',
        '-extfile',
        extPath,
        '-out',
        certPath,
      ],
      dir,
    );
    for (const file of [caKeyPath, caCertPath, keyPath, certPath]) await chmod(file, 0o644);
    const [caCert, cert, key] = await Promise.all([
      readFile(caCertPath),
      readFile(certPath),
      readFile(keyPath),
    ]);
    return { dir, caCertPath, caCert, certPath, keyPath, cert, key };
  } catch (error) {
    await removeTlsMaterial({ dir });
    throw error;
  }
}

/** Deletes the material's temp dir (optional: it also goes when the process exits). */
export async function removeTlsMaterial(material: Pick<TlsMaterial, 'dir'>): Promise<void> {
  liveDirs.delete(material.dir);
  await rm(material.dir, { recursive: true, force: true });
  if (liveDirs.size === 0 && unregisterExitHook) {
    unregisterExitHook();
    unregisterExitHook = undefined;
  }
}

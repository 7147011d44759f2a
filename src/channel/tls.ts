import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import type net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import type { Dialer } from '../rpc/client.js';
import type { TransportUpgrade } from '../rpc/server.js';
import { RpcError } from '../rpc/types.js';
import { explainHandshakeFailure } from './probe.js';

/**
 * TLS 1.3 channel. The proxy server presents a certificate (self-signed is
 * fine); the proxy client verifies it by a SHA-256 fingerprint pinned in the
 * session, so no certificate authority is involved and no other server can
 * stand in. There is no fallback to plaintext.
 */
export interface TlsServerFiles {
  cert: Buffer;
  key: Buffer;
}

export async function readTlsFiles(certFile: string, keyFile: string): Promise<TlsServerFiles> {
  const st = await fs.stat(keyFile);
  if (st.mode & 0o077) throw new Error(`${keyFile}: TLS private key is accessible by others; chmod 600 it`);
  return { cert: await fs.readFile(certFile), key: await fs.readFile(keyFile) };
}

/** Normalized SHA-256 fingerprint ("AB:CD:..." upper case) of a PEM certificate. */
export function fingerprintOf(certPem: Buffer | string): string {
  return new X509Certificate(certPem).fingerprint256;
}

export function normalizeFingerprint(f: string): string {
  const hex = f.replace(/^sha256:/i, '').replace(/[^0-9a-f]/gi, '').toUpperCase();
  if (hex.length !== 64) throw new Error(`not a SHA-256 fingerprint: "${f}"`);
  return hex.match(/../g)!.join(':');
}

/** Longest a TLS handshake may take, counted from the TCP accept (ms). */
export const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * The server side of the TLS channel as an RPC transport upgrade: the RPC
 * server accepts the TCP socket itself (so its unproven-connection limits
 * and deadlines count from accept, not from the end of the handshake) and
 * runs the TLS 1.3 handshake on it here.
 */
export function tlsTransport(files: TlsServerFiles, timeoutMs = DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS): TransportUpgrade {
  const secureContext = tls.createSecureContext({ cert: files.cert, key: files.key, minVersion: 'TLSv1.3' });
  return {
    name: 'TLS',
    timeoutMs,
    upgrade: async (raw) => {
      // A peer whose first byte is not a TLS handshake record (a plain RPC client, an SSH client) gets
      // a TLS alert and is closed at once: our clients recognise it and name the mismatch instead of
      // waiting for the handshake deadline and retrying until their call's.
      const first = await firstChunk(raw);
      if (first[0] !== TLS_HANDSHAKE) {
        raw.end(TLS_PROTOCOL_VERSION_ALERT);
        raw.resume(); // read (and drop) until the peer closes: closing with unread bytes would reset the alert away
        await new Promise<void>((r) => {
          raw.once('close', () => r());
          setTimeout(r, 1000).unref();
        });
        throw new Error(`the peer does not speak TLS (first byte 0x${first[0].toString(16).padStart(2, '0')}): a plain or SSH client at a TLS proxy server`);
      }
      // Given back to the socket: the TLS socket takes over what is buffered in it.
      raw.unshift(first);
      return new Promise<net.Socket>((resolve, reject) => {
        const s = new tls.TLSSocket(raw, { isServer: true, secureContext });
        const onError = (e: Error) => {
          done();
          s.destroy();
          reject(new Error(`TLS handshake: ${e.message}`));
        };
        // A client that refuses our certificate (wrong pin) closes here without a word.
        const onClose = () => {
          done();
          reject(new Error('peer closed the connection during the TLS handshake (a client with another pinned fingerprint does this)'));
        };
        const done = () => {
          s.off('error', onError);
          s.off('close', onClose);
        };
        s.once('error', onError);
        s.once('close', onClose);
        s.once('secure', () => {
          done();
          resolve(s);
        });
      });
    },
  };
}

const TLS_HANDSHAKE = 0x16;
/** A TLS 1.2-framed fatal alert, protocol_version (70): what a TLS server says to a peer that is not speaking TLS. */
const TLS_PROTOCOL_VERSION_ALERT = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 70]);

/** The first bytes a socket receives (rejects if it closes first); the socket is paused afterwards. */
function firstChunk(raw: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const onData = (b: Buffer) => {
      cleanup();
      raw.pause();
      resolve(b);
    };
    const onClose = () => {
      cleanup();
      reject(new Error('peer closed the connection before the TLS handshake'));
    };
    const cleanup = () => {
      raw.off('data', onData);
      raw.off('close', onClose);
      raw.off('end', onClose);
    };
    raw.on('data', onData);
    raw.once('close', onClose);
    raw.once('end', onClose);
  });
}

/** Dial the proxy server over TLS 1.3 and check its certificate against the pinned fingerprint. */
export function tlsDialer(host: string, port: number, fingerprint: string, connectTimeoutMs = 10_000): Dialer {
  const want = normalizeFingerprint(fingerprint);
  return () =>
    new Promise((resolve, reject) => {
      const s = tls.connect({ host, port, minVersion: 'TLSv1.3', rejectUnauthorized: false, servername: undefined, checkServerIdentity: () => undefined });
      const t = setTimeout(() => {
        s.destroy();
        reject(new RpcError(`TLS connect to ${host}:${port} timed out`, 'disconnected'));
      }, connectTimeoutMs);
      s.once('secureConnect', () => {
        clearTimeout(t);
        const got = s.getPeerCertificate()?.fingerprint256;
        if (!got || normalizeFingerprint(got) !== want) {
          s.destroy();
          // Not retried: a different certificate will not become the right one.
          reject(new RpcError(`TLS certificate fingerprint mismatch: expected ${want} got ${got ? normalizeFingerprint(got) : '(no certificate)'} (${host}:${port})`, 'auth_error'));
          return;
        }
        s.setNoDelay(true);
        resolve(s);
      });
      s.once('error', (e) => {
        clearTimeout(t);
        const err = new RpcError(`TLS connect to ${host}:${port}: ${e.message}`, 'disconnected');
        // Connected but no TLS came back: find out what is there, so a plain or SSH server is named now, not retried.
        if (!s.connecting && !isRefusal(e)) void explainHandshakeFailure('TLS', host, port, err, 'tls').then(reject);
        else reject(err);
      });
    });
}

const isRefusal = (e: Error) => ['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT'].includes((e as NodeJS.ErrnoException).code ?? '');

/** Make a self-signed P-256 certificate and key (owner-only) in `dir` with openssl; returns the paths and fingerprint. */
export async function makeSelfSignedCert(dir: string, cn = 'gvfs-proxy-server'): Promise<{ cert: string; key: string; fingerprint: string }> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  await promisify(execFile)('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '3650', '-subj', `/CN=${cn}`,
  ], { timeout: 30_000 });
  await fs.chmod(key, 0o600);
  return { cert, key, fingerprint: fingerprintOf(await fs.readFile(cert)) };
}

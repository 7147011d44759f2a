import https from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import tls from 'node:tls';
import { normalizeFingerprint } from '../../channel/tls.js';

/**
 * HTTPS between the services and their users with self-signed certificates
 * pinned by SHA-256 fingerprint (as the proxy channel does): no certificate
 * authority, and nothing (no token, no order) is written to a server until
 * its certificate has been checked. Mutual TLS: a client may present its own
 * certificate (the session service to its agents), which the server checks
 * by fingerprint in turn (see `peerFingerprint`).
 */
export interface PinnedTarget {
  /** https://HOST:PORT (a path prefix is allowed). */
  url: string;
  /** SHA-256 fingerprint of the server's certificate. */
  fingerprint: string;
  /** Client certificate and key (PEM) for mutual TLS. */
  cert?: Buffer;
  key?: Buffer;
  /** Bearer token. */
  token?: string;
}

export interface HttpReply<T = any> {
  status: number;
  headers: IncomingHttpHeaders;
  body: T;
}

export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly body?: any,
    /**
     * 'connect': the server could not be reached (or was not the pinned one), so nothing was sent;
     * 'reset': the connection failed after the request may have been sent; 'timeout'; 'http': an error answer.
     */
    readonly kind: 'connect' | 'reset' | 'timeout' | 'http' = 'http',
  ) {
    super(message);
  }
}

const MAX_BODY = 16 << 20;

/** One JSON request to a pinned HTTPS server; resolves with any HTTP status (errors only for transport failures). */
export function request<T = any>(t: PinnedTarget, method: string, path: string, body?: unknown, o: { timeoutMs?: number } = {}): Promise<HttpReply<T>> {
  const want = normalizeFingerprint(t.fingerprint);
  const u = new URL(path.replace(/^\//, ''), t.url.endsWith('/') ? t.url : t.url + '/');
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const timeoutMs = o.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (e: Error) => {
      if (settled) return;
      settled = true;
      reject(e);
    };
    const req = https.request(
      {
        method,
        host: u.hostname.replace(/^\[|\]$/g, ''),
        port: u.port || 443,
        path: u.pathname + u.search,
        headers: {
          accept: 'application/json',
          ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
          ...(t.token ? { authorization: `Bearer ${t.token}` } : {}),
        },
        // The socket is handed to the request only once the certificate is the pinned one.
        createConnection: ((_: unknown, cb: (err: Error | null, s?: tls.TLSSocket) => void) => {
          const s = tls.connect({
            host: u.hostname.replace(/^\[|\]$/g, ''),
            port: Number(u.port || 443),
            minVersion: 'TLSv1.3',
            rejectUnauthorized: false,
            checkServerIdentity: () => undefined,
            cert: t.cert,
            key: t.key,
          });
          const onError = (e: Error) => cb(new HttpError(`${t.url}: ${e.message}`, undefined, undefined, 'connect'));
          s.once('error', onError);
          s.once('secureConnect', () => {
            s.off('error', onError);
            const got = s.getPeerCertificate()?.fingerprint256;
            if (!got || normalizeFingerprint(got) !== want) {
              s.destroy();
              cb(new HttpError(`${t.url}: server certificate ${got ?? '(none)'} is not the pinned ${want}`, undefined, undefined, 'connect'));
              return;
            }
            cb(null, s);
          });
          return undefined;
        }) as any,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let n = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
          if (n > MAX_BODY) {
            req.destroy(new HttpError(`${t.url}: answer larger than ${MAX_BODY} bytes`, res.statusCode));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString();
          let parsed: any = text;
          if ((res.headers['content-type'] ?? '').includes('json') && text) {
            try {
              parsed = JSON.parse(text);
            } catch {
              /* keep the text */
            }
          }
          if (settled) return;
          settled = true;
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed as T });
        });
        res.on('error', (e) => fail(e));
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      fail(new HttpError(`${method} ${u.href}: no answer within ${timeoutMs} ms`, undefined, undefined, 'timeout'));
    }, timeoutMs);
    req.on('error', (e) => {
      clearTimeout(timer);
      fail(e instanceof HttpError ? e : new HttpError(`${method} ${u.href}: ${e.message}`, undefined, undefined, 'reset'));
    });
    req.end(payload);
  });
}

/** Like `request`, but a status outside 2xx rejects with an HttpError carrying the server's message. */
export async function call<T = any>(t: PinnedTarget, method: string, path: string, body?: unknown, o: { timeoutMs?: number } = {}): Promise<T> {
  const r = await request<T>(t, method, path, body, o);
  if (r.status < 200 || r.status > 299) {
    const b = r.body as any;
    throw new HttpError(typeof b === 'object' && b?.message ? String(b.message) : `${method} ${path}: HTTP ${r.status}`, r.status, b);
  }
  return r.body;
}

/** The SHA-256 fingerprint of the client certificate a TLS peer presented, if any. */
export function peerFingerprint(s: unknown): string | undefined {
  const sock = s as tls.TLSSocket;
  if (typeof sock.getPeerCertificate !== 'function') return undefined;
  const c = sock.getPeerCertificate();
  return c && c.fingerprint256 ? normalizeFingerprint(c.fingerprint256) : undefined;
}

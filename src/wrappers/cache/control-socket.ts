import { createHash } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { logger } from '../../util/log.js';
import { privateDir } from '../../util/private-dir.js';
import * as f from './fs-cb.js';
import { readSmallFile, writeFileAtomic } from './session-dir.js';

const log = logger('cache');

/**
 * A running proxy client's control endpoint: a unix socket, owner-only (its
 * session directory is 0700), speaking one JSON object per line each way.
 *
 *   {"op":"flush","discard":false}  →  {"ok":true,"report":{...}}
 *   {"op":"stats"}                  →  {"ok":true,"stats":{...}}
 *   {"op":"configure","writeBack":false,"attrTimeoutMs":500}
 *                                   →  {"ok":true,"stats":{...}}  (policies that change live;
 *                                       also "consistency":"ttl"|"poll", "pollMs":1000)
 *   {"op":"invalidate","path":"a/b"} →  {"ok":true,"invalidated":1}  (no path: everything)
 *   anything else                   →  {"ok":false,"error":"..."}
 *
 * The socket lives in the session directory; a path too long for a unix
 * socket (108 bytes) moves it to a private directory (util/private-dir.ts). Either way the
 * session directory's `control` file names it, with the owner's pid.
 */
export type ControlHandler = (req: { op: string; discard?: boolean; writeBack?: boolean; attrTimeoutMs?: number; consistency?: string; pollMs?: number; path?: string }) => Promise<object>;

const MAX_REQUEST = 64 * 1024;

export async function startControlSocket(sessionDir: string, handler: ControlHandler): Promise<{ path: string; close(): Promise<void> }> {
  let sock = path.join(sessionDir, 'control.sock');
  // Too long for a unix socket: our private directory, not /tmp (where anyone could take the name or connect).
  if (Buffer.byteLength(sock) > 100) sock = path.join(await privateDir(), `cache-${createHash('sha256').update(sessionDir).digest('hex').slice(0, 16)}.sock`);
  await f.unlink(sock).catch(() => undefined);
  const conns = new Set<net.Socket>();
  const server = net.createServer((c) => {
    conns.add(c);
    c.on('close', () => conns.delete(c));
    c.on('error', () => undefined);
    let buf = '';
    c.on('data', (d) => {
      buf += d.toString();
      if (buf.length > MAX_REQUEST) {
        c.destroy();
        return;
      }
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        void answer(line).then((out) => c.writable && c.write(JSON.stringify(out) + '\n'));
      }
    });
  });
  const answer = async (line: string): Promise<object> => {
    try {
      const req = JSON.parse(line) as Parameters<ControlHandler>[0];
      return { ok: true, ...(await handler(req)) };
    } catch (e) {
      return { ok: false, error: (e as Error).message };
    }
  };
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(sock, () => resolve());
  });
  await writeFileAtomic(path.join(sessionDir, 'control'), JSON.stringify({ socket: sock, pid: process.pid }) + '\n');
  log.debug({ socket: sock }, 'cache: control socket listening');
  return {
    path: sock,
    async close() {
      for (const c of conns) c.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      await f.unlink(path.join(sessionDir, 'control')).catch(() => undefined);
      await f.unlink(sock).catch(() => undefined);
    },
  };
}

/** Where a session's control socket is, if its owner says it has one. */
export async function controlSocketOf(sessionDir: string): Promise<{ socket: string; pid: number } | undefined> {
  const s = await readSmallFile(path.join(sessionDir, 'control'));
  if (!s) return undefined;
  try {
    return JSON.parse(s) as { socket: string; pid: number };
  } catch {
    return undefined;
  }
}

/** One request to a control socket; rejects with ECONNREFUSED/ENOENT when nobody listens. */
export function controlRequest(socket: string, req: object, timeoutMs: number): Promise<any> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    let buf = '';
    const t = setTimeout(() => {
      c.destroy();
      reject(new Error(`no answer from ${socket} within ${timeoutMs} ms`));
    }, timeoutMs);
    c.on('connect', () => c.write(JSON.stringify(req) + '\n'));
    c.on('data', (d) => {
      buf += d.toString();
      const i = buf.indexOf('\n');
      if (i < 0) return;
      clearTimeout(t);
      c.end();
      try {
        resolve(JSON.parse(buf.slice(0, i)));
      } catch (e) {
        reject(e);
      }
    });
    c.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    c.on('close', () => {
      clearTimeout(t);
      reject(Object.assign(new Error(`${socket}: the proxy client closed the connection without answering (did it exit?)`), { code: 'ECONNRESET' }));
    });
  });
}

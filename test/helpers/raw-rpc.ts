import net from 'node:net';
import { once } from 'node:events';
import { XdrWriter } from '../../src/xdr/index.js';
import { encodeAuthSys } from '../../src/rpc/auth.js';
import { encodeCallHeader, decodeReply, type DecodedReply } from '../../src/rpc/message.js';
import { RecordDecoder } from '../../src/rpc/record.js';
import type { OpaqueAuth } from '../../src/rpc/types.js';

export const SYS_ROOT: OpaqueAuth = encodeAuthSys({ stamp: 1, machine: 'test', uid: 0, gid: 0, gids: [] });

/** A bare socket speaking record-marked RPC, for sending what a well-behaved client never would. */
export class RawRpc {
  readonly sock: net.Socket;
  /** Replies nobody waited for yet, in arrival order per xid (a resent call may be answered twice). */
  private readonly replies = new Map<number, DecodedReply[]>();
  private readonly waiters = new Map<number, (r: DecodedReply) => void>();
  closed: Promise<void>;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    const dec = new RecordDecoder((rec) => {
      const r = decodeReply(rec);
      const w = this.waiters.get(r.xid);
      if (w) {
        this.waiters.delete(r.xid);
        w(r);
      } else {
        const q = this.replies.get(r.xid);
        if (q) q.push(r);
        else this.replies.set(r.xid, [r]);
      }
    }, 8 << 20);
    sock.on('data', (c) => dec.push(c));
    sock.on('error', () => undefined);
    this.closed = once(sock, 'close').then(() => undefined);
  }

  /** `localAddress`: another loopback source address (127.0.0.2 ...), a second "peer" on one machine. */
  static async connect(port: number, localAddress?: string): Promise<RawRpc> {
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    await once(s, 'connect');
    return new RawRpc(s);
  }

  /** Frame `body` as one record (or split into `fragments` fragments) and send it. */
  sendRecord(body: Buffer, fragments = 1): void {
    const size = Math.ceil(body.length / fragments);
    for (let off = 0, i = 0; i < fragments; i++, off += size) {
      const part = body.subarray(off, Math.min(off + size, body.length));
      const h = Buffer.alloc(4);
      h.writeUInt32BE((part.length | (i === fragments - 1 ? 0x80000000 : 0)) >>> 0);
      this.sock.write(Buffer.concat([h, part]));
    }
  }

  static call(xid: number, prog: number, vers: number, proc: number, args: (w: XdrWriter) => void = () => undefined, cred: OpaqueAuth = SYS_ROOT): Buffer {
    const w = new XdrWriter();
    encodeCallHeader(w, xid, prog, vers, proc, cred);
    args(w);
    return w.toBuffer();
  }

  // Generous: 500 calls queued on one connection of a loaded 2-core machine took over 5 s (a flaky failure).
  reply(xid: number, timeoutMs = 60_000): Promise<DecodedReply> {
    const q = this.replies.get(xid);
    if (q) {
      const r = q.shift()!;
      if (!q.length) this.replies.delete(xid);
      return Promise.resolve(r);
    }
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no reply to xid ${xid}`)), timeoutMs);
      this.waiters.set(xid, (x) => {
        clearTimeout(t);
        resolve(x);
      });
    });
  }

  close(): void {
    this.sock.destroy();
  }
}

import net from 'node:net';
import { XdrWriter } from '../xdr/index.js';
import { AUTH_NONE_BODY } from '../rpc/auth.js';
import { encodeCallHeader } from '../rpc/message.js';
import { foreignProtocolOf } from '../rpc/peer-protocol.js';
import { frameRecord } from '../rpc/record.js';
import { RpcError } from '../rpc/types.js';

/** What answers at an address, as far as a channel needs to know. */
export type PeerKind = 'tls' | 'ssh' | 'rpc' | 'unknown';

const PORTMAP = 100000;

/**
 * Find out what speaks at HOST:PORT after a channel's handshake failed
 * there: one plain TCP connection that sends a portmapper NULL call (every
 * GVFS RPC server answers it before any proof) and reads the first bytes
 * back. An SSH server sends its banner unasked, a TLS server an alert, a
 * plain RPC server a reply. Anything else, or nothing within `timeoutMs`,
 * is 'unknown'. Never throws.
 */
export function probePeer(host: string, port: number, timeoutMs = 3000): Promise<PeerKind> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, noDelay: true });
    const done = (k: PeerKind) => {
      clearTimeout(t);
      s.destroy();
      resolve(k);
    };
    const t = setTimeout(() => done('unknown'), timeoutMs);
    t.unref();
    s.once('error', () => done('unknown'));
    s.once('close', () => done('unknown'));
    s.once('connect', () => {
      const w = new XdrWriter(64);
      encodeCallHeader(w, 1, PORTMAP, 2, 0, AUTH_NONE_BODY);
      for (const c of frameRecord(w.chunks())) s.write(c);
    });
    s.once('data', (b: Buffer) => {
      const other = foreignProtocolOf(b);
      if (other) return done(other);
      // A reply record: last-fragment mark, then xid 1 and msg_type REPLY (1).
      if (b.length >= 12 && b[0] & 0x80 && b.readUInt32BE(4) === 1 && b.readUInt32BE(8) === 1) return done('rpc');
      done('unknown');
    });
  });
}

/** What to tell a user whose `channel` found `kind` there. */
function says(channel: 'TLS' | 'SSH', kind: Exclude<PeerKind, 'unknown'>): string {
  switch (kind) {
    case 'tls':
      return 'a TLS server (a proxy server started with --tls-cert: connect to it with --tls-fingerprint, not through SSH)';
    case 'ssh':
      return 'an SSH server, not a proxy server (tunnel through it with --via ssh://USER@HOST:PORT, --server as it sees the proxy server)';
    case 'rpc':
      return channel === 'TLS'
        ? 'a plain ONC RPC server, not TLS (a proxy server started without --tls-cert: connect on loopback without --tls-fingerprint, or through --via ssh://)'
        : 'a plain ONC RPC server (a proxy server), not an SSH server: --via names the SSH server, --server the proxy server as the SSH server sees it';
  }
}

/**
 * After `channel`'s handshake with HOST:PORT failed with `err`: the
 * error to report. When the probe finds another kind of server there, a
 * final 'wrong_channel' RpcError naming it; else `err` unchanged.
 */
export async function explainHandshakeFailure(channel: 'TLS' | 'SSH', host: string, port: number, err: RpcError, expect: PeerKind): Promise<RpcError> {
  const kind = await probePeer(host, port);
  if (kind === 'unknown' || kind === expect) return err;
  return new RpcError(`${channel} to ${host}:${port} failed (${err.message.replace(/^.*?: /, '')}): the server there is ${says(channel, kind)}`, 'wrong_channel');
}

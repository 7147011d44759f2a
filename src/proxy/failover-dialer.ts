import { PEER_NAME, type Dialer, type NamedStream } from '../rpc/client.js';
import { logger } from '../util/log.js';

const log = logger('proxy');

/**
 * One dialer over several proxy servers of one store (or one export). A new
 * connection goes to the server in use; when a connection to it ends — the
 * server died, or the RPC client abandoned it because nothing came back
 * (RpcClientOptions.stallMs: a hung server, a link that stopped forwarding)
 * — the next dial starts at the following server, and so on around the
 * list; one that cannot be reached is skipped. The RPC client re-dials and
 * resends the calls in flight, so a program sees a delay, not an error —
 * provided the servers issue the same handles (store exports with a shared
 * --handle-secret) and accept the same session key. Each stream is named
 * (PEER_NAME) so the client knows a resend goes to another server and holds
 * back non-idempotent calls (nfs3/retransmit.ts).
 *
 * Several connections of one client share the dialer: only the end of a
 * connection to the server in use moves it on (the others' ends, which
 * follow, do not move it again).
 */
export function failoverDialer(servers: { name: string; dial: Dialer }[]): Dialer {
  let current = 0;
  /** The server of the last connection made (a dial elsewhere is a failover, logged once). */
  let lastUsed = 0;
  const moveOn = (from: number) => {
    if (from !== current) return;
    current = (from + 1) % servers.length;
    log.debug({ from: servers[from].name, to: servers[current].name }, 'connection to the proxy server ended: the next one starts at the next server');
  };
  return async () => {
    let last: unknown;
    const start = current;
    for (let k = 0; k < servers.length; k++) {
      const i = (start + k) % servers.length;
      try {
        const s = (await servers[i].dial()) as NamedStream;
        if (i !== lastUsed) log.warn({ from: servers[lastUsed].name, to: servers[i].name, skipped: k }, 'proxy server lost or unreachable: failed over');
        current = lastUsed = i;
        s[PEER_NAME] = servers[i].name;
        s.once('close', () => moveOn(i));
        return s;
      } catch (e) {
        last = e;
      }
    }
    throw last;
  };
}

import type { Dialer } from '../rpc/client.js';
import { logger } from '../util/log.js';

const log = logger('proxy');

/**
 * One dialer over several proxy servers of one store (or one export): a
 * new connection goes to the server that answered last; if it cannot be
 * reached, to the next one in order, and so on once around the list. The
 * RPC client re-dials when a connection drops and resends the calls in
 * flight, so when a server dies a program sees a delay, not an error —
 * provided the servers issue the same handles (store exports with a shared
 * --handle-secret) and accept the same session key.
 *
 * A server that accepts connections but stops answering is not detected
 * here; the call deadline (--timeout) bounds that case.
 */
export function failoverDialer(servers: { name: string; dial: Dialer }[]): Dialer {
  let current = 0;
  return async () => {
    let last: unknown;
    for (let k = 0; k < servers.length; k++) {
      const i = (current + k) % servers.length;
      try {
        const s = await servers[i].dial();
        if (i !== current) log.warn({ from: servers[current].name, to: servers[i].name }, 'proxy server unreachable: failed over');
        current = i;
        return s;
      } catch (e) {
        last = e;
      }
    }
    throw last;
  };
}

import { GVFS_PROGRAM, GVFS_V1, helloArgs, helloRes, HelloStatus, type HelloArgs, type HelloRes } from '../../ext/codec.js';
import type { ConnectionState, ProgramVersion } from '../../rpc/program.js';
import { VOID } from '../../rpc/program.js';
import { defaultAuthenticator, type Authenticator } from '../../rpc/server.js';
import { logger } from '../../util/log.js';

const log = logger('gvfs-ext');
const PRINCIPAL = 'gvfs.principal';

/**
 * Server side of the GVFS extension program. HELLO binds a grid identity to
 * the connection if `accept` allows it; `principalAuthenticator` then stamps
 * it on every call of that connection, so the identity map sees who the
 * session is whatever uid the NFS client claimed.
 */
export function gvfsProgram(accept: (principal: string) => boolean): ProgramVersion {
  return {
    prog: GVFS_PROGRAM,
    vers: GVFS_V1,
    name: 'gvfs',
    procedures: [
      { name: 'NULL', ...VOID, handle: () => undefined, idempotent: true },
      {
        name: 'HELLO',
        decode: helloArgs.dec,
        encode: helloRes.enc,
        idempotent: true,
        handle: (a: HelloArgs, ctx): HelloRes => {
          if (!accept(a.principal)) {
            log.warn({ peer: ctx.peer, principal: a.principal }, 'HELLO refused: identity not mapped');
            return { status: HelloStatus.DENIED };
          }
          (ctx.conn.data as Map<string, unknown>).set(PRINCIPAL, a.principal);
          log.debug({ peer: ctx.peer, principal: a.principal }, 'HELLO');
          return { status: HelloStatus.OK };
        },
      },
    ],
  };
}

export function connectionPrincipal(conn: ConnectionState): string | undefined {
  return conn.data.get(PRINCIPAL) as string | undefined;
}

/** AUTH_SYS/AUTH_NONE as usual, plus the principal the connection's HELLO announced. */
export const principalAuthenticator: Authenticator = (call, conn, proc) => {
  const c = defaultAuthenticator(call, conn, proc);
  if (typeof c === 'number') return c;
  const p = connectionPrincipal(conn);
  return p === undefined ? c : { ...c, principal: p };
};

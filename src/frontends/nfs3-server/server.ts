import type { Backend } from '../../backend/backend.js';
import { portmapProgram } from '../../portmap/program.js';
import { type ConnectionState, ProgramTable, type ProgramVersion } from '../../rpc/program.js';
import { type Authenticator, RpcServer, type RpcServerLimits, type RpcServerOptions } from '../../rpc/server.js';
import { mountProgram } from './mount-program.js';
import { nfs3Program } from './nfs3-program.js';

export interface Nfs3ServerOptions {
  backend: Backend;
  limits?: Partial<RpcServerLimits>;
  authenticate?: Authenticator;
  /** Extra programs on the same port (the GVFS extension program). */
  extraPrograms?: ProgramVersion[];
  /** What the portmapper reveals to a connection (default: everything). */
  portmapVisible?: (prog: number, conn: ConnectionState) => boolean;
  handshake?: RpcServerOptions['handshake'];
  /** Run on each accepted socket before RPC (the TLS handshake). */
  transport?: RpcServerOptions['transport'];
}

/**
 * The NFSv3 front end: NFS v3, MOUNT v3 and the portmapper on one TCP port,
 * over any backend.
 */
export function createNfs3Server(opts: Nfs3ServerOptions): RpcServer {
  const table = new ProgramTable();
  let server: RpcServer | undefined;
  table.add(nfs3Program(opts.backend));
  table.add(mountProgram(opts.backend));
  for (const p of opts.extraPrograms ?? []) table.add(p);
  table.add(portmapProgram(table, () => server?.address().port ?? 0, opts.portmapVisible));
  server = new RpcServer({ programs: table, limits: opts.limits, authenticate: opts.authenticate, handshake: opts.handshake, transport: opts.transport });
  return server;
}

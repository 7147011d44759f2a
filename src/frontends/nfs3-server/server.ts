import type { Backend } from '../../backend/backend.js';
import { portmapProgram } from '../../portmap/program.js';
import { type ConnectionState, ProgramTable, type ProgramVersion } from '../../rpc/program.js';
import { type Authenticator, RpcServer, type RpcServerLimits, type RpcServerOptions } from '../../rpc/server.js';
import { mountProgram } from './mount-program.js';
import { nfs3Program } from './nfs3-program.js';
import { guardWrites, type ReadOnlyPolicy } from './read-only.js';

export interface Nfs3ServerOptions {
  backend: Backend;
  limits?: Partial<RpcServerLimits>;
  authenticate?: Authenticator;
  /** Extra programs on the same port (the GVFS extension program). */
  extraPrograms?: ProgramVersion[];
  /** What the portmapper reveals to a connection (default: everything). */
  portmapVisible?: (prog: number, conn: ConnectionState) => boolean;
  handshake?: RpcServerOptions['handshake'];
  /**
   * Which handles lie in a read-only export (`gvfs serve --read-only`: all;
   * a proxy server: those of its `:ro` exports). Every mutating procedure of
   * every program on the port is refused there before its handler runs.
   */
  readOnly?: ReadOnlyPolicy;
  admit?: RpcServerOptions['admit'];
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
  const guard = (p: ProgramVersion) => (opts.readOnly ? guardWrites(p, opts.readOnly) : p);
  table.add(guard(nfs3Program(opts.backend, opts.readOnly)));
  table.add(guard(mountProgram(opts.backend)));
  for (const p of opts.extraPrograms ?? []) table.add(guard(p));
  table.add(portmapProgram(table, () => server?.address().port ?? 0, opts.portmapVisible));
  server = new RpcServer({ programs: table, limits: opts.limits, authenticate: opts.authenticate, handshake: opts.handshake, transport: opts.transport, admit: opts.admit });
  return server;
}

import type { XdrReader, XdrWriter } from '../xdr/index.js';
import { type ConnectionState, type ProgramVersion, type ProgramTable, VOID } from '../rpc/program.js';

/**
 * Portmapper v2 (RFC 1833 §3) answered on the server's own port, so a client
 * that asks "where is NFS / MOUNT?" learns: right here. SET and UNSET are
 * refused (nobody registers with us); CALLIT is not offered.
 */
export const PMAP_PROGRAM = 100000;
export const PMAP_V2 = 2;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export interface Mapping {
  prog: number;
  vers: number;
  prot: number;
  port: number;
}

export const mappingCodec = {
  enc: (w: XdrWriter, m: Mapping) => void w.u32(m.prog).u32(m.vers).u32(m.prot).u32(m.port),
  dec: (r: XdrReader): Mapping => ({ prog: r.u32(), vers: r.u32(), prot: r.u32(), port: r.u32() }),
};

/**
 * `visible` filters what GETPORT/DUMP reveal to a connection (a keyed proxy
 * server shows only the public programs before the session key is proved).
 */
export function portmapProgram(table: ProgramTable, port: () => number, visible: (prog: number, conn: ConnectionState) => boolean = () => true): ProgramVersion {
  const mappings = (conn: ConnectionState): Mapping[] =>
    table
      .entries()
      .filter((e) => visible(e.prog, conn))
      .map((e) => ({ prog: e.prog, vers: e.vers, prot: IPPROTO_TCP, port: port() }));
  return {
    prog: PMAP_PROGRAM,
    vers: PMAP_V2,
    name: 'portmap',
    procedures: [
      { name: 'NULL', ...VOID, handle: () => undefined, idempotent: true, public: true },
      { name: 'SET', decode: mappingCodec.dec, handle: () => false, encode: (w, v: boolean) => void w.bool(v), idempotent: true },
      { name: 'UNSET', decode: mappingCodec.dec, handle: () => false, encode: (w, v: boolean) => void w.bool(v), idempotent: true },
      {
        name: 'GETPORT',
        decode: mappingCodec.dec,
        handle: (m: Mapping, ctx) => {
          if (m.prot !== IPPROTO_TCP) return 0;
          return mappings(ctx.conn).some((x) => x.prog === m.prog && x.vers === m.vers) ? port() : 0;
        },
        encode: (w, v: number) => void w.u32(v),
        idempotent: true,
        public: true,
      },
      {
        name: 'DUMP',
        ...VOID,
        handle: (_: void, ctx) => mappings(ctx.conn),
        encode: (w: XdrWriter, v: Mapping[]) => void w.list(v, mappingCodec.enc),
        idempotent: true,
        public: true,
      },
    ],
  };
}

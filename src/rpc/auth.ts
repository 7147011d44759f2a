import { XdrReader, XdrWriter } from '../xdr/index.js';
import { AuthFlavor, type AuthSys, type OpaqueAuth, MAX_AUTH_BYTES } from './types.js';

export const AUTH_NONE_BODY: OpaqueAuth = { flavor: AuthFlavor.AUTH_NONE, body: Buffer.alloc(0) };

export function readOpaqueAuth(r: XdrReader): OpaqueAuth {
  const flavor = r.u32();
  const body = r.opaque(MAX_AUTH_BYTES);
  return { flavor, body };
}

export function writeOpaqueAuth(w: XdrWriter, a: OpaqueAuth): void {
  w.u32(a.flavor);
  w.opaque(a.body);
}

/** Max supplementary groups in AUTH_SYS (RFC 5531 appendix A). */
export const AUTH_SYS_MAX_GIDS = 16;

export function decodeAuthSys(body: Buffer): AuthSys {
  const r = new XdrReader(body);
  const stamp = r.u32();
  const machine = r.string(255);
  const uid = r.u32();
  const gid = r.u32();
  const gids = r.array(AUTH_SYS_MAX_GIDS, (x) => x.u32());
  r.end();
  return { stamp, machine, uid, gid, gids };
}

export function encodeAuthSys(a: AuthSys): OpaqueAuth {
  const w = new XdrWriter(64);
  w.u32(a.stamp).string(a.machine).u32(a.uid).u32(a.gid);
  w.array(a.gids.slice(0, AUTH_SYS_MAX_GIDS), (x, g) => x.u32(g));
  return { flavor: AuthFlavor.AUTH_SYS, body: w.toBuffer() };
}

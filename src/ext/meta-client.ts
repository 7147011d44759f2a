import type { XdrReader, XdrWriter } from '../xdr/index.js';
import type { Credentials } from '../rpc/types.js';
import {
  bulkReadArgs,
  bulkReadRes,
  getMetaArgs,
  getMetaRes,
  MAX_META_PAGE,
  MetaProc,
  MetaStatus,
  setOrderArgs,
  setOrderRes,
  type BulkReadArgs,
  type BulkReadRes,
  type SetOrderArgs,
  type SetOrderRes,
} from './meta-codec.js';

/** A link that can call the GVFS extension program as a caller (RemoteNfs.ext). */
export interface ExtLink {
  ext<R>(proc: number, enc: (w: XdrWriter) => void, dec: (r: XdrReader) => R, cred: Credentials): Promise<R>;
}

/** A file's meta-data bytes, every page; undefined when it has none (or only stale meta-data). */
export async function fetchMeta(link: ExtLink, cred: Credentials, fh: Buffer): Promise<{ status: MetaStatus; nfsstat: number; bytes?: Buffer }> {
  const pages: Buffer[] = [];
  let got = 0;
  for (;;) {
    const r = await link.ext(MetaProc.GET_META, (w) => getMetaArgs.enc(w, { fh, offset: got, count: MAX_META_PAGE }), getMetaRes.dec, cred);
    if (r.status !== MetaStatus.OK) return { status: r.status, nfsstat: r.nfsstat };
    pages.push(r.data);
    got += r.data.length;
    if (got >= r.total || r.data.length === 0) return { status: MetaStatus.OK, nfsstat: 0, bytes: Buffer.concat(pages) };
  }
}

export function bulkRead(link: ExtLink, cred: Credentials, a: BulkReadArgs): Promise<BulkReadRes> {
  return link.ext(MetaProc.BULK_READ, (w) => bulkReadArgs.enc(w, a), bulkReadRes.dec, cred);
}

export function setOrder(link: ExtLink, cred: Credentials, a: SetOrderArgs): Promise<SetOrderRes> {
  return link.ext(MetaProc.SET_ORDER, (w) => setOrderArgs.enc(w, a), setOrderRes.dec, cred);
}

import type { XdrReader, XdrWriter } from '../xdr/index.js';
import type { OpaqueAuth } from '../rpc/types.js';
import { GVFS_PROGRAM, GVFS_V1, GvfsProc, helloArgs, helloRes, HelloStatus } from './codec.js';

type CallFn = <R>(prog: number, vers: number, proc: number, enc: (w: XdrWriter) => void, dec: (r: XdrReader) => R, opts?: { cred?: OpaqueAuth; timeoutMs?: number }) => Promise<R>;

/** Announce the session's grid identity on a new connection; throws if the server refuses it. */
export async function hello(call: CallFn, principal: string, timeoutMs = 10_000): Promise<void> {
  const r = await call(GVFS_PROGRAM, GVFS_V1, GvfsProc.HELLO, (w) => helloArgs.enc(w, { principal }), helloRes.dec, { timeoutMs });
  if (r.status !== HelloStatus.OK) throw new HelloDeniedError(principal);
}

export class HelloDeniedError extends Error {
  override name = 'HelloDeniedError';
  constructor(readonly principal: string) {
    super(`the proxy server does not map identity "${principal}"`);
  }
}

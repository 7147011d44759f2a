import type { XdrReader, XdrWriter } from '../xdr/index.js';

/**
 * The change-log procedure of the GVFS extension program (v1), behind the
 * `poll` consistency model (README "Consistency"):
 *
 *   CHANGES_SINCE(fh, boot, since) → (status, boot, seq, handles)
 *
 * `fh` is any handle of the export (a proxy client sends its root); the
 * proxy server keeps one bounded log of changed files per export, numbered
 * by `seq`. `boot` names the log's incarnation (a restarted proxy server
 * has a new one, and its numbers start again).
 *
 * - OK: `handles` are the files changed after `since` (each at most once,
 *   as the caller's session sees them), `seq` the number to ask from next.
 * - RESET: the caller cannot be told what changed (its `boot` is another
 *   incarnation's, or `since` fell out of the bounded log, or more changed
 *   than one reply lists): it must drop every cached attribute and name,
 *   then ask from `seq`.
 * - NFSERR: `fh` was refused (`nfsstat`: BADHANDLE, STALE ...).
 */
export const CHANGES_SINCE = 7;

export const enum ChangesStatus {
  OK = 0,
  RESET = 1,
  NFSERR = 2,
}

/** Most handles one reply lists (64 bytes + length each: under 80 KiB); more changes than that: RESET. */
export const MAX_CHANGES = 1000;
export const BOOT_LEN = 8;

export interface ChangesArgs {
  fh: Buffer;
  /** Empty: the caller knows no incarnation yet (its first poll). */
  boot: Buffer;
  since: bigint;
}

export interface ChangesRes {
  status: ChangesStatus;
  nfsstat: number;
  boot: Buffer;
  seq: bigint;
  handles: Buffer[];
}

export const changesArgs = {
  enc: (w: XdrWriter, v: ChangesArgs) => void w.opaque(v.fh).opaque(v.boot).u64big(v.since),
  dec: (r: XdrReader): ChangesArgs => ({ fh: Buffer.from(r.opaque(64)), boot: Buffer.from(r.opaque(BOOT_LEN)), since: r.u64big() }),
};

export const changesRes = {
  enc: (w: XdrWriter, v: ChangesRes) => {
    w.u32(v.status).u32(v.nfsstat).opaque(v.boot).u64big(v.seq).u32(v.handles.length);
    for (const h of v.handles) w.opaque(h);
  },
  dec: (r: XdrReader): ChangesRes => {
    const status = r.u32() as ChangesStatus;
    const nfsstat = r.u32();
    const boot = Buffer.from(r.opaque(BOOT_LEN));
    const seq = r.u64big();
    const n = r.u32();
    if (n > MAX_CHANGES) throw new RangeError(`CHANGES_SINCE reply lists ${n} handles (at most ${MAX_CHANGES})`);
    const handles: Buffer[] = [];
    for (let i = 0; i < n; i++) handles.push(Buffer.from(r.opaque(64)));
    return { status, nfsstat, boot, seq, handles };
  },
};

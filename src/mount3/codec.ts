import type { XdrReader, XdrWriter } from '../xdr/index.js';

/** MOUNT protocol v3 (RFC 1813 appendix I). */
export const MOUNT_PROGRAM = 100005;
export const MOUNT_V3 = 3;
export const MNTPATHLEN = 1024;
export const MNTNAMLEN = 255;
export const FHSIZE3 = 64;

export const enum MountProc {
  NULL = 0,
  MNT = 1,
  DUMP = 2,
  UMNT = 3,
  UMNTALL = 4,
  EXPORT = 5,
}

export const enum MountStat {
  OK = 0,
  PERM = 1,
  NOENT = 2,
  IO = 5,
  ACCES = 13,
  NOTDIR = 20,
  INVAL = 22,
  NAMETOOLONG = 63,
  NOTSUPP = 10004,
  SERVERFAULT = 10006,
}

export type MntResult = { status: MountStat.OK; fh: Buffer; authFlavors: number[] } | { status: Exclude<MountStat, MountStat.OK> };

export interface MountEntry {
  hostname: string;
  directory: string;
}

export interface ExportEntry {
  dir: string;
  groups: string[];
}

export const dirpath = {
  enc: (w: XdrWriter, v: string) => void w.string(v),
  dec: (r: XdrReader) => r.string(MNTPATHLEN),
};

export const mntres = {
  enc(w: XdrWriter, v: MntResult) {
    w.u32(v.status);
    if (v.status === MountStat.OK) {
      w.opaque(v.fh);
      w.array(v.authFlavors, (x, f) => x.u32(f));
    }
  },
  dec(r: XdrReader): MntResult {
    const status = r.u32() as MountStat;
    if (status !== MountStat.OK) return { status } as MntResult;
    return { status, fh: Buffer.from(r.opaque(FHSIZE3)), authFlavors: r.array(64, (x) => x.u32()) };
  },
};

export const mountlist = {
  enc: (w: XdrWriter, v: MountEntry[]) =>
    void w.list(v, (x, e) => {
      x.string(e.hostname);
      x.string(e.directory);
    }),
  dec: (r: XdrReader): MountEntry[] => r.list(65536, (x) => ({ hostname: x.string(MNTNAMLEN), directory: x.string(MNTPATHLEN) })),
};

export const exports = {
  enc: (w: XdrWriter, v: ExportEntry[]) =>
    void w.list(v, (x, e) => {
      x.string(e.dir);
      x.list(e.groups, (y, g) => y.string(g));
    }),
  dec: (r: XdrReader): ExportEntry[] => r.list(65536, (x) => ({ dir: x.string(MNTPATHLEN), groups: x.list(65536, (y) => y.string(MNTNAMLEN)) })),
};

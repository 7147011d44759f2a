import fs from 'node:fs/promises';

/**
 * Identity map: grid identity → local account.
 *
 * File format (`--map FILE`), one identity per line; `#` starts a comment:
 *
 *   # grid identity        uid    gid    [supplementary groups]
 *   alice                   2001   2001   2001,3000
 *   "/O=Grid/CN=Bob Smith"  2002   2002
 *   sys:1000                2001   2001
 *
 * A grid identity is what a GVFS proxy client announces for its session
 * (`gvfs proxy-client --user NAME`). `sys:UID` names a plain NFS client that
 * sends AUTH_SYS uid UID without a GVFS proxy client in front of it.
 * On the command line: `--map-user alice=2001:2001:2001,3000`.
 */
export interface LocalAccount {
  uid: number;
  gid: number;
  gids: number[];
}

export type IdentityMap = Map<string, LocalAccount>;

const LINE = /^(?:"([^"]+)"|(\S+))\s+(\d+)\s+(\d+)(?:\s+(\d+(?:,\d+)*))?$/;

export function parseMap(text: string, source = 'map'): IdentityMap {
  const m: IdentityMap = new Map();
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (!line) return;
    const x = LINE.exec(line);
    if (!x) throw new Error(`${source}:${i + 1}: expected 'IDENTITY UID GID [G1,G2...]', got "${raw.trim()}"`);
    const id = x[1] ?? x[2];
    if (m.has(id)) throw new Error(`${source}:${i + 1}: ${id} mapped twice`);
    m.set(id, account(x[3], x[4], x[5], `${source}:${i + 1}`));
  });
  return m;
}

export async function loadMapFile(file: string): Promise<IdentityMap> {
  return parseMap(await fs.readFile(file, 'utf8'), file);
}

/** `NAME=UID:GID[:G1,G2]` from the command line. */
export function parseMapFlag(v: string): [string, LocalAccount] {
  const x = /^(.+)=(\d+):(\d+)(?::(\d+(?:,\d+)*))?$/.exec(v);
  if (!x) throw new Error(`--map-user: expected NAME=UID:GID[:G1,G2], got "${v}"`);
  return [x[1], account(x[2], x[3], x[4], '--map-user')];
}

function account(uid: string, gid: string, groups: string | undefined, where: string): LocalAccount {
  const n = (s: string) => {
    const v = Number(s);
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`${where}: bad id ${s}`);
    return v;
  };
  const gids = groups ? groups.split(',').map(n) : [];
  if (gids.length > 16) throw new Error(`${where}: at most 16 supplementary groups (AUTH_SYS)`);
  return { uid: n(uid), gid: n(gid), gids };
}

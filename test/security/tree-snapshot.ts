import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * Everything a change could touch under `dir`, read without following
 * links: names, type, mode, owner, size, mtime/ctime and each file's
 * SHA-256. Equal snapshots mean nothing was written, truncated, chmodded,
 * renamed, removed or added.
 */
export async function treeSnapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    const p = path.join(dir, rel);
    const st = await fs.lstat(p, { bigint: true });
    let what = `mode=${st.mode.toString(8)} uid=${st.uid} gid=${st.gid} size=${st.size} nlink=${st.nlink} mtime=${st.mtimeNs} ctime=${st.ctimeNs}`;
    if (st.isFile()) what += ` sha256=${createHash('sha256').update(await fs.readFile(p)).digest('hex')}`;
    if (st.isSymbolicLink()) what += ` -> ${await fs.readlink(p)}`;
    out[rel || '.'] = what;
    if (st.isDirectory()) for (const n of (await fs.readdir(p)).sort()) await walk(path.join(rel, n));
  };
  await walk('');
  return out;
}

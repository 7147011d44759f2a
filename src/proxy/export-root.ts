import fs from 'node:fs/promises';

/**
 * What an exported directory was when whoever started the proxy server
 * checked it (the agent, against its --export-root): its device and inode.
 * The proxy server checks it again itself before serving, so a directory
 * swapped for a symbolic link (or for another directory) between that
 * check and a restart is refused, not served.
 */
export interface ExportRootCheck {
  dev: bigint;
  ino: bigint;
}

/** `DEV:INO` (decimal), as `gvfs proxy-server --export-expect` takes it. */
export function parseExportRootCheck(v: string): ExportRootCheck {
  const m = /^(\d+):(\d+)$/.exec(v);
  if (!m) throw new Error(`expected DEV:INO (decimal), got "${v}"`);
  return { dev: BigInt(m[1]), ino: BigInt(m[2]) };
}

export function formatExportRootCheck(c: ExportRootCheck): string {
  return `${c.dev}:${c.ino}`;
}

/** Device and inode of a directory reached without following a final symbolic link. */
export async function exportRootIdentity(dir: string): Promise<ExportRootCheck> {
  const st = await fs.lstat(dir, { bigint: true });
  if (!st.isDirectory()) throw new Error(`${dir} is ${st.isSymbolicLink() ? 'a symbolic link' : 'not a directory'}`);
  return { dev: st.dev, ino: st.ino };
}

/**
 * Refuse to serve `dir` unless it is still the directory that was checked:
 * not a symbolic link, no symbolic link on its path (its real path is
 * itself), the same device and inode.
 */
export async function checkExportRoot(dir: string, want: ExportRootCheck): Promise<void> {
  let real: string;
  let have: ExportRootCheck;
  try {
    have = await exportRootIdentity(dir);
    real = await fs.realpath(dir);
  } catch (e) {
    throw new Error(`refusing to export ${dir}: ${(e as Error).message}`);
  }
  if (real !== dir) throw new Error(`refusing to export ${dir}: it resolves to ${real} (a symbolic link on its path)`);
  if (have.dev !== want.dev || have.ino !== want.ino) {
    throw new Error(`refusing to export ${dir}: it is not the directory that was checked (device:inode ${formatExportRootCheck(have)}, expected ${formatExportRootCheck(want)})`);
  }
}

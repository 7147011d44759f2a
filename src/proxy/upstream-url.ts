/**
 * nfs://HOST[:PORT]/PATH[?mountport=N] — an NFSv3 server and the export to
 * mount on it. PORT defaults to 2049; MOUNT is asked on `mountport` (default:
 * the NFS port, as gvfs serves both on one port; nfs-ganesha needs its own).
 */
export interface UpstreamUrl {
  host: string;
  port: number;
  mountPort: number;
  path: string;
}

export function parseNfsUrl(s: string): UpstreamUrl {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new Error(`not a URL: "${s}" (expected nfs://HOST[:PORT]/PATH)`);
  }
  if (u.protocol !== 'nfs:') throw new Error(`expected an nfs:// URL, got "${s}"`);
  if (!u.hostname) throw new Error(`no host in "${s}"`);
  const port = u.port ? Number(u.port) : 2049;
  const mp = u.searchParams.get('mountport') ?? u.searchParams.get('mountPort');
  const mountPort = mp ? Number(mp) : port;
  if (!Number.isInteger(mountPort) || mountPort <= 0 || mountPort > 65535) throw new Error(`bad mountport in "${s}"`);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  return { host, port, mountPort, path: decodeURIComponent(u.pathname) || '/' };
}

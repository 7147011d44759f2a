import fs from 'node:fs/promises';
import { FsError } from '../../backend/errors.js';
import { AuthFlavor, type Credentials } from '../../rpc/types.js';

/** Who made a request, as the kernel says (fuse_req_ctx), with the groups from /proc/PID/status. */
export interface LlCaller {
  uid: number;
  gid: number;
  pid: number;
}

/** AUTH_SYS carries at most 16 supplementary groups (RFC 5531). */
const MAX_GIDS = 16;

/** This process's own identity: the mount's background credentials and the default of `--as`. */
export function processCredentials(): Credentials {
  return {
    flavor: AuthFlavor.AUTH_SYS,
    uid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
    gids: (process.getgroups?.() ?? []).slice(0, MAX_GIDS),
  };
}

/**
 * Supplementary groups of a process, read from /proc/PID/status and kept
 * briefly (a process's groups rarely change; its first call of a burst pays
 * one async read). Keyed by pid, uid and gid, so a reused pid with another
 * identity is read again. A process already gone gets its primary group only.
 */
export class GroupCache {
  private readonly m = new Map<string, { gids: number[]; at: number }>();

  constructor(
    private readonly ttlMs = 1000,
    private readonly max = 4096,
    private readonly now = () => Date.now(),
  ) {}

  async groups(c: LlCaller): Promise<number[]> {
    const k = `${c.pid}:${c.uid}:${c.gid}`;
    const hit = this.m.get(k);
    if (hit && this.now() - hit.at < this.ttlMs) return hit.gids;
    let gids: number[] = [];
    try {
      const text = await fs.readFile(`/proc/${c.pid}/status`, 'utf8');
      const line = /^Groups:\s*(.*)$/m.exec(text);
      if (line) gids = line[1].trim().split(/\s+/).filter(Boolean).map(Number).filter((g) => Number.isInteger(g) && g >= 0);
    } catch {
      /* gone: primary group only */
    }
    gids = gids.filter((g) => g !== c.gid).slice(0, MAX_GIDS);
    if (this.m.size >= this.max) this.m.clear();
    this.m.set(k, { gids, at: this.now() });
    return gids;
  }
}

/**
 * How a request's caller becomes the backend's credentials.
 * - 'each': the caller as itself (AUTH_SYS uid, gid, supplementary groups):
 *   plain NFS servers (`gvfs mount --server nfs://`).
 * - 'fixed': one identity for every caller (`--as`).
 * - 'session': a GVFS session maps callers as the session says: the session
 *   owner's local uid (this process's) and root, if allowed, act as the
 *   session's account; any other local uid is refused (EACCES) unless
 *   `allowedUids` names it.
 */
export type CallerPolicy =
  | { kind: 'each' }
  | { kind: 'fixed'; cred: Credentials }
  | { kind: 'session'; cred: Credentials; ownerUid: number; allowRoot: boolean; allowedUids?: ReadonlySet<number> };

export class Callers {
  readonly groups = new GroupCache();

  constructor(readonly policy: CallerPolicy) {}

  async credentials(c: LlCaller): Promise<Credentials> {
    const p = this.policy;
    switch (p.kind) {
      case 'fixed':
        return p.cred;
      case 'session':
        if (c.uid === p.ownerUid || (c.uid === 0 && p.allowRoot) || p.allowedUids?.has(c.uid)) return p.cred;
        throw new FsError('ACCES', `uid ${c.uid} is not a user of this session`);
      case 'each':
        return { flavor: AuthFlavor.AUTH_SYS, uid: c.uid, gid: c.gid, gids: await this.groups.groups(c) };
    }
  }
}

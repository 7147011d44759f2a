import fs from 'node:fs/promises';
import path from 'node:path';
import type { RemoteNfs } from '../backends/remote-nfs/remote-nfs.js';
import { NFS_PROGRAM, NFS_V3, Proc } from '../nfs3/constants.js';
import type { CacheBackend } from '../wrappers/cache/cache-backend.js';

/** A readiness check: resolves when fine, rejects (or throws) with the reason when not. */
export type Check = () => Promise<void>;

export interface CheckResult {
  ok: boolean;
  reason?: string;
  ms: number;
}

export interface Readiness {
  ready: boolean;
  /** The names of the checks that failed. */
  failed: string[];
  checks: Record<string, CheckResult>;
}

/** Longest one check may take before it counts as failed (ms). */
const CHECK_TIMEOUT_MS = 5_000;

/**
 * What /readyz runs: named checks, all at once, each bounded. Liveness
 * (/healthz) is the process answering at all and needs no check.
 */
export class Health {
  private readonly checks = new Map<string, Check>();

  add(name: string, check: Check): this {
    this.checks.set(name, check);
    return this;
  }

  get names(): string[] {
    return [...this.checks.keys()];
  }

  async run(timeoutMs = CHECK_TIMEOUT_MS): Promise<Readiness> {
    const entries = await Promise.all(
      [...this.checks].map(async ([name, check]): Promise<[string, CheckResult]> => {
        const t0 = Date.now();
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            check(),
            new Promise<never>((_, reject) => {
              timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
            }),
          ]);
          return [name, { ok: true, ms: Date.now() - t0 }];
        } catch (e) {
          return [name, { ok: false, reason: (e as Error).message ?? String(e), ms: Date.now() - t0 }];
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    const checks = Object.fromEntries(entries);
    const failed = entries.filter(([, r]) => !r.ok).map(([n]) => n);
    return { ready: failed.length === 0, failed, checks };
  }
}

/** An NFSv3 server answers a NULL call (the proxy server behind a link, or an upstream of a proxy server). */
export function nfsReachable(remote: RemoteNfs, timeoutMs = CHECK_TIMEOUT_MS - 500): Check {
  return async () => {
    await remote.clients[0].rpc.call(NFS_PROGRAM, NFS_V3, Proc.NULL, () => undefined, () => undefined, { timeoutMs });
  };
}

/** A directory can be listed (a local export). */
export function dirReadable(dir: string): Check {
  return async () => {
    const d = await fs.opendir(dir);
    await d.close();
  };
}

/**
 * The cache's journal directory takes a write (a probe file written and
 * removed: access(2) says yes to root on a read-only or full file system),
 * and the cache is within its capacity.
 */
export function cacheChecks(cache: CacheBackend): Record<string, Check> {
  return {
    journal: async () => {
      const probe = path.join(cache.sessionDir, `.readyz-${process.pid}`);
      await fs.writeFile(probe, 'x');
      await fs.unlink(probe);
    },
    cache: async () => {
      const s = cache.stats();
      const use = s.used + s.journalBytes;
      if (use > s.capacity) throw new Error(`cache over its limit: ${use} bytes used of ${s.capacity}`);
    },
  };
}

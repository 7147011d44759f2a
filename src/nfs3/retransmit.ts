import { NFS_PROGRAM, Proc } from './constants.js';

/**
 * Which NFSv3 calls a client may send to a DIFFERENT server after the one it
 * sent them to stopped answering (failover between proxy servers of one
 * store or one upstream export).
 *
 * A resend to the same server is always safe: its duplicate-request cache
 * answers a non-idempotent call it has run already (RFC 1813 §4.5; the
 * server's table marks those rows). Another server has no record of the
 * first one's work, so a call whose second run differs from its first must
 * not be sent there when it may have run already:
 *
 * - SETATTR (a truncation run again after a later write loses data), CREATE,
 *   MKDIR, SYMLINK, MKNOD (EXIST the second time), REMOVE, RMDIR (NOENT),
 *   RENAME (NOENT, or it moves a file created since), LINK (EXIST): not resent.
 *   EXCLUSIVE CREATE would be safe by its verifier, but the client does not
 *   decode its own arguments here; it is treated like the others.
 * - WRITE: resent. The same bytes at the same offset give the same file; data
 *   written UNSTABLE to the first server and not committed is rewritten by
 *   the client when the new server's COMMIT verifier differs (the NFSv3 rule
 *   for a server reboot, which a failover looks like to the client).
 * - COMMIT and every read-only call: resent.
 *
 * Calls queued but never sent are not affected: they go wherever the
 * connection goes.
 */
const NOT_RESENT = new Set<number>([Proc.SETATTR, Proc.CREATE, Proc.MKDIR, Proc.SYMLINK, Proc.MKNOD, Proc.REMOVE, Proc.RMDIR, Proc.RENAME, Proc.LINK]);

export function resendableElsewhere(prog: number, _vers: number, proc: number): boolean {
  return prog !== NFS_PROGRAM || !NOT_RESENT.has(proc);
}

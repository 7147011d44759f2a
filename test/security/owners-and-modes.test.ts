import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { newSessionKey, writeKeyFile, type SessionKey } from '../../src/channel/session-key.js';
import { Nfs3Status } from '../../src/nfs3/constants.js';
import type { OpaqueAuth } from '../../src/rpc/types.js';
import { spawnGvfs, type GvfsProcess } from '../helpers/gvfs-proc.js';
import { KERNEL } from './owners-expected.js';
import { RawNfs, statusName, sys } from './owners-raw-nfs.js';

/**
 * Issue 14 item 1: a non-root caller may not use the server's root
 * privileges through sattr3. Raw NFSv3 calls (nothing filtered by a client)
 * from AUTH_SYS uid 2001 gid 2001 carry uid 0, gid 0/42 and set-ID modes in
 * CREATE, MKDIR, SYMLINK, MKNOD and SETATTR; the result is read with lstat on
 * the export directory itself.
 *
 * Expected modes (owners-expected.ts) are what the kernel does for the same
 * system calls made by uid 2001 itself (open(O_CREAT), mkdir, mknod, chown,
 * chmod, write, truncate, utimes), checked live by owners-kernel.test.ts, except
 * where knfsd itself differs from the system call: the uid/gid a non-root
 * caller puts in a create's attributes are ignored (nfsd_create_setattr), and
 * a chown that also sets the mode clears the set-ID bits of that mode
 * (nfsd_sanitize_attrs).
 */

const OWNER = 2001;
const OTHER_GID = 42;

interface Target {
  name: string;
  /** gvfs arguments for an export directory and a state directory. */
  args(exportDir: string, stateDir: string, keyFile: string): string[];
  /** Needs a session key proved on the connection (account 2001:2001). */
  keyed?: boolean;
  /** The caller the tests act as: ends up as uid 2001 gid 2001, no other groups. */
  caller: OpaqueAuth;
  /** A caller claiming root, and whether it really is root at the export. */
  root: OpaqueAuth;
  rootIsRoot: boolean;
  /** Who owns what "root" creates. */
  rootCreates: { uid: number; gid: number };
}

const TARGETS: Target[] = [
  {
    name: 'gvfs serve',
    args: (d, s) => ['serve', '--export', d, '--state-dir', s, '--listen', '127.0.0.1:0'],
    caller: sys(OWNER, OWNER),
    root: sys(0, 0),
    rootIsRoot: true,
    rootCreates: { uid: 0, gid: 0 },
  },
  {
    name: 'gvfs serve --squash root',
    args: (d, s) => ['serve', '--export', d, '--state-dir', s, '--listen', '127.0.0.1:0', '--squash', 'root'],
    caller: sys(OWNER, OWNER),
    root: sys(0, 0, [0]),
    rootIsRoot: false,
    rootCreates: { uid: 65534, gid: 65534 },
  },
  {
    name: 'keyed gvfs proxy-server --export (session account 2001:2001)',
    args: (d, s, k) => ['proxy-server', '--export', d, '--state-dir', s, '--listen', '127.0.0.1:0', '--key', k],
    keyed: true,
    // Whatever the client claims, the session's account is what acts: claim root to make it count.
    caller: sys(0, 0, [0, OTHER_GID]),
    root: sys(0, 0),
    rootIsRoot: false,
    rootCreates: { uid: OWNER, gid: OWNER },
  },
];

const mode = async (p: string) => (await fs.lstat(p)).mode & 0o7777;
const oct = (m: number) => '0' + m.toString(8).padStart(4, '0');

for (const t of TARGETS) {
  describe(`owners and modes through ${t.name}`, { timeout: 240_000 }, () => {
    let base: string;
    let dir: string;
    let proc: GvfsProcess;
    let nfs: RawNfs;
    let root: Buffer;
    let sg: Buffer;

    const ok = (r: { status: number }, what: string) => assert.equal(statusName(r.status), 'OK', what);
    const refused = (r: { status: number }, what: string) => assert.equal(statusName(r.status), 'PERM', what);
    const owner = async (name: string, uid: number, gid: number) => {
      const st = await fs.lstat(path.join(dir, name));
      assert.deepEqual({ uid: st.uid, gid: st.gid }, { uid, gid }, `${name} owned by ${st.uid}:${st.gid}`);
    };
    const modeIs = async (name: string, want: number) => assert.equal(oct(await mode(path.join(dir, name))), oct(want), `mode of ${name}`);
    /** A file made on disk by root, then given to `uid:gid` with `m`. */
    const onDisk = async (name: string, uid: number, gid: number, m: number) => {
      const p = path.join(dir, name);
      await fs.writeFile(p, 'original');
      await fs.chown(p, uid, gid);
      await fs.chmod(p, m);
      return nfs.fh(root, name, t.caller);
    };

    before(async () => {
      base = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-owners-'));
      dir = path.join(base, 'export');
      await fs.mkdir(dir);
      await fs.chmod(dir, 0o777);
      // A setgid directory of a group the caller is not in.
      await fs.mkdir(path.join(dir, 'sg'));
      await fs.chown(path.join(dir, 'sg'), 0, OTHER_GID);
      await fs.chmod(path.join(dir, 'sg'), 0o2777);
      let key: SessionKey | undefined;
      const keyFile = path.join(base, 'session.key');
      if (t.keyed) {
        key = newSessionKey('alice', undefined, { uid: OWNER, gid: OWNER, gids: [] });
        await writeKeyFile(keyFile, key);
      }
      proc = await spawnGvfs(t.args(dir, path.join(base, 'state'), keyFile));
      nfs = await RawNfs.connect(proc.port, key);
      root = await nfs.mount('/', t.caller);
      sg = await nfs.fh(root, 'sg', t.caller);
    });
    after(async () => {
      nfs?.close();
      await proc?.stop();
      if (base) await fs.rm(base, { recursive: true, force: true });
    });

    test('CREATE with uid 0, gid 0 and mode 04777 makes a set-user-ID file of the caller, never of root', async () => {
      ok(await nfs.create(t.caller, root, 'c-root', { uid: 0, gid: 0, mode: 0o4777 }), 'CREATE');
      await owner('c-root', OWNER, OWNER);
      await modeIs('c-root', KERNEL.createSuid); // the kernel keeps S_ISUID on the caller's own new file
      // The attack of issue 14: write a program into it; it still runs as 2001, not as root.
      ok(await nfs.write(t.caller, await nfs.fh(root, 'c-root', t.caller), Buffer.from('\x7fELF...')), 'WRITE');
      const st = await fs.lstat(path.join(dir, 'c-root'));
      assert.ok(st.uid !== 0 || (st.mode & 0o4000) === 0, 'a root-owned set-user-ID file');
    });

    test('CREATE with gid 42 (not a group of the caller) and mode 02777: the caller gets its own group, setgid kept', async () => {
      ok(await nfs.create(t.caller, root, 'c-gid', { gid: OTHER_GID, mode: 0o2777 }), 'CREATE');
      await owner('c-gid', OWNER, OWNER);
      await modeIs('c-gid', KERNEL.createSgid);
    });

    test('MKDIR with uid 0, gid 0 and mode 02777 / 04777: the caller owns it, mkdir ignores set-ID bits', async () => {
      ok(await nfs.mkdir(t.caller, root, 'd-root', { uid: 0, gid: 0, mode: 0o2777 }), 'MKDIR');
      await owner('d-root', OWNER, OWNER);
      await modeIs('d-root', KERNEL.mkdirSgid);
      ok(await nfs.mkdir(t.caller, root, 'd-suid', { uid: 0, mode: 0o4755 }), 'MKDIR');
      await owner('d-suid', OWNER, OWNER);
      await modeIs('d-suid', KERNEL.mkdirSuid);
    });

    test('SYMLINK with uid 0 and gid 42 belongs to the caller', async () => {
      ok(await nfs.symlink(t.caller, root, 'l-root', '/etc/shadow', { uid: 0, gid: OTHER_GID, mode: 0o4777 }), 'SYMLINK');
      await owner('l-root', OWNER, OWNER);
    });

    test('MKNOD (FIFO) with uid 0, gid 0 and mode 06777 belongs to the caller (the kernel keeps the bits on a FIFO)', async () => {
      ok(await nfs.mkfifo(t.caller, root, 'p-root', { uid: 0, gid: 0, mode: 0o6777 }), 'MKNOD');
      await owner('p-root', OWNER, OWNER);
      await modeIs('p-root', KERNEL.mkfifo);
    });

    test('in a setgid directory of group 42: new objects get group 42; a group-executable setgid file loses S_ISGID; subdirectories are setgid', async () => {
      ok(await nfs.create(t.caller, sg, 'f', { mode: 0o2777 }), 'CREATE');
      await owner('sg/f', OWNER, OTHER_GID);
      await modeIs('sg/f', KERNEL.sgCreateX);
      ok(await nfs.create(t.caller, sg, 'f2', { mode: 0o2767 }), 'CREATE');
      await modeIs('sg/f2', KERNEL.sgCreateNoX); // no group-exec: the kernel keeps it
      ok(await nfs.mkdir(t.caller, sg, 'd', { mode: 0o777, gid: 0 }), 'MKDIR');
      await owner('sg/d', OWNER, OTHER_GID);
      await modeIs('sg/d', KERNEL.sgMkdir);
    });

    test('SETATTR: a non-root caller may not give its file away, nor chgrp it to a group it is not in', async () => {
      ok(await nfs.create(t.caller, root, 's-own', { mode: 0o4755 }), 'CREATE');
      const fh = await nfs.fh(root, 's-own', t.caller);
      refused(await nfs.setattr(t.caller, fh, { uid: 0 }), 'chown to root');
      refused(await nfs.setattr(t.caller, fh, { uid: 2002 }), 'chown to another user');
      refused(await nfs.setattr(t.caller, fh, { gid: 0 }), 'chgrp to group 0');
      refused(await nfs.setattr(t.caller, fh, { gid: OTHER_GID }), 'chgrp to group 42');
      refused(await nfs.setattr(t.caller, fh, { uid: 0, gid: 0, mode: 0o6777 }), 'chown with chmod');
      await owner('s-own', OWNER, OWNER);
      await modeIs('s-own', 0o4755);
    });

    test('SETATTR chown (even to the same group) clears S_ISUID and a group-executable S_ISGID', async () => {
      ok(await nfs.create(t.caller, root, 's-chgrp', { mode: 0o6755 }), 'CREATE');
      const fh = await nfs.fh(root, 's-chgrp', t.caller);
      await modeIs('s-chgrp', 0o6755);
      ok(await nfs.setattr(t.caller, fh, { gid: OWNER }), 'chgrp to its own group');
      await modeIs('s-chgrp', KERNEL.chgrpOwn);
      // Both in one call: the new mode's set-ID bits go too (knfsd).
      ok(await nfs.setattr(t.caller, fh, { uid: OWNER, mode: 0o4711 }), 'chown + chmod');
      await modeIs('s-chgrp', 0o711);
    });

    test('SETATTR chmod by the owner: S_ISGID dropped silently for a group it is not in; S_ISUID and sticky allowed', async () => {
      const fh = await onDisk('s-g42', OWNER, OTHER_GID, 0o644);
      ok(await nfs.setattr(t.caller, fh, { mode: 0o2777 }), 'chmod 02777');
      await modeIs('s-g42', KERNEL.chmodSgidForeignGroup);
      ok(await nfs.setattr(t.caller, fh, { mode: 0o4755 }), 'chmod 04755');
      await modeIs('s-g42', KERNEL.chmodSuid);
      ok(await nfs.setattr(t.caller, fh, { mode: 0o1644 }), 'chmod 01644');
      await modeIs('s-g42', KERNEL.chmodSticky);
    });

    test("SETATTR on another user's file: no chmod, no chown (not even a no-op), no explicit times; times 'now' with write permission", async () => {
      const fh = await onDisk('s-roots', 0, 0, 0o666);
      refused(await nfs.setattr(t.caller, fh, { mode: 0o4777 }), 'chmod');
      refused(await nfs.setattr(t.caller, fh, { uid: 0 }), 'no-op chown');
      refused(await nfs.setattr(t.caller, fh, { gid: 0 }), 'no-op chgrp');
      refused(await nfs.setattr(t.caller, fh, { atime: { sec: 1000, nsec: 0 }, mtime: { sec: 1000, nsec: 0 } }), 'explicit times');
      ok(await nfs.setattr(t.caller, fh, { atime: 'server', mtime: 'server' }), "times 'now'");
      await owner('s-roots', 0, 0);
      await modeIs('s-roots', 0o666);
      const ro = await onDisk('s-roots-ro', 0, 0, 0o644);
      assert.equal(statusName((await nfs.setattr(t.caller, ro, { atime: 'server' })).status), 'ACCES', "times 'now' without write permission");
    });

    test('WRITE by a non-root caller clears S_ISUID, and S_ISGID when group-executable or not its group', async () => {
      const a = await onDisk('w-root', 0, 0, 0o6777);
      ok(await nfs.write(t.caller, a, Buffer.from('overwritten')), 'WRITE');
      await modeIs('w-root', KERNEL.writeRoot);
      const b = await onDisk('w-own', OWNER, OWNER, 0o6767);
      ok(await nfs.write(t.caller, b, Buffer.from('x')), 'WRITE');
      await modeIs('w-own', KERNEL.writeOwn); // its own group, no group-exec: S_ISGID stays
      const c = await onDisk('w-g42', OWNER, OTHER_GID, 0o2767);
      ok(await nfs.write(t.caller, c, Buffer.from('x')), 'WRITE');
      await modeIs('w-g42', KERNEL.writeForeignGroup);
      // A set-ID bit set again right after a write (the server's cached pre-write attributes are stale) still goes.
      ok(await nfs.write(t.caller, a, Buffer.from('second'), 100), 'WRITE'); // through the open descriptor: its stat is kept
      await fs.chmod(path.join(dir, 'w-root'), 0o4777);
      ok(await nfs.write(t.caller, a, Buffer.from('again')), 'WRITE');
      await modeIs('w-root', KERNEL.writeRoot);
    });

    test('SETATTR size (truncate) by a non-root caller clears S_ISUID', async () => {
      const fh = await onDisk('t-suid', OWNER, OWNER, 0o4755);
      ok(await nfs.setattr(t.caller, fh, { size: 0 }), 'truncate');
      assert.equal((await fs.lstat(path.join(dir, 't-suid'))).size, 0);
      await modeIs('t-suid', KERNEL.truncateSuid);
    });

    test("LINK of another user's set-user-ID or read-only file is refused (protected_hardlinks); a file it may read and write, or its own, links", async () => {
      const suid = await onDisk('h-suid', 0, 0, 0o4755);
      const ro = await onDisk('h-ro', 0, 0, 0o644);
      const rw = await onDisk('h-rw', 0, 0, 0o666);
      refused(await nfs.link(t.caller, suid, root, 'h-suid-link'), 'link a set-user-ID root file');
      refused(await nfs.link(t.caller, ro, root, 'h-ro-link'), 'link a read-only root file');
      ok(await nfs.link(t.caller, rw, root, 'h-rw-link'), 'link a root file it may read and write');
      ok(await nfs.create(t.caller, root, 'h-own', { mode: 0o4700 }), 'CREATE');
      ok(await nfs.link(t.caller, await nfs.fh(root, 'h-own', t.caller), root, 'h-own-link'), 'link its own set-user-ID file');
      await assert.rejects(fs.lstat(path.join(dir, 'h-suid-link')), { code: 'ENOENT' });
      await assert.rejects(fs.lstat(path.join(dir, 'h-ro-link')), { code: 'ENOENT' });
    });

    if (t.rootIsRoot) {
      test('a root caller (squash none) can still give objects away and keeps the set-ID bits it sets', async () => {
        const fh = await onDisk('r-give', 0, 0, 0o644);
        ok(await nfs.setattr(t.root, fh, { uid: 2002, gid: OTHER_GID }), 'chown by root');
        await owner('r-give', 2002, OTHER_GID);
        ok(await nfs.setattr(t.root, fh, { mode: 0o6755 }), 'chmod by root');
        await modeIs('r-give', 0o6755);
        ok(await nfs.write(t.root, fh, Buffer.from('root writes')), 'WRITE by root');
        await modeIs('r-give', 0o6755); // root has CAP_FSETID
        ok(await nfs.create(t.root, root, 'r-made', { uid: 2002, gid: OTHER_GID, mode: 0o4755 }), 'CREATE by root for 2002');
        await owner('r-made', 2002, OTHER_GID);
        await modeIs('r-made', 0o755); // knfsd applies the ids as a chown after creating: S_ISUID goes
        ok(await nfs.create(t.root, root, 'r-suid', { mode: 0o4755 }), 'CREATE by root for itself');
        await owner('r-suid', 0, 0);
        await modeIs('r-suid', 0o4755);
      });
    } else {
      test('a caller claiming root is not root here: it cannot chown, and what it creates is not root-owned', async () => {
        const fh = await onDisk('r-give', OWNER, OWNER, 0o644);
        const r = await nfs.setattr(t.root, fh, { uid: 0 });
        assert.notEqual(r.status, Nfs3Status.OK, `chown by a squashed/mapped root: ${statusName(r.status)}`);
        await owner('r-give', OWNER, OWNER);
        ok(await nfs.create(t.root, root, 'r-made', { uid: 0, gid: 0, mode: 0o4755 }), 'CREATE');
        await owner('r-made', t.rootCreates.uid, t.rootCreates.gid);
      });
    }

    test('nothing in the export ended up owned by root or by any account but the caller', async () => {
      const bad: string[] = [];
      const walk = async (d: string) => {
        for (const e of await fs.readdir(d, { withFileTypes: true })) {
          const p = path.join(d, e.name);
          const st = await fs.lstat(p);
          const rel = path.relative(dir, p);
          // Made on disk by the test itself, or by the root caller on purpose.
          if (/^(sg|s-roots|s-roots-ro|w-root|r-give|r-made|r-suid|h-suid|h-ro|h-rw|h-rw-link)$/.test(rel)) continue;
          if (st.uid !== OWNER) bad.push(`${rel} ${st.uid}:${st.gid}`);
          if (st.uid === 0 && st.mode & 0o6000) bad.push(`${rel} root-owned set-ID ${oct(st.mode & 0o7777)}`);
          if (e.isDirectory()) await walk(p);
        }
      };
      await walk(dir);
      assert.deepEqual(bad, []);
    });
  });
}

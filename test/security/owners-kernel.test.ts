import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { ALLOWED, KERNEL, REFUSED } from './owners-expected.js';

const run = promisify(execFile);

/**
 * The expectations of owners-and-modes.test.ts come from the kernel: make
 * the same system calls as uid 2001 gid 2001 (setpriv, no other groups) on
 * a local directory and compare. Needs root (to switch to 2001 and to make
 * the root-owned fixtures) and setpriv; a missing one fails under CI.
 */
const SCRIPT = String.raw`
use strict; use warnings; use Fcntl; use POSIX qw(mkfifo);
umask 0;
my $d = shift;
sub st { my @s = lstat("$d/$_[0]") or return "missing"; sprintf("ok %o %d %d", $s[2] & 07777, $s[4], $s[5]) }
sub err { my $e = 0 + $!; return $e == 1 ? "err EPERM" : $e == 13 ? "err EACCES" : "err $e" }
sub out { print "$_[0] $_[1]\n" }
sub mk { my ($n, $m) = @_; sysopen(my $f, "$d/$n", O_CREAT | O_EXCL | O_RDWR, $m) or return err(); close $f; st($n) }
sub wr { my $n = shift; open(my $f, '+<', "$d/$n") or return err(); syswrite($f, "x") or return err(); close $f; st($n) }
out('createSuid', mk('c1', 04777));
out('createSgid', mk('c2', 02777));
out('mkdirSgid', mkdir("$d/d1", 02777) ? st('d1') : err());
out('mkdirSuid', mkdir("$d/d2", 04755) ? st('d2') : err());
out('mkfifo', mkfifo("$d/p1", 06777) ? st('p1') : err());
out('sgCreateX', mk('sg/f', 02777));
out('sgCreateNoX', mk('sg/f2', 02767));
out('sgMkdir', mkdir("$d/sg/d", 0777) ? st('sg/d') : err());
mk('c3', 06755);
out('chgrpOwn', chown(-1, 2001, "$d/c3") ? st('c3') : err());
out('chownToRoot', chown(0, -1, "$d/c1") ? st('c1') : err());
out('chgrpTo42', chown(-1, 42, "$d/c1") ? st('c1') : err());
out('chmodSgidForeignGroup', chmod(02777, "$d/s-g42") ? st('s-g42') : err());
out('chmodSuid', chmod(04755, "$d/s-g42") ? st('s-g42') : err());
out('chmodSticky', chmod(01644, "$d/s-g42") ? st('s-g42') : err());
out('foreignChmod', chmod(0777, "$d/roots") ? st('roots') : err());
out('foreignChownNoop', chown(0, -1, "$d/roots") ? st('roots') : err());
out('foreignChgrpNoop', chown(-1, 0, "$d/roots") ? st('roots') : err());
out('foreignUtimes', utime(1000, 1000, "$d/roots") ? st('roots') : err());
out('foreignUtimesNow', utime(undef, undef, "$d/roots") ? st('roots') : err());
out('foreignUtimesNowReadOnly', utime(undef, undef, "$d/roots-ro") ? st('roots-ro') : err());
out('writeRoot', wr('w-root'));
out('writeOwn', wr('w-own'));
out('writeForeignGroup', wr('w-g42'));
out('linkForeignSuid', link("$d/roots-suid", "$d/l1") ? 'ok' : err());
out('linkForeignReadOnly', link("$d/roots-ro", "$d/l2") ? 'ok' : err());
out('linkForeignReadWrite', link("$d/roots", "$d/l3") ? st('l3') : err());
out('truncateSuid', truncate("$d/t-suid", 0) ? st('t-suid') : err());
`;

describe('the expected owners and modes are what this kernel does', { timeout: 60_000 }, () => {
  let dir: string;
  let got: Map<string, string>;

  before(async () => {
    const missing = process.getuid?.() !== 0 ? 'root' : (await run('setpriv', ['--version']).then(() => '').catch(() => 'setpriv'));
    if (missing) {
      if (process.env.CI) throw new Error(`owners-kernel needs ${missing}`);
      return;
    }
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-kernel-'));
    await fs.chmod(dir, 0o777);
    await fs.mkdir(path.join(dir, 'sg'));
    await fs.chown(path.join(dir, 'sg'), 0, 42);
    await fs.chmod(path.join(dir, 'sg'), 0o2777);
    const fixture = async (name: string, uid: number, gid: number, mode: number) => {
      await fs.writeFile(path.join(dir, name), 'fixture');
      await fs.chown(path.join(dir, name), uid, gid);
      await fs.chmod(path.join(dir, name), mode);
    };
    await fixture('roots', 0, 0, 0o666);
    await fixture('roots-ro', 0, 0, 0o644);
    await fixture('roots-suid', 0, 0, 0o4755);
    await fixture('s-g42', 2001, 42, 0o644);
    await fixture('w-root', 0, 0, 0o6777);
    await fixture('w-own', 2001, 2001, 0o6767);
    await fixture('w-g42', 2001, 42, 0o2767);
    await fixture('t-suid', 2001, 2001, 0o4755);
    const r = await run('setpriv', ['--reuid=2001', '--regid=2001', '--clear-groups', '/usr/bin/perl', '-e', SCRIPT, dir], { timeout: 30_000 });
    got = new Map(r.stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf(' ')), l.slice(l.indexOf(' ') + 1)]));
  });
  after(async () => {
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  test('modes after each call', (t) => {
    if (!got) return t.skip('needs root and setpriv');
    for (const [k, mode] of Object.entries(KERNEL)) {
      const uid = 2001;
      const line = got.get(k) ?? 'missing';
      const m = /^ok ([0-7]+) (\d+) (\d+)$/.exec(line);
      assert.ok(m, `${k}: ${line}`);
      assert.equal(m[1], mode.toString(8), `${k}: kernel made mode 0${m[1]}, the expectation says 0${mode.toString(8)}`);
      if (/^create|^mkdir|^mkfifo|^sg/.test(k)) assert.equal(Number(m[2]), uid, `${k}: owner`);
      if (/^sg/.test(k)) assert.equal(Number(m[3]), 42, `${k}: group of a setgid directory`);
    }
  });

  test('refusals', (t) => {
    if (!got) return t.skip('needs root and setpriv');
    for (const [k, errno] of Object.entries(REFUSED)) assert.equal(got.get(k), `err ${errno}`, k);
    for (const k of ALLOWED) assert.match(got.get(k) ?? 'missing', /^ok /, k);
  });
});

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { FanWatch, type DiskChange } from '../../../src/native/fan-watch.js';
import { hasFile, isRoot, requirePrereq } from '../../helpers/prereq.js';

const run = promisify(execFile);
const sh = (script: string, cwd: string) => run('sh', ['-c', script], { cwd });

/**
 * native/src/fanwatch.c through src/native/fan-watch.ts: changes made by
 * other processes beneath the root are reported as (directory, entry) by
 * inode number and birth time; this process's own changes and changes
 * outside the root are not; a full kernel queue is reported as overflow.
 */
describe('native: fanWatch (changes on the export disk by other programs)', { skip: requirePrereq(isRoot(), hasFile('/usr/bin/setpriv', 'util-linux')), timeout: 180_000 }, () => {
  let top: string;
  let root: string;
  let outside: string;
  let w: FanWatch;
  let seen: DiskChange[] = [];
  let overflows = 0;

  const idOf = async (p: string) => {
    const st = await fs.lstat(p, { bigint: true });
    return { ino: st.ino, gen: st.birthtimeNs };
  };
  const names = (id: { ino: bigint }) => seen.filter((c) => c.entry?.ino === id.ino);
  async function until(what: string, ok: () => boolean, ms = 30_000): Promise<void> {
    for (const t0 = Date.now(); !ok(); ) {
      if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  before(async () => {
    top = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-fanwatch-'));
    root = path.join(top, 'export');
    outside = path.join(top, 'outside');
    await fs.mkdir(root);
    await fs.mkdir(outside);
    w = new FanWatch(root, { changes: (l) => seen.push(...l), overflow: () => overflows++ });
  });
  after(async () => {
    await w?.close();
    if (top) await fs.rm(top, { recursive: true, force: true });
  });

  test('a file written by another process is reported by its inode and birth time, with its directory', async () => {
    await sh('echo x > f', root);
    const f = await idOf(path.join(root, 'f'));
    const r = await idOf(root);
    await until('the change to f', () => names(f).length > 0);
    const c = names(f)[0];
    assert.deepEqual(c.entry, f);
    assert.deepEqual(c.dir, r);
    assert.equal(c.name, 'f');
    assert.ok(names(f).some((x) => x.names), 'the creation did not say the directory names changed');
    // A write alone (no new name): reported, and not as a name change.
    seen = [];
    await sh('echo more >> f', root);
    await until('the append to f', () => names(f).length > 0);
    assert.ok(names(f).every((x) => !x.names), 'a write was reported as a name change');
  });

  test("this process's own changes are not reported (the proxy server logs its own)", async () => {
    seen = [];
    const own0 = w.c.own;
    await fs.writeFile(path.join(root, 'own'), 'mine');
    const own = await idOf(path.join(root, 'own'));
    // Then a change by another process: once it is seen, the earlier one would have been too.
    await sh('echo y > later', root);
    const later = await idOf(path.join(root, 'later'));
    await until('the change to later', () => names(later).length > 0);
    assert.equal(names(own).length, 0, 'our own write was reported');
    assert.ok(w.c.own > own0, 'no event was counted as our own');
  });

  test('changes outside the root are not reported; deep directories and a directory moved in are', async () => {
    seen = [];
    await sh('echo z > o; mkdir -p ../export/a/b/c', outside);
    const o = await idOf(path.join(outside, 'o'));
    await sh('echo deep > a/b/c/d', root);
    const d = await idOf(path.join(root, 'a/b/c/d'));
    await until('the deep change', () => names(d).length > 0);
    assert.deepEqual(names(d)[0].dir, await idOf(path.join(root, 'a/b/c')));
    assert.equal(names(o).length, 0, 'a change outside the root was reported');
    assert.ok(w.c.outside > 0);
    // A directory first seen outside (so remembered as outside), then moved in: its later changes are reported.
    await sh('mkdir m && echo 1 > m/g && echo 2 >> m/g', outside);
    const g = await idOf(path.join(outside, 'm/g'));
    await sh(`mv m ${JSON.stringify(root)}/m && echo 3 >> ${JSON.stringify(root)}/m/g`, outside);
    await until('the change to m/g after the move in', () => names(g).length > 0);
    assert.deepEqual(names(g)[0].dir, await idOf(path.join(root, 'm')));
  });

  test('a removal reports the directory, names changed, and no entry', async () => {
    const r = await idOf(root);
    await sh('echo q > gone', root);
    const gone = await idOf(path.join(root, 'gone'));
    await until('the creation of gone', () => names(gone).length > 0);
    seen = [];
    await sh('rm gone', root);
    await until('the removal', () => seen.some((c) => c.dir.ino === r.ino && c.names && !c.entry && c.name === 'gone'));
  });

  test('a full kernel queue is reported as overflow', async () => {
    const max = Number(readFileSync('/proc/sys/fs/fanotify/max_queued_events', 'utf8'));
    assert.ok(max > 0 && max < 1_000_000, `max_queued_events ${max}`);
    await fs.mkdir(path.join(root, 'many'));
    const o0 = overflows;
    w.pause(true);
    try {
      // More distinct events than the queue holds, while nobody reads it.
      await sh(`i=0; while [ $i -lt ${max + 2000} ]; do : > f$i; i=$((i+1)); done`, path.join(root, 'many'));
    } finally {
      w.pause(false);
    }
    await until('the overflow', () => overflows > o0, 60_000);
    // And it keeps working after.
    seen = [];
    await sh('echo after > after-overflow', root);
    const a = await idOf(path.join(root, 'after-overflow'));
    await until('a change after the overflow', () => names(a).length > 0);
  });

  test('without CAP_SYS_ADMIN it throws EPERM (the caller falls back and says so)', async () => {
    const mod = fileURLToPath(new URL('../../../src/native/fan-watch.js', import.meta.url));
    const code = `import(${JSON.stringify(mod)}).then((m) => { try { new m.FanWatch(${JSON.stringify(root)}, { changes() {}, overflow() {} }); console.log('STARTED'); process.exit(0); } catch (e) { console.log(e.code); } })`;
    // Root without CAP_SYS_ADMIN (dropped from the bounding set, so the exec'd node has it in no set).
    const { stdout } = await run('setpriv', ['--bounding-set', '-sys_admin', '--', process.execPath, '-e', code]);
    assert.equal(stdout.trim(), 'EPERM');
  });

  test('a process that ends with a watch running (and a native job done) exits cleanly, not by abort()', async () => {
    // Regression: the addon released its completion channel after Node had freed it at teardown, and the watch's
    // thread could post into a freed channel: exit status 134 (SIGABRT) for every daemon exiting with a watch.
    const mod = fileURLToPath(new URL('../../../src/native/fan-watch.js', import.meta.url));
    const nat = fileURLToPath(new URL('../../../src/native/native.js', import.meta.url));
    const code = `Promise.all([import(${JSON.stringify(mod)}), import(${JSON.stringify(nat)})]).then(async ([m, n]) => {
      new m.FanWatch(${JSON.stringify(root)}, { changes() {}, overflow() {} });
      await n.statx(-100, ${JSON.stringify(root)}, 0, n.self());
      console.log('STARTED');
    })`; // and the process ends by itself: the watch does not keep it alive, teardown runs in full
    for (let i = 0; i < 3; i++) {
      const r = await new Promise<{ code: number | null; signal: string | null; out: string }>((res) => {
        execFile(process.execPath, ['-e', code], (err, stdout) => res({ code: err ? ((err as { code?: number }).code ?? null) : 0, signal: err ? ((err as { signal?: string }).signal ?? null) : null, out: stdout }));
      });
      assert.deepEqual({ code: r.code, signal: r.signal, out: r.out.trim() }, { code: 0, signal: null, out: 'STARTED' });
    }
  });

  test('close resolves once the thread has delivered its last batch; twice is harmless', async () => {
    const x = new FanWatch(root, { changes() {}, overflow() {} });
    await x.close();
    await x.close();
    x.pause(true); // after close: nothing happens
  });
});

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { describeRun, ensureFsx, lastFsync, runFsx } from './helpers.js';
import { SEEDS } from './suite.js';

const LOCAL_OPS = Number(process.env.GVFS_FSX_LOCAL_OPS ?? 5000);

/**
 * The control: gvfs-fsx on a local tmpfs must pass for every seed (a
 * failure here is the exerciser's bug, not the mount's), and the checks
 * themselves must fail when the file is not what the model says.
 */
describe('gvfs-fsx on a local tmpfs (control) and its own checks', { timeout: 5 * 60_000 }, () => {
  let dir: string;
  before(async () => {
    await ensureFsx();
    // /dev/shm is tmpfs on Linux; the system temp directory otherwise.
    dir = await fs.mkdtemp(path.join(existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'gvfs-fsx-'));
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  for (const seed of SEEDS) {
    test(`seed ${seed}: ${LOCAL_OPS} operations pass on tmpfs, and the file ends as the model`, async () => {
      const file = path.join(dir, `control-${seed}.bin`);
      const r = await runFsx(['-S', String(seed), '-N', String(LOCAL_OPS), file]);
      assert.equal(r.result, 'ok', describeRun(r));
      assert.match(r.stdout, /read \d+ write \d+ mapread [1-9]\d* mapwrite [1-9]\d* truncate [1-9]\d* append [1-9]\d* copy_range [1-9]\d* close\/reopen [1-9]\d* fsync [1-9]\d*/);
      const k = await runFsx(['-S', String(seed), '-K', `${LOCAL_OPS}:${LOCAL_OPS}`, file]);
      assert.equal(k.code, 0, describeRun(k));
    });
  }

  test('a file changed behind its back: exit 1 with the seed, the history and where it differs', async () => {
    const file = path.join(dir, 'tampered.bin');
    const run = runFsx(['-S', '5', '-N', '10000000', '-P', '1', file], { timeoutMs: 120_000 });
    // Scribble over the start of the file until the exerciser notices.
    let done = false;
    void run.then(() => (done = true));
    while (!done) {
      const fh = await fs.open(file, 'r+').catch(() => undefined);
      if (fh) {
        await fh.write(Buffer.alloc(64, 0xee), 0, 64, 100);
        await fh.close();
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    const r = await run;
    assert.equal(r.code, 1, describeRun(r));
    assert.equal(r.result, 'mismatch');
    assert.match(r.stderr, /MISMATCH seed 5 op \d+/);
    assert.match(r.stderr, /last \d+ operations:\n {2}#\d+/);
    assert.match(r.stderr, /reproduce: gvfs-fsx -S 5 -N \d+/);
    assert.match(r.stderr, /expected 0x[0-9a-f]+, (actual|fstat) 0x[0-9a-f]+/);
  });

  test('-b N (begin late, for replays): ops before N change only the model, and the run ends with the same file as a whole run', async () => {
    const whole = path.join(dir, 'b-whole.bin');
    const late = path.join(dir, 'b-late.bin');
    assert.equal((await runFsx(['-S', '3', '-N', '3000', whole])).result, 'ok');
    const r = await runFsx(['-S', '3', '-b', '2900', '-N', '3000', late]);
    assert.equal(r.result, 'ok', describeRun(r));
    // Only 101 operations ran on the file.
    const ran = [...r.stdout.matchAll(/(?:read|write|mapread|mapwrite|truncate|append|copy_range|close\/reopen|fsync) (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
    assert.equal(ran, 101, r.stdout);
    assert.deepEqual(await fs.readFile(late), await fs.readFile(whole));
  });

  test('another path with other contents (-C): the check after close fails', async () => {
    const file = path.join(dir, 'c-main.bin');
    const other = path.join(dir, 'c-other.bin');
    await fs.writeFile(other, 'not the same file');
    const r = await runFsx(['-S', '9', '-N', '2000', '-C', other, file]);
    assert.equal(r.code, 1, describeRun(r));
    assert.match(r.stderr, /through the other path/);
  });

  test('crash check (-K F:K): bytes held between the fsync and op K pass; a byte never held, or a size never had, fails', async () => {
    const file = path.join(dir, 'crash.bin');
    const log = path.join(dir, 'crash.log');
    const ok = await runFsx(['-S', '7', '-N', '800', '-f', log, file]);
    assert.equal(ok.result, 'ok', describeRun(ok));
    const f = await lastFsync(log);
    assert.ok(f > 0 && f <= 800, `last fsync at op ${f}`);
    // The file at op 800 is one the file held after the fsync; and exactly the state at 800.
    assert.equal((await runFsx(['-S', '7', '-K', `${f}:800`, file])).code, 0);
    assert.equal((await runFsx(['-S', '7', '-K', '800:800', file])).code, 0);
    // An older fsync window that ends before the last operations does not explain the final file.
    const early = await runFsx(['-S', '7', '-K', '300:300', file]);
    assert.equal(early.code, 1, describeRun(early));
    // One byte changed to a value it never had: found, with its offset.
    const data = await fs.readFile(file);
    const at = Math.floor(data.length / 2);
    const orig = data[at];
    const fh = await fs.open(file, 'r+');
    await fh.write(Buffer.from([orig ^ 0x80]), 0, 1, at);
    const bad = await runFsx(['-S', '7', '-K', '800:800', file]);
    assert.equal(bad.code, 1, describeRun(bad));
    assert.match(bad.stderr, new RegExp(`CRASH MISMATCH seed 7: 1 bytes .* first at 0x${at.toString(16)}:`));
    // A size the file never had.
    await fh.write(Buffer.from([orig]), 0, 1, at);
    await fh.truncate(data.length - 1);
    await fh.close();
    const short = await runFsx(['-S', '7', '-K', '800:800', file]);
    assert.equal(short.code, 1, describeRun(short));
    assert.match(short.stderr, /was never the file's size/);
  });

  test('crash check: op K that extends the file may have landed in part, up to a page boundary (one write() in several FUSE requests); never elsewhere', async () => {
    // Seed 11: op 133 appends 0x3ec7f..0x3fe25 (a kill -9 of a write-through mount left 0x3f000 once); op 132 writes inside the file.
    const file = path.join(dir, 'partial.bin');
    const whole = await runFsx(['-S', '11', '-b', '133', '-N', '133', file]);
    assert.equal(whole.result, 'ok', describeRun(whole));
    assert.equal((await fs.stat(file)).size, 0x3fe25);
    await fs.truncate(file, 0x3f000);
    assert.equal((await runFsx(['-S', '11', '-K', '117:133', file])).code, 0, 'the append under way, up to a page boundary');
    const k132 = await runFsx(['-S', '11', '-K', '117:132', file]);
    assert.equal(k132.code, 1, `an op that returned cannot have landed in part: ${describeRun(k132)}`);
    await fs.truncate(file, 0x3f001);
    const odd = await runFsx(['-S', '11', '-K', '117:133', file]);
    assert.equal(odd.code, 1, `not at a page boundary: ${describeRun(odd)}`);
    assert.match(odd.stderr, /was never the file's size/);
  });
});

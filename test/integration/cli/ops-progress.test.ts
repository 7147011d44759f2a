import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { GVFS_CLI, gvfsRun } from '../../helpers/cli-run.js';
import { hasFile, requirePrereq } from '../../helpers/prereq.js';

const run = promisify(execFile);

/**
 * Progress of gvfs meta gen (bytes scanned) in its three forms: a bar with
 * rate and ETA on a terminal (a pseudo-terminal from script(1)), plain
 * lines without one, JSON event lines with --json ending with the done
 * event; and gvfs flush --json ends with its done event too.
 */
describe('progress display', { timeout: 300_000 }, () => {
  let dir: string;
  let files: string[];
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-progress-'));
    await fs.mkdir(path.join(dir, '.gvfs-meta'));
    files = [path.join(dir, 'a.img'), path.join(dir, 'b.img')];
    const h = await fs.open(files[0], 'w');
    for (let i = 0; i < 48; i++) await h.write(Buffer.alloc(1 << 20, i + 1));
    await h.close();
    await fs.truncate(files[1], 16 << 20).catch(async () => fs.writeFile(files[1], Buffer.alloc(0)).then(() => fs.truncate(files[1], 16 << 20)));
  });
  after(() => fs.rm(dir, { recursive: true, force: true }));

  test('on a terminal: a bar with percentage, rate and ETA on stderr', { skip: requirePrereq(hasFile('/usr/bin/script', 'util-linux')) }, async () => {
    const cmd = [process.execPath, GVFS_CLI, 'meta', 'gen', ...files].map((a) => `'${a}'`).join(' ');
    // script -qfc gives the command a pseudo-terminal as stdin, stdout and stderr; it copies what appears to its stdout.
    const { stdout } = await run('script', ['-qfec', cmd, '/dev/null'], { env: { ...process.env, GVFS_PROGRESS: '' }, maxBuffer: 64 << 20 });
    assert.match(stdout, /gvfs meta gen \[[█░]+\] \d+% \| [\d.]+ \w+ of 64\.0 MiB \| [\d.]+ \w+\/s \| ETA [^|]+\| /);
    assert.match(stdout, /\[█{30}\] 100% \| 64\.0 MiB of 64\.0 MiB/);
    assert.match(stdout, /\r|\x1b\[/, 'redrawn in place');
    assert.match(stdout, /a\.img: 768 blocks of 64K/);
  });

  test('without a terminal: plain progress lines on stderr, no escapes; stdout as before', async () => {
    const r = await gvfsRun(['meta', 'gen', ...files], { env: { GVFS_PROGRESS_INTERVAL_MS: '20' } });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('gvfs meta gen:'));
    assert.match(lines[0], /^gvfs meta gen: 64\.0 MiB to go$/);
    assert.match(lines.at(-1)!, /^gvfs meta gen: done: 64\.0 MiB in \d+ s/);
    assert.ok(lines.some((l) => /^gvfs meta gen: a\.img: 0 B of 64\.0 MiB \(0%\)$/.test(l)), lines.join('\n'));
    assert.ok(lines.some((l) => /^gvfs meta gen: b\.img: 48\.0 MiB of 64\.0 MiB \(75%\)/.test(l)), lines.join('\n'));
    assert.doesNotMatch(r.stderr, /\r|\x1b/);
    assert.match(r.stdout, /^.*a\.img: 768 blocks of 64K, 0 zero/m);
  });

  test('--json: one event per line on stdout, done last with the result; nothing on stderr', async () => {
    const r = await gvfsRun(['meta', 'gen', '--json', ...files], { env: { GVFS_PROGRESS_INTERVAL_MS: '5' } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const ev = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    assert.deepEqual(ev[0], { event: 'start', op: 'meta gen', unit: 'bytes', total: 64 << 20 });
    const done = ev.at(-1)!;
    assert.equal(done.event, 'done');
    assert.equal(ev.filter((e) => e.event === 'done').length, 1);
    assert.deepEqual(done.files.map((f: { file: string; zeroBlocks: number }) => [path.basename(f.file), f.zeroBlocks]), [['a.img', 0], ['b.img', 256]]);
    assert.deepEqual(ev.filter((e) => e.event === 'stage').map((e) => e.stage), ['a.img', 'b.img']);
    const prog = ev.filter((e) => e.event === 'progress');
    assert.ok(prog.length >= 1);
    let last = 0;
    for (const p of prog) {
      assert.ok(p.done >= last && p.done <= p.total, JSON.stringify(p));
      assert.equal(p.total, 64 << 20);
      assert.ok(p.etaSeconds === null || p.etaSeconds >= 0);
      last = p.done;
    }
  });

  test('a failing --json command ends with an error event and a non-zero status', async () => {
    const r = await gvfsRun(['meta', 'gen', '--json', path.join(dir, 'missing.img')]);
    assert.notEqual(r.code, 0);
    const ev = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    assert.equal(ev.at(-1)!.event, 'error');
    assert.match(ev.at(-1)!.message, /missing\.img/);
  });

  test('gvfs flush --json: events end with the done event carrying the sessions', async () => {
    const cache = path.join(dir, 'cache');
    await fs.mkdir(path.join(cache, 'sessions'), { recursive: true });
    const r = await gvfsRun(['flush', '--cache-dir', cache, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const ev = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    assert.equal(ev[0].event, 'start');
    assert.deepEqual({ event: ev.at(-1)!.event, op: ev.at(-1)!.op, sessions: ev.at(-1)!.sessions }, { event: 'done', op: 'flush', sessions: [] });
  });
});

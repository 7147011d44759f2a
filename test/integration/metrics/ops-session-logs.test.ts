import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { runGvfs, spawnGvfs, type GvfsProcess, type LogLine } from '../../helpers/gvfs-proc.js';
import { keyFile } from '../../helpers/key-file.js';
import { tempDir } from '../../helpers/local-server.js';

const run = promisify(execFile);

/**
 * Issue 23, logs an operator can act on: a flush failure names the session,
 * the server (peer), the file's path in the export (not a hex handle) and
 * the reason, at warn; every line of a proxy client names its session; the
 * proxy server names the session on the lines about a proven connection;
 * a lost link names session and peer. Real daemons, their stderr scraped.
 */
describe('session, peer and path in the daemons\' log lines', { timeout: 300_000 }, () => {
  let base: string;
  let exp: string;
  let key: { file: string; key: { id: string } };
  let ps: GvfsProcess;
  let pc: GvfsProcess;
  let cacheDir: string;

  before(async () => {
    base = await tempDir('gvfs-session-logs-');
    exp = path.join(base, 'export');
    await fs.mkdir(path.join(exp, 'projects', 'run 1'), { recursive: true });
    key = await keyFile(base, 'alice.key');
    cacheDir = path.join(base, 'cache');
    ps = await spawnGvfs(['proxy-server', '--export', `${exp}=/`, '--key', key.file, '--state-dir', path.join(base, 'ps-state'), '--listen', '127.0.0.1:0']);
    pc = await spawnGvfs(['proxy-client', '--server', `127.0.0.1:${ps.port}`, '--key', key.file, '--cache-dir', cacheDir, '--write-back', '--dirty-max-age', '600']);
  });
  after(async () => {
    await pc?.stop();
    await ps?.stop();
    if (base) await fs.rm(base, { recursive: true, force: true });
  });

  test('a flush the server refuses (file removed there: STALE) is a warn line with session, peer, path and reason', async () => {
    const src = path.join(base, 'src.bin');
    await fs.writeFile(src, randomBytes(300_000));
    await run('nfs-cp', [src, `nfs://127.0.0.1//projects/run 1/out.bin?version=3&nfsport=${pc.port}&mountport=${pc.port}`], { timeout: 60_000 });
    // Journalled, not delivered (write-back, 600 s age): the server has the file (CREATE went through) but not the bytes.
    assert.equal((await fs.stat(path.join(exp, 'projects', 'run 1', 'out.bin'))).size, 0);
    await fs.unlink(path.join(exp, 'projects', 'run 1', 'out.bin'));
    const r = await runGvfs(['flush', '--cache-dir', cacheDir]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /FAILED file [0-9a-f]+: STALE: .* path \/projects\/run 1\/out\.bin/);
    const line = await pc.waitLog((l) => /flush failed/.test(l.msg ?? ''), 30_000);
    assert.equal(line.level, 40, `not a warn line: ${line.raw}`);
    assert.equal(line.path, '/projects/run 1/out.bin', line.raw);
    assert.equal(line.session, key.key.id, line.raw);
    assert.equal(line.peer, `127.0.0.1:${ps.port}`, line.raw);
    assert.equal(line.code, 'STALE', line.raw);
    assert.ok(typeof line.reason === 'string' && line.reason.length > 0, line.raw);
    assert.doesNotMatch(line.msg!, /[0-9a-f]{40}/, 'the message itself is a hex handle');
    // Discarding names the file too.
    await runGvfs(['flush', '--cache-dir', cacheDir, '--discard']);
    const d = await pc.waitLog((l) => /DISCARDED/.test(l.msg ?? ''), 30_000);
    assert.equal(d.path, '/projects/run 1/out.bin', d.raw);
    assert.equal(d.session, key.key.id, d.raw);
  });

  test('every line of the proxy client names its session; the proxy server names it on the proven connection', async () => {
    const all = (ls: LogLine[]) => ls.filter((l) => typeof l.level === 'number');
    const pcLines = all(pc.lines);
    assert.ok(pcLines.length > 3, pc.log());
    for (const l of pcLines) assert.equal(l.session, key.key.id, `a proxy client line without its session: ${l.raw}`);
    // The process-wide fields are copied into each line: one line's own fields never leak into the next.
    for (const l of pcLines) if (l.msg !== 'cache: ready') assert.equal(l.blockSize, undefined, `fields of another line: ${l.raw}`);
    const proven = await ps.waitLog((l) => l.msg === 'connection proven', 30_000);
    assert.equal(proven.session, key.key.id, proven.raw);
    assert.equal(proven.user, 'alice', proven.raw);
  });

  test('a lost link is a warn line with the session and the peer', async () => {
    await ps.stop();
    const lost = await pc.waitLog((l) => /link lost/.test(l.msg ?? ''), 60_000);
    assert.equal(lost.level, 40, lost.raw);
    assert.equal(lost.session, key.key.id, lost.raw);
    assert.match(String(lost.peer), new RegExp(`127\\.0\\.0\\.1:${ps.port}`), lost.raw);
    assert.ok(lost.reason, lost.raw);
    // The server's side: the proven connection's end, with the session.
    const closed = ps.lines.find((l) => l.msg === 'proven connection closed');
    assert.equal(closed?.session, key.key.id, ps.log());
  });
});

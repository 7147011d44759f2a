import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { tempDir } from '../../../helpers/local-server.js';
import { hasFile, isRoot, requirePrereq } from '../../../helpers/prereq.js';
import { syncFaults } from '../../../helpers/sync-faults.js';

const run = promisify(execFile);
const LOCAL_EXPORT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'src', 'backends', 'local-export', 'local-export.js');

/**
 * In a child process with every sync 300 ms late: open an export of `exp`, start a CREATE in its root for
 * each of `creates` (name, attributes), call close() at once. What each CREATE answered ('ok' or its error)
 * and the order in which the CREATEs and the close() ended.
 */
async function closeWhileCreating(d: string, exp: string, creates: Array<[string, Record<string, number>]>): Promise<{ results: string[]; order: string[] }> {
  await fs.mkdir(exp);
  const child = `
    const { LocalExport } = await import(${JSON.stringify(LOCAL_EXPORT)});
    const e = await LocalExport.open({ root: ${JSON.stringify(exp)}, stateDir: ${JSON.stringify(`${exp}.state`)} });
    const cred = { flavor: 1, uid: 0, gid: 0, gids: [] };
    const order = [];
    const creates = ${JSON.stringify(creates)}.map(([name, attrs]) => e.create(cred, e.rootHandle, name, { mode: 'guarded', attrs }).then(
      () => { order.push('create'); return 'ok'; },
      (err) => { order.push('create'); return err.code + ': ' + err.message; }));
    await e.close().then(() => order.push('close'));
    const results = await Promise.all(creates);
    console.log(JSON.stringify({ results, order }));
  `;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', child], {
    env: { ...process.env, LD_PRELOAD: await syncFaults(d), GVFS_SYNC_DELAY_MS: '300', GVFS_LOG_LEVEL: 'error' },
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as { results: string[]; order: string[] };
}

/**
 * Closing an export while changes are still in flight (a server stopping
 * with calls under way): a change queued behind slow syncs opens beneath
 * the export's root descriptor only when it runs. Closed under it, the
 * change failed (EBADF) — or, had the number been handed to another file
 * meanwhile, would have been made beneath that. close() waits for the
 * calls in flight, then for their native jobs.
 * The process runs with tools/faults/sync-faults.c making every sync take
 * 300 ms, so eight CREATEs keep the four sync-lane threads busy and four
 * wait in the queue when close() is called.
 */
describe('local export: close() with changes in flight', { skip: requirePrereq(isRoot(), hasFile('/usr/bin/cc', 'build-essential')), timeout: 60_000 }, () => {
  const dir = tempDir('gvfs-close-inflight-');
  after(async () => fs.rm(await dir, { recursive: true, force: true }));

  test('eight CREATEs under way, then close(): every one completes, and close() returns after the last', async () => {
    const d = await dir;
    const exp = path.join(d, 'export');
    const r = await closeWhileCreating(d, exp, Array.from({ length: 8 }, (_, i) => [`f${i}`, { mode: 0o644 }]));
    assert.deepEqual(r.results, Array(8).fill('ok'), 'every CREATE completed');
    assert.equal(r.order.at(-1), 'close', `close() returned before a CREATE: ${r.order.join(', ')}`);
    assert.deepEqual((await fs.readdir(exp)).sort(), ['f0', 'f1', 'f2', 'f3', 'f4', 'f5', 'f6', 'f7']);
  });

  test('a call of several steps under way (a CREATE given away: create and sync, chown, sync again), then close(): it completes', async () => {
    const d = await dir;
    const exp = path.join(d, 'export2');
    // Between two steps no job of the call is in flight: a close() that waited only for the jobs (whenIdle)
    // closed the root descriptor there, and the call's next step failed.
    const r = await closeWhileCreating(d, exp, [['g0', { mode: 0o644, uid: 2001, gid: 2001 }]]);
    assert.deepEqual(r.results, ['ok'], 'the CREATE completed');
    assert.equal(r.order.at(-1), 'close', `close() returned before a CREATE: ${r.order.join(', ')}`);
    assert.equal((await fs.stat(path.join(exp, 'g0'))).uid, 2001, 'g0 given away');
  });
});

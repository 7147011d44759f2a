import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { tempDir } from '../../helpers/local-server.js';
import { hasFile, isRoot, requirePrereq } from '../../helpers/prereq.js';

const run = promisify(execFile);
// dist/test/unit/native → the repository (tools/ is not compiled into dist).
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
const NATIVE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'src', 'native', 'native.js');

/**
 * The native pool's start when the process cannot make all its threads
 * (tools/faults/thread-faults.c fails one pthread_create): the load throws,
 * and a later load starts what is missing — above all the sync lane,
 * without which every namespace change would make its change and never
 * complete.
 */
describe('native pool: a start that falls short', { skip: requirePrereq(isRoot(), hasFile('/usr/bin/cc', 'build-essential')), timeout: 60_000 }, () => {
  const dir = tempDir('gvfs-poolstart-');
  after(async () => fs.rm(await dir, { recursive: true, force: true }));

  for (const k of [3, 6]) {
    test(`thread ${k} of the pool fails: the load throws, the next load completes a create and a rename`, async () => {
      const d = await dir;
      const so = path.join(d, 'thread-faults.so');
      await run('cc', ['-O2', '-Wall', '-shared', '-fPIC', '-o', so, path.join(REPO, 'tools', 'faults', 'thread-faults.c'), '-ldl', '-lpthread']);
      const exp = path.join(d, `exp${k}`);
      await fs.mkdir(exp);
      const child = `
        const N = await import(${JSON.stringify(NATIVE)});
        let first;
        try { N.info(); first = 'loaded'; } catch (e) { first = 'threw: ' + e.message; }
        const fs = await import('node:fs');
        const root = fs.openSync(${JSON.stringify(exp)}, 'r');
        const st = fs.fstatSync(root, { bigint: true });
        const d = { rel: '', ino: st.ino, gen: st.birthtimeNs };
        const t = setTimeout(() => { console.log(JSON.stringify({ first, hung: true })); process.exit(3); }, 20000);
        const c = await N.inDir(root, d, { op: 'create', name: 'f', mode: 0o644 }, N.self());
        fs.closeSync(c.fd);
        await N.renameIn(root, d, 'f', d, 'g', 0, N.self());
        clearTimeout(t);
        console.log(JSON.stringify({ first, threads: N.info().threads, names: fs.readdirSync(${JSON.stringify(exp)}) }));
      `;
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', child], { env: { ...process.env, LD_PRELOAD: so, GVFS_FAIL_THREAD: String(k) } });
      const r = JSON.parse(stdout.trim().split('\n').pop()!);
      assert.match(r.first, /^threw: .*cannot start the worker threads/, 'the first load throws');
      assert.equal(r.hung, undefined, 'the create and the rename completed');
      assert.equal(r.threads, 4);
      assert.deepEqual(r.names, ['g']);
    });
  }
});

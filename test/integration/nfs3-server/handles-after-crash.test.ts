import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { RemoteNfs } from '../../../src/backends/remote-nfs/remote-nfs.js';
import { StableHow } from '../../../src/nfs3/constants.js';
import { spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { ROOT, tempDir } from '../../helpers/local-server.js';

/**
 * The local export's name journal (ino → parent, name) is written in groups
 * every 50 ms and never fsync'd: a crash loses the last group. Its promise
 * is that a handle is then found again by a search of the export and never
 * answered with another file. Here `gvfs serve` is killed (SIGKILL) right
 * after renames, removals and re-creations under the old names, so the
 * journal (as the crash left it, and then rolled back to before all of
 * them: the most a crash can lose) places old handles at names that now
 * hold other files.
 */
describe('file handles after the server is killed mid-journal', { timeout: 300_000 }, () => {
  const base = tempDir('gvfs-handles-crash-');
  let server: GvfsProcess | undefined;
  let client: RemoteNfs | undefined;
  after(async () => {
    await client?.close();
    await server?.stop();
    await fs.rm(await base, { recursive: true, force: true });
  });

  test('renamed, removed and re-created names: every old handle reads its own file or answers STALE, after SIGKILL and after losing the whole journal tail', async () => {
    const dir = await base;
    const exp = path.join(dir, 'export');
    const state = path.join(dir, 'state');
    await fs.mkdir(exp);
    const journal = path.join(state, 'names.journal');
    const start = async () => {
      server = await spawnGvfs(['serve', '--export', exp, '--listen', '127.0.0.1:0', '--state-dir', state]);
      client = new RemoteNfs({ host: '127.0.0.1', port: server.port, timeoutMs: 60_000 });
      return (await client.mount('/', ROOT)).fh;
    };
    const kill9 = async () => {
      await client!.close();
      server!.proc.kill('SIGKILL');
      await once(server!.proc, 'exit');
    };
    const make = async (d: Buffer, name: string, text: string) => {
      const fh = (await client!.create(ROOT, d, name, { mode: 'unchecked', attrs: { mode: 0o644 } })).fh!;
      await client!.write(ROOT, fh, 0, Buffer.from(text), StableHow.FILE_SYNC);
      return fh;
    };
    const text = async (fh: Buffer) => (await client!.read(ROOT, fh, 0, 4096)).data.toString();
    const N = 50;

    // Phase 1: a/f0..f49 and a/sub/x, then a clean stop (the journal has all of them).
    let root = await start();
    const a = (await client!.mkdir(ROOT, root, 'a', { mode: 0o755 })).fh!;
    const b = (await client!.mkdir(ROOT, root, 'b', { mode: 0o755 })).fh!;
    const old: Buffer[] = [];
    for (let i = 0; i < N; i++) old.push(await make(a, `f${i}`, `old ${i}`));
    const sub = (await client!.mkdir(ROOT, a, 'sub', { mode: 0o755 })).fh!;
    const subX = await make(sub, 'x', 'old x');
    await client!.close();
    await server!.stop();
    const phase1Journal = await fs.readFile(journal);

    // Phase 2: move f0..f24 to b/g*, put new files at their old names, remove f25..f29, move the
    // directory a/sub to b/moved and make a new a/sub/x; then SIGKILL right after the last reply.
    root = await start();
    const fresh: Buffer[] = [];
    for (let i = 0; i < 25; i++) {
      await client!.rename(ROOT, a, `f${i}`, b, `g${i}`);
      fresh.push(await make(a, `f${i}`, `new ${i}`));
    }
    for (let i = 25; i < 30; i++) await client!.remove(ROOT, a, `f${i}`);
    await client!.rename(ROOT, a, 'sub', b, 'moved');
    const sub2 = (await client!.mkdir(ROOT, a, 'sub', { mode: 0o755 })).fh!;
    const newX = await make(sub2, 'x', 'new x');
    await kill9();

    const check = async (when: string) => {
      for (let i = 0; i < 25; i++) {
        assert.equal(await text(old[i]), `old ${i}`, `${when}: the handle of f${i} (moved to b/g${i}) read another file`);
        assert.equal(await text(fresh[i]), `new ${i}`, `${when}: the new a/f${i}`);
        assert.ok((await client!.lookup(ROOT, b, `g${i}`)).fh.equals(old[i]), `${when}: b/g${i} has another handle than before the move`);
      }
      for (let i = 25; i < 30; i++) await assert.rejects(client!.getattr(ROOT, old[i]), (e: Error & { code?: string }) => e.code === 'STALE', `${when}: removed f${i} must be STALE`);
      for (let i = 30; i < N; i++) assert.equal(await text(old[i]), `old ${i}`, `${when}: untouched f${i}`);
      assert.equal(await text(subX), 'old x', `${when}: x of the moved directory`);
      assert.equal(await text(newX), 'new x', `${when}: x of the new a/sub`);
      assert.ok((await client!.lookup(ROOT, root, 'b')).fh.equals(b));
    };

    // As the crash left the journal.
    root = await start();
    await check('after SIGKILL');
    await kill9();

    // The whole of phase 2 lost from the journal (the most a crash can lose): every moved handle is found by search.
    await fs.writeFile(journal, phase1Journal);
    root = await start();
    await check('journal rolled back to before the changes');
  });
});

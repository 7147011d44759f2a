import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fuseSkip, startIssue15Mount, type Issue15Mount, type MountKind } from './issue15-helper.js';

/**
 * Issue 15, failure 3: rename() of one hard link onto another of the same
 * file must do nothing (POSIX); the source name answered ENOENT until its
 * directory was listed again (the front end took it out of the listing it
 * answers "absent" from).
 */
for (const kind of ['no-cache', 'write-back'] as MountKind[]) {
  describe(`issue 15 (3): rename of a hard link onto another link of the same file, ${kind}`, { skip: fuseSkip(), timeout: 120_000 }, () => {
    let t: Issue15Mount;
    before(async () => {
      t = await startIssue15Mount(kind);
    });
    after(async () => {
      await t?.stop();
    });

    test('link(d/a, d/b); rename(d/b, d/a): both names stay, same file, nothing changes', async () => {
      const d = path.join(t.dir, 'd');
      await fs.mkdir(d);
      for (let i = 0; i < 5; i++) {
        const a = path.join(d, `a${i}`);
        const b = path.join(d, `b${i}`);
        await fs.writeFile(a, `content ${i}`);
        await fs.link(a, b);
        // A complete listing first: the front end answers "absent" from it.
        assert.deepEqual((await fs.readdir(d)).filter((n) => n.endsWith(String(i))).sort(), [`a${i}`, `b${i}`]);
        await fs.rename(b, a);
        const [sa, sb] = [await fs.stat(a), await fs.stat(b)];
        assert.equal(sb.ino, sa.ino);
        assert.equal(sb.nlink, 2);
        assert.equal(await fs.readFile(b, 'utf8'), `content ${i}`);
        assert.deepEqual((await fs.readdir(d)).filter((n) => n.endsWith(String(i))).sort(), [`a${i}`, `b${i}`]);
        // The server agrees.
        assert.equal((await fs.stat(path.join(t.up, 'd', `b${i}`))).nlink, 2);
      }
      // A real rename onto a link of another file still replaces it.
      await fs.writeFile(path.join(d, 'x'), 'x');
      await fs.rename(path.join(d, 'x'), path.join(d, 'a0'));
      assert.equal(await fs.readFile(path.join(d, 'a0'), 'utf8'), 'x');
      assert.equal(await fs.readFile(path.join(d, 'b0'), 'utf8'), 'content 0');
      assert.equal((await fs.stat(path.join(d, 'b0'))).nlink, 1);
      await assert.rejects(fs.stat(path.join(d, 'x')), { code: 'ENOENT' });
    });
  });
}

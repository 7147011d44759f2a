import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fuseSkip, startIssue15Mount, type Issue15Mount } from './issue15-helper.js';

/**
 * Issue 15, failure 4: attributes seen through one name of a file after a
 * change made through another (nlink after link(), mode / owner / ctime
 * after chmod / chown) were stale for up to the attribute timeout.
 * libfuse 2's high-level API gives each name its own kernel inode, so the
 * kernel keeps no attributes of its own (attr_timeout 0); the front end's
 * cache is per file, not per name.
 */
describe('issue 15 (4): attributes through another hard link', { skip: fuseSkip(), timeout: 120_000 }, () => {
  let t: Issue15Mount;
  before(async () => {
    // A long attribute timeout: nothing here may rely on it running out.
    t = await startIssue15Mount('no-cache', ['--attr-timeout', '30']);
  });
  after(async () => {
    await t?.stop();
  });

  test('nlink, mode, owner and ctime agree through every name at once', async () => {
    const a = path.join(t.dir, 'a');
    const b = path.join(t.dir, 'b');
    const c = path.join(t.dir, 'c');
    await fs.writeFile(a, 'x');
    assert.equal((await fs.stat(a)).nlink, 1);
    await fs.link(a, b);
    assert.equal((await fs.stat(a)).nlink, 2, 'nlink through the old name after link()');
    await fs.link(b, c);
    assert.equal((await fs.stat(a)).nlink, 3);
    assert.equal((await fs.stat(b)).nlink, 3);
    for (const mode of [0o600, 0o640, 0o604]) {
      await fs.chmod(b, mode);
      for (const n of [a, b, c]) assert.equal((await fs.stat(n)).mode & 0o777, mode, `mode through ${path.basename(n)}`);
    }
    const before = (await fs.stat(c)).ctimeMs;
    await new Promise((r) => setTimeout(r, 20));
    await fs.chown(a, 2001, 3000);
    const sc = await fs.stat(c);
    assert.equal(sc.gid, 3000);
    assert.ok(sc.ctimeMs > before, 'ctime through another name after chown');
    await fs.unlink(a);
    assert.equal((await fs.stat(b)).nlink, 2, 'nlink through another name after unlink()');
  });
});

import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { Backend } from '../../../../src/backend/backend.js';
import { FsError } from '../../../../src/backend/errors.js';
import { LocalExport } from '../../../../src/backends/local-export/local-export.js';
import type { WccData } from '../../../../src/nfs3/types.js';
import type { Credentials } from '../../../../src/rpc/types.js';
import { ChangeLog } from '../../../../src/wrappers/change-log/change-log.js';
import { ChangeLogBackend } from '../../../../src/wrappers/change-log/change-log-backend.js';
import { PassthroughBackend } from '../../../../src/wrappers/passthrough.js';

const cred = { flavor: 1, uid: 0, gid: 0, gids: [] } as unknown as Credentials;
const hex = (b: Buffer | undefined) => b?.toString('hex');

/** The real export underneath, counting the LOOKUPs the change log makes; REMOVE can be made to fail after doing its work. */
class Upstream extends PassthroughBackend {
  lookups = 0;
  failAfterRemove = false;
  override async lookup(c: Credentials, dir: Buffer, name: string) {
    this.lookups++;
    return super.lookup(c, dir, name);
  }
  override async remove(c: Credentials, dir: Buffer, name: string): Promise<WccData> {
    const w = await super.remove(c, dir, name);
    if (this.failAfterRemove) throw new FsError('IO', 'reply lost (test)');
    return w;
  }
}

/**
 * The change log names what a REMOVE or RENAME took off a name: from the
 * name memo when it knows (no LOOKUP first), confirmed by the call's own
 * wcc; when the call cannot confirm it, the log is marked lost rather than
 * naming the wrong object.
 */
describe('ChangeLogBackend: the object a name led to, without a LOOKUP first', { timeout: 60_000 }, () => {
  let dir: string;
  let exp: LocalExport;
  let up: Upstream;
  let log: ChangeLog;
  let b: ChangeLogBackend;
  let root: Buffer;
  let sub: Buffer;
  let n = 0;

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-change-log-'));
    await fs.mkdir(path.join(dir, 'export'));
    // No attribute cache: the wcc "before" is the directory as it is on disk (what an upstream NFS server reports).
    exp = await LocalExport.open({ root: path.join(dir, 'export'), stateDir: path.join(dir, 'state'), attrCacheMs: 0 });
    root = (await exp.mount('/', cred)).fh;
  });
  after(async () => {
    await exp.close?.();
    await fs.rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    up = new Upstream(exp as Backend);
    log = new ChangeLog();
    b = new ChangeLogBackend(up, log);
    sub = (await b.mkdir(cred, root, `d${n++}`, {})).fh!;
  });
  const create = async (name: string) => (await b.create(cred, sub, name, { mode: 'unchecked', attrs: {} })).fh!;
  const listed = (since: bigint) => log.since(since, 1000)?.handles.map(hex);

  it('create then remove: no LOOKUP; the directory and the removed file are listed', async () => {
    const f = await create('f');
    const since = log.seq;
    await b.remove(cred, sub, 'f');
    assert.equal(up.lookups, 0, 'the memo named the file');
    assert.deepEqual(listed(since)?.sort(), [hex(sub), hex(f)].sort());
  });

  it('a name another program changed meanwhile: never the wrong object (the log is marked lost)', async () => {
    const f = await create('f');
    const p = path.join(dir, 'export', (await fs.readdir(path.join(dir, 'export'))).find((x) => x === `d${n - 1}`)!);
    // Another program puts a different file at the name.
    await fs.writeFile(path.join(p, 'x'), 'other');
    await fs.rename(path.join(p, 'x'), path.join(p, 'f'));
    assert.notEqual(b.names.stampOf(sub), undefined);
    const other = (await exp.lookup(cred, sub, 'f')).fh;
    assert.notEqual(hex(other), hex(f));
    const since = log.seq;
    await b.remove(cred, sub, 'f');
    const l = listed(since);
    assert.ok(l === undefined || l.includes(hex(other)), `the log names the file removed, or says it lost track: ${JSON.stringify(l)} (memo ${hex(f)}, removed ${hex(other)})`);
    // Afterwards the memo starts again from the REMOVE's reply: the next ones are exact.
    const g = await create('g');
    const since2 = log.seq;
    await b.remove(cred, sub, 'g');
    assert.deepEqual(listed(since2)?.sort(), [hex(sub), hex(g)].sort());
  });

  it('a name the memo does not hold: a LOOKUP first, as before', async () => {
    await fs.writeFile(path.join(dir, 'export', `d${n - 1}`, 'local'), 'x');
    const since = log.seq;
    await b.remove(cred, sub, 'local');
    assert.equal(up.lookups, 1);
    assert.equal(listed(since)?.length, 2, 'the directory and the file');
  });

  it('READDIRPLUS then REMOVE of each name (rm -r): no LOOKUP', async () => {
    const fhs = [await create('a'), await create('b'), await create('c')];
    b.names.forget(sub); // as if this server had never seen them made
    const page = await b.readdirplus(cred, sub, 0n, Buffer.alloc(8), 4096, 65536);
    assert.equal(page.eof, true);
    const since = log.seq;
    for (const name of ['a', 'b', 'c']) await b.remove(cred, sub, name);
    assert.equal(up.lookups, 0);
    assert.deepEqual(listed(since)?.sort(), [hex(sub), ...fhs.map(hex)].sort());
  });

  it('RENAME: the moved file from the memo; what it replaces looked up unless known; a chmod of the directory keeps the memo', async () => {
    const a = await create('a');
    const t = await create('t');
    await b.setattr(cred, sub, { mode: 0o700 });
    const since = log.seq;
    await b.rename(cred, sub, 'a', sub, 't');
    assert.equal(up.lookups, 0, 'both names were known');
    assert.deepEqual(listed(since)?.sort(), [hex(sub), hex(a), hex(t)].sort());
    const since2 = log.seq;
    await b.remove(cred, sub, 't');
    assert.equal(up.lookups, 0, 't now names the moved file');
    assert.deepEqual(listed(since2)?.sort(), [hex(sub), hex(a)].sort());
  });

  it('a REMOVE whose reply was lost after the work: the log is marked lost (the memo cannot be confirmed)', async () => {
    await create('f');
    up.failAfterRemove = true;
    const since = log.seq;
    await assert.rejects(b.remove(cred, sub, 'f'), (e: FsError) => e.code === 'IO');
    assert.equal(listed(since), undefined);
  });

  it('a change reported by the disk watcher forgets the directory: the next REMOVE looks up', async () => {
    await create('f');
    b.changedElsewhere(sub);
    await b.remove(cred, sub, 'f');
    assert.equal(up.lookups, 1);
  });
});

import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { LocalExport } from '../../../../src/backends/local-export/local-export.js';
import type { Credentials } from '../../../../src/rpc/types.js';
import { ChangeLog } from '../../../../src/wrappers/change-log/change-log.js';
import { ChangeLogBackend } from '../../../../src/wrappers/change-log/change-log-backend.js';

const cred = { flavor: 1, uid: 0, gid: 0, gids: [] } as unknown as Credentials;
const hex = (b: Buffer | undefined) => b?.toString('hex');

/**
 * What the change log lists for a name taken off or moved: the directories
 * and the very object the name led to when the call ran, also when another
 * program changed the name since this server last saw it.
 */
describe('ChangeLogBackend: the objects a REMOVE or RENAME changed', { timeout: 60_000 }, () => {
  let dir: string;
  let exp: LocalExport;
  let log: ChangeLog;
  let b: ChangeLogBackend;
  let root: Buffer;
  let sub: Buffer;
  let subPath: string;
  let n = 0;

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-change-log-'));
    await fs.mkdir(path.join(dir, 'export'));
    // No attribute cache: what another program does on disk shows at once.
    exp = await LocalExport.open({ root: path.join(dir, 'export'), stateDir: path.join(dir, 'state'), attrCacheMs: 0 });
    root = (await exp.mount('/', cred)).fh;
  });
  after(async () => {
    await exp.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    log = new ChangeLog();
    b = new ChangeLogBackend(exp, log);
    const name = `d${n++}`;
    sub = (await b.mkdir(cred, root, name, {})).fh!;
    subPath = path.join(dir, 'export', name);
  });
  const create = async (name: string) => (await b.create(cred, sub, name, { mode: 'unchecked', attrs: {} })).fh!;
  const listed = (since: bigint) => log.since(since, 1000)?.handles.map(hex).sort();

  it('REMOVE: the directory and the file removed', async () => {
    const f = await create('f');
    const since = log.seq;
    await b.remove(cred, sub, 'f');
    assert.deepEqual(listed(since), [hex(sub), hex(f)].sort());
  });

  it('a name another program pointed elsewhere since: the file actually removed is listed', async () => {
    const f = await create('f');
    await fs.writeFile(path.join(subPath, 'x'), 'other');
    await fs.rename(path.join(subPath, 'x'), path.join(subPath, 'f'));
    const other = (await exp.lookup(cred, sub, 'f')).fh;
    assert.notEqual(hex(other), hex(f));
    const since = log.seq;
    await b.remove(cred, sub, 'f');
    assert.ok(listed(since)?.includes(hex(other)), 'the object removed');
  });

  it('RENAME over a name: both directories\' names, the file moved and the file replaced', async () => {
    const a = await create('a');
    const t = await create('t');
    const since = log.seq;
    await b.rename(cred, sub, 'a', sub, 't');
    assert.deepEqual(listed(since), [hex(sub), hex(a), hex(t)].sort());
  });
});

import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { newSessionKey } from '../../src/channel/session-key.js';
import { makeSelfSignedCert } from '../../src/channel/tls.js';
import { Agent, type AgentConfig } from '../../src/services/agent/agent.js';
import type { KeyDoc, MountSpec } from '../../src/services/api/types.js';
import { tempDir } from '../helpers/local-server.js';
import { processesUnder } from '../helpers/services.js';
import { treeSnapshot } from './tree-snapshot.js';

const keyDoc = (): KeyDoc => {
  const k = newSessionKey('alice', undefined, { uid: 2001, gid: 2001, gids: [] });
  return { id: k.id, key: k.key.toString('base64'), user: k.user, account: k.account };
};

/**
 * Issue 14 item 11: the agent runs as root and makes mount points. A
 * session user who can create a link under --mount-root asks for
 * `mnt/<link>/../name`, `mnt/<link>/name` or `mnt/<link>`: lexically inside
 * the root, really outside. Each is refused and nothing is created outside.
 */
describe('mount points stay under --mount-root whatever links are planted', { timeout: 120_000 }, () => {
  let dir: string;
  let mroot: string;
  let outside: string;
  let a: Agent;
  let cfg: AgentConfig;
  before(async () => {
    dir = await tempDir('gvfs-sec-mnt-');
    const tls = await makeSelfSignedCert(path.join(dir, 'tls'));
    mroot = path.join(dir, 'mnt');
    outside = path.join(dir, 'outside');
    await fs.mkdir(path.join(mroot, 'alice'), { recursive: true });
    await fs.mkdir(path.join(outside, 'deep', 'er'), { recursive: true });
    // Planted by the session user in a directory of hers under the mount root.
    await fs.symlink(path.join(outside, 'deep', 'er'), path.join(mroot, 'alice', 'link'));
    await fs.symlink(outside, path.join(mroot, 'top'));
    cfg = { name: 'compute', stateDir: path.join(dir, 'state'), certFile: tls.cert, keyFile: tls.key, fingerprint: tls.fingerprint, exportRoots: [], mountRoots: [mroot], proxyHost: '127.0.0.1', monitorMs: 60_000 };
    a = await Agent.open(cfg);
  });
  after(async () => {
    a?.close();
    for (const p of await processesUnder(dir)) process.kill(p, 'SIGKILL');
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  // A proxy server nobody listens on: a mount that passes the checks fails to start (502), after them.
  const mount = (mountpoint: string): MountSpec => ({
    kind: 'mount',
    key: keyDoc(),
    server: { host: '127.0.0.1', port: 1 },
    channel: { kind: 'tls', fingerprint: cfg.fingerprint },
    export: '/x',
    mountpoint,
    cache: { mode: 'none' },
    attrTimeout: 1,
  });

  test('mnt/<link>/../name, mnt/<link>/name, mnt/<link>, mnt/<link>/a/b and odd spellings are refused; nothing appears outside', async () => {
    const before = await treeSnapshot(outside);
    const cases: Array<[string, number]> = [
      [path.join(mroot, 'alice') + '/link/../name', 400], // the reported attack: lexically mnt/alice/name, really outside/deep/name
      [path.join(mroot, 'alice') + '/link/../../escaped', 400],
      [path.join(mroot, 'alice', 'link', 'name'), 403],
      [path.join(mroot, 'alice', 'link'), 403],
      [path.join(mroot, 'alice', 'link', 'a', 'b'), 403],
      [path.join(mroot, 'top', 'deep', 'new'), 403],
      [path.join(mroot, 'alice') + '/./link/name', 400],
      [path.join(mroot, 'alice') + '//link', 400],
      [path.join(mroot, 'alice', 'x') + '/', 400],
      [mroot + '/../outside/name', 400],
      [mroot, 403],
    ];
    for (const [i, [mnt, status]] of cases.entries()) {
      await assert.rejects(a.ensure(`s-${i}`, 'm', mount(mnt)), (e: Error & { status?: number }) => {
        assert.equal(e.status, status, `${mnt}: ${e.message}`);
        return true;
      });
    }
    assert.deepEqual(await treeSnapshot(outside), before, 'nothing was created, changed or removed outside the mount root');
    assert.deepEqual(await fs.readdir(path.join(mroot, 'alice')), ['link'], 'nothing was left inside either');
    assert.deepEqual(a.list(), []);
  });

  test('a legitimate nested mount point passes the checks (directories made one by one) and is gone again after a failed start', async () => {
    const mnt = path.join(mroot, 'alice', 'vms', 'one');
    await assert.rejects(a.ensure('s-ok', 'm', mount(mnt)), (e: Error & { status?: number; code?: string }) => e.status === 502 && e.code === 'START_FAILED');
    // The walk made alice/vms and alice/vms/one; the failed start removed the mount point it made.
    assert.ok((await fs.lstat(path.join(mroot, 'alice', 'vms'))).isDirectory());
    await assert.rejects(fs.lstat(mnt), /ENOENT/);
  });
});

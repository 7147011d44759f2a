import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { fuseSkip } from '../fuse/mount-helper.js';
import { startLocalServer, tempDir, type LocalServer } from '../../helpers/local-server.js';
import { aliceRequest, makeExports, processesUnder, startCluster, type Cluster } from '../../helpers/services.js';
import { startSshd, type Sshd } from '../../helpers/sshd.js';

const sh = promisify(execFile);

describe('sessions over SSH, from an NFS server, and with the shared golden cache', { skip: fuseSkip(), timeout: 600_000 }, () => {
  let c: Cluster;
  let sshd: Sshd;
  let sshDir: string;
  let nfs: LocalServer;
  before(async () => {
    sshDir = await tempDir('gvfs-services-ssh-');
    sshd = await startSshd(sshDir);
    nfs = await startLocalServer();
    await fs.chown(nfs.exportDir, 2001, 2001);
    c = await startCluster({
      agentArgs: {
        state: ['--ssh-url', `ssh://root@127.0.0.1:${sshd.port}`],
        compute: ['--ssh-key', sshd.userKey, '--known-hosts', sshd.knownHosts],
        data: ['--allow-upstream', `127.0.0.1:${nfs.port}`],
      },
    });
    await makeExports(c);
    await fs.writeFile(path.join(c.hosts.state.exports, 'vm', 'golden.img'), randomBytes(4 << 20));
  });
  after(async () => {
    await c?.stop();
    await sshd?.stop();
    await nfs?.stop();
    await fs.rm(sshDir, { recursive: true, force: true });
  });

  test('the SSH channel: the proxy server listens on loopback only, the mount tunnels through OpenSSH', async () => {
    const req = aliceRequest(c, 'ssh', { channel: 'ssh' });
    req.exports = [req.exports[0]];
    const s = (await c.api(c.tokens.alice, 'POST', '/sessions', req)).body;
    assert.equal(s.state, 'ready', JSON.stringify(s));
    assert.equal(s.channel, 'ssh');
    const ps = (await c.agentApi('state', 'GET', `/v1/sessions/${s.id}`)).body.components[0];
    assert.deepEqual(ps.channel, { kind: 'ssh', url: `ssh://root@127.0.0.1:${sshd.port}` });
    assert.equal(ps.address, '127.0.0.1');
    assert.match((await sh('ls', ['-l', s.mounts[0]])).stdout, /golden\.img/);
    assert.ok((await fs.readFile(path.join(s.mounts[0], 'golden.img'))).equals(await fs.readFile(path.join(c.hosts.state.exports, 'vm', 'golden.img'))));
    // The tunnel is OpenSSH's: a connection from the compute side to sshd exists while the mount runs.
    assert.match((await sh('ss', ['-tn', 'state', 'established', `( dport = :${sshd.port} )`])).stdout, new RegExp(`127\\.0\\.0\\.1:${sshd.port}`));
    assert.equal((await c.api(c.tokens.alice, 'DELETE', `/sessions/${s.id}`)).body.state, 'destroyed');

    // A host without SSH refuses the channel: nothing is left started.
    const refused = await c.api(c.tokens.alice, 'POST', '/sessions', aliceRequest(c, 'ssh2', { channel: 'ssh' }));
    assert.equal(refused.status, 400, JSON.stringify(refused.body));
    assert.equal(refused.body.code, 'NO_SSH');
    assert.match(refused.body.message, /host data offers no SSH channel/);
    assert.equal((await processesUnder(c.base)).length, 4);
  });

  test('access nfs: an NFSv3 endpoint on the compute host that an unmodified NFS client (libnfs) uses', async () => {
    const req = aliceRequest(c, 'ep');
    req.exports = [{ role: 'state', host: 'state', path: path.join(c.hosts.state.exports, 'vm'), access: 'nfs' }, { ...req.exports[1] }];
    const s = (await c.api(c.tokens.alice, 'POST', '/sessions', req)).body;
    assert.equal(s.state, 'ready', JSON.stringify(s));
    assert.equal(s.mounts.length, 1);
    assert.equal(s.endpoints.length, 1);
    const ep = s.endpoints[0];
    assert.equal(ep.export, '/state');
    assert.equal(ep.url, `nfs://127.0.0.1/state/?version=3&nfsport=${ep.port}&mountport=${ep.port}`);
    assert.match((await sh('nfs-ls', [ep.url])).stdout, /golden\.img/);
    const file = ep.url.replace('/state/?', '/state/golden.img?');
    const out = await sh('nfs-cat', [file], { encoding: 'buffer', maxBuffer: 16 << 20 });
    assert.ok((out.stdout as unknown as Buffer).equals(await fs.readFile(path.join(c.hosts.state.exports, 'vm', 'golden.img'))));
    const st = (await c.api(c.tokens.alice, 'GET', `/sessions/${s.id}`)).body.stats.mounts;
    assert.deepEqual(st.map((m: any) => m.endpoint ?? m.mountpoint), [ep.url, s.mounts[0]]);
    assert.ok(st[0].bytesFetched >= 4 << 20);
    // A mount point for an nfs export, or none for a mount, is refused precisely.
    const bad = await c.api(c.tokens.alice, 'POST', '/sessions', { ...req, exports: [{ ...req.exports[0], mountpoint: '/x' }] });
    assert.equal(bad.status, 400);
    assert.match(bad.body.message, /exports\[0\]\.mountpoint: an export with access "nfs" is not mounted/);
    const none = await c.api(c.tokens.alice, 'POST', '/sessions', { ...req, exports: [{ role: 'data', host: 'data', path: '/x' }] });
    assert.equal(none.body.code, 'MOUNTPOINT_REQUIRED');
    assert.equal((await c.api(c.tokens.alice, 'DELETE', `/sessions/${s.id}`)).body.state, 'destroyed');
    await assert.rejects(sh('nfs-ls', [ep.url]));
  });

  test('an export forwarded from an NFSv3 server the data host may reach; others are refused', async () => {
    const req = aliceRequest(c, 'nfs');
    req.exports = [{ role: 'data', host: 'data', path: `nfs://127.0.0.1:${nfs.port}/`, mountpoint: path.join(c.hosts.compute.mnt, 'nfs', 'data') }];
    const s = (await c.api(c.tokens.alice, 'POST', '/sessions', req)).body;
    assert.equal(s.state, 'ready', JSON.stringify(s));
    await fs.writeFile(path.join(s.mounts[0], 'via-nfs.txt'), 'through two proxies to an NFS server');
    assert.equal((await c.api(c.tokens.alice, 'DELETE', `/sessions/${s.id}`)).body.state, 'destroyed');
    assert.equal(await fs.readFile(path.join(nfs.exportDir, 'via-nfs.txt'), 'utf8'), 'through two proxies to an NFS server');
    assert.equal((await fs.stat(path.join(nfs.exportDir, 'via-nfs.txt'))).uid, 2001);

    req.exports[0].path = 'nfs://127.0.0.1:1/';
    const r = await c.api(c.tokens.alice, 'POST', '/sessions', req);
    assert.equal(r.status, 403);
    assert.match(r.body.message, /does not forward to the NFS server 127\.0\.0\.1:1/);
  });

  test('the shared golden cache: a second session reads the image from the compute host\'s cache, not the network', async () => {
    const one = (i: number) => {
      const req = aliceRequest(c, `golden${i}`, { cache: { mode: 'write-through', shared: true, size: 64 << 20 } });
      req.exports = [req.exports[0]];
      return req;
    };
    const a = (await c.api(c.tokens.alice, 'POST', '/sessions', one(1))).body;
    assert.equal(a.state, 'ready', JSON.stringify(a));
    await fs.readFile(path.join(a.mounts[0], 'golden.img'));
    const sa = (await c.api(c.tokens.alice, 'GET', `/sessions/${a.id}`)).body.stats.mounts[0];
    assert.ok(sa.bytesFetched >= 4 << 20, JSON.stringify(sa));
    assert.equal((await c.api(c.tokens.alice, 'DELETE', `/sessions/${a.id}`)).body.state, 'destroyed');

    const b = (await c.api(c.tokens.alice, 'POST', '/sessions', one(2))).body;
    assert.equal(b.state, 'ready', JSON.stringify(b));
    const data = await fs.readFile(path.join(b.mounts[0], 'golden.img'));
    assert.ok(data.equals(await fs.readFile(path.join(c.hosts.state.exports, 'vm', 'golden.img'))));
    const sb = (await c.api(c.tokens.alice, 'GET', `/sessions/${b.id}`)).body.stats.mounts[0];
    assert.equal(sb.bytesFetched, 0, JSON.stringify(sb));
    assert.ok(sb.hitBytes >= 4 << 20 && sb.hitRatio === 1, JSON.stringify(sb));
    assert.equal((await c.api(c.tokens.alice, 'DELETE', `/sessions/${b.id}`)).body.state, 'destroyed');
    // The shared blocks outlive the sessions; their own state does not.
    const shared = path.join(c.hosts.compute.state, 'cache', 'shared');
    assert.ok((await fs.readdir(path.join(shared, 'blocks'))).length > 0);
    assert.deepEqual(await fs.readdir(path.join(shared, 'sessions')), []);
  });
});

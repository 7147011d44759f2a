import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { newSessionKey, writeKeyFile } from '../../src/channel/session-key.js';
import { tempDir } from '../helpers/local-server.js';
import { spawnGvfs, type GvfsProcess } from '../helpers/gvfs-proc.js';

const run = promisify(execFile);

/** Run `cmd` as a local user other than root (uid = gid = `uid`, no groups). */
const as = (uid: number, cmd: string, args: string[]) => run('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', cmd, ...args], { timeout: 60_000 });

/**
 * Issue 14, item 7: a session's proxy-client endpoint serves the session's
 * owner and root only. Real processes: `gvfs proxy-server`, `gvfs
 * proxy-client`, and libnfs's nfs-cat run as other local users.
 */
describe('security: the proxy-client endpoint belongs to the session owner', { timeout: 180_000 }, () => {
  let base: string;
  let ps: GvfsProcess;
  let owned: GvfsProcess; // --allow-uid 2001 (what the agent gives a session whose account is 2001)
  let plain: GvfsProcess; // no --allow-uid: only the uid running it (root here)
  const url = (p: GvfsProcess, file: string) => `nfs://127.0.0.1//${file}?version=3&nfsport=${p.port}&mountport=${p.port}`;

  before(async () => {
    if (process.getuid!() !== 0) throw new Error('this test runs local users through setpriv: run it as root');
    base = await tempDir('gvfs-sec-endpoint-');
    await fs.chmod(base, 0o755);
    const exp = path.join(base, 'export');
    await fs.mkdir(exp);
    await fs.writeFile(path.join(exp, 'hello.txt'), 'hello, session\n', { mode: 0o644 });
    await fs.chown(path.join(exp, 'hello.txt'), 2001, 2001);
    const key = newSessionKey('alice', undefined, { uid: 2001, gid: 2001, gids: [] });
    const keyFile = path.join(base, 'alice.key');
    await writeKeyFile(keyFile, key);
    ps = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--export', `${exp}=/`, '--key', keyFile, '--state-dir', path.join(base, 'ps-state')]);
    const server = `127.0.0.1:${ps.port}`;
    owned = await spawnGvfs(['proxy-client', '--server', server, '--key', keyFile, '--allow-uid', '2001']);
    plain = await spawnGvfs(['proxy-client', '--server', server, '--key', keyFile]);
  });
  after(async () => {
    await owned?.stop();
    await plain?.stop();
    await ps?.stop();
    if (base) await fs.rm(base, { recursive: true, force: true });
  });

  test('another local user (uid 2002) is refused at connect time, and the refusal is logged', async () => {
    await assert.rejects(as(2002, 'nfs-cat', [url(owned, 'hello.txt')]), (e: { stdout?: string }) => !e.stdout?.includes('hello'));
    const line = await owned.waitLog(/connection refused: uid 2002/);
    assert.equal(line.uid, 2002);
    assert.deepEqual(line.allowed.sort(), [0, 2001]);
  });

  test('the session owner (2001) and root are served', async () => {
    assert.equal((await as(2001, 'nfs-cat', [url(owned, 'hello.txt')])).stdout, 'hello, session\n');
    assert.equal((await run('nfs-cat', [url(owned, 'hello.txt')], { timeout: 60_000 })).stdout, 'hello, session\n');
    assert.doesNotMatch(owned.log(), /uid (0|2001) is not allowed/);
  });

  test('without --allow-uid only the uid running the proxy client (and root) is served', async () => {
    assert.deepEqual(plain.info.allowUids, [0]);
    await assert.rejects(as(2001, 'nfs-cat', [url(plain, 'hello.txt')]));
    await plain.waitLog(/connection refused: uid 2001/);
    assert.equal((await run('nfs-cat', [url(plain, 'hello.txt')], { timeout: 60_000 })).stdout, 'hello, session\n');
  });

  test('a refused connection gets no reply to what it sent: closed before anything is read', async () => {
    // A NULL call (xid 7, prog 100003 v3 proc 0, AUTH_NONE) in one record, sent the moment the connection is up.
    const call = Buffer.alloc(4 + 40);
    call.writeUInt32BE((0x80000000 | 40) >>> 0, 0);
    [7, 0, 2, 100003, 3, 0, 0, 0, 0, 0].forEach((v, i) => call.writeUInt32BE(v, 4 + i * 4));
    const script = `const s=require('net').connect(${owned.port},'127.0.0.1',()=>s.write(Buffer.from('${call.toString('hex')}','hex')));let n=0;s.on('data',d=>n+=d.length);s.on('error',()=>{});s.on('close',()=>{console.log(JSON.stringify({bytes:n}));process.exit(0);});setTimeout(()=>{console.log('still open');process.exit(1)},30000);`;
    const child = spawn('setpriv', ['--reuid=2002', '--regid=2002', '--clear-groups', process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    await once(child, 'exit');
    assert.deepEqual(JSON.parse(out), { bytes: 0 }, 'closed with no reply');
    // The same call from root is answered: the refusal is the owner check, not the call.
    const child2 = spawn(process.execPath, ['-e', script.replace("n+=d.length", "(n+=d.length,s.destroy())")], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out2 = '';
    child2.stdout!.on('data', (d) => (out2 += d));
    await once(child2, 'exit');
    assert.ok(JSON.parse(out2).bytes > 0, 'root gets the NULL reply');
  });
});

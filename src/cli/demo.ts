import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { newSessionKey } from '../channel/session-key.js';
import { SessionRegistry } from '../channel/sessions.js';
import { makeSelfSignedCert, readTlsFiles } from '../channel/tls.js';
import { createProxyClient } from '../proxy/proxy-client.js';
import { createProxyServer } from '../proxy/proxy-server.js';
import { setLogLevel } from '../util/log.js';

const run = promisify(execFile);

/**
 * The README's main job, on an embedded default: a state server's export
 * served by a GVFS proxy server (session key, TLS 1.3), a proxy client on
 * the "compute server", and an NFS client this project did not write
 * (libnfs) listing, copying out and copying in through the whole chain.
 */
export function demoCommand(): Command {
  return new Command('demo')
    .description('Run a secure GVFS session end to end on loopback and use it with an independent NFS client (libnfs)')
    .option('--keep', 'leave the demo directory in place')
    .action(async (o) => {
      // Expected refusals (the keyless client at the end) would log warnings; the demo narrates instead.
      if (!process.env.GVFS_LOG_LEVEL) setLogLevel('error');
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-demo-'));
      const exp = path.join(dir, 'state-server', 'export');
      await fs.mkdir(path.join(exp, 'images'), { recursive: true });
      await fs.mkdir(path.join(exp, 'scratch'), { mode: 0o777 });
      await fs.chmod(path.join(exp, 'scratch'), 0o777);
      await fs.writeFile(path.join(exp, 'README.txt'), 'VM state served by GVFS over NFSv3.\n');
      const image = Buffer.alloc(8 << 20);
      for (let i = 0; i < image.length; i += 4096) image.writeUInt32BE(i / 4096, i);
      await fs.writeFile(path.join(exp, 'images', 'disk.img'), image);

      const say = (s: string) => console.log(s);
      const key = newSessionKey('/O=Grid/CN=alice', 3600, { uid: 2001, gid: 2001, gids: [] });
      const cert = await makeSelfSignedCert(path.join(dir, 'state-server', 'tls'));
      const ps = await createProxyServer({
        exports: [{ kind: 'local', dir: exp, name: '/vm' }],
        map: new Map(),
        sessions: new SessionRegistry([key]),
        tls: await readTlsFiles(cert.cert, cert.key),
        stateDir: path.join(dir, 'state-server', 'gvfs'),
      });
      const psAddr = await ps.listen(0, '127.0.0.1');
      say(`state server: gvfs proxy-server exporting ${exp} as /vm on ${psAddr.address}:${psAddr.port}`);
      say(`  channel TLS 1.3, certificate ${cert.fingerprint.slice(0, 23)}...`);
      say(`  session ${key.id} for ${key.user} -> local account uid 2001, expires ${key.expires!.toISOString()}`);
      const pc = createProxyClient({ host: '127.0.0.1', port: psAddr.port, key, tlsFingerprint: cert.fingerprint });
      const pcAddr = await pc.server.listen(0, '127.0.0.1');
      say(`compute server: gvfs proxy-client on ${pcAddr.address}:${pcAddr.port} (proves the session key on every connection)\n`);
      const url = (p: string, port = pcAddr.port) => `nfs://127.0.0.1/vm${p}?version=3&nfsport=${port}&mountport=${port}`;
      const sh = async (cmd: string, args: string[]) => {
        say(`$ ${cmd} ${args.map((a) => (a.includes('?') ? `'${a}'` : a)).join(' ')}`);
        const r = await run(cmd, args);
        if (r.stdout.trim()) say(r.stdout.trimEnd());
        return r;
      };
      try {
        await sh('nfs-ls', [url('/')]);
        await sh('nfs-ls', [url('/images/')]);
        const out = path.join(dir, 'compute-server', 'disk.img');
        await fs.mkdir(path.dirname(out), { recursive: true });
        await sh('nfs-cp', [url('/images/disk.img'), out]);
        const h = async (f: string) => createHash('sha256').update(await fs.readFile(f)).digest('hex');
        const [a, b] = [await h(path.join(exp, 'images', 'disk.img')), await h(out)];
        say(`sha256 on the state server: ${a}\nsha256 on the compute server: ${b}\n${a === b ? 'byte-identical' : 'MISMATCH'}\n`);
        await sh('nfs-cp', [out, url('/scratch/result.img')]);
        const st = await fs.stat(path.join(exp, 'scratch', 'result.img'));
        say(`written through the chain: owned by uid ${st.uid} on the state server (the session's mapped account)\n`);
        say('without the session key the proxy server answers nothing:');
        const denied = await run('nfs-ls', [url('/', psAddr.port)], { timeout: 20_000 }).then(
          () => 'UNEXPECTEDLY ANSWERED',
          (e: { stderr?: string }) => (e.stderr ?? '').trim().split('\n')[0] || 'refused',
        );
        say(`$ nfs-ls '${url('/', psAddr.port)}'\n${denied}`);
        if (a !== b || st.uid !== 2001 || denied === 'UNEXPECTEDLY ANSWERED') process.exitCode = 1;
      } finally {
        await pc.close();
        await ps.close();
        if (!o.keep) await fs.rm(dir, { recursive: true, force: true });
      }
    });
}

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

import { reservePort } from './ports.js';
import { hasFile, isRoot, requirePrereq } from './prereq.js';

const run = promisify(execFile);

export interface Sshd {
  port: number;
  /** Private key file of a user authorized to log in as root. */
  userKey: string;
  /** known_hosts with this sshd's host key for [127.0.0.1]:port. */
  knownHosts: string;
  dir: string;
  stop(): Promise<void>;
}

export function sshdAvailable(): boolean {
  return process.getuid?.() === 0 && existsSync('/usr/sbin/sshd');
}

/** Skip reason for tests that start OpenSSH's sshd (root: it runs as root and logs in as root). */
export function sshdSkip(): string | false {
  return requirePrereq(isRoot(), hasFile('/usr/sbin/sshd', 'openssh-server'), hasFile('/usr/bin/ssh-keygen', 'openssh-client'));
}

/** OpenSSH's sshd in the foreground on a loopback port with its own config, host key and one authorized user key. */
export async function startSshd(dir: string): Promise<Sshd> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.mkdir('/run/sshd', { recursive: true, mode: 0o755 }); // privilege separation directory
  const hostKey = path.join(dir, 'host_ed25519');
  const userKey = path.join(dir, 'user_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', userKey]);
  const authorized = path.join(dir, 'authorized_keys');
  await fs.copyFile(`${userKey}.pub`, authorized);
  await fs.chmod(authorized, 0o600);
  const port = await reservePort();
  const config = path.join(dir, 'sshd_config');
  await fs.writeFile(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${authorized}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'AllowTcpForwarding yes',
      'X11Forwarding no',
      'Subsystem sftp internal-sftp',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  const knownHosts = path.join(dir, 'known_hosts');
  const pub = (await fs.readFile(`${hostKey}.pub`, 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
  await fs.writeFile(knownHosts, `[127.0.0.1]:${port} ${pub}\n`);
  const proc: ChildProcess = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (c) => (stderr += c));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`sshd exited: ${stderr}`);
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) break;
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`sshd did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    port,
    userKey,
    knownHosts,
    dir,
    async stop() {
      if (proc.exitCode !== null) return;
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    },
  };
}

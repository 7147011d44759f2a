import { Command } from 'commander';
import { readKeyFile } from '../channel/session-key.js';
import { parseSshUrl } from '../channel/ssh.js';
import { createProxyClient, type ProxyLinkOptions } from '../proxy/proxy-client.js';
import { parseHostPort, parseIntArg, untilSignal } from './util.js';

/** The options every command that links to a proxy server shares (proxy-client, mount). */
export function addLinkOptions(c: Command): Command {
  return c
    .requiredOption('--server <host:port>', 'the proxy server (with --via: as the SSH server sees it, e.g. 127.0.0.1:PORT)')
    .option('--key <file>', 'session key file to prove on every connection (gvfs keygen)')
    .option('--tls-fingerprint <sha256>', 'use TLS 1.3 and accept only this server certificate')
    .option('--via <ssh-url>', 'tunnel through OpenSSH: ssh://USER@HOST[:PORT]')
    .option('--ssh-key <file>', 'private key for the SSH tunnel', `${process.env.HOME ?? ''}/.ssh/id_ed25519`)
    .option('--known-hosts <file>', 'known_hosts for strict host-key checking', `${process.env.HOME ?? ''}/.ssh/known_hosts`)
    .option('--user <identity>', 'grid identity to announce (insecure servers without keys)')
    .option('--insecure', 'allow a plaintext channel off loopback and no session key (warns)')
    .option('--connections <n>', 'connections to the proxy server', parseIntArg, 1)
    .option('--timeout <ms>', 'deadline for a call to the proxy server (then the client gets an error)', parseIntArg, 60_000);
}

export async function linkOptions(o: Record<string, any>): Promise<ProxyLinkOptions> {
  const server = parseHostPort(o.server);
  const key = o.key ? await readKeyFile(o.key) : undefined;
  const via = o.via ? parseSshUrl(o.via) : undefined;
  return {
    host: server.host,
    port: server.port,
    key,
    user: o.user,
    tlsFingerprint: o.tlsFingerprint,
    ssh: via && { host: via.host, port: via.port, username: via.username, privateKeyFile: o.sshKey, knownHostsFile: o.knownHosts },
    insecure: !!o.insecure,
    connections: o.connections,
    timeoutMs: o.timeout,
  };
}

export function proxyClientCommand(): Command {
  return addLinkOptions(
    new Command('proxy-client').description('Run a GVFS proxy client: an NFSv3 + MOUNT endpoint on loopback that forwards to a proxy server over a private channel'),
  )
    .option('--listen <host:port>', 'where unmodified NFS clients connect', '127.0.0.1:0')
    .option('--json', 'print the listening address as JSON')
    .action(async (o) => {
      const link = await linkOptions(o);
      const listen = parseHostPort(o.listen);
      const p = createProxyClient(link);
      const addr = await p.server.listen(listen.port, listen.host);
      const channel = link.ssh ? 'ssh' : link.tlsFingerprint ? 'tls' : 'tcp';
      const who = link.key ? `session ${link.key.id} (${link.key.user})` : link.user;
      if (o.json) console.log(JSON.stringify({ listening: addr, server: { host: link.host, port: link.port }, channel, session: link.key?.id, user: link.key?.user ?? link.user }));
      else console.log(`gvfs proxy-client: NFSv3 on ${addr.address}:${addr.port} -> ${link.host}:${link.port} over ${channel} as ${who}`);
      const sig = await untilSignal();
      console.error(`gvfs proxy-client: ${sig}, shutting down`);
      await p.close();
    });
}

import { Command } from 'commander';
import { createProxyClient } from '../proxy/proxy-client.js';
import { parseHostPort, parseIntArg, untilSignal } from './util.js';

export function proxyClientCommand(): Command {
  return new Command('proxy-client')
    .description('Run a GVFS proxy client: an NFSv3 + MOUNT endpoint on loopback that forwards to a proxy server')
    .requiredOption('--server <host:port>', 'the proxy server')
    .requiredOption('--user <identity>', "this session's grid identity (must be mapped by the proxy server)")
    .option('--listen <host:port>', 'where unmodified NFS clients connect', '127.0.0.1:0')
    .option('--connections <n>', 'connections to the proxy server', parseIntArg, 1)
    .option('--timeout <ms>', 'deadline for a call to the proxy server (then the client gets an error)', parseIntArg, 60_000)
    .option('--json', 'print the listening address as JSON')
    .action(async (o) => {
      const server = parseHostPort(o.server);
      const listen = parseHostPort(o.listen);
      const p = createProxyClient({ host: server.host, port: server.port, user: o.user, connections: o.connections, timeoutMs: o.timeout });
      const addr = await p.server.listen(listen.port, listen.host);
      if (o.json) console.log(JSON.stringify({ listening: addr, server, user: o.user }));
      else console.log(`gvfs proxy-client: NFSv3 on ${addr.address}:${addr.port} -> proxy server ${server.host}:${server.port} as ${o.user}`);
      const sig = await untilSignal();
      console.error(`gvfs proxy-client: ${sig}, shutting down`);
      await p.close();
    });
}

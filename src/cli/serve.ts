import { Command, Option } from 'commander';
import { LocalExport } from '../backends/local-export/local-export.js';
import { createNfs3Server } from '../frontends/nfs3-server/server.js';
import { everythingReadOnly } from '../frontends/nfs3-server/read-only.js';
import { dirReadable } from '../metrics/health.js';
import { drainOnSignal, parseHostPort, parseIntArg, daemonSignals } from './util.js';
import { addMetricsOptions, metricsAddress, startMetrics } from './metrics-options.js';
import { registerDaemon } from '../util/runtime-state.js';

export function serveCommand(): Command {
  return addMetricsOptions(new Command('serve'))
    .description('Serve a local directory over NFSv3 (with MOUNT v3 and the portmapper on the same port)')
    .requiredOption('--export <dir>', 'directory to export')
    .option('--listen <host:port>', 'address to listen on (port 0 picks a free port)', '127.0.0.1:2049')
    .option('--name <path>', 'path clients mount', '/')
    .option('--state-dir <dir>', 'where handle secrets and the name journal live (never inside the export)')
    .option('--read-only', 'refuse every change (NFS3ERR_ROFS from the front end for every mutating procedure)')
    .addOption(new Option('--squash <which>', 'map root or every user to the anonymous account').choices(['none', 'root', 'all']).default('none'))
    .option('--anon-uid <uid>', 'anonymous uid', parseIntArg, 65534)
    .option('--anon-gid <gid>', 'anonymous gid', parseIntArg, 65534)
    .option('--max-record <bytes>', 'largest RPC record accepted', parseIntArg)
    .option('--max-in-flight <n>', 'calls executing at once per connection', parseIntArg)
    .option('--max-connections <n>', 'concurrent connections', parseIntArg)
    .option('--max-queued-reply-bytes <n>', 'reply bytes queued per connection before no new call starts', parseIntArg)
    .option('--json', 'print the listening address as JSON')
    .action(async (o) => {
      const stop = daemonSignals('serve');
      const listen = parseHostPort(o.listen);
      const metricsAt = await metricsAddress(o);
      const backend = await LocalExport.open({
        root: o.export,
        name: o.name,
        stateDir: o.stateDir,
        squash: o.squash,
        anonUid: o.anonUid,
        anonGid: o.anonGid,
      });
      const limits = Object.fromEntries(
        Object.entries({ maxRecord: o.maxRecord, maxInFlight: o.maxInFlight, maxConnections: o.maxConnections, maxQueuedReplyBytes: o.maxQueuedReplyBytes }).filter(([, v]) => v !== undefined),
      );
      // Read-only is the front end's write guard (one check for every mutating procedure), not the backend's.
      const server = createNfs3Server({ backend, limits, readOnly: o.readOnly ? everythingReadOnly : undefined });
      const addr = await server.listen(listen.port, listen.host);
      const metrics = await startMetrics(metricsAt, 'serve', async (r, h) => {
        const { observeRpcServer } = await import('../metrics/rpc.js'); // prom-client only with --metrics
        observeRpcServer(r, server, 'nfs', 'tcp');
        h.add('export', dirReadable(backend.root));
      });
      await registerDaemon({ role: 'serve', listen: `${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}`, info: { export: backend.root, name: backend.name, readOnly: !!o.readOnly } });
      stop.ready();
      if (o.json) console.log(JSON.stringify({ listening: addr, export: backend.root, name: backend.name, readOnly: !!o.readOnly, metrics: metrics?.address }));
      else console.log(`gvfs serve: exporting ${backend.root} as ${backend.name} on ${addr.address}:${addr.port} (NFSv3, MOUNT v3, portmap)`);
      await drainOnSignal('serve', async () => {
        await metrics?.close();
        await server.close();
        await backend.close();
      }, undefined, stop.stopped);
    });
}

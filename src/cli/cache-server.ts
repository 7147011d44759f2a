import { Command } from 'commander';
import { CacheServer } from '../sitecache/cache-server.js';
import { readSiteKey } from '../sitecache/auth.js';
import { openStore } from '../store/open-store.js';
import { readTlsFiles } from '../channel/tls.js';
import { daemonSignals, drainOnSignal, parseHostPort, parseIntArg, parseSize } from './util.js';
import { registerDaemon } from '../util/runtime-state.js';
import { readKeyFile } from '../channel/session-key.js';
import { checkLink, proxyLink } from '../proxy/proxy-client.js';
import { ProxyUpstream, StoreUpstream, type ChunkUpstream } from '../sitecache/upstream.js';
import { addMetricsOptions, metricsAddress, startMetrics } from './metrics-options.js';
import { dirReadable } from '../metrics/health.js';

/**
 * --upstream: an object store, or gvfs://HOST:PORT[,HOST:PORT...] (store-backed proxy servers, failing over in order)
 * reached over the tier's own session (--upstream-key, TLS with --upstream-tls-fingerprint off loopback).
 */
async function openUpstream(o: Record<string, any>): Promise<ChunkUpstream> {
  const gvfs = /^gvfs:\/\/(.+)$/.exec(o.upstream);
  const proxyFlags = ['upstreamKey', 'upstreamTlsFingerprint', 'upstreamExport'].filter((k) => o[k] !== undefined);
  if (!gvfs) {
    if (proxyFlags.length) throw new Error('--upstream-key, --upstream-tls-fingerprint and --upstream-export go with --upstream gvfs://HOST:PORT');
    return new StoreUpstream(openStore(o.upstream, { endpoint: o.storeEndpoint }));
  }
  if (o.storeEndpoint) throw new Error('--store-endpoint goes with an s3:// --upstream');
  if (!o.upstreamKey) throw new Error('--upstream gvfs://... needs --upstream-key FILE: the session (gvfs keygen) whose rights the tier fetches with');
  const [first, ...alternates] = gvfs[1].split(',').map((x) => parseHostPort(x.trim()));
  const key = await readKeyFile(o.upstreamKey);
  const { remote } = proxyLink({ host: first.host, port: first.port, alternates: alternates.length ? alternates : undefined, key, tlsFingerprint: o.upstreamTlsFingerprint, timeoutMs: o.timeout, connections: 2, maxInFlight: 128 });
  try {
    // A refused session key or TLS pin ends the command now, with the reason.
    await checkLink(remote);
  } catch (e) {
    await remote.close().catch(() => undefined);
    throw e;
  }
  return new ProxyUpstream({ link: remote, name: o.upstream, exportPath: o.upstreamExport ?? '/' });
}

export function cacheServerCommand(): Command {
  const c = new Command('cache-server')
    .description("Run a site cache tier: serves a store's chunks by SHA-256 to a site's compute hosts (gvfs proxy-server --site-cache), fetching each missing chunk once from upstream")
    .option('--listen <host:port>', 'address to listen on (port 0 picks a free port)', '127.0.0.1:0')
    .requiredOption('--upstream <url>', 'where misses are fetched: the object store the site may read (s3://BUCKET[/PREFIX] or file:///DIR), or store-backed proxy servers gvfs://HOST:PORT[,HOST:PORT...] (in failover order) asked with the rights of one session (--upstream-key)')
    .option('--upstream-key <file>', 'with gvfs://: the session key (gvfs keygen) the tier proves to the proxy server; it gets only chunks of files that session may read')
    .option('--upstream-tls-fingerprint <sha256>', 'with gvfs://: TLS 1.3 to the proxy server, accepting only this certificate (required off loopback)')
    .option('--upstream-export <path>', 'with gvfs://: the store export on the proxy server (MOUNT path; default /)')
    .option('--store-endpoint <url>', 'S3 endpoint for --upstream; credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY')
    .requiredOption('--cache-dir <dir>', 'where chunks are kept')
    .option('--max-bytes <size>', 'disk used by kept chunks (least recently used out first; K/M/G suffixes)', parseSize, 10 * 2 ** 30)
    .option('--key <file>', "the site key (32 bytes, e.g. head -c 32 /dev/urandom > site.key; owner-only): hosts prove it on every request (give it to their --site-key)")
    .option('--insecure', 'serve without a site key: anyone reaching the port may make the tier fetch chunks and probe which are in the store')
    .option('--tls-cert <file>', 'TLS 1.3: certificate (PEM)')
    .option('--tls-key <file>', 'TLS 1.3: private key (PEM, owner-only)')
    .option('--max-connections <n>', 'connections at once', parseIntArg, 512)
    .option('--max-connections-per-peer <n>', 'connections at once from one address', parseIntArg, 64)
    .option('--max-upstream <n>', 'upstream fetches at once', parseIntArg, 16)
    .option('--max-queued <n>', 'misses waiting for an upstream fetch; beyond, requests get 503 and hosts go to the store', parseIntArg, 1024)
    .option('--timeout <ms>', 'upstream fetch deadline', parseIntArg, 60_000)
    .option('--json', 'print the listening address as JSON');
  return addMetricsOptions(c).action(async (o) => {
      const stop = daemonSignals('cache-server');
      if (!o.key && !o.insecure) throw new Error('give --key FILE (the site key hosts must prove) or --insecure');
      const metricsAt = await metricsAddress(o);
      if (!!o.tlsCert !== !!o.tlsKey) throw new Error('--tls-cert and --tls-key go together');
      const listen = parseHostPort(o.listen);
      const s = await CacheServer.open({
        upstream: await openUpstream(o),
        cacheDir: o.cacheDir,
        maxBytes: o.maxBytes,
        key: o.key ? await readSiteKey(o.key) : undefined,
        tls: o.tlsCert ? await readTlsFiles(o.tlsCert, o.tlsKey) : undefined,
        maxConnections: o.maxConnections,
        maxConnectionsPerPeer: o.maxConnectionsPerPeer,
        maxUpstream: o.maxUpstream,
        maxQueued: o.maxQueued,
        upstreamTimeoutMs: o.timeout,
      });
      const addr = await s.listen(listen.port, listen.host);
      const channel = o.tlsCert ? 'tls' : 'tcp';
      // Loaded only with --metrics (it brings prom-client).
      const observeTier = metricsAt ? (await import('../metrics/tier.js')).observeTier : undefined;
      const metrics = await startMetrics(metricsAt, 'cache-server', (r, h) => {
        observeTier?.(r, s);
        h.add(`cache dir ${o.cacheDir}`, dirReadable(o.cacheDir));
      });
      await registerDaemon({ role: 'cache-server', listen: `${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}`, info: { upstream: o.upstream, channel, insecure: !!o.insecure, metrics: metrics?.address } });
      stop.ready();
      if (o.json) console.log(JSON.stringify({ listening: addr, channel, upstream: o.upstream, insecure: !!o.insecure, metrics: metrics?.address }));
      else console.log(`gvfs cache-server: ${o.upstream} on ${addr.address}:${addr.port} (${channel}; ${o.insecure ? 'INSECURE, no site key' : 'site key'})`);
      await drainOnSignal('cache-server', async () => {
        await metrics?.close();
        await s.close();
      }, undefined, stop.stopped);
    });
}

import { Command, InvalidArgumentError } from 'commander';
import { parseAllowUids, type AllowUids } from '../channel/peer-owner.js';
import { readKeyFile } from '../channel/session-key.js';
import { parseSshUrl } from '../channel/ssh.js';
import { checkLink, createProxyClient, endpointUids, sessionName, type ProxyLinkOptions } from '../proxy/proxy-client.js';
import { checkConsistency, DEFAULT_BLOCK_SIZE, DEFAULT_CAPACITY, type ConsistencyModel } from '../wrappers/cache/options.js';
import { drainOnSignal, parseHostPort, parseIntArg, parseSize, daemonSignals } from './util.js';
import { addMetricsOptions, metricsAddress, startMetrics } from './metrics-options.js';
import { cacheChecks, nfsReachable } from '../metrics/health.js';

function parseConsistency(v: string): ConsistencyModel {
  try {
    return checkConsistency(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}
import { registerDaemon } from '../util/runtime-state.js';
import { readFile } from 'node:fs/promises';
import { readTrustedKeys } from '../image/signature.js';
import { parseTiers, SiteCacheClient } from '../sitecache/site-client.js';
import { readSiteKey } from '../sitecache/auth.js';
import { setLogContext } from '../util/log.js';

function parseSeconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`expected seconds (>= 0), got "${v}"`);
  return n;
}

/**
 * The options every command that links to a proxy server shares
 * (proxy-client, mount, flush): the link, and the session's disk cache.
 * The cache's attribute timeout is read from `--attr-timeout` (seconds),
 * which proxy-client and mount each define.
 */
export function addLinkOptions(c: Command, o: { serverRequired?: boolean } = {}): Command {
  const server = '--server <host:port[,host:port...]>';
  const serverHelp = 'the proxy server (with --via: as the SSH server sees it, e.g. 127.0.0.1:PORT); several, comma-separated: fail over to the next when one dies, cannot be reached, or answers nothing for --timeout / (number of servers) ms (proxy servers of one store with a shared --handle-secret; also through --via, as the SSH server sees them). A call that changes the namespace or attributes and may have run on the server that stopped is not resent to another: it fails with EIO rather than run twice';
  return (o.serverRequired === false ? c.option(server, serverHelp) : c.requiredOption(server, serverHelp))
    .option('--key <file>', 'session key file to prove on every connection (gvfs keygen)')
    .option('--tls-fingerprint <sha256>', 'use TLS 1.3 and accept only this server certificate')
    .option('--via <ssh-url>', 'tunnel through OpenSSH: ssh://USER@HOST[:PORT]')
    .option('--ssh-key <file>', 'private key for the SSH tunnel', `${process.env.HOME ?? ''}/.ssh/id_ed25519`)
    .option('--known-hosts <file>', 'known_hosts for strict host-key checking', `${process.env.HOME ?? ''}/.ssh/known_hosts`)
    .option('--user <identity>', 'grid identity to announce (insecure servers without keys)')
    .option('--insecure', 'allow a plaintext channel off loopback and no session key (warns)')
    .option('--connections <n>', 'connections to the proxy server', parseIntArg, 1)
    .option('--timeout <ms>', 'deadline for a call to the proxy server (then the client gets an error); with several --server, each server\'s share of it is how long silence is tolerated before failing over', parseIntArg, 60_000)
    .option('--cache-dir <dir>', 'keep a disk cache of this session in DIR (blocks shared with other sessions using DIR; the write-back journal per session)')
    .option('--cache-size <size>', `disk the cache may use (blocks + journal), e.g. 512M, 10G (default ${DEFAULT_CAPACITY / 1024 ** 3}G)`, parseSize)
    .option('--write-back', 'acknowledge writes once journalled in the cache; deliver them on gvfs flush, session end, --dirty-limit or --dirty-max-age (default with --cache-dir)')
    .option('--write-through', 'send every write to the server before acknowledging it')
    .option('--block-size <size>', `cache block size, a power of two 4K..4M (default ${DEFAULT_BLOCK_SIZE / 1024}K)`, parseSize)
    .option('--dirty-limit <size>', 'write-back backlog that starts a flush (default min(cache size / 4, 512M))', parseSize)
    .option('--dirty-max-age <seconds>', 'longest a write stays unflushed (default 30)', parseSeconds)
    .option('--cache-id <name>', "names the server's files in a shared cache directory (default the proxy server's HOST:PORT); sessions of the same export give the same name to share blocks")
    .option(
      '--consistency <model>',
      'with --cache-dir: how changes made elsewhere reach the cache. ttl: attributes and names trusted for --attr-timeout; poll: trusted until the proxy server\'s change log lists them, asked once per --poll-period (one call, whatever the number of files); callback: trusted while the proxy server\'s delegation is held; another host\'s conflicting call recalls it (write-back data is flushed first)',
      parseConsistency,
    )
    .option('--poll-period <seconds>', 'with --consistency poll: how often the change log is asked; a change made elsewhere shows within it (default 1)', parseSeconds)
    .option('--cache-session <name>', "this session's own state in the cache directory (journal, control socket; default the key id)")
    .option('--no-meta', 'ignore application meta-data (zero maps, hashes, whole-file and prefetch hints): read every file on demand')
    .option('--meta-window <n>', 'bulk calls on the wire at once for a whole-file or prefetch transfer', parseIntArg, 4)
    .option('--no-compress', 'ask the proxy server for uncompressed bulk transfers')
    .option('--trust-publisher <file>', "read files of store images (proxy servers with --store) by chunk hash: each image's signed manifest is verified here against this publisher key file (repeatable), every chunk against its hash; chunks are kept under --cache-dir/chunks, shared by images", collectArg)
    .option('--site-cache <host:port,...>', 'with --trust-publisher: a site cache tier (gvfs cache-server) asked for chunks before the proxy server; what it sends is verified, a tier that fails or is slow is skipped for a while')
    .option('--site-key <file>', 'the site key of --site-cache (32 bytes; the file given to gvfs cache-server --key)')
    .option('--site-ca <file>', 'TLS: the CA certificate (PEM) of the --site-cache tiers (their cert.pem)')
    .option('--site-timeout <ms>', 'longest wait for one chunk from a tier before the proxy server is asked (default 3000)', parseIntArg);
}

const collectArg = (v: string, prev: string[] = []) => [...prev, v];

/** --trust-publisher and the site tier flags: the chunk reader's options, or undefined. */
async function chunkOptions(o: Record<string, any>): Promise<ProxyLinkOptions['chunks']> {
  const files = (o.trustPublisher as string[] | undefined) ?? [];
  if (!files.length) {
    if (o.siteCache || o.siteKey || o.siteCa) throw new InvalidArgumentError('--site-cache, --site-key and --site-ca need --trust-publisher (chunks are verified against the signed manifests)');
    return undefined;
  }
  const trusted = await readTrustedKeys(files);
  if ((o.siteKey || o.siteCa || o.siteTimeout !== undefined) && !o.siteCache) throw new InvalidArgumentError('--site-key, --site-ca and --site-timeout go with --site-cache');
  const site = o.siteCache
    ? new SiteCacheClient({ tiers: parseTiers(o.siteCache), key: o.siteKey ? await readSiteKey(o.siteKey) : undefined, tlsCa: o.siteCa ? await readFile(o.siteCa) : undefined, timeoutMs: o.siteTimeout ?? DEFAULT_SITE_TIMEOUT_MS })
    : undefined;
  return { trusted, site };
}

/** A tier slower than this for one chunk is skipped (the proxy server answers instead). */
const DEFAULT_SITE_TIMEOUT_MS = 3000;

export async function linkOptions(o: Record<string, any>): Promise<ProxyLinkOptions> {
  const [server, ...alternates] = String(o.server).split(',').map((s) => parseHostPort(s.trim()));
  const key = o.key ? await readKeyFile(o.key) : undefined;
  const via = o.via ? parseSshUrl(o.via) : undefined;
  // This process serves one session: every log line names it (and the proxy server it talks to).
  setLogContext({ session: sessionName({ key, user: o.user }), server: `${server.host}:${server.port}` });
  return {
    host: server.host,
    port: server.port,
    alternates: alternates.length ? alternates : undefined,
    key,
    user: o.user,
    tlsFingerprint: o.tlsFingerprint,
    ssh: via && { host: via.host, port: via.port, username: via.username, privateKeyFile: o.sshKey, knownHostsFile: o.knownHosts },
    insecure: !!o.insecure,
    connections: o.connections,
    timeoutMs: o.timeout,
    cache: cacheOptions(o),
    meta: o.meta === false ? false : { window: o.metaWindow, compress: o.compress !== false },
    chunks: await chunkOptions(o),
  };
}

function cacheOptions(o: Record<string, any>): ProxyLinkOptions['cache'] {
  if (!o.cacheDir) {
    for (const flag of ['cacheSize', 'writeBack', 'writeThrough', 'blockSize', 'dirtyLimit', 'dirtyMaxAge', 'cacheId', 'cacheSession', 'consistency', 'pollPeriod']) {
      if (o[flag] !== undefined && !(flag === 'consistency' && o[flag] === 'ttl')) throw new InvalidArgumentError(`--${flag.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} needs --cache-dir`);
    }
    return undefined;
  }
  if (o.writeBack && o.writeThrough) throw new InvalidArgumentError('--write-back and --write-through exclude each other');
  return {
    dir: o.cacheDir,
    capacity: o.cacheSize ?? DEFAULT_CAPACITY,
    // Asked for: refused when larger than the disk can hold; the default shrinks to fit instead.
    capacityIsDefault: o.cacheSize === undefined,
    writeBack: !o.writeThrough,
    blockSize: o.blockSize,
    attrTimeoutMs: o.attrTimeout !== undefined ? Math.round(o.attrTimeout * 1000) : undefined,
    dirtyLimit: o.dirtyLimit,
    maxDirtyAgeMs: o.dirtyMaxAge !== undefined ? Math.round(o.dirtyMaxAge * 1000) : undefined,
    serverId: o.cacheId,
    session: o.cacheSession,
    consistency: o.consistency,
    pollMs: o.pollPeriod !== undefined ? Math.round(o.pollPeriod * 1000) : undefined,
  };
}

function allowUidArg(v: string): AllowUids {
  try {
    return parseAllowUids(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

export function proxyClientCommand(): Command {
  return addLinkOptions(
    addMetricsOptions(new Command('proxy-client')).description('Run a GVFS proxy client: an NFSv3 + MOUNT endpoint on loopback that forwards to a proxy server over a private channel'),
  )
    .option('--listen <host:port>', 'where unmodified NFS clients connect', '127.0.0.1:0')
    .option('--attr-timeout <seconds>', 'with --cache-dir: how long attributes and names are trusted before a change made elsewhere is looked for', parseSeconds, 1)
    .option('--allow-uid <uid[,uid...]>', 'local users whose NFS clients may connect (the kernel names the owner of each connection; root always may); "any": no check, for NFS clients on other hosts (default: the uid running the proxy client)', allowUidArg)
    .option('--json', 'print the listening address as JSON')
    .action(async (o) => {
      const stop = daemonSignals('proxy-client');
      const metricsAt = await metricsAddress(o);
      const link = await linkOptions(o);
      const listen = parseHostPort(o.listen);
      const p = createProxyClient({ ...link, allowUids: o.allowUid });
      try {
        await p.cache?.ready;
        // A refused key or TLS pin ends the command here, non-zero, with the reason (not MNT3ERR_IO later).
        await checkLink(p.remote);
      } catch (e) {
        await p.close().catch(() => undefined);
        throw e;
      }
      const addr = await p.server.listen(listen.port, listen.host);
      const channel = link.ssh ? 'ssh' : link.tlsFingerprint ? 'tls' : 'tcp';
      const who = link.key ? `session ${link.key.id} (${link.key.user})` : link.user;
      const cache = p.cache && {
        dir: p.cache.opts.dir,
        sessionDir: p.cache.sessionDir,
        mode: p.cache.opts.writeBack ? 'write-back' : 'write-through',
        capacity: p.cache.opts.capacity,
        blockSize: p.cache.opts.blockSize,
        consistency: p.cache.opts.consistency,
        pollMs: p.cache.opts.pollMs,
      };
      const allowed = endpointUids(o.allowUid);
      const allowUids = allowed === 'any' ? 'any' : [...allowed];
      const metrics = await startMetrics(metricsAt, 'proxy-client', async (r, h) => {
        // prom-client only with --metrics
        const [{ observeRpcServer }, { observeClientStack }] = await Promise.all([import('../metrics/rpc.js'), import('../metrics/client.js')]);
        observeRpcServer(r, p.server, 'nfs', 'tcp');
        observeClientStack(r, p, channel);
        h.add('upstream', nfsReachable(p.remote));
        if (p.cache) for (const [name, check] of Object.entries(cacheChecks(p.cache))) h.add(name, check);
      });
      await registerDaemon({ role: 'proxy-client', listen: `${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}`, server: `${link.host}:${link.port}`, session: link.key?.id, user: link.key?.user ?? link.user, cacheDir: p.cache?.opts.dir, sessionDir: p.cache?.sessionDir, info: { channel, metrics: metrics?.address } });
      stop.ready();
      const chunks = link.chunks && { publishers: link.chunks.trusted.length, siteCache: o.siteCache ?? null };
      if (o.json) console.log(JSON.stringify({ listening: addr, server: { host: link.host, port: link.port }, channel, session: link.key?.id, user: link.key?.user ?? link.user, cache, chunks, allowUids, metrics: metrics?.address }));
      else {
        console.log(`gvfs proxy-client: NFSv3 on ${addr.address}:${addr.port} -> ${link.host}:${link.port} over ${channel} as ${who}`);
        console.log(`gvfs proxy-client: serves connections of ${allowUids === 'any' ? 'any user and host' : `uid ${allowUids.join(', ')}`}`);
        if (cache) console.log(`gvfs proxy-client: ${cache.mode} cache in ${cache.dir} (${cache.capacity} bytes, ${cache.blockSize}-byte blocks; consistency ${cache.consistency === 'poll' ? `poll every ${cache.pollMs} ms` : cache.consistency})`);
      }
      await drainOnSignal('proxy-client', async () => {
        await metrics?.close();
        await p.close();
      }, undefined, stop.stopped);
    });
}

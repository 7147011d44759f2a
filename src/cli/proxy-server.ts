import { Command, InvalidArgumentError } from 'commander';
import { createProxyServer, type ProxyExportSpec } from '../proxy/proxy-server.js';
import { parseNfsUrl } from '../proxy/upstream-url.js';
import { parseExportRootCheck, type ExportRootCheck } from '../proxy/export-root.js';
import { readKeyFile } from '../channel/session-key.js';
import { SessionRegistry } from '../channel/sessions.js';
import { readTlsFiles } from '../channel/tls.js';
import { loadMapFile, parseMapFlag, type IdentityMap } from '../wrappers/identity-map/map-file.js';
import { openStore } from '../store/open-store.js';
import { readTrustedKeys } from '../image/signature.js';
import { readFile } from 'node:fs/promises';
import { parseTiers, SiteCacheClient } from '../sitecache/site-client.js';
import { readSiteKey } from '../sitecache/auth.js';
import { drainOnSignal, parseHostPort, parseIntArg, daemonSignals } from './util.js';
import { addMetricsOptions, metricsAddress, startMetrics } from './metrics-options.js';
import { dirReadable, nfsReachable } from '../metrics/health.js';
import { registerDaemon } from '../util/runtime-state.js';

/** Seconds, at least 0.1 (a lease shorter than that could not be renewed). */
function parseSeconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0.1) throw new InvalidArgumentError(`expected seconds (>= 0.1), got "${v}"`);
  return n;
}

/** The limits given on the command line (the others keep their defaults). */
function definedOnly<T extends Record<string, number | undefined>>(o: T): Partial<Record<keyof T, number>> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<Record<keyof T, number>>;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** A trailing `:ro` (or `:rw`) on an export: [the rest, read-only?]. */
function splitMode(v: string): [string, boolean] {
  const m = /^(.*):(ro|rw)$/.exec(v);
  return m ? [m[1], m[2] === 'ro'] : [v, false];
}

/** `X=NAME` → [X, NAME]; the name part is optional. */
function splitName(v: string): [string, string | undefined] {
  const i = v.lastIndexOf('=');
  return i > 0 && v.slice(i + 1).startsWith('/') ? [v.slice(0, i), v.slice(i + 1)] : [v, undefined];
}

async function readHandleSecret(file: string): Promise<Buffer> {
  const b = await readFile(file);
  if (b.length !== 32) throw new Error(`--handle-secret ${file}: expected exactly 32 bytes, found ${b.length}`);
  return b;
}

export function proxyServerCommand(): Command {
  return addMetricsOptions(new Command('proxy-server'))
    .description('Run a GVFS proxy server: forwards NFSv3 to an upstream NFS server (or serves a directory) with identity mapping')
    .option('--listen <host:port>', 'address to listen on (port 0 picks a free port)', '127.0.0.1:0')
    .option('--upstream <url[=/name][:ro]>', 'upstream NFSv3 export nfs://HOST[:PORT]/PATH[?mountport=N], optionally served as /name; :ro refuses every change (repeatable)', collect)
    .option('--export <dir[=/name][:ro]>', 'serve a local directory directly, optionally as /name; :ro refuses every change (repeatable)', collect)
    .option('--export-expect <dir=dev:ino>', 'serve DIR only if it is still that directory: no symbolic link on its path, that device and inode (what the agent checked; repeatable)', collect)
    .option('--store <url[=/name]>', 'serve the signed images of an object store read-only: s3://BUCKET[/PREFIX] or file:///DIR, optionally as /name (repeatable)', collect)
    .option('--store-endpoint <url>', 'S3 endpoint for --store (e.g. a Ceph radosgw); credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY')
    .option('--trust-publisher <file>', 'a publisher public key file (gvfs image keygen ... .pub) whose manifests --store serves (repeatable; required with --store)', collect)
    .option('--site-cache <host:port,...>', "a site cache tier (gvfs cache-server) asked for --store chunks before the store; every chunk is verified by hash, a tier that fails is skipped")
    .option('--site-key <file>', 'the site key of --site-cache (32 bytes; the file given to gvfs cache-server --key)')
    .option('--site-ca <file>', 'TLS: the CA certificate (PEM) of the --site-cache tiers')
    .option('--handle-secret <file>', 'handle MAC secret (32 bytes; e.g. head -c 32 /dev/urandom): give every proxy server of one store the same file so clients can fail over between them')
    .option('--map <file>', 'identity map file: lines "IDENTITY UID GID [G1,G2...]" (see README)')
    .option('--map-user <name=uid:gid[:groups]>', 'map one identity (repeatable)', collect)
    .option('--key <file>', 'a session key file (gvfs keygen); connections must prove one (repeatable)', collect)
    .option('--insecure', 'serve without session keys (identities as clients claim them); plaintext off loopback')
    .option('--tls-cert <file>', 'TLS 1.3: certificate (PEM)')
    .option('--tls-key <file>', 'TLS 1.3: private key (PEM, owner-only)')
    .option('--state-dir <dir>', 'where handle secrets and journals live')
    .option('--upstream-connections <n>', 'connections to each upstream server', parseIntArg, 1)
    .option('--timeout <ms>', 'upstream call deadline', parseIntArg, 60_000)
    .option('--compress-level <n>', 'zstd level of bulk meta-data transfers (1 by measurement; see docs/meta-data.md)', parseIntArg, 1)
    .option('--handshake-timeout <ms>', 'longest from TCP accept to the end of the TLS handshake', parseIntArg)
    .option('--proof-timeout <ms>', 'longest from TCP accept to a proved session key', parseIntArg)
    .option('--max-unproven <n>', 'connections not yet proven (from accept); when full the oldest is dropped', parseIntArg)
    .option('--max-connections <n>', 'proven connections at once', parseIntArg)
    .option('--max-connections-per-peer <n>', 'proven connections at once from one address', parseIntArg)
    .option('--delegate-unwatched', 'callback consistency: grant delegations also on exports whose changes this server cannot all see (an upstream NFS server, a store, a local export without the fanotify disk watcher); give it only when every change goes through this proxy server. Without it such exports get no delegations and their callback clients ask every call')
    .option('--delegation-lease <seconds>', 'callback consistency: the lease of a delegation; a holder that does not renew (or answer a recall) within it is revoked and fenced, and after a restart with holders on record only reclaims are served for one lease (default 30)', parseSeconds)
    .option('--json', 'print the listening address as JSON')
    .action(async (o) => {
      const stop = daemonSignals('proxy-server');
      const metricsAt = await metricsAddress(o);
      const expect = new Map<string, ExportRootCheck>();
      for (const v of (o.exportExpect as string[] | undefined) ?? []) {
        const i = v.lastIndexOf('=');
        if (i <= 0) throw new Error(`--export-expect ${v}: give DIR=DEV:INO`);
        expect.set(v.slice(0, i), parseExportRootCheck(v.slice(i + 1)));
      }
      const exports: ProxyExportSpec[] = [
        ...((o.upstream as string[] | undefined) ?? []).map((v): ProxyExportSpec => {
          const [spec, readOnly] = splitMode(v);
          const [u, name] = splitName(spec);
          return { kind: 'upstream', url: parseNfsUrl(u), name, readOnly };
        }),
        ...((o.export as string[] | undefined) ?? []).map((v): ProxyExportSpec => {
          const [spec, readOnly] = splitMode(v);
          const [dir, name] = splitName(spec);
          const want = expect.get(dir);
          expect.delete(dir);
          return { kind: 'local', dir, name, readOnly, expect: want };
        }),
      ];
      const stores = (o.store as string[] | undefined) ?? [];
      if (stores.length) {
        const trustFiles = (o.trustPublisher as string[] | undefined) ?? [];
        if (!trustFiles.length) throw new Error('--store needs --trust-publisher FILE (only signed images of trusted publishers are served)');
        const trusted = await readTrustedKeys(trustFiles);
        const site = o.siteCache ? new SiteCacheClient({ tiers: parseTiers(o.siteCache), key: o.siteKey ? await readSiteKey(o.siteKey) : undefined, tlsCa: o.siteCa ? await readFile(o.siteCa) : undefined }) : undefined;
        for (const v of stores) {
          const [u, name] = splitName(v);
          exports.push({ kind: 'store', store: openStore(u, { endpoint: o.storeEndpoint }), trusted, name, site });
        }
      }
      if (expect.size) throw new Error(`--export-expect names no --export: ${[...expect.keys()].join(', ')}`);
      if ((o.siteCache || o.siteKey) && !stores.length) throw new Error('--site-cache and --site-key go with --store');
      if (exports.length === 0) throw new Error('give at least one --upstream URL, --export DIR or --store URL');
      const map: IdentityMap = o.map ? await loadMapFile(o.map) : new Map();
      for (const v of (o.mapUser as string[] | undefined) ?? []) {
        const [k, a] = parseMapFlag(v);
        map.set(k, a);
      }
      const keys = await Promise.all(((o.key as string[] | undefined) ?? []).map((f) => readKeyFile(f)));
      if (map.size === 0 && !keys.some((k) => k.account)) throw new Error('no identities mapped: give --map FILE or --map-user NAME=UID:GID (nobody could use this proxy)');
      if (!!o.tlsCert !== !!o.tlsKey) throw new Error('--tls-cert and --tls-key go together');
      const listen = parseHostPort(o.listen);
      const p = await createProxyServer({
        exports,
        map,
        sessions: new SessionRegistry(keys),
        insecure: !!o.insecure,
        tls: o.tlsCert ? await readTlsFiles(o.tlsCert, o.tlsKey) : undefined,
        stateDir: o.stateDir,
        upstreamConnections: o.upstreamConnections,
        upstreamTimeoutMs: o.timeout,
        compressLevel: o.compressLevel,
        delegateUnwatched: !!o.delegateUnwatched,
        delegationLeaseMs: o.delegationLease !== undefined ? Math.round(o.delegationLease * 1000) : undefined,
        handleSecret: o.handleSecret ? await readHandleSecret(o.handleSecret) : undefined,
        tlsHandshakeTimeoutMs: o.handshakeTimeout,
        proofTimeoutMs: o.proofTimeout,
        limits: definedOnly({ maxUnproven: o.maxUnproven, maxConnections: o.maxConnections, maxConnectionsPerPeer: o.maxConnectionsPerPeer }),
      });
      const addr = await p.listen(listen.port, listen.host);
      const names = (await p.backend.exports()).map((e) => e.path);
      const channel = o.tlsCert ? 'tls' : 'tcp';
      const metrics = await startMetrics(metricsAt, 'proxy-server', async (r, h) => {
        const { observeRpcServer } = await import('../metrics/rpc.js'); // prom-client only with --metrics
        observeRpcServer(r, p.server, 'proxy', channel);
        // Readiness: every upstream NFS server answers, every local export can be listed.
        let u = 0;
        for (const e of exports) {
          if (e.kind === 'upstream') h.add(`upstream ${e.url.host}:${e.url.port}${e.url.path}`, nfsReachable(p.upstreams[u++]));
          else if (e.kind === 'local') h.add(`export ${e.dir}`, dirReadable(e.dir));
        }
      });
      await registerDaemon({ role: 'proxy-server', listen: `${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}`, info: { exports: names, channel, sessionKeys: keys.map((k) => k.id), insecure: !!o.insecure, metrics: metrics?.address } });
      stop.ready();
      if (o.json) console.log(JSON.stringify({ listening: addr, channel, exports: names, readOnly: exports.filter((e) => e.kind === 'store' || e.readOnly).map((e) => e.name ?? (e.kind === 'upstream' ? e.url.path : '/')), sessions: keys.map((k) => k.id), insecure: !!o.insecure, metrics: metrics?.address }));
      else console.log(`gvfs proxy-server: ${names.join(', ')} on ${addr.address}:${addr.port} (${channel}; ${o.insecure ? 'INSECURE, no session keys' : `${keys.length} session key(s)`})`);
      await drainOnSignal('proxy-server', async () => {
        await metrics?.close();
        await p.close();
      }, undefined, stop.stopped);
    });
}

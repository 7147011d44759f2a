import fs from 'node:fs/promises';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { Command } from 'commander';
import { fingerprintOf, makeSelfSignedCert, readTlsFiles } from '../channel/tls.js';
import { drainOnSignal, parseHostPort, daemonSignals } from './util.js';
import { addMetricsOptions, metricsAddress, startMetrics } from './metrics-options.js';
import { registerDaemon } from '../util/runtime-state.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** The TLS certificate of a service: given, or made in its state directory on first start. */
export async function serviceTls(o: { tlsCert?: string; tlsKey?: string }, stateDir: string, cn: string): Promise<{ certFile: string; keyFile: string; cert: Buffer; key: Buffer; fingerprint: string }> {
  if (!!o.tlsCert !== !!o.tlsKey) throw new Error('--tls-cert and --tls-key go together');
  let certFile = o.tlsCert;
  let keyFile = o.tlsKey;
  if (!certFile || !keyFile) {
    const dir = path.join(stateDir, 'tls');
    certFile = path.join(dir, 'cert.pem');
    keyFile = path.join(dir, 'key.pem');
    const have = await fs.stat(certFile).then(() => true, () => false);
    if (!have) await makeSelfSignedCert(dir, cn);
  }
  const files = await readTlsFiles(certFile, keyFile);
  return { certFile: path.resolve(certFile), keyFile: path.resolve(keyFile), ...files, fingerprint: fingerprintOf(files.cert) };
}

/** Grace for requests in progress when an API server stops; then every connection is closed. */
const HTTP_GRACE_MS = 3000;

type HttpApp = { close(): Promise<unknown>; server: NodeJS.EventEmitter & { closeAllConnections(): void } };
const sockets = new WeakMap<object, Set<Duplex>>();

/** Remember every socket of an API server from its TCP accept (call before listen): closeHttp ends them. */
export function trackConnections(app: HttpApp): void {
  const set = new Set<Duplex>();
  sockets.set(app, set);
  const add = (s: Duplex) => {
    set.add(s);
    s.once('close', () => set.delete(s));
  };
  app.server.on('connection', add);
  app.server.on('secureConnection', add);
}

/**
 * Stop an HTTPS API: no new connections, idle keep-alive ones closed at once
 * (fastify's default), requests in progress given HTTP_GRACE_MS, then every
 * connection closed: a half-sent request would hold its connection for
 * Node's 60 s header timeout, and a TCP connection that never starts TLS
 * is not an HTTP connection at all (closeAllConnections misses it) and
 * holds for the 120 s handshake timeout.
 */
export async function closeHttp(app: HttpApp): Promise<void> {
  const t = setTimeout(() => {
    app.server.closeAllConnections();
    for (const s of sockets.get(app) ?? []) s.destroy();
  }, HTTP_GRACE_MS);
  try {
    await app.close();
  } finally {
    clearTimeout(t);
  }
}

export function agentCommand(): Command {
  return addMetricsOptions(new Command('agent'))
    .description("Run a host's GVFS agent: an HTTPS API (mutual TLS, for its session service only) that starts, reconfigures and stops the proxy servers and mounts of sessions on this host")
    .requiredOption('--name <name>', "this host's name in sessions (e.g. state, data, compute)")
    .requiredOption('--state-dir <dir>', 'where the agent keeps its database, session keys, logs and caches')
    .requiredOption('--controller <sha256>', "certificate fingerprint of the session service allowed to give orders (repeatable)", collect)
    .option('--listen <host:port>', 'address of the API', '127.0.0.1:0')
    .option('--tls-cert <file>', "the agent's certificate (default: made in STATE-DIR/tls on first start); its proxy servers present it too")
    .option('--tls-key <file>', 'its private key (owner-only)')
    .option('--export-root <dir>', 'sessions may export directories under DIR (repeatable; none by default)', collect, [])
    .option('--mount-root <dir>', 'sessions may mount under DIR (repeatable; none by default)', collect, [])
    .option('--allow-upstream <host:port>', 'an NFSv3 server sessions may export through this host (nfs:// paths; repeatable; none by default)', collect, [])
    .option('--proxy-host <addr>', 'address the TLS proxy servers listen on', '127.0.0.1')
    .option('--ssh-url <url>', "ssh://USER@HOST[:PORT]: how other hosts reach this host's OpenSSH (enables the SSH channel)")
    .option('--ssh-key <file>', "this host's private key for SSH tunnels (mounts over the SSH channel)")
    .option('--known-hosts <file>', 'known_hosts for those tunnels')
    .option('--site-cache <host:port,...>', "this site's cache tier (gvfs cache-server): mounts of sessions that trust publisher keys ask it for store chunks first")
    .option('--site-key <file>', 'the site key of --site-cache')
    .option('--site-ca <file>', 'TLS: the CA certificate (PEM) of the --site-cache tiers')
    .option('--json', 'print the address and fingerprint as JSON')
    .action(async (o) => {
      const stop = daemonSignals('agent');
      const metricsAt = await metricsAddress(o);
      // Loaded here, not at the top: every gvfs command (each proxy process a session runs) would pay for fastify and SQLite.
      const { Agent } = await import('../services/agent/agent.js');
      const { agentApp } = await import('../services/agent/routes.js');
      const stateDir = path.resolve(o.stateDir);
      await fs.mkdir(stateDir, { recursive: true, mode: 0o700 });
      const tls = await serviceTls(o, stateDir, `gvfs-agent-${o.name}`);
      const agent = await Agent.open({
        name: o.name,
        stateDir,
        certFile: tls.certFile,
        keyFile: tls.keyFile,
        fingerprint: tls.fingerprint,
        exportRoots: (o.exportRoot as string[]).map((d) => path.resolve(d)),
        mountRoots: (o.mountRoot as string[]).map((d) => path.resolve(d)),
        proxyHost: o.proxyHost,
        allowUpstreams: o.allowUpstream as string[],
        sshUrl: o.sshUrl,
        sshKey: o.sshKey && path.resolve(o.sshKey),
        knownHosts: o.knownHosts && path.resolve(o.knownHosts),
        siteCache: o.siteCache,
        siteKey: o.siteKey && path.resolve(o.siteKey),
        siteCa: o.siteCa && path.resolve(o.siteCa),
      });
      const app = agentApp(agent, { cert: tls.cert, key: tls.key, controllers: o.controller });
      trackConnections(app);
      const listen = parseHostPort(o.listen);
      await app.listen({ port: listen.port, host: listen.host });
      const a = app.server.address() as { address: string; port: number };
      const url = `https://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
      const { observeAgent } = await import('../metrics/services.js');
      const metrics = await startMetrics(metricsAt, 'agent', (r, h) => observeAgent(r, h, agent, stateDir));
      await registerDaemon({ role: 'agent', listen: url, info: { name: o.name, fingerprint: tls.fingerprint, stateDir, sessions: agent.list().length } });
      stop.ready();
      if (o.json) console.log(JSON.stringify({ listening: { address: a.address, port: a.port }, name: o.name, url, fingerprint: tls.fingerprint, metrics: metrics?.address }));
      else console.log(`gvfs agent ${o.name}: ${url} (certificate ${tls.fingerprint}); sessions here: ${agent.list().length}`);
      await drainOnSignal('agent', async () => {
        await metrics?.close();
        await closeHttp(app);
        agent.close();
      }, 'shutting down (sessions keep running)', stop.stopped);
    });
}

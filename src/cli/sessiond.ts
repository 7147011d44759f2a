import fs from 'node:fs/promises';
import path from 'node:path';
import { Command } from 'commander';
import { normalizeFingerprint } from '../channel/tls.js';
import type { AgentRef } from '../services/sessiond/service.js';
import { addUser, parseAccount, Users } from '../services/sessiond/users.js';
import { closeHttp, serviceTls, trackConnections } from './agent.js';
import { logger } from '../util/log.js';
import { drainOnSignal, parseHostPort, parseIntArg, daemonSignals } from './util.js';
import { addMetricsOptions, metricsAddress, startMetrics } from './metrics-options.js';
import { registerDaemon } from '../util/runtime-state.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];
const log = logger('sessiond');

/** NAME=https://HOST:PORT,SHA256 */
function parseAgent(v: string): AgentRef {
  const m = /^([A-Za-z0-9._-]{1,64})=(https:\/\/[^,]+),(.+)$/.exec(v);
  if (!m) throw new Error(`--agent: expected NAME=https://HOST:PORT,FINGERPRINT, got "${v}"`);
  return { name: m[1], url: m[2], fingerprint: normalizeFingerprint(m[3]) };
}

export function sessiondCommand(): Command {
  const c = addMetricsOptions(new Command('sessiond'))
    .description('Run the GVFS session service: an HTTPS API, its OpenAPI document (/openapi.json) and a dashboard (/dashboard) that create, tailor, renew and tear down sessions through the hosts\' agents')
    .option('--state-dir <dir>', 'where the service keeps its database (and its certificate, unless given)')
    .option('--users <file>', 'users file (gvfs sessiond add-user)')
    .option('--agent <name=url,fingerprint>', 'a host: its name, its agent\'s URL and certificate fingerprint (repeatable)', collect, [])
    .option('--listen <host:port>', 'address of the API and dashboard', '127.0.0.1:0')
    .option('--tls-cert <file>', 'the service\'s certificate (default: made in STATE-DIR/tls on first start); also its client certificate towards the agents')
    .option('--tls-key <file>', 'its private key (owner-only)')
    .option('--max-lifetime <seconds>', 'longest lifetime a session may have', parseIntArg, 7 * 86400)
    .option('--default-lifetime <seconds>', 'lifetime of a session that does not name one', parseIntArg, 3600)
    .option('--json', 'print the address and fingerprint as JSON')
    .action(async (o) => {
      const stop = daemonSignals('sessiond');
      const metricsAt = await metricsAddress(o);
      if (!o.stateDir) throw new Error('--state-dir DIR is required');
      if (!o.users) throw new Error('--users FILE is required (gvfs sessiond add-user FILE NAME makes one)');
      // Loaded here, not at the top: every gvfs command would pay for fastify and SQLite.
      const { SessionService } = await import('../services/sessiond/service.js');
      const { sessiondApp } = await import('../services/sessiond/routes.js');
      const stateDir = path.resolve(o.stateDir);
      await fs.mkdir(stateDir, { recursive: true, mode: 0o700 });
      const tls = await serviceTls(o, stateDir, 'gvfs-sessiond');
      let users = await Users.load(o.users);
      // The users file is read again when it changes (a user added or removed without a restart).
      let mtime = (await fs.stat(o.users)).mtimeMs;
      const watch = setInterval(() => {
        void fs.stat(o.users).then(async (st) => {
          if (st.mtimeMs === mtime) return;
          mtime = st.mtimeMs;
          users = await Users.load(o.users);
        }).catch((e) => log.warn({ file: o.users, reason: (e as Error).message }, 'users file could not be read again; keeping the previous one'));
      }, 2000);
      watch.unref();
      const svc = await SessionService.open({
        stateDir,
        cert: tls.cert,
        key: tls.key,
        agents: (o.agent as string[]).map(parseAgent),
        maxLifetime: o.maxLifetime,
        defaultLifetime: o.defaultLifetime,
      });
      const app = sessiondApp(svc, () => users, { cert: tls.cert, key: tls.key });
      trackConnections(app);
      const listen = parseHostPort(o.listen);
      await app.listen({ port: listen.port, host: listen.host });
      const a = app.server.address() as { address: string; port: number };
      const url = `https://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
      const { observeSessiond } = await import('../metrics/services.js');
      const metrics = await startMetrics(metricsAt, 'sessiond', (r, h) => observeSessiond(r, h, svc, stateDir));
      await registerDaemon({ role: 'sessiond', listen: url, info: { fingerprint: tls.fingerprint, stateDir, hosts: svc.hosts.map((h) => h.name) } });
      stop.ready();
      if (o.json) console.log(JSON.stringify({ listening: { address: a.address, port: a.port }, url, fingerprint: tls.fingerprint, hosts: svc.hosts.map((h) => h.name), metrics: metrics?.address }));
      else console.log(`gvfs sessiond: ${url} (certificate ${tls.fingerprint}); hosts ${svc.hosts.map((h) => h.name).join(', ') || 'none'}; dashboard ${url}/dashboard`);
      await drainOnSignal('sessiond', async () => {
        clearInterval(watch);
        await metrics?.close();
        await closeHttp(app);
        svc.close();
      }, 'shutting down (sessions keep running and their lifetimes count on)', stop.stopped);
    });
  c.command('add-user')
    .description('Add a user (or give them a new token) in a users file; prints the token once')
    .argument('<file>', 'the users file (created owner-only)')
    .argument('<name>', 'user name')
    .option('--account <uid:gid[:groups]>', 'a local account their sessions may map to (repeatable; the first is the default)', collect, [])
    .option('--admin', 'may see every session')
    .option('--json', 'print as JSON')
    .action(async (file: string, name: string, o) => {
      const token = await addUser(file, name, (o.account as string[]).map(parseAccount), !!o.admin);
      if (o.json) console.log(JSON.stringify({ user: name, token }));
      else console.log(token);
    });
  return c;
}

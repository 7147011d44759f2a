import fs from 'node:fs/promises';
import path from 'node:path';
import type { Registry } from 'prom-client';
import type { Agent } from '../services/agent/agent.js';
import type { SessionService } from '../services/sessiond/service.js';
import type { Health } from './health.js';
import { pulledCounter, pulledGauge } from './registry.js';

const STATES = ['creating', 'ready', 'destroying', 'destroyed', 'failed'] as const;

/** A directory takes a write (a database's, a journal's): a probe file written and removed. */
function writable(dir: string): () => Promise<void> {
  return async () => {
    const probe = path.join(dir, `.readyz-${process.pid}`);
    await fs.writeFile(probe, 'x');
    await fs.unlink(probe);
  };
}

/** The session service: sessions by state, each live session's time left, its hosts up or down. */
export function observeSessiond(r: Registry, h: Health, svc: SessionService, stateDir: string): void {
  pulledGauge(r, 'gvfs_sessions', 'Sessions the service knows, by state (destroyed and failed ones are kept)', ['state'], () => {
    const n = new Map<string, number>(STATES.map((s) => [s, 0]));
    for (const s of svc.store.list({ ended: true })) n.set(s.state, (n.get(s.state) ?? 0) + 1);
    return [...n].map(([state, v]) => [{ state }, v]);
  });
  pulledGauge(r, 'gvfs_session_seconds_left', 'Lifetime left of each live session (seconds)', ['session', 'user'], () =>
    svc.store.list().filter((s) => s.state === 'ready').map((s) => [{ session: s.id, user: s.user }, Math.max(0, (s.expiresAt - Date.now()) / 1000)]),
  );
  pulledGauge(r, 'gvfs_host_up', "Each host's agent answering its health call (1) or not (0)", ['host'], async () => (await svc.health()).map((x) => [{ host: x.name }, x.up ? 1 : 0]));
  h.add('database', writable(stateDir));
}

/** A host's agent: its sessions and components by state and kind, restarts. */
export function observeAgent(r: Registry, h: Health, agent: Agent, stateDir: string): void {
  pulledGauge(r, 'gvfs_agent_sessions', 'Sessions with components on this host', [], () => [[{}, agent.list().length]]);
  pulledGauge(r, 'gvfs_agent_components', 'Components (proxy servers, proxy clients, mounts) on this host by kind and state', ['kind', 'state'], () => {
    const n = new Map<string, number>();
    for (const c of agent.store.list()) {
      const k = `${c.kind}\0${c.state}`;
      n.set(k, (n.get(k) ?? 0) + 1);
    }
    return [...n].map(([k, v]) => {
      const [kind, state] = k.split('\0');
      return [{ kind, state }, v];
    });
  });
  pulledCounter(r, 'gvfs_agent_component_restarts_total', 'Restarts of components on this host (by the agent)', [], () => [[{}, agent.store.list().reduce((t, c) => t + c.restarts, 0)]]);
  h.add('database', writable(stateDir));
}

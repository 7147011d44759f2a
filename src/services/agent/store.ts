import Database from 'better-sqlite3';
import path from 'node:path';

/**
 * What an agent runs, in SQLite in its state directory (WAL, synchronous
 * FULL: a row is on disk before the answer that announces it). One row per
 * component: a proxy server or a mount of a session on this host.
 *
 * state: starting → running → stopping → (row deleted)
 *   A row still `starting` after a restart was half-started: its process
 *   is killed and the row dropped. `stopping` is finished. `running` is
 *   re-attached (same pid and start time) or restarted with the same
 *   arguments (a proxy server on the same port).
 * running → failed: a restart found it could no longer run confined (its
 *   exported directory swapped, its mount point path through a link); it
 *   stays stopped with the reason in `info.error` until the session is
 *   deleted, never restarted in a loop.
 */
export type ComponentKind = 'proxy-server' | 'mount' | 'proxy-client';
export type ComponentState = 'starting' | 'running' | 'stopping' | 'failed';

export interface ComponentRow {
  session: string;
  name: string;
  kind: ComponentKind;
  state: ComponentState;
  spec: any;
  args: string[];
  pid: number | null;
  startTime: string | null;
  port: number | null;
  info: any;
  restarts: number;
  createdAt: string;
  updatedAt: string;
}

export class AgentStore {
  private readonly db: Database.Database;

  constructor(stateDir: string) {
    this.db = new Database(path.join(stateDir, 'agent.db'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(`CREATE TABLE IF NOT EXISTS components (
      session TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,
      spec TEXT NOT NULL, args TEXT NOT NULL, pid INTEGER, start_time TEXT, port INTEGER, info TEXT,
      restarts INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
      PRIMARY KEY (session, name))`);
  }

  private static row(r: any): ComponentRow {
    return {
      session: r.session,
      name: r.name,
      kind: r.kind,
      state: r.state,
      spec: JSON.parse(r.spec),
      args: JSON.parse(r.args),
      pid: r.pid,
      startTime: r.start_time,
      port: r.port,
      info: r.info ? JSON.parse(r.info) : null,
      restarts: r.restarts,
      createdAt: r.created_at,
      updatedAt: r.updated_at,
    };
  }

  get(session: string, name: string): ComponentRow | undefined {
    const r = this.db.prepare('SELECT * FROM components WHERE session = ? AND name = ?').get(session, name);
    return r ? AgentStore.row(r) : undefined;
  }

  list(session?: string): ComponentRow[] {
    const rows = session === undefined ? this.db.prepare('SELECT * FROM components ORDER BY created_at').all() : this.db.prepare('SELECT * FROM components WHERE session = ? ORDER BY created_at').all(session);
    return rows.map(AgentStore.row);
  }

  insert(c: Pick<ComponentRow, 'session' | 'name' | 'kind' | 'spec' | 'args' | 'port'>): void {
    const now = new Date().toISOString();
    this.db
      .prepare('INSERT INTO components (session, name, kind, state, spec, args, port, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(c.session, c.name, c.kind, 'starting', JSON.stringify(c.spec), JSON.stringify(c.args), c.port, now, now);
  }

  update(session: string, name: string, u: Partial<Pick<ComponentRow, 'state' | 'pid' | 'startTime' | 'port' | 'info' | 'spec' | 'args' | 'restarts'>>): void {
    const cols: string[] = [];
    const vals: unknown[] = [];
    const map: Record<string, string> = { state: 'state', pid: 'pid', startTime: 'start_time', port: 'port', info: 'info', spec: 'spec', args: 'args', restarts: 'restarts' };
    for (const [k, v] of Object.entries(u)) {
      cols.push(`${map[k]} = ?`);
      vals.push(k === 'info' || k === 'spec' || k === 'args' ? JSON.stringify(v) : v);
    }
    cols.push('updated_at = ?');
    vals.push(new Date().toISOString());
    this.db.prepare(`UPDATE components SET ${cols.join(', ')} WHERE session = ? AND name = ?`).run(...vals, session, name);
  }

  delete(session: string, name: string): void {
    this.db.prepare('DELETE FROM components WHERE session = ? AND name = ?').run(session, name);
  }

  close(): void {
    this.db.close();
  }
}

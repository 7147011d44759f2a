import Database from 'better-sqlite3';
import path from 'node:path';

/**
 * The session service's sessions, in SQLite in its state directory (WAL,
 * synchronous FULL). A session's key lives here while the session lives
 * and is erased when it ends; the row stays (state destroyed/failed) so a
 * repeated DELETE or GET has an answer.
 *
 * state: creating → ready → destroying → destroyed
 *        creating → failed (rolled back)
 */
export type SessionState = 'creating' | 'ready' | 'destroying' | 'destroyed' | 'failed';

export interface SessionRow {
  id: string;
  user: string;
  state: SessionState;
  /** The validated request, completed with defaults. */
  spec: any;
  /** The session key (JSON as sent to agents), while the session lives. */
  key: any | null;
  /** What runs where: [{host, name, kind, port?, channel?}]. */
  components: any[];
  lifetime: number;
  createdAt: number;
  expiresAt: number;
  updatedAt: number;
  endedAt: number | null;
  reason: string | null;
  error: string | null;
}

export class SessionStore {
  private readonly db: Database.Database;

  constructor(stateDir: string) {
    this.db = new Database(path.join(stateDir, 'sessiond.db'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(`CREATE TABLE IF NOT EXISTS sessions (
      id TEXT PRIMARY KEY, user TEXT NOT NULL, state TEXT NOT NULL, spec TEXT NOT NULL, key TEXT,
      components TEXT NOT NULL, lifetime INTEGER NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL, ended_at INTEGER, reason TEXT, error TEXT)`);
    this.db.exec('CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user, created_at)');
  }

  private static row(r: any): SessionRow {
    return {
      id: r.id,
      user: r.user,
      state: r.state,
      spec: JSON.parse(r.spec),
      key: r.key ? JSON.parse(r.key) : null,
      components: JSON.parse(r.components),
      lifetime: r.lifetime,
      createdAt: r.created_at,
      expiresAt: r.expires_at,
      updatedAt: r.updated_at,
      endedAt: r.ended_at,
      reason: r.reason,
      error: r.error,
    };
  }

  insert(s: Pick<SessionRow, 'id' | 'user' | 'spec' | 'key' | 'lifetime' | 'createdAt' | 'expiresAt'>): void {
    this.db
      .prepare('INSERT INTO sessions (id, user, state, spec, key, components, lifetime, created_at, expires_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(s.id, s.user, 'creating', JSON.stringify(s.spec), JSON.stringify(s.key), '[]', s.lifetime, s.createdAt, s.expiresAt, Date.now());
  }

  get(id: string): SessionRow | undefined {
    const r = this.db.prepare('SELECT * FROM sessions WHERE id = ?').get(id);
    return r ? SessionStore.row(r) : undefined;
  }

  /** Sessions of one user (or everyone's), newest first; ended ones only with `ended`. */
  list(o: { user?: string; ended?: boolean } = {}): SessionRow[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (o.user !== undefined) {
      where.push('user = ?');
      args.push(o.user);
    }
    if (!o.ended) where.push("state NOT IN ('destroyed', 'failed')");
    const sql = `SELECT * FROM sessions ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY created_at DESC`;
    return this.db.prepare(sql).all(...args).map(SessionStore.row);
  }

  /** Sessions the service has work on: lifetime over, teardown unfinished, rollback unfinished. */
  actionable(now: number): SessionRow[] {
    return this.db
      .prepare("SELECT * FROM sessions WHERE (state = 'ready' AND expires_at <= ?) OR state = 'destroying' OR (state = 'failed' AND components != '[]')")
      .all(now)
      .map(SessionStore.row);
  }

  update(id: string, u: Partial<Pick<SessionRow, 'state' | 'key' | 'components' | 'expiresAt' | 'lifetime' | 'spec' | 'endedAt' | 'reason' | 'error'>>): void {
    const map: Record<string, string> = { state: 'state', key: 'key', components: 'components', expiresAt: 'expires_at', lifetime: 'lifetime', spec: 'spec', endedAt: 'ended_at', reason: 'reason', error: 'error' };
    const cols: string[] = [];
    const vals: unknown[] = [];
    for (const [k, v] of Object.entries(u)) {
      cols.push(`${map[k]} = ?`);
      vals.push(k === 'key' || k === 'components' || k === 'spec' ? (v === null ? null : JSON.stringify(v)) : v);
    }
    cols.push('updated_at = ?');
    vals.push(Date.now());
    this.db.prepare(`UPDATE sessions SET ${cols.join(', ')} WHERE id = ?`).run(...vals, id);
  }

  close(): void {
    this.db.close();
  }
}

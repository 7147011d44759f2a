import { expired, type SessionKey } from './session-key.js';

/**
 * The sessions a proxy server serves: each with its own key, grid identity
 * and (optionally) its own account mapping. Sessions can be added and
 * removed while the server runs (the session service does this).
 */
export class SessionRegistry {
  private readonly byId = new Map<string, SessionKey>();

  constructor(keys: SessionKey[] = []) {
    for (const k of keys) this.add(k);
  }

  add(k: SessionKey): void {
    this.byId.set(k.id, k);
  }

  remove(id: string): boolean {
    return this.byId.delete(id);
  }

  /** The live session with this id (expired sessions are forgotten here). */
  get(id: string): SessionKey | undefined {
    const k = this.byId.get(id);
    if (k && expired(k)) {
      this.byId.delete(id);
      return undefined;
    }
    return k;
  }

  /** Like get, but tells an expired session apart (only after its proof was checked). */
  lookup(id: string): SessionKey | undefined {
    return this.byId.get(id);
  }

  get size(): number {
    return this.byId.size;
  }
}

import type { Backend } from '../../src/backend/backend.js';
import type { StableHow } from '../../src/nfs3/constants.js';
import type { CreateHow, NewObject, WriteResult } from '../../src/nfs3/types.js';
import type { Credentials } from '../../src/rpc/types.js';
import { PassthroughBackend } from '../../src/wrappers/passthrough.js';

/**
 * A slow backend on demand: while `hold` is on, WRITE and CREATE wait (before
 * reaching the backend below) until `release()`. Counts what reached the
 * backend below, so a test can tell a call executed once from one executed
 * twice.
 */
export class HeldBackend extends PassthroughBackend {
  hold = false;
  /** Calls that reached the backend below, by procedure. */
  readonly executed = { write: 0, create: 0 };
  private waiting: Array<() => void> = [];
  private onHeld: Array<() => void> = [];

  constructor(inner: Backend) {
    super(inner);
  }

  /** Calls waiting now. */
  get held(): number {
    return this.waiting.length;
  }

  /** Resolves once `n` calls are held. */
  async waitHeld(n: number): Promise<void> {
    while (this.waiting.length < n) await new Promise<void>((r) => this.onHeld.push(r));
  }

  /** Let every held call go on (and stop holding new ones). */
  release(): void {
    this.hold = false;
    for (const go of this.waiting.splice(0)) go();
  }

  private async gate(): Promise<void> {
    if (!this.hold) return;
    await new Promise<void>((r) => {
      this.waiting.push(r);
      for (const w of this.onHeld.splice(0)) w();
    });
  }

  override async write(cred: Credentials, fh: Buffer, offset: number, data: Buffer, stable: StableHow): Promise<WriteResult> {
    await this.gate();
    this.executed.write++;
    return super.write(cred, fh, offset, data, stable);
  }

  override async create(cred: Credentials, dir: Buffer, name: string, how: CreateHow): Promise<NewObject> {
    await this.gate();
    this.executed.create++;
    return super.create(cred, dir, name, how);
  }
}

import { setTimeout as sleep } from 'node:timers/promises';
import { shQuote } from './machine.js';
import type { QmpClient } from './qmp.js';

/**
 * Saving and loading a QEMU's state with its own migration, to and from a
 * file (QEMU 7.2 has no `file:` URI; `exec:cat` is the portable form).
 *
 * `x-ignore-shared` must be set on both sides: with it the stream leaves
 * out RAM blocks backed by a shared file (the golden RAM file) and carries
 * each RAM block's address in its header, which the loading side reads
 * only when it has the capability too. A private (share=off) RAM block is
 * always sent in full, so a suspended clone's stream carries its memory.
 */

export const STATE_CAPABILITIES = ['x-ignore-shared'];

interface MigrationInfo {
  status?: string;
  'error-desc'?: string;
  ram?: { transferred: number; total: number; duplicate: number; normal: number };
}

export class MigrationError extends Error {
  constructor(what: string, desc: string) {
    super(`${what} failed: ${desc}`);
    this.name = 'MigrationError';
  }
}

async function setCapabilities(qmp: QmpClient, caps: string[]): Promise<void> {
  if (!caps.length) return;
  await qmp.execute('migrate-set-capabilities', { capabilities: caps.map((capability) => ({ capability, state: true })) });
}

async function waitMigration(qmp: QmpClient, what: string, timeoutMs: number): Promise<MigrationInfo> {
  const end = Date.now() + timeoutMs;
  let delay = 10;
  for (;;) {
    const info = await qmp.execute<MigrationInfo>('query-migrate');
    if (info.status === 'completed') return info;
    if (info.status === 'failed' || info.status === 'cancelled') throw new MigrationError(what, info['error-desc'] ?? info.status);
    if (Date.now() > end) throw new MigrationError(what, `still ${info.status ?? 'not started'} after ${timeoutMs} ms`);
    await sleep(delay);
    delay = Math.min(100, delay * 2);
  }
}

/** Stop the guest (if running) and write its state to `file`; the QEMU stays, stopped. */
export async function saveState(qmp: QmpClient, file: string, caps = STATE_CAPABILITIES, timeoutMs = 600_000): Promise<MigrationInfo> {
  const st = await qmp.execute<{ status: string; running: boolean }>('query-status');
  if (st.running) await qmp.execute('stop');
  await setCapabilities(qmp, caps);
  await qmp.execute('migrate', { uri: `exec:cat > ${shQuote(file)}` });
  return waitMigration(qmp, `saving the VM state to ${file}`, timeoutMs);
}

/**
 * Load the state a QEMU started with `-incoming defer` waits for, then run
 * the guest (a VM saved while stopped comes back paused: `cont`).
 */
export async function loadState(qmp: QmpClient, file: string, caps: string[], timeoutMs = 600_000): Promise<void> {
  await setCapabilities(qmp, caps);
  await qmp.execute('migrate-incoming', { uri: `exec:cat ${shQuote(file)}` });
  await waitMigration(qmp, `loading the VM state from ${file}`, timeoutMs);
  const st = await qmp.execute<{ status: string; running: boolean }>('query-status');
  if (!st.running) await qmp.execute('cont');
}

import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gvfsArgv } from '../../src/cli/self.js';
import { listVms } from '../../src/vm/clone.js';
import { COUNTER_RE } from '../../src/vm/demo-guest.js';
import { pidAlive, qemus, stopPid } from '../../src/vm/qemu.js';
import { forceUnmount } from '../integration/fuse/mount-helper.js';
import { fusePrereqs, hasFile, requirePrereq } from './prereq.js';

export const run = promisify(execFile);

/** VM tests need QEMU, FUSE (root) and the demo guest's build tools. */
export function vmSkip(): string | false {
  return requirePrereq(...fusePrereqs(), hasFile('/usr/bin/qemu-system-x86_64', 'qemu-system-x86'), hasFile('/usr/bin/qemu-img', 'qemu-utils'));
}

/** `gvfs vm ...` as a user runs it; parses the --json line. */
export async function gvfsVm(args: string[]): Promise<any> {
  try {
    const { stdout } = await run(process.execPath, gvfsArgv(['vm', ...args, '--json']), { maxBuffer: 16 << 20 });
    return JSON.parse(stdout.trim().split('\n').pop()!);
  } catch (e) {
    const x = e as { stderr?: string; stdout?: string; message: string };
    throw new Error(`gvfs vm ${args.join(' ')} failed: ${(x.stderr || x.stdout || x.message).trim()}`);
  }
}

export async function gvfs(args: string[]): Promise<any> {
  const { stdout } = await run(process.execPath, gvfsArgv([...args, '--json']), { maxBuffer: 16 << 20 });
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

export interface CounterLine {
  n: number;
  md5: string;
}

export function counters(text: string): CounterLine[] {
  const out: CounterLine[] = [];
  for (const l of text.split('\n')) {
    const m = COUNTER_RE.exec(l);
    if (m) out.push({ n: Number(m[1]), md5: m[2] });
  }
  return out;
}

/** Wait until a console shows at least `count` counter lines (explicit wait on the guest, no timing assertion). */
export async function waitCounters(consoleFile: string, count: number, timeoutMs = 120_000): Promise<CounterLine[]> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const text = await fs.readFile(consoleFile, 'utf8').catch(() => '');
    const c = counters(text);
    if (c.length >= count) return c;
    if (Date.now() > end) throw new Error(`${consoleFile}: ${c.length} of ${count} counter lines after ${timeoutMs} ms:\n${text.slice(-1000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Stop every clone recorded in a state directory, any QEMU this process
 * still tracks, and the session mounts `gvfs vm clone --server` started
 * there (cleanup, also after failures).
 */
export async function stopAllVms(stateRoot: string): Promise<void> {
  for (const { record } of await listVms(stateRoot).catch(() => [])) {
    if (record.pid && (await pidAlive(record.pid, record.qmpSocket))) await stopPid(record.pid, { marker: record.qmpSocket, graceMs: 1_000 }).catch(() => undefined);
  }
  qemus.killAllSync();
  for (const id of await fs.readdir(path.join(stateRoot, 'mounts')).catch(() => [] as string[])) {
    const rec = JSON.parse(await fs.readFile(path.join(stateRoot, 'mounts', id, 'mount.json'), 'utf8').catch(() => 'null')) as { mnt: string; pid?: number } | null;
    if (!rec) continue;
    if (rec.pid && (await pidAlive(rec.pid, rec.mnt))) {
      process.kill(rec.pid, 'SIGTERM');
      for (let i = 0; i < 200 && (await pidAlive(rec.pid, rec.mnt)); i++) await new Promise((r) => setTimeout(r, 50));
    }
    await forceUnmount(rec.mnt);
  }
}

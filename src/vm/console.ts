import fs from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A guest's serial console, as QEMU writes it to a file: wait for a line,
 * read what is there.
 */
export async function readConsole(file: string): Promise<string> {
  return fs.readFile(file, 'utf8').catch(() => '');
}

/**
 * Resolve with the first line matching `re` that appears at or after byte
 * `from` of the console file; reject after `timeoutMs`, or at once when
 * `gone` resolves (the QEMU exited).
 */
export async function waitConsoleLine(file: string, re: RegExp, o: { timeoutMs?: number; from?: number; gone?: Promise<unknown>; pollMs?: number } = {}): Promise<{ line: string; match: RegExpExecArray; offset: number }> {
  const end = Date.now() + (o.timeoutMs ?? 120_000);
  let exited = false;
  void o.gone?.then(() => (exited = true));
  for (;;) {
    const text = (await fs.readFile(file).catch(() => Buffer.alloc(0))).subarray(o.from ?? 0).toString('utf8');
    let offset = o.from ?? 0;
    for (const line of text.split('\n')) {
      const complete = offset + Buffer.byteLength(line) < (o.from ?? 0) + Buffer.byteLength(text);
      const m = complete ? re.exec(line) : null;
      if (m) return { line, match: m, offset };
      offset += Buffer.byteLength(line) + 1;
    }
    if (exited) throw new Error(`the VM exited before its console (${file}) printed ${re}`);
    if (Date.now() > end) throw new Error(`the VM's console (${file}) did not print ${re} within ${o.timeoutMs ?? 120_000} ms; last lines:\n${text.trim().split('\n').slice(-5).join('\n')}`);
    await sleep(o.pollMs ?? 50);
  }
}

export async function consoleSize(file: string): Promise<number> {
  return (await fs.stat(file).catch(() => ({ size: 0 }))).size;
}

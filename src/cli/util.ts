import { InvalidArgumentError } from 'commander';

/** Parse HOST:PORT (IPv6 as [::1]:PORT); port 0 means "pick a free one". */
export function parseHostPort(v: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(v);
  if (!m) throw new InvalidArgumentError(`expected HOST:PORT, got "${v}"`);
  const port = Number(m[3]);
  if (port > 65535) throw new InvalidArgumentError(`port out of range: ${port}`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

export function parseIntArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected a non-negative integer, got "${v}"`);
  return n;
}

/** Sizes like 64K, 1M, 10G (powers of 1024). */
export function parseSize(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$/i.exec(v.trim());
  if (!m) throw new InvalidArgumentError(`expected a size like 512M, got "${v}"`);
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  return Math.round(Number(m[1]) * mult);
}

/** Resolve on the first SIGINT/SIGTERM. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

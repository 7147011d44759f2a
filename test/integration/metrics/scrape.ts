/** Fetch a daemon's /metrics, /healthz or /readyz on loopback. */
export async function get(port: number, path: string): Promise<{ status: number; text: string; json?: any }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(30_000) });
  const text = await r.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, text, json };
}

/**
 * The sum of the samples of `name` whose labels include `labels` in
 * Prometheus text (undefined when no sample matches: the metric is absent).
 */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = new Map<string, string>();
    for (const p of (m[3] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)) got.set(p[1], p[2]);
    if (!Object.entries(labels).every(([k, v]) => got.get(k) === v)) continue;
    sum = (sum ?? 0) + Number(m[4]);
  }
  return sum;
}

export async function scrape(port: number): Promise<string> {
  const r = await get(port, '/metrics');
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}: ${r.text}`);
  return r.text;
}

/** Poll `cond` until it holds (a readiness flip has no event to wait on); fails with `what` after `ms`. */
export async function until(what: string, cond: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

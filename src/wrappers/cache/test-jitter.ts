/**
 * Timing perturbation for tests hunting races (fsx.test.ts): with
 * GVFS_CACHE_TEST_JITTER_MS=N set, `jitter()` waits a random 0..N ms at the
 * points that call it (flush WRITEs, block fetches, block stores), widening
 * the windows in which background flushes, read-ahead and evictions
 * interleave. Unset (always, outside tests): callers skip it (`if (JITTER)`), so
 * not even a microtask is added to the paths it sits on.
 */
const MAX = Number(process.env.GVFS_CACHE_TEST_JITTER_MS ?? 0);
export const JITTER = MAX > 0;

export function jitter(): Promise<void> | undefined {
  if (!(MAX > 0)) return undefined;
  return new Promise((r) => setTimeout(r, Math.random() * MAX));
}

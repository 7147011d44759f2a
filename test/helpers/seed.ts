import { inCi } from './prereq.js';

/**
 * Seeds for randomized tests. Under CI a fixed seed (the same run every
 * time); elsewhere a fresh one, written to stderr before it is used, so any
 * failure can be replayed: `<ENV>=<seed> node --test ...`.
 */
export function testSeed(env: string, ciSeed: number): number {
  const given = process.env[env];
  const seed = given !== undefined && given !== '' ? Number(given) : inCi() ? ciSeed : Math.floor(Math.random() * 0x7fffffff);
  process.stderr.write(`${env}=${seed}\n`);
  return seed;
}

/** A small seeded PRNG (mulberry32), so a failure names the seed that reproduces it. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

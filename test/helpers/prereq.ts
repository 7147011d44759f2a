import { existsSync } from 'node:fs';

/**
 * Prerequisites of tests that need the real world (root, /dev/fuse, nfs-ganesha,
 * OpenSSH, QEMU ...). Every skip in the suite goes through `requirePrereq`:
 * on a developer's partial machine a missing piece skips the tests that need
 * it; when `CI` is set it throws, naming what is missing, so the file fails
 * and a CI run can never go green by skipping.
 */
export type Prereq = readonly [what: string, ok: boolean];

export function inCi(): boolean {
  const v = process.env.CI;
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

export const isRoot = (): Prereq => ['root (uid 0)', process.getuid?.() === 0];

/** A file that must exist; `pkg` names what installs it. */
export const hasFile = (file: string, pkg?: string): Prereq => [pkg ? `${file} (${pkg})` : file, existsSync(file)];

/** One of several files. */
export const hasAnyFile = (files: string[], pkg?: string): Prereq => [`${files.join(' or ')}${pkg ? ` (${pkg})` : ''}`, files.some((f) => existsSync(f))];

/**
 * A skip reason for node:test's `skip` option (`false` when everything is
 * there). Under CI a missing prerequisite throws instead.
 */
export function requirePrereq(...checks: Prereq[]): string | false {
  const missing = checks.filter(([, ok]) => !ok).map(([what]) => what);
  if (!missing.length) return false;
  const msg = `missing prerequisite: ${missing.join(', ')}`;
  if (inCi()) throw new Error(`${msg} — CI is set, so this fails instead of skipping (run as root on a machine set up by scripts/setup.sh)`);
  return msg;
}

/** What FUSE tests need. */
export const fusePrereqs = (): Prereq[] => [isRoot(), hasFile('/dev/fuse'), hasAnyFile(['/usr/bin/fusermount', '/bin/fusermount'], 'fuse3')];

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { fadvise, FADV } from '../../../src/native/native.js';
import { until } from '../../helpers/services.js';

const run = promisify(execFile);

/** Bytes of `file` in the page cache now (util-linux fincore). */
async function resident(file: string): Promise<number> {
  const { stdout } = await run('fincore', ['--bytes', '--noheadings', '--output', 'RES', file]);
  return Number(stdout.trim());
}

// native fadvise (posix_fadvise on a pool thread): DONTNEED drops the file's pages, WILLNEED reads them in.
test('fadvise: DONTNEED empties the page cache of a file, WILLNEED fills it; a bad descriptor is an error', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-fadvise-'));
  const file = path.join(dir, 'f');
  try {
    await fs.writeFile(file, randomBytes(4 << 20));
    const h = await fs.open(file, 'r');
    try {
      await h.sync(); // (dirty pages cannot be dropped)
      await fadvise(h.fd, 0, 0, FADV.DONTNEED);
      assert.equal(await resident(file), 0, 'dropped');
      await fadvise(h.fd, 0, 0, FADV.WILLNEED);
      await until('its pages read in', async () => (await resident(file)) === 4 << 20, 30_000);
    } finally {
      await h.close();
    }
    await assert.rejects(fadvise(-1, 0, 0, FADV.WILLNEED), /EBADF/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

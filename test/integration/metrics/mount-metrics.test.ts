import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { keyFile } from '../../helpers/key-file.js';
import { tempDir } from '../../helpers/local-server.js';
import { forceUnmount, fuseSkip, spawnMount, type MountProc } from '../fuse/mount-helper.js';
import { get, sample, scrape } from './scrape.js';

const MiB = 1 << 20;

/** Issue 23: `gvfs mount --metrics`: the session's counters move with reads through the FUSE mount; its log is JSON only. */
describe('metrics of gvfs mount', { timeout: 300_000, skip: fuseSkip() }, () => {
  let base: string;
  let ps: GvfsProcess;
  let m: MountProc | undefined;
  const data = randomBytes(2 * MiB);

  before(async () => {
    base = await tempDir('gvfs-mount-metrics-');
    const exp = path.join(base, 'export');
    await fs.mkdir(exp);
    await fs.writeFile(path.join(exp, 'data.bin'), data);
    const key = (await keyFile(base, 'alice.key')).file;
    ps = await spawnGvfs(['proxy-server', '--listen', '127.0.0.1:0', '--export', `${exp}=/`, '--key', key, '--state-dir', path.join(base, 'ps-state')]);
    m = await spawnMount(`127.0.0.1:${ps.port}`, path.join(base, 'mnt'), ['--key', key, '--cache-dir', path.join(base, 'cache'), '--metrics', '127.0.0.1:0']);
  });

  after(async () => {
    await m?.stop().catch(() => undefined);
    if (m) await forceUnmount(m.mnt);
    await ps?.stop();
    if (base) await fs.rm(base, { recursive: true, force: true });
  });

  test('reads through the mount move read, miss and link byte counters; /readyz checks link, journal and cache', async () => {
    const port = (m!.info.metrics as { port: number }).port;
    const before = await scrape(port);
    assert.ok((await fs.readFile(path.join(m!.mnt, 'data.bin'))).equals(data));
    const after1 = await scrape(port);
    const d = (name: string, labels: Record<string, string> = {}) => (sample(after1, name, labels) ?? 0) - (sample(before, name, labels) ?? 0);
    assert.ok(d('gvfs_read_bytes_total') >= 2 * MiB, 'read bytes');
    // Every byte crossed the channel once (fetched); how much of it the program's READs found already here depends on
    // how far the front end's read-ahead got before the kernel asked (on a loaded machine, most of it): a hit then.
    assert.ok(d('gvfs_channel_payload_bytes_total', { kind: 'read' }) >= 2 * MiB, 'a cold read is fetched over the channel');
    assert.ok(d('gvfs_cache_miss_bytes_total') > 0, 'a cold read misses');
    assert.ok(d('gvfs_channel_bytes_total', { channel: 'link', direction: 'in' }) >= 2 * MiB, 'link bytes in');
    assert.equal(sample(after1, 'gvfs_process_info', { process: 'mount' }), 1);
    const r = await get(port, '/readyz');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(Object.keys(r.json.checks).sort(), ['cache', 'journal', 'upstream']);
  });

  test('the mount writes only JSON to stderr, its closing stats included', async () => {
    const code = await m!.stop();
    assert.equal(code, 0, m!.stderr());
    const lines = m!.stderr().trim().split('\n');
    for (const l of lines) assert.doesNotThrow(() => JSON.parse(l), `not JSON: ${l}`);
    assert.equal(typeof m!.stats(), 'object', 'the closing stats line is there and parses');
  });
});

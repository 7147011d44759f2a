import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { EXIT, EXIT_TABLE } from '../../../src/cli/exit-codes.js';
import { tempDir } from '../../helpers/local-server.js';
import { gvfsDaemon, gvfsRun, type Daemon } from '../../helpers/cli-run.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

/** A loopback port with nothing listening (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * Distinct exit statuses for a wrong command line (2), a refusal (3) and an
 * unreachable server (4) (5, a wrong channel kind: channel/wrong-channel),
 * documented in one table shown by --help and in the README; MOUNT errors by
 * their RFC 1813 names.
 */
describe('exit statuses and refusals by name', { timeout: 180_000 }, () => {
  let base: string;
  let alice: string;
  let mallory: string;
  let ps: Daemon;

  before(async () => {
    base = await tempDir('gvfs-exit-');
    const exp = path.join(base, 'export');
    await fs.mkdir(exp);
    alice = path.join(base, 'alice.key');
    mallory = path.join(base, 'mallory.key');
    // alice has no account of her own and the map names only bob: her MNT is refused.
    assert.equal((await gvfsRun(['keygen', alice, '--user', 'alice'])).code, 0);
    assert.equal((await gvfsRun(['keygen', mallory, '--user', 'mallory', '--account', '0:0'])).code, 0);
    ps = await gvfsDaemon(['proxy-server', '--listen', '127.0.0.1:0', '--export', `${exp}=/x`, '--key', alice, '--map-user', 'bob=2002:2002', '--state-dir', path.join(base, 'ps')]);
  });
  after(async () => {
    ps?.kill();
    await fs.rm(base, { recursive: true, force: true });
  });

  test('--help shows the table; the README has the same rows', async () => {
    const help = (await gvfsRun(['--help'])).stdout;
    const readme = await fs.readFile(path.join(ROOT, 'README.md'), 'utf8');
    for (const [code, what] of EXIT_TABLE) {
      assert.ok(help.includes(`  ${code}  ${what}`), `--help lacks ${code}`);
      assert.ok(readme.includes(`| ${code} | ${what} |`), `README lacks ${code}`);
    }
  });

  test('usage errors: 2', async () => {
    for (const args of [['--no-such-option'], ['serve'], ['proxy-client', '--server', 'not-an-address', '--key', alice], ['proxy-client', '--server', '127.0.0.1:1', '--key', alice, '--cache-size', '1G'], ['no-such-command']]) {
      const r = await gvfsRun(args);
      assert.equal(r.code, EXIT.USAGE, `gvfs ${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    }
    assert.equal((await gvfsRun(['--help'])).code, 0);
    assert.equal((await gvfsRun(['serve', '--help'])).code, 0);
  });

  test('a refused session key: 3, with the reason', async () => {
    const r = await gvfsRun(['proxy-client', '--server', `127.0.0.1:${ps.info.listening.port}`, '--key', mallory, '--listen', '127.0.0.1:0'], { timeoutMs: 60_000 });
    assert.equal(r.code, EXIT.REFUSED, r.stderr);
    assert.match(r.stderr, /session key refused/);
  });

  test('MOUNT refused by name: MNT3ERR_ACCES, status 3', async () => {
    const mnt = path.join(base, 'mnt');
    await fs.mkdir(mnt, { recursive: true });
    // Refused before any FUSE mount is made: no root needed.
    const r = await gvfsRun(['mount', '--server', `127.0.0.1:${ps.info.listening.port}`, '--key', alice, '--export', '/x', '--foreground', mnt], { timeoutMs: 60_000 });
    assert.equal(r.code, EXIT.REFUSED, r.stderr);
    assert.match(r.stderr, /MNT3ERR_ACCES: export \/x not allowed/);
  });

  test('an unreachable server: 4', async () => {
    const mnt = path.join(base, 'mnt2');
    await fs.mkdir(mnt, { recursive: true });
    const r = await gvfsRun(['mount', '--server', `127.0.0.1:${await closedPort()}`, '--key', alice, '--foreground', mnt], { timeoutMs: 60_000 });
    assert.equal(r.code, EXIT.UNREACHABLE, r.stderr);
    assert.match(r.stderr, /ECONNREFUSED/);
    assert.ok(r.ms < 20_000, `took ${r.ms} ms`);
  });
});

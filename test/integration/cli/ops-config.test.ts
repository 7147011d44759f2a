import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gvfsDaemon, gvfsRun, type Daemon } from '../../helpers/cli-run.js';

/**
 * --config FILE for the daemons: keys are long option names, values go
 * through the command line's parsers; the command line wins whatever the
 * order; an unknown key or a bad value is a usage error naming it.
 */
describe('daemon config files (--config)', { timeout: 180_000 }, () => {
  let dir: string;
  const running: Daemon[] = [];
  const conf = async (name: string, v: unknown) => {
    const f = path.join(dir, name);
    await fs.writeFile(f, JSON.stringify(v));
    return f;
  };
  const daemon = async (args: string[]) => {
    const d = await gvfsDaemon(args, { GVFS_RUNTIME_DIR: path.join(dir, 'run') });
    running.push(d);
    return d;
  };

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gvfs-config-'));
    await fs.mkdir(path.join(dir, 'exp'));
    await fs.mkdir(path.join(dir, 'exp2'));
  });
  after(async () => {
    for (const d of running) d.kill();
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('values from the file are used: strings, numbers through the parsers, switches, choices', async () => {
    const f = await conf('serve.json', { export: path.join(dir, 'exp'), listen: '127.0.0.1:0', name: '/from-file', 'read-only': true, squash: 'root', 'anon-uid': 4242, 'state-dir': path.join(dir, 'st1') });
    const d = await daemon(['serve', '--config', f]);
    assert.equal(d.info.name, '/from-file');
    assert.equal(d.info.readOnly, true);
    assert.equal(d.info.listening.address, '127.0.0.1');
    assert.equal((await d.terminate()).code, 0);
  });

  test('the command line wins, before or after --config; a repeatable option on the command line replaces the file\'s list', async () => {
    const f = await conf('serve2.json', { export: path.join(dir, 'exp'), listen: '127.0.0.1:0', name: '/from-file', 'state-dir': path.join(dir, 'st2') });
    const a = await daemon(['serve', '--name', '/cli-before', '--config', f]);
    assert.equal(a.info.name, '/cli-before');
    const b = await daemon(['serve', '--config', f, '--name', '/cli-after']);
    assert.equal(b.info.name, '/cli-after');
    await Promise.all([a.terminate(), b.terminate()]);
    // proxy-server --export is repeatable: the file names two, the command line one.
    const ps = await conf('ps.json', { export: [`${path.join(dir, 'exp')}=/one`, `${path.join(dir, 'exp2')}=/two`], insecure: true, 'map-user': ['alice=1000:1000'], listen: '127.0.0.1:0', 'state-dir': path.join(dir, 'st3') });
    const p1 = await daemon(['proxy-server', '--config', ps]);
    assert.deepEqual([...p1.info.exports].sort(), ['/one', '/two']);
    const p2 = await daemon(['proxy-server', '--export', `${path.join(dir, 'exp2')}=/only`, '--config', ps]);
    assert.deepEqual(p2.info.exports, ['/only']);
    await Promise.all([p1.terminate(), p2.terminate()]);
  });

  test('a required option may come from the file', async () => {
    const f = await conf('serve3.json', { export: path.join(dir, 'exp'), listen: '127.0.0.1:0', 'state-dir': path.join(dir, 'st4') });
    const d = await daemon(['serve', '--config', f]);
    assert.equal(d.info.export, path.join(dir, 'exp'));
    await d.terminate();
  });

  test('unknown keys, bad values, wrong types and broken files are usage errors that name the problem', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ export: '/x', 'listne': '127.0.0.1:0' }, /unknown option "listne" for gvfs serve/],
      [{ export: '/x', config: 'other.json' }, /unknown option "config"/],
      [{ export: '/x', squash: 'everyone' }, /"squash": Allowed choices are none, root, all/],
      [{ export: '/x', 'anon-uid': -3 }, /"anon-uid": expected a non-negative integer/],
      [{ export: '/x', 'read-only': 'yes' }, /"read-only": expected true or false/],
      [{ export: ['/x', '/y'] }, /"export": expected one value, not a list/],
      [['export', '/x'], /expected a JSON object/],
    ];
    for (const [v, re] of cases) {
      const r = await gvfsRun(['serve', '--config', await conf('bad.json', v)]);
      assert.equal(r.code, 2, `${JSON.stringify(v)}: ${r.stderr}`);
      assert.match(r.stderr, re);
    }
    await fs.writeFile(path.join(dir, 'broken.json'), '{"export": ');
    const broken = await gvfsRun(['serve', '--config', path.join(dir, 'broken.json')]);
    assert.equal(broken.code, 2);
    assert.match(broken.stderr, /not JSON/);
    const missing = await gvfsRun(['serve', '--config', path.join(dir, 'nope.json')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nope\.json: no such file/);
    // Commands that are not daemons take no --config.
    assert.equal((await gvfsRun(['status', '--config', path.join(dir, 'serve.json')])).code, 2);
  });
});

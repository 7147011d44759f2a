import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { runGvfs, spawnGvfs, type GvfsProcess } from '../../helpers/gvfs-proc.js';
import { tempDir } from '../../helpers/local-server.js';

const run = promisify(execFile);

/** Issue 23: -v / -vv / --log-level beside GVFS_LOG_LEVEL; every line JSON whatever the level. */
describe('log level flags of the daemons', { timeout: 240_000 }, () => {
  let base: string;
  let exp: string;
  const started: GvfsProcess[] = [];
  const serve = async (flags: string[], env: NodeJS.ProcessEnv = {}) => {
    const p = await spawnGvfs(['serve', '--export', exp, '--listen', '127.0.0.1:0', '--state-dir', path.join(base, `state-${started.length}`), '--metrics', '127.0.0.1:0', ...flags], env);
    started.push(p);
    return p;
  };
  const cat = (p: GvfsProcess) => run('nfs-cat', [`nfs://127.0.0.1//hello.txt?version=3&nfsport=${p.port}&mountport=${p.port}`], { timeout: 60_000 });

  before(async () => {
    base = await tempDir('gvfs-log-flags-');
    exp = path.join(base, 'export');
    await fs.mkdir(exp);
    await fs.writeFile(path.join(exp, 'hello.txt'), 'hello\n');
  });
  after(async () => {
    for (const p of started) await p.stop();
    if (base) await fs.rm(base, { recursive: true, force: true });
  });

  test('-v logs each call at debug; without it there is no debug line', async () => {
    const quiet = await serve([]);
    const loud = await serve(['-v']);
    await cat(quiet);
    await cat(loud);
    await loud.waitLog((l) => l.level === 20 && l.msg === 'call', 30_000);
    await quiet.stop();
    assert.ok(!quiet.lines.some((l) => l.level <= 20), 'debug lines without -v');
    assert.ok(quiet.lines.every((l) => typeof l.level === 'number'), quiet.log());
  });

  test('-vv is trace; --log-level warn drops info lines even when GVFS_LOG_LEVEL says debug', async () => {
    const trace = await serve(['-vv']);
    await cat(trace);
    await trace.stop();
    assert.ok(trace.lines.some((l) => l.level === 20), 'trace includes debug');
    const warn = await serve(['--log-level', 'warn'], { GVFS_LOG_LEVEL: 'debug' });
    await cat(warn);
    await warn.stop();
    assert.ok(!warn.lines.some((l) => l.level < 40), `lines below warn with --log-level warn:\n${warn.log()}`);
  });

  test('an unknown --log-level is a usage error', async () => {
    const r = await runGvfs(['serve', '--export', exp, '--listen', '127.0.0.1:0', '--log-level', 'chatty']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--log-level: one of fatal, error, warn, info, debug, trace, silent/);
  });
});

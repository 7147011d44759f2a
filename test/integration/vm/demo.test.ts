import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { tempDir } from '../../helpers/local-server.js';
import { mountsUnder, processesUnder } from '../../helpers/services.js';
import { vmSkip } from '../../helpers/vm.js';

/** The checkout (this file runs from dist/test/integration/vm/). */
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

/**
 * `./run demo` as a smoke run: the main job (`gvfs demo vm`: publish the
 * demo VM on a state server, clone it twice at once through a GVFS session,
 * QEMU TCG) end to end, and its success lines. `./run` first runs
 * scripts/setup.sh (apt-get, npm ci, the build) — the machine's set-up, not
 * the job — so the test runs the command `./run demo` execs, and checks
 * that `run` still execs exactly that.
 */
describe('./run demo: the main job end to end', { skip: vmSkip(), timeout: 40 * 60_000 }, () => {
  let tmp: string;
  before(async () => {
    // The demo's own temporary directory goes here, so the test can see it removed.
    tmp = await tempDir('gvfs-demo-smoke-');
  });
  after(async () => {
    for (const p of await processesUnder(tmp)) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await fs.rm(tmp, { recursive: true, force: true });
  });

  test('both clones go on from the golden VM\'s counter with the right disk checksum, less than the golden VM crosses the network, the golden files are unchanged, nothing is left behind', { timeout: 35 * 60_000 }, async (t) => {
    const runScript = await fs.readFile(path.join(REPO, 'run'), 'utf8');
    assert.match(runScript, /^ {2}demo\) exec node dist\/src\/cli\/main\.js demo vm "\$@" ;;$/m, './run demo execs gvfs demo vm');
    const child = spawn(process.execPath, ['dist/src/cli/main.js', 'demo', 'vm'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: tmp } });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    t.diagnostic(out);
    assert.equal(code, 0, `gvfs demo vm exited with ${code}:\n${out}\n${err}`);

    const dataMd5 = /^guest: .*its disk holds data\.bin \(md5 ([0-9a-f]{32})\)$/m.exec(out)?.[1];
    assert.ok(dataMd5, 'the guest line names data.bin\'s checksum');
    assert.match(out, /^ {2}meta-data: /m);
    const golden = Number(/the golden VM was saved right after printing: .*gvfs-guest: counter (\d+) md5/.exec(out)?.[1]);
    assert.ok(Number.isFinite(golden), 'the golden VM\'s last counter line is printed');
    assert.match(out, /^state server: gvfs proxy-server on 127\.0\.0\.1:\d+ \(TLS 1\.3, session [0-9a-f]{32} for /m);
    const went = [...out.matchAll(/-> the counter went on from (\d+) \(memory came along\) and the checksum matches data\.bin \(disk came along\)/g)];
    assert.equal(went.length, 2, 'both clones');
    for (const w of went) assert.equal(Number(w[1]), golden);
    assert.doesNotMatch(out, /UNEXPECTED|CHANGED/);
    // Read from the consoles the demo prints, not only from its verdict: each clone counts on from the golden VM
    // (a cold boot would start again at 1) and reads data.bin from the golden disk.
    for (const vm of ['a', 'b']) {
      const block = new RegExp(`^ {2}${vm} console \\([^)]*\\):\\n((?: {4}gvfs-guest: counter \\d+ md5 [0-9a-f]{32}\\n)+)`, 'm').exec(out)?.[1];
      assert.ok(block, `clone ${vm}'s console lines are printed`);
      const lines = [...block.matchAll(/counter (\d+) md5 ([0-9a-f]{32})/g)].map((m) => ({ n: Number(m[1]), md5: m[2] }));
      assert.equal(lines.length, 3);
      assert.ok(lines[0].n > golden, `clone ${vm} went on from ${golden}: first counter ${lines[0].n}`);
      assert.ok(lines.every((l, i) => i === 0 || l.n > lines[i - 1].n), `clone ${vm} counts up`);
      for (const l of lines) assert.equal(l.md5, dataMd5);
    }
    const crossed = Number(/network: ([\d.]+) MiB crossed for both clones/.exec(out)?.[1]);
    const whole = Number(/the golden VM is ([\d.]+) MiB/.exec(out)?.[1]);
    assert.ok(crossed > 0 && whole > 0 && crossed < whole, `${crossed} MiB crossed for both clones, the golden VM is ${whole} MiB`);
    assert.match(out, /^golden files on the state server: unchanged/m);

    // The clones stopped, the session unmounted, the demo's directory removed.
    assert.deepEqual(await processesUnder(tmp), [], 'no QEMU, mount or proxy server of the demo still runs');
    assert.deepEqual(await mountsUnder(tmp), []);
    assert.deepEqual(await fs.readdir(tmp), [], 'the demo removed its directory');
  });
});

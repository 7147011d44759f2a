import { execFile } from 'node:child_process';
import { gvfsArgv } from './self.js';
import path from 'node:path';
import { promisify } from 'node:util';
import { Command, Option } from 'commander';
import { cloneVm, defaultStateRoot, listVms, resumeVm, stopVm, suspendVm, type MountRef } from '../vm/clone.js';
import { mountState } from '../frontends/fuse/mountpoint.js';
import { demoGuest, diskOfSize, READY_RE } from '../vm/demo-guest.js';
import { publishVm } from '../vm/publish.js';
import { cacheDirOfMount, ensureSessionMount } from '../vm/session-mount.js';
import { addLinkOptions } from './proxy-client.js';
import { parseSize } from './util.js';
import { withProgress } from './progress.js';

const run = promisify(execFile);
const VM_ATTR_TIMEOUT = 30;

/** gvfs meta record --start|--stop on a session's cache directory (the meta-data layer's command). */
async function metaRecord(cacheDir: string, what: '--start' | '--stop'): Promise<string> {
  return (await run(process.execPath, gvfsArgv(['meta', 'record', '--cache-dir', cacheDir, what]))).stdout;
}

/**
 * gvfs vm: golden VMs on a state server (publish), clones of them on a
 * compute server through a GVFS session mount (clone, suspend, resume,
 * list, stop). The work is in src/vm; these commands parse and print.
 */
export function vmCommand(): Command {
  const vm = new Command('vm').description('Publish QEMU VMs on a state server and clone, suspend and resume them on a compute server through a GVFS session');
  const stateDir = () => new Option('--state-dir <dir>', 'where this host keeps its clones (QEMU PIDs, overlays, consoles)').default(defaultStateRoot());

  vm.command('publish')
    .description('Boot a VM, let it run until ready, and save it as a golden VM (qcow2 disk, RAM file, device state, manifest, meta-data) in DIR/NAME')
    .argument('<name>', 'the golden VM')
    .requiredOption('--dir <dir>', 'the VM directory on the state server (the exported directory or one inside it)')
    .option('--demo', "the demo guest (Debian cloud kernel + busybox initramfs, built by scripts/guest/build.sh); ready at its first counter line")
    .option('--kernel <file>', 'kernel to boot')
    .option('--initrd <file>', 'initrd')
    .option('--append <cmdline>', 'kernel command line', 'console=ttyS0')
    .option('--disk <image>', 'disk image (any format qemu-img reads; stored as qcow2)')
    .option('--disk-size <size>', 'with --demo: the demo disk of this size (e.g. 1G)', parseSize)
    .option('--memory <size>', 'guest memory', parseSize, 256 * 2 ** 20)
    .option('--cpus <n>', 'virtual CPUs', (v) => Number(v), 1)
    .option('--machine <type>', 'QEMU machine type (an alias is recorded as the versioned type it stands for)', 'pc')
    .option('--ready <regex>', 'publish once the console prints a line matching this')
    .option('--ready-timeout <seconds>', 'how long to wait for --ready', (v) => Number(v), 300)
    .option('--run <seconds>', 'keep running this long (after --ready) before saving', (v) => Number(v), 0)
    .option('--meta-root <dir>', 'the directory the proxy server exports (meta-data goes to its .gvfs-meta/)')
    .option('--force', 'replace a VM of that name')
    .option('--json', 'print the manifest as JSON')
    .action(async (name: string, o) => {
      let { kernel, initrd, append, disk, ready } = o as { kernel?: string; initrd?: string; append: string; disk?: string; ready?: string | RegExp };
      if (o.demo) {
        const g = await demoGuest();
        kernel ??= g.kernel;
        initrd ??= g.initrd;
        append = o.append === 'console=ttyS0' ? g.append : o.append;
        disk ??= o.diskSize ? await diskOfSize(g, Math.round(o.diskSize / 2 ** 20)) : g.disk;
        ready ??= READY_RE;
      }
      if (!kernel || !disk) throw new Error('give --kernel and --disk (or --demo)');
      // Each step publishVm reports is a step of the progress display (copy, boot, ready, save).
      let step = 0;
      const r = await withProgress({ op: 'vm publish', json: !!o.json, unit: 'steps', total: ready === undefined ? 3 : 4 }, async (p) => {
        const log = (s: string) => p.update(++step, s);
        const res = await publishVm({
          dir: o.dir,
          name,
          kernel,
          initrd,
          append,
          disk,
          memoryBytes: o.memory,
          cpus: o.cpus,
          machine: o.machine,
          ready: ready === undefined ? undefined : typeof ready === 'string' ? new RegExp(ready) : ready,
          readyTimeoutMs: o.readyTimeout * 1000,
          runMs: o.run * 1000,
          metaRoot: o.metaRoot,
          force: !!o.force,
          log,
        });
        return { dir: res.dir, manifest: res.manifest, meta: res.meta };
      });
      if (!o.json) {
        for (const f of r.manifest.files) console.log(`  ${f.name.padEnd(11)} ${String(f.size).padStart(12)} bytes  sha256 ${f.sha256.slice(0, 16)}...${f.meta ? `  meta ${f.meta}` : ''}`);
        console.log(`gvfs vm publish: ${name} published in ${r.dir}; meta-data: ${r.meta.status}${r.meta.note ? ` (${r.meta.note})` : ''}`);
      }
    });

  const withMount = (c: Command) =>
    addLinkOptions(c, { serverRequired: false })
      .option('--mount <dir>', 'an existing GVFS session mount to use instead of --server ... (or a plain directory of VMs)')
      .option('--vm-path <path>', 'the VM directory inside the mount', '')
      .option('--attr-timeout <seconds>', `attribute timeout of a mount started here (default ${VM_ATTR_TIMEOUT}: a published VM's files never change; publish replaces a VM with a new directory)`, (v) => Number(v))
      .addOption(stateDir());

  const mountOf = async (c: Command, o: Record<string, any>): Promise<MountRef> => {
    if (o.mount) {
      const st = await mountState(o.mount);
      if (st.state === 'stale') throw new Error(`${o.mount}: its gvfs mount process has died (gvfs umount ${o.mount}, then mount again)`);
      // A directory that is not a mount holds local VMs (e.g. a copy, or the state server's own disk).
      return { mnt: path.resolve(o.mount), cacheDir: o.cacheDir ?? (st.state === 'live' ? await cacheDirOfMount(o.mount) : undefined) };
    }
    if (!o.server) throw new Error('give --server (and the session: --key, --cache-dir ...) or --mount DIR');
    // The link options given on the command line, passed on to `gvfs mount`.
    const args: string[] = [];
    const linkKeys = new Set([...addLinkOptions(new Command(), { serverRequired: false }).options.map((x) => x.attributeName()), 'attrTimeout']);
    for (const opt of c.options) {
      const k = opt.attributeName();
      if (!linkKeys.has(k) || c.getOptionValueSource(k) !== 'cli') continue;
      const v = o[k];
      if (opt.isBoolean()) {
        if (v) args.push(opt.long!);
      } else args.push(opt.long!, String(v));
    }
    // Golden VMs are immutable: trusting attributes longer saves a round trip per path step and file at each clone.
    if (o.attrTimeout === undefined) args.push('--attr-timeout', String(VM_ATTR_TIMEOUT));
    return ensureSessionMount(o.stateDir, args, o.cacheDir);
  };

  const startInfo = (r: Awaited<ReturnType<typeof cloneVm>>) => ({ clone: r.record.name, golden: r.record.golden, pid: r.record.pid, console: r.record.console, qmp: r.record.qmpSocket, overlay: r.record.overlay, mount: r.record.mount, times: r.times });
  const printStart = (what: string, o: Record<string, any>, r: Awaited<ReturnType<typeof cloneVm>>) => {
    if (o.json) console.log(JSON.stringify(startInfo(r)));
    else console.log(`gvfs vm ${what}: ${r.record.name} (of ${r.record.golden}) running, pid ${r.record.pid}, console ${r.record.console}; running again ${(r.times.runningMs / 1000).toFixed(2)} s after the command`);
  };

  withMount(vm.command('clone').description('Start a clone of a golden VM through a GVFS session: local overlay over the golden disk, memory copy-on-write from the golden RAM file'))
    .argument('<name>', 'the golden VM')
    .option('--as <clone>', 'name of the clone (default NAME-<n>)')
    .option('--record [seconds]', "record the order in which this clone's resume reads the golden files (for the first SECONDS, default 5) and store it as their prefetch order (gvfs meta record), so later clones fetch ahead in that order", (v) => Number(v))
    .option('--json', 'print JSON')
    .action(async function (this: Command, name: string, o) {
      const record = o.record === undefined ? undefined : o.record === true ? 5 : o.record;
      // Steps: the session mount, the clone started (overlay, QEMU resumed from the golden state), the recording.
      let r: Awaited<ReturnType<typeof cloneVm>> | undefined;
      await withProgress({ op: 'vm clone', json: !!o.json, unit: 'steps', total: record === undefined ? 2 : 3 }, async (p) => {
        p.update(0, o.mount ? `using mount ${o.mount}` : 'starting the session mount');
        const mount = await mountOf(this, o);
        if (record !== undefined && !mount.cacheDir) throw new Error('--record needs the session\'s cache directory (a mount with --cache-dir)');
        if (record !== undefined) await metaRecord(mount.cacheDir!, '--start');
        try {
          p.update(1, `starting clone of ${name}`);
          r = await cloneVm({ name, as: o.as, mount, vmPath: o.vmPath, stateRoot: o.stateDir });
          if (record !== undefined) {
            p.update(2, `recording the resume's reads for ${record} s`);
            await new Promise((res) => setTimeout(res, record * 1000));
          }
        } finally {
          if (record !== undefined) {
            const stored = await metaRecord(mount.cacheDir!, '--stop');
            if (!o.json) console.log(`gvfs vm clone: recorded the resume's reads for ${record} s: ${stored.trim()}`);
          }
        }
        return startInfo(r);
      });
      if (!o.json) printStart('clone', o, r!);
    });

  withMount(vm.command('resume').description('Resume a suspended clone from the state server (on this host or another)'))
    .argument('<clone>', 'the suspended clone')
    .option('--json', 'print JSON')
    .action(async function (this: Command, name: string, o) {
      const mount = await mountOf(this, o);
      printStart('resume', o, await resumeVm({ name, mount, vmPath: o.vmPath, stateRoot: o.stateDir }));
    });

  vm.command('suspend')
    .description("Save a running clone (device state, memory, disk overlay) to the state server through its session's write-back cache, flush, stop it")
    .argument('<clone>')
    .addOption(stateDir())
    .option('--json', 'print JSON')
    .action(async (name: string, o) => {
      const r = await suspendVm({ name, stateRoot: o.stateDir });
      const flushed = r.flushed.reduce((a, f) => a + f.flushedBytes, 0);
      if (o.json) console.log(JSON.stringify({ clone: name, to: r.to, stateBytes: r.stateBytes, overlayBytes: r.overlayBytes, flushedBytes: flushed }));
      else console.log(`gvfs vm suspend: ${name} saved to ${r.to} (state ${r.stateBytes} bytes, overlay ${r.overlayBytes} bytes; ${flushed} bytes flushed to the server)`);
    });

  vm.command('stop')
    .description('Stop a clone (QEMU ended by PID) and forget it on this host; a suspended state on the server stays')
    .argument('[clones...]')
    .option('--all', 'every clone of this host')
    .addOption(stateDir())
    .option('--json', 'print JSON')
    .action(async (names: string[], o) => {
      if (o.all) names = (await listVms(o.stateDir)).map((c) => c.record.name);
      if (!names.length) throw new Error('name the clones to stop (or --all)');
      const out = [];
      for (const n of names) {
        const r = await stopVm({ name: n, stateRoot: o.stateDir });
        out.push({ clone: n, wasRunning: r.wasRunning, unmounted: r.unmounted ?? null });
        if (!o.json) console.log(`gvfs vm stop: ${n} ${r.wasRunning ? 'stopped' : 'was not running'}${r.unmounted ? `; unmounted ${r.unmounted}` : ''}`);
      }
      if (o.json) console.log(JSON.stringify(out));
    });

  vm.command('list')
    .description("This host's clones: running or suspended, PIDs, consoles")
    .addOption(stateDir())
    .option('--json', 'print JSON')
    .action(async (o) => {
      const l = await listVms(o.stateDir);
      if (o.json) {
        console.log(JSON.stringify(l.map(({ record: r, running }) => ({ clone: r.name, golden: r.golden, status: running ? 'running' : r.status === 'running' ? 'dead' : r.status, pid: r.pid ?? null, console: r.console, mount: r.mount.mnt, suspendedTo: r.suspendedTo ?? null }))));
        return;
      }
      if (!l.length) console.log('no clones on this host');
      for (const { record: r, running } of l) {
        const status = running ? `running, pid ${r.pid}` : r.status === 'suspended' ? `suspended to ${r.suspendedTo}` : 'not running (its QEMU is gone)';
        console.log(`${r.name.padEnd(16)} of ${r.golden.padEnd(12)} ${status}; console ${r.console}`);
      }
    });
  return vm;
}

import { Command } from 'commander';
import { fuseUnmount, isFuse, mountAt, mountState } from '../frontends/fuse/mountpoint.js';

export function umountCommand(): Command {
  return new Command('umount')
    .description('Unmount a gvfs mount (also one whose process has died or whose server is down); the mount process commits what is left and exits')
    .argument('<mountpoint>', 'where it is mounted')
    .option('--lazy', 'detach now even if programs still have files open there (they get errors from then on); nothing is asked of the mount first')
    .action(async (mountpoint: string, o: { lazy?: boolean }) => {
      // The mount table only: a stat through a mount whose server is down fails (EIO) or hangs.
      const entry = await mountAt(mountpoint);
      if (!entry) throw new Error(`${mountpoint} is not mounted`);
      if (!isFuse(entry)) throw new Error(`${entry.mountPoint} is not a FUSE mount (${entry.fsType})`);
      if (o.lazy) {
        await fuseUnmount(entry.mountPoint, { lazy: true });
        console.log(`gvfs umount: ${entry.mountPoint} unmounted (lazily)`);
        return;
      }
      // First without looking at the mount at all: a mount that is not busy goes, whatever its server or process does.
      try {
        await fuseUnmount(entry.mountPoint);
        console.log(`gvfs umount: ${entry.mountPoint} unmounted`);
        return;
      } catch (e) {
        // Busy. A dead mount (its process gone) is detached whatever holds it; else the user decides (--lazy).
        // The look is bounded and in a child process: a mount whose server is down answers late or never.
        const st = await mountState(entry.mountPoint);
        if (st.state === 'none') {
          console.log(`gvfs umount: ${entry.mountPoint} unmounted`);
          return;
        }
        if (st.state !== 'stale') {
          const hint = st.state === 'unresponsive' ? ` (the mount does not answer: ${st.reason}; is its server down?)` : '';
          throw new Error(`${(e as Error).message}${hint}; gvfs umount --lazy ${entry.mountPoint} detaches it now`, { cause: e });
        }
        await fuseUnmount(entry.mountPoint, { lazy: true });
        console.log(`gvfs umount: ${entry.mountPoint} (its process had died) unmounted`);
      }
    });
}

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
      // A bounded look (in a child process) only to tell a dead mount, which is detached whatever holds it.
      const st = await mountState(entry.mountPoint);
      const stale = st.state === 'stale';
      try {
        await fuseUnmount(entry.mountPoint, { lazy: stale });
      } catch (e) {
        const hint = st.state === 'unresponsive' ? ` (the mount does not answer: ${st.reason}; is its server down?)` : '';
        throw new Error(`${(e as Error).message}${hint}; gvfs umount --lazy ${entry.mountPoint} detaches it now`, { cause: e });
      }
      const why = stale ? ' (its process had died)' : st.state === 'unresponsive' ? ` (it did not answer: ${st.reason})` : '';
      console.log(`gvfs umount: ${entry.mountPoint}${why} unmounted`);
    });
}

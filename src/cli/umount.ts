import { Command } from 'commander';
import { fuseUnmount, isFuse, mountState } from '../frontends/fuse/mountpoint.js';

export function umountCommand(): Command {
  return new Command('umount')
    .description('Unmount a gvfs mount (also one whose process has died); the mount process commits what is left and exits')
    .argument('<mountpoint>', 'where it is mounted')
    .option('--lazy', 'detach now even if programs still have files open there (they get errors from then on)')
    .action(async (mountpoint: string, o: { lazy?: boolean }) => {
      const st = await mountState(mountpoint);
      if (st.state === 'none' || !st.entry) throw new Error(`${mountpoint} is not mounted`);
      if (!isFuse(st.entry)) throw new Error(`${st.entry.mountPoint} is not a FUSE mount (${st.entry.fsType})`);
      // A dead mount cannot be busy with anything useful: detach it whatever holds it.
      await fuseUnmount(st.entry.mountPoint, { lazy: !!o.lazy || st.state === 'stale' });
      console.log(`gvfs umount: ${st.entry.mountPoint}${st.state === 'stale' ? ' (its process had died)' : ''} unmounted`);
    });
}

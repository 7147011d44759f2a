import { toLlAttr } from '../../../src/frontends/fuse/lowlevel-attr.js';
import { FType } from '../../../src/nfs3/constants.js';

/** The attributes a raw-binding test mount shows: node 1 the root directory, any other a regular file of `size` bytes. */
export function llTestAttr(ino: number, size: number) {
  return toLlAttr(
    {
      type: ino === 1 ? FType.DIR : FType.REG,
      mode: ino === 1 ? 0o755 : 0o644,
      nlink: 1,
      uid: 0,
      gid: 0,
      size: ino === 1 ? 4096 : size,
      used: 0,
      rdev: { major: 0, minor: 0 },
      fsid: 1n,
      fileid: BigInt(ino),
      atime: { sec: 1, nsec: 0 },
      mtime: { sec: 1, nsec: 0 },
      ctime: { sec: 1, nsec: 0 },
    },
    4096,
  );
}

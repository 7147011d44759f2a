/**
 * What Linux does when uid 2001 gid 2001 (no other groups) makes these
 * system calls itself: the expectations of owners-and-modes.test.ts, checked
 * against the running kernel by owners-kernel.test.ts (Linux 6.18, ext4, when
 * written). Modes are the resulting st_mode & 07777; names are the files the
 * kernel check makes.
 */
export const KERNEL = {
  /** open(O_CREAT, 04777) / (02777) in a plain directory: kept on the caller's own file. */
  createSuid: 0o4777,
  createSgid: 0o2777,
  /** mkdir(02777) / mkdir(04755): mkdir ignores set-ID bits. */
  mkdirSgid: 0o777,
  mkdirSuid: 0o755,
  /** mknod(S_IFIFO | 06777): kept. */
  mkfifo: 0o6777,
  /** In a setgid directory of group 42: open(O_CREAT, 02777) loses S_ISGID; (02767) keeps it; mkdir(0777) is setgid. */
  sgCreateX: 0o777,
  sgCreateNoX: 0o2767,
  sgMkdir: 0o2777,
  /** chown(-1, 2001) of the caller's own 06755 file: a chown clears S_ISUID and a group-executable S_ISGID. */
  chgrpOwn: 0o755,
  /** chmod of the caller's own file of group 42: (02777) loses S_ISGID silently; (04755) and (01644) are kept. */
  chmodSgidForeignGroup: 0o777,
  chmodSuid: 0o4755,
  chmodSticky: 0o1644,
  /** write(2) to a 06777 root:root file, a 06767 2001:2001 file, a 02767 2001:42 file. */
  writeRoot: 0o777,
  writeOwn: 0o2767,
  writeForeignGroup: 0o767,
  /** truncate(2) of the caller's own 04755 file. */
  truncateSuid: 0o755,
} as const;

/** Calls the kernel refuses the same caller, with the errno. */
export const REFUSED = {
  /** chown(0, -1) and chown(-1, 42) of its own file. */
  chownToRoot: 'EPERM',
  chgrpTo42: 'EPERM',
  /** On a 0666 root:root file: chmod, a no-op chown, a no-op chgrp, explicit utimes. */
  foreignChmod: 'EPERM',
  foreignChownNoop: 'EPERM',
  foreignChgrpNoop: 'EPERM',
  foreignUtimes: 'EPERM',
  /** utimes(NULL) on a 0644 root:root file (no write permission). */
  foreignUtimesNowReadOnly: 'EACCES',
  /** link(2) of a 04755 and of a 0644 root:root file (fs.protected_hardlinks = 1). */
  linkForeignSuid: 'EPERM',
  linkForeignReadOnly: 'EPERM',
} as const;

/** utimes(NULL) on a 0666 root:root file (write permission), link(2) of it: allowed. */
export const ALLOWED = ['foreignUtimesNow', 'linkForeignReadWrite'] as const;

import type { Fattr3, WccAttr } from './types.js';

/** What says a directory's entries are as they were: its mtime and ctime (a change of entries moves both). */
export const dirStamp = (a: Fattr3 | WccAttr): string => `${a.mtime.sec}.${a.mtime.nsec}/${a.ctime.sec}.${a.ctime.nsec}`;

/** Two attribute sets of one directory with the same mtime and ctime: no entry changed between them. */
export const sameTimes = (a: Fattr3 | WccAttr, b: Fattr3 | WccAttr): boolean => dirStamp(a) === dirStamp(b);

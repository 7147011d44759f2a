#!/usr/bin/env python3
# Found by gvfs-fsx (write-through seed 2 op 24826, two-mounts seed 2 op 24826, write-back seed 1 op 3525 / seed 2 op 945):
# after ftruncate() UP within the EOF page, a read across the old EOF stops at the OLD size although fstat
# already says the new one, while another descriptor of the file is reading elsewhere.
# usage: truncate-up-read-race.py FILE-ON-A-GVFS-MOUNT ITERATIONS [noreader]
# On 98df170: no cache 123/200, write-through 87/200 fail; 0/200 without the concurrent reader; 0 on tmpfs.
# Fixed on branch fsx-fix (read-ahead held while a truncate/write is in flight): 0/200 both; regression test
# test/regressions/fsx-1-truncate-up-read.test.ts.
import os, sys, threading, time
path = sys.argv[1]; N = int(sys.argv[2])
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
size = 0x3f000
os.pwrite(fd, b'\x55' * size, 0)
os.pread(fd, 0x40000, 0)   # sequential: the front end's read-ahead starts streaming
stop = False
def reader():
    rfd = os.open(path, os.O_RDONLY | os.O_DIRECT) if False else os.open(path, os.O_RDONLY)
    while not stop:
        os.pread(rfd, 4096, 0x1000)
        os.posix_fadvise(rfd, 0, 0, os.POSIX_FADV_DONTNEED)
t = threading.Thread(target=reader)
if len(sys.argv) < 4: t.start()
fails = 0
for i in range(N):
    new = size + 0x37
    os.ftruncate(fd, new)
    st = os.fstat(fd).st_size
    got = len(os.pread(fd, 0x100, size - 0x40))
    if got != new - (size - 0x40) or st != new:
        fails += 1
        if fails < 4: print(f"iter {i}: truncate {size:#x} -> {new:#x}: fstat {st:#x}, read at {size-0x40:#x} returned {got:#x}, expected {new-(size-0x40):#x}")
    size = new if new < 0x3ff00 else 0x3f000
    if size == 0x3f000: os.ftruncate(fd, size)
stop = True
if len(sys.argv) < 4: t.join()
print(f"{fails}/{N} failed")

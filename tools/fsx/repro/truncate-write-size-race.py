#!/usr/bin/env python3
# Issue 15 failure 1 without the cache: truncate down, then a pwrite across and past EOF; fstat must say
# where the write ended. usage: truncate-write-size-race.py FILE-ON-A-GVFS-MOUNT ITERATIONS reader|none
# On 98df170 (no cache): 1/200 with a concurrent reader (fstat said the truncate's size), 0/200 without.
import os, sys, threading
path = sys.argv[1]; N = int(sys.argv[2]); mode = sys.argv[3]
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.pwrite(fd, b'\x55' * 0x30000, 0)
os.pread(fd, 0x40000, 0)   # 256 KiB read sequentially: the front end's read-ahead streams
stop = False
def reader():
    rfd = os.open(path, os.O_RDONLY)
    while not stop:
        os.pread(rfd, 4096, 0x1000)
        os.posix_fadvise(rfd, 0, 0, os.POSIX_FADV_DONTNEED)
t = threading.Thread(target=reader)
if mode == 'reader': t.start()
fails = 0
size = 0x30000
for i in range(N):
    os.ftruncate(fd, 0x20000 + (i * 0x1234) % 0x8000)          # truncate down
    size = 0x20000 + (i * 0x1234) % 0x8000
    end = size + 0x1000 + (i * 0x777) % 0x8000
    os.pwrite(fd, b'\xaa' * (end - (size - 0x800)), size - 0x800)  # write across and past EOF
    st = os.fstat(fd).st_size; se = os.lseek(fd, 0, os.SEEK_END)
    if st != end or se != end:
        fails += 1
        if fails < 4: print(f"iter {i}: truncate to {size:#x}, pwrite to {end:#x}: fstat {st:#x}, SEEK_END {se:#x}")
stop = True
if mode == 'reader': t.join()
print(f"{fails}/{N} failed ({mode})")

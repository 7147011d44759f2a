#!/usr/bin/env python3
# Found by gvfs-fsx (most no-cache / write-through / two-mounts mismatches): ftruncate(fd) then an O_APPEND
# write through a second descriptor; fstat(fd) and lseek(fd, 0, SEEK_END) must then say truncate size + appended.
# usage: truncate-then-append-size.py FILE-ON-A-GVFS-MOUNT ITERATIONS
# On 98df170 (no cache): 1/100 wrong size (fstat 0x1d000 for 0x29bef); the exerciser hits it far more often.
import os, sys
path = sys.argv[1]; N = int(sys.argv[2])
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
afd = os.open(path, os.O_WRONLY | os.O_APPEND)
os.pwrite(fd, b'\x55' * 0x39c03, 0)
fails = 0; wrong_place = 0
for i in range(N):
    x = 0x14906 + (i * 0x1111) % 0x8000
    os.ftruncate(fd, x)
    os.write(afd, b'\xaa' * 0xdb72)
    st = os.fstat(fd).st_size; se = os.lseek(fd, 0, os.SEEK_END)
    pos = os.lseek(afd, 0, os.SEEK_CUR)
    if st != x + 0xdb72 or se != x + 0xdb72:
        fails += 1
        if fails < 4: print(f"iter {i}: ftruncate(fd, {x:#x}); write(afd, 0xdb72): fstat {st:#x}, SEEK_END {se:#x}, afd at {pos:#x}; expected {x+0xdb72:#x}")
    if pos != x + 0xdb72: wrong_place += 1
    os.pwrite(fd, b'\x55' * 0x39c03, 0)
print(f"{fails}/{N} wrong size, {wrong_place}/{N} appends landed elsewhere")

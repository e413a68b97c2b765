#!/usr/bin/env python3
"""Writes the seeds in fuzz_bpf_record/ (kept out of that directory, which scripts/fuzz copies
whole into the corpus): records laid out as bpf/observer_events.h says
(little-endian, as the BPF programs write them on x86-64 and arm64). Run it again after
changing a record there; the .bin files are committed."""
import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz_bpf_record")
ABI_VERSION = 3
EXEC, NAMESPACE = 1, 2
FILENAME_MAX = 256


def header(kind, size, ktime_ns=123456789):
    return struct.pack("<HHIQ", kind, ABI_VERSION, size, ktime_ns)


def exec_record(filename, flags=0, container=0):
    name = filename[: FILENAME_MAX - 1]
    body = struct.pack(
        "<IIIIQIIQQQIIIIQ",
        4242, 4243, 1, 4026531840,  # pid, tid, ppid, mnt_ns
        7777,  # cgroup_id
        (0 << 20) | 25, 31,  # dev (kernel encoding), mnt_id
        1234567,  # ino
        0, 0x01021994,  # mnt_id_unique, sb_magic (TMPFS_MAGIC)
        1, flags, len(name), 0,  # nlink, flags, filename_len, pad
        container,  # the gate's container number
    ) + name.ljust(FILENAME_MAX, b"\0")
    size = 16 + len(body)
    assert size == 352, size
    return header(EXEC, size) + body


def namespace_record(syscall, flags, setns_fd=-1, read_failed=0):
    body = struct.pack("<IIIIQQiI", 4242, 4242, 4026531840, syscall, flags, 7777, setns_fd,
                       read_failed)
    size = 16 + len(body)
    assert size == 56, size
    return header(NAMESPACE, size) + body


CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
seeds = {
    "exec.bin": exec_record(b"/usr/bin/true"),
    "exec_memfd.bin": exec_record(b"/dev/fd/3", flags=0b0011),
    "exec_held.bin": exec_record(b"/entrypoint.sh", flags=1 << 8),  # discovery held it
    "exec_killed.bin": exec_record(b"/unlisted", flags=0b1100000, container=3),
    "namespace_unshare.bin": namespace_record(1, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET),
    "namespace_setns.bin": namespace_record(2, 0, setns_fd=5),
    "exec_truncated.bin": exec_record(b"/usr/bin/true")[:100],
}
for name, data in seeds.items():
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)

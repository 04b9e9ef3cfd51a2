"""A FUSE file system that can lose power: test harness, not product code.

    python tests_py/powerfs.py BACKING MOUNTPOINT [--cut-at N]

It serves the tree found in the folder BACKING at MOUNTPOINT, keeps every
change in memory, and on a power cut writes back to BACKING exactly what had
reached stable storage, then unmounts. A store written inside the mount and
reopened after a cut therefore sees what a real disk would hold after the
power failed at that instant, at the conservative end of what POSIX allows.

The model (what is durable; everything else is lost at the cut):

1. A file's content (bytes and size) is durable as of the last ``fsync`` or
   ``fdatasync`` of that file. A file never synced has no durable content:
   if its name survives, it is empty. Writes after the last sync are lost
   whole (no torn mixes are modelled: a sync is all-or-nothing).
2. A directory's entries (names pointing to inodes: made by create, mkdir,
   link, rename, and removed by unlink, rmdir, rename) are durable as of the
   last ``fsync`` of that directory (opened ``O_RDONLY | O_DIRECTORY``). A
   rename touches two directories; each side is durable when its own
   directory is synced. Syncing a file does not make its name durable, and
   syncing a directory does not make its files' contents durable.
3. After the cut, the tree is what is reachable from the root through
   durable entries; each file has its durable content. A directory created
   but whose parent was never synced vanishes with everything under it.
4. Between the cut and the unmount, every request fails with ``EIO``: no
   process can make anything durable after the instant of the cut, so an
   operation that returned successfully did all its I/O before it.

Real file systems (ext4, xfs) often keep more than this (ext4 commits a new
file's name with its first ``fsync``, and writes out a file renamed over
another); a program correct here is correct on them, not the other way round.

``flock`` is left to the kernel (FUSE keeps such locks locally when the file
system does not implement them), which is right for processes on one machine.

The cut comes at the N-th changing request (``--cut-at``, counted from the
mount: write, create, mkdir, link, unlink, rmdir, rename, setattr, fsync,
fsyncdir), before that request runs; or at the N-th changing request after a
line ``arm N KEEP SEED`` arrives on standard input; or when a line ``cut``
arrives. With KEEP above 0 the cut first makes each unsynced change (a
file's whole content, one directory entry) durable with that chance, drawn
from SEED: POSIX allows any of them to have reached the disk, in any order.
A line ``sync`` makes everything durable (the OS wrote it all out). The program prints ``ready`` once mounted, ``cut`` when the
power is cut, and on ``exit`` (standard input) writes BACKING, unmounts and
prints one JSON line of counters.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import shutil
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyfuse3
import trio

ROOT = pyfuse3.ROOT_INODE
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


@dataclass
class Inode:
    ino: int
    mode: int
    # Files: the content as processes see it, and as of the last sync
    # (None: never synced, so empty after a cut).
    data: bytearray = field(default_factory=bytearray)
    durable: bytes | None = None
    # Directories: names as processes see them, and as of the last sync.
    entries: dict[bytes, int] = field(default_factory=dict)
    durable_entries: dict[bytes, int] = field(default_factory=dict)
    links: int = 0
    mtime_ns: int = field(default_factory=time.time_ns)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


class PowerLossFs(pyfuse3.Operations):  # type: ignore[misc]
    def __init__(self, backing: Path, cut_at: int | None) -> None:
        super().__init__()
        self.inodes: dict[int, Inode] = {}
        self.next_ino = ROOT
        self.handles: dict[int, int] = {}  # open handle -> inode
        self.next_fh = 1
        self.cut_at = cut_at
        self.changes = 0
        self.cut_done = False
        # The chance that the cut keeps each unsynced change anyway.
        self.keep = 0.0
        self.rng = random.Random(0)
        self.counters = {"fsync": 0, "fsyncdir": 0, "changes": 0}
        self.load(backing)

    # The tree in memory.

    def new_inode(self, mode: int) -> Inode:
        inode = Inode(self.next_ino, mode)
        self.inodes[inode.ino] = inode
        self.next_ino += 1
        return inode

    def load(self, backing: Path) -> None:
        """Reads BACKING as the durable state (hard links kept)."""
        root = self.new_inode(stat.S_IFDIR | 0o755)
        seen: dict[tuple[int, int], int] = {}

        def walk(folder: Path, into: Inode) -> None:
            for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                info = entry.stat(follow_symlinks=False)
                name = os.fsencode(entry.name)
                if entry.is_dir(follow_symlinks=False):
                    child = self.new_inode(stat.S_IFDIR | stat.S_IMODE(info.st_mode))
                    walk(Path(entry.path), child)
                elif (info.st_dev, info.st_ino) in seen:
                    child = self.inodes[seen[(info.st_dev, info.st_ino)]]
                else:
                    child = self.new_inode(stat.S_IFREG | stat.S_IMODE(info.st_mode))
                    child.data = bytearray(Path(entry.path).read_bytes())
                    child.durable = bytes(child.data)
                    seen[(info.st_dev, info.st_ino)] = child.ino
                into.entries[name] = child.ino
                child.links += 1
            into.durable_entries = dict(into.entries)

        walk(backing, root)

    def save(self, backing: Path) -> None:
        """Writes the durable state to BACKING: the tree reachable through
        durable entries, each file with its durable content."""
        for entry in os.scandir(backing):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        written: dict[int, Path] = {}

        def walk(folder: Path, inode: Inode) -> None:
            for name, ino in inode.durable_entries.items():
                child = self.inodes[ino]
                path = folder / os.fsdecode(name)
                if child.is_dir:
                    path.mkdir()
                    walk(path, child)
                    os.chmod(path, stat.S_IMODE(child.mode))
                elif ino in written:
                    os.link(written[ino], path)
                else:
                    path.write_bytes(child.durable or b"")
                    os.chmod(path, stat.S_IMODE(child.mode))
                    written[ino] = path

        walk(backing, self.inodes[ROOT])

    def lost_at_cut(self) -> dict[str, int]:
        """What the cut drops: files with unsynced content, directories with
        unsynced entries."""
        files = sum(
            1
            for i in self.inodes.values()
            if not i.is_dir and i.links and bytes(i.data) != (i.durable or b"")
        )
        folders = sum(
            1 for i in self.inodes.values() if i.is_dir and i.entries != i.durable_entries
        )
        return {"unsynced_files": files, "unsynced_folders": folders}

    # Power.

    def cut(self) -> None:
        if not self.cut_done:
            self.counters.update(self.lost_at_cut())
            if self.keep:
                self.keep_some()
            self.cut_done = True
            print("cut", flush=True)

    def keep_some(self) -> None:
        """Makes a random part of the unsynced changes durable, each with the
        chance `keep` on its own: a file's whole new content, one name of a
        directory. The OS may have written any of them out before the power
        failed, in any order."""
        for inode in list(self.inodes.values()):
            if inode.is_dir:
                for name in sorted(set(inode.entries) | set(inode.durable_entries)):
                    now = inode.entries.get(name)
                    if now != inode.durable_entries.get(name) and self.rng.random() < self.keep:
                        if now is None:
                            del inode.durable_entries[name]
                        else:
                            inode.durable_entries[name] = now
            elif bytes(inode.data) != (inode.durable or b"") and self.rng.random() < self.keep:
                inode.durable = bytes(inode.data)

    def sync(self) -> None:
        """Everything reaches stable storage (the machine sat idle long
        enough for the OS to write it all out)."""
        for inode in self.inodes.values():
            inode.durable = bytes(inode.data)
            inode.durable_entries = dict(inode.entries)

    def check(self, changing: bool = False) -> None:
        """Fails every request after the cut; counts changing requests and
        cuts at the chosen one."""
        if changing and not self.cut_done:
            self.changes += 1
            self.counters["changes"] = self.changes
            if self.cut_at is not None and self.changes >= self.cut_at:
                self.cut()
        if self.cut_done:
            raise pyfuse3.FUSEError(errno.EIO)

    # Helpers.

    def attributes(self, inode: Inode) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = inode.ino
        attr.st_mode = inode.mode
        attr.st_nlink = 2 if inode.is_dir else max(inode.links, 1)
        attr.st_size = 4096 if inode.is_dir else len(inode.data)
        attr.st_blksize = 4096
        attr.st_blocks = (attr.st_size + 511) // 512
        attr.st_uid = os.getuid()
        attr.st_gid = os.getgid()
        attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = inode.mtime_ns
        # No caching in the kernel: every lookup and stat asks us.
        attr.entry_timeout = 0
        attr.attr_timeout = 0
        return attr

    def folder(self, ino: int) -> Inode:
        inode = self.inodes.get(ino)
        if inode is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if not inode.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    def child(self, parent: int, name: bytes) -> Inode:
        ino = self.folder(parent).entries.get(name)
        if ino is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self.inodes[ino]

    def add_entry(self, parent: Inode, name: bytes, inode: Inode) -> None:
        if name in parent.entries:
            raise pyfuse3.FUSEError(errno.EEXIST)
        parent.entries[name] = inode.ino
        inode.links += 1
        parent.mtime_ns = time.time_ns()

    def drop_entry(self, parent: Inode, name: bytes) -> None:
        ino = parent.entries.pop(name)
        self.inodes[ino].links -= 1
        parent.mtime_ns = time.time_ns()

    def open_handle(self, inode: Inode) -> int:
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = inode.ino
        return fh

    def handle(self, fh: int) -> Inode:
        return self.inodes[self.handles[fh]]

    # Requests that change nothing.

    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> Any:
        self.check()
        if name == b".":
            return self.attributes(self.folder(parent_inode))
        return self.attributes(self.child(parent_inode, name))

    async def getattr(self, inode: int, ctx: Any = None) -> Any:
        self.check()
        return self.attributes(self.inodes[inode])

    async def access(self, inode: int, mode: int, ctx: Any) -> bool:
        self.check()
        return True

    async def statfs(self, ctx: Any) -> Any:
        self.check()
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = 4096
        data.f_blocks = data.f_bfree = data.f_bavail = 1 << 24
        data.f_files = data.f_ffree = data.f_favail = 1 << 20
        data.f_namemax = 255
        return data

    async def open(self, inode: int, flags: int, ctx: Any) -> Any:
        self.check()
        return pyfuse3.FileInfo(fh=self.open_handle(self.inodes[inode]))

    async def read(self, fh: int, off: int, size: int) -> bytes:
        self.check()
        return bytes(self.handle(fh).data[off : off + size])

    async def flush(self, fh: int) -> None:
        self.check()

    async def release(self, fh: int) -> None:
        # Closing is no sync, and must not fail after the cut either.
        self.handles.pop(fh, None)

    async def opendir(self, inode: int, ctx: Any) -> int:
        self.check()
        return self.open_handle(self.folder(inode))

    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        self.check()
        folder = self.handle(fh)
        names = sorted(folder.entries)
        for position in range(start_id, len(names)):
            name = names[position]
            child = self.inodes[folder.entries[name]]
            if not pyfuse3.readdir_reply(token, name, self.attributes(child), position + 1):
                break

    async def releasedir(self, fh: int) -> None:
        self.handles.pop(fh, None)

    # Requests that change the tree.

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        self.check(changing=True)
        inode = self.handle(fh)
        if off > len(inode.data):
            inode.data.extend(bytes(off - len(inode.data)))
        inode.data[off : off + len(buf)] = buf
        inode.mtime_ns = time.time_ns()
        return len(buf)

    async def setattr(self, inode: int, attr: Any, fields: Any, fh: Any, ctx: Any) -> Any:
        self.check(changing=True)
        node = self.inodes[inode]
        if fields.update_size:
            size = attr.st_size
            if size < len(node.data):
                del node.data[size:]
            else:
                node.data.extend(bytes(size - len(node.data)))
        if fields.update_mode:
            node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(attr.st_mode)
        if fields.update_mtime:
            node.mtime_ns = attr.st_mtime_ns
        return self.attributes(node)

    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: Any) -> Any:
        self.check(changing=True)
        parent = self.folder(parent_inode)
        inode = self.new_inode(stat.S_IFREG | stat.S_IMODE(mode))
        self.add_entry(parent, name, inode)
        return pyfuse3.FileInfo(fh=self.open_handle(inode)), self.attributes(inode)

    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: Any) -> Any:
        self.check(changing=True)
        parent = self.folder(parent_inode)
        inode = self.new_inode(stat.S_IFDIR | stat.S_IMODE(mode))
        self.add_entry(parent, name, inode)
        return self.attributes(inode)

    async def link(self, inode: int, new_parent_inode: int, new_name: bytes, ctx: Any) -> Any:
        self.check(changing=True)
        node = self.inodes[inode]
        self.add_entry(self.folder(new_parent_inode), new_name, node)
        return self.attributes(node)

    async def unlink(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        self.check(changing=True)
        if self.child(parent_inode, name).is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        self.drop_entry(self.folder(parent_inode), name)

    async def rmdir(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        self.check(changing=True)
        if self.child(parent_inode, name).entries:
            raise pyfuse3.FUSEError(errno.ENOTEMPTY)
        self.drop_entry(self.folder(parent_inode), name)

    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: Any,
    ) -> None:
        self.check(changing=True)
        old_parent, new_parent = self.folder(parent_inode_old), self.folder(parent_inode_new)
        moving = self.child(parent_inode_old, name_old)
        target = new_parent.entries.get(name_new)
        if flags & RENAME_EXCHANGE:
            if target is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            old_parent.entries[name_old], new_parent.entries[name_new] = target, moving.ino
            old_parent.mtime_ns = new_parent.mtime_ns = time.time_ns()
            return
        if flags & ~RENAME_NOREPLACE:
            raise pyfuse3.FUSEError(errno.EINVAL)
        if target is not None:
            if flags & RENAME_NOREPLACE:
                raise pyfuse3.FUSEError(errno.EEXIST)
            if target == moving.ino:
                return
            if self.inodes[target].is_dir and self.inodes[target].entries:
                raise pyfuse3.FUSEError(errno.ENOTEMPTY)
            self.drop_entry(new_parent, name_new)
        self.drop_entry(old_parent, name_old)
        self.add_entry(new_parent, name_new, moving)

    async def fsync(self, fh: int, datasync: bool) -> None:
        self.check(changing=True)
        inode = self.handle(fh)
        inode.durable = bytes(inode.data)
        self.counters["fsync"] += 1

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        self.check(changing=True)
        folder = self.handle(fh)
        folder.durable_entries = dict(folder.entries)
        self.counters["fsyncdir"] += 1


async def serve(fs: PowerLossFs) -> None:
    """Runs the file system until ``exit`` arrives on standard input."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pyfuse3.main)
        print("ready", flush=True)
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            command = line.strip()
            if command.startswith("arm "):
                _, cut_at, keep, seed = command.split()
                fs.cut_at = fs.changes + int(cut_at)
                fs.keep, fs.rng = float(keep), random.Random(int(seed))
            elif command == "sync":
                fs.sync()
            elif command == "cut":
                fs.cut()
            elif command == "exit" or not line:
                fs.cut()
                break
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("backing", type=Path)
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("--cut-at", type=int, default=None)
    args = parser.parse_args()
    fs = PowerLossFs(args.backing, args.cut_at)
    options = set(pyfuse3.default_options)
    options.add("fsname=powerfs")
    pyfuse3.init(fs, str(args.mountpoint), options)
    try:
        trio.run(serve, fs)
    finally:
        pyfuse3.close(unmount=True)
    fs.save(args.backing)
    print(json.dumps(fs.counters), flush=True)


if __name__ == "__main__":
    main()

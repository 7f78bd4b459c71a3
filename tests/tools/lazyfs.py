#!/usr/bin/env python3
"""A FUSE filesystem that forgets what was not synced: the power-cut test's disk
(tests/it/powercut.rs), after Jepsen's lazyfs.

    lazyfs.py BACKING MOUNTPOINT

mounts BACKING at MOUNTPOINT (in the foreground, until unmounted or killed). Creating, renaming
and removing files and folders reach BACKING at once (the metadata a journalling filesystem keeps);
the bytes written to a file are held in this process's memory until the file is fsync'ed (fsync or
fdatasync), and only then written to BACKING and synced there. Killing this process (SIGKILL) is
the power cut: every write not synced is gone, and a new mount of BACKING shows the disk as it
would be after the reboot.

Needs mfusepy (ctypes bindings of libfuse 3, installed by ops/scripts/ensure-test-tools) and
root (or /dev/fuse and fusermount3) to mount; the mount shows in /proc/self/mountinfo once ready.
"""

import errno
import os
import sys
import threading

import mfusepy as fuse


class LazyFs(fuse.Operations):
    """Metadata straight through to the backing folder; file contents held until fsync."""

    use_ns = True

    def __init__(self, backing):
        self.backing = os.path.realpath(backing)
        # path -> bytearray: the file's whole content as the processes above see it, not yet on
        # the backing disk. A path absent here reads from the backing file.
        self.dirty = {}
        self.mutex = threading.Lock()
        self.synced_files = 0
        self.dropped_writes = 0

    def _real(self, path):
        return os.path.join(self.backing, path.lstrip("/"))

    def _content(self, path):
        """The dirty buffer of `path`, loaded from the backing file the first time."""
        buf = self.dirty.get(path)
        if buf is None:
            with open(self._real(path), "rb") as f:
                buf = bytearray(f.read())
            self.dirty[path] = buf
        return buf

    # --- metadata: straight through -------------------------------------------------------
    def getattr(self, path, fh=None):
        try:
            st = os.lstat(self._real(path))
        except OSError as e:
            raise fuse.FuseOSError(e.errno)
        attrs = {
            key: getattr(st, key)
            for key in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime_ns", "st_mtime_ns",
                        "st_ctime_ns")
        }
        for key in ("st_atime", "st_mtime", "st_ctime"):
            attrs[key] = attrs.pop(key + "_ns")
        with self.mutex:
            if path in self.dirty:
                attrs["st_size"] = len(self.dirty[path])
        return attrs

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._real(path))

    def access(self, path, amode):
        if not os.access(self._real(path), amode):
            raise fuse.FuseOSError(errno.EACCES)
        return 0

    def mkdir(self, path, mode):
        os.mkdir(self._real(path), mode)
        return 0

    def rmdir(self, path):
        os.rmdir(self._real(path))
        return 0

    def unlink(self, path):
        os.unlink(self._real(path))
        with self.mutex:
            self.dirty.pop(path, None)
        return 0

    def rename(self, old, new):
        os.rename(self._real(old), self._real(new))
        with self.mutex:
            buf = self.dirty.pop(old, None)
            self.dirty.pop(new, None)
            if buf is not None:
                self.dirty[new] = buf
            # A folder renamed carries its files' buffers along.
            prefix = old.rstrip("/") + "/"
            for p in [p for p in self.dirty if p.startswith(prefix)]:
                self.dirty[new.rstrip("/") + "/" + p[len(prefix):]] = self.dirty.pop(p)
        return 0

    def chmod(self, path, mode):
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path, uid, gid):
        os.chown(self._real(path), uid, gid)
        return 0

    def utimens(self, path, times=None):
        if times is None:
            os.utime(self._real(path))
        else:
            os.utime(self._real(path), ns=times)
        return 0

    def statfs(self, path):
        sv = os.statvfs(self._real(path))
        return {key: getattr(sv, key) for key in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                                                  "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}

    # --- contents: held until fsync --------------------------------------------------------
    def create(self, path, mode, fi=None):
        fd = os.open(self._real(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        os.close(fd)
        with self.mutex:
            self.dirty[path] = bytearray()
        return 0

    def open(self, path, flags):
        if flags & os.O_TRUNC:
            with self.mutex:
                self.dirty[path] = bytearray()
        return 0

    def read(self, path, size, offset, fh):
        with self.mutex:
            buf = self.dirty.get(path)
            if buf is not None:
                return bytes(buf[offset:offset + size])
        with open(self._real(path), "rb") as f:
            f.seek(offset)
            return f.read(size)

    def write(self, path, data, offset, fh):
        with self.mutex:
            buf = self._content(path)
            end = offset + len(data)
            if len(buf) < offset:
                buf.extend(b"\0" * (offset - len(buf)))
            buf[offset:end] = data
            return len(data)

    def truncate(self, path, length, fh=None):
        with self.mutex:
            buf = self._content(path)
            if length < len(buf):
                del buf[length:]
            else:
                buf.extend(b"\0" * (length - len(buf)))
        return 0

    def fsync(self, path, datasync, fh):
        with self.mutex:
            buf = self.dirty.pop(path, None)
            if buf is None:
                return 0
            fd = os.open(self._real(path), os.O_WRONLY | os.O_TRUNC)
            try:
                view = memoryview(buf)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            self.synced_files += 1
        return 0

    def fsyncdir(self, path, datasync, fh):
        return 0

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        return 0


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    backing, mountpoint = sys.argv[1], sys.argv[2]
    fs = LazyFs(backing)
    fuse.FUSE(fs, mountpoint, foreground=True, nothreads=True)


if __name__ == "__main__":
    main()

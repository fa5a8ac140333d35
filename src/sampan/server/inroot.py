"""Paths inside a directory that someone else writes to at the same time, resolved without a race.

A Volume's directory is bind-mounted into containers, which may put symbolic links in it and swap a
directory for one at any moment. Checking a path (`Path.resolve()`) and then opening it by name leaves a
window in which a container could lead the server's open out of the volume (a test did so hundreds of
times a second). Here every step is relative to a directory file descriptor the server holds, and
every component is opened with `O_NOFOLLOW`: a link met on the way is read and followed by this code,
within the root, the way `openat2(RESOLVE_IN_ROOT)` would, except that a link that would leave the root
(an absolute target, or `..` above it) is refused with `Outside` rather than clamped to the root.

Files are opened with `O_NONBLOCK` and must be regular files, so a FIFO a container made cannot hold a
server thread. Callers own every descriptor returned and close it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections import deque
from collections.abc import Iterator
from typing import BinaryIO

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_LINKS = 40  # as the kernel's own limit for one path
MAX_STEPS = 4096  # components walked for one path, links and retries included
MAX_DEPTH = 256  # directories deep, for the walks over whole trees
COPY_CHUNK = 1 << 20


class Outside(Exception):
    """The path, or a link on it, leads out of the root."""


def parts_of(path: str) -> list[str]:
    """`path` as components below the root (a leading `/` means the root); `..` is applied to the
    components before it, and one that would climb above the root is `Outside`."""
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                raise Outside(path)
            out.pop()
        else:
            out.append(part)
    return out


def _link(dir_fd: int, name: str) -> list[str]:
    """The components of the link `name`, which must stay relative; not a link: NotADirectoryError."""
    try:
        target = os.readlink(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", name) from None
        raise
    if target.startswith("/"):
        raise Outside(target)
    return target.split("/")


def open_dir(root_fd: int, parts: list[str], create: bool = False, owner: tuple[int, int] | None = None) -> int:
    """A new descriptor of the directory `parts` lead to from the root, following links within it;
    `create`: missing directories are made on the way (mode 0755, and given to `owner`)."""
    return _walk(root_fd, parts, create, owner)[0]


def _walk(root_fd: int, parts: list[str], create: bool = False,
          owner: tuple[int, int] | None = None) -> tuple[int, list[str]]:
    """`open_dir`, and the directory's own path below the root (links resolved), which a link found in
    it is relative to."""
    stack = [root_fd]  # the directories walked; ".." pops one, never the root
    names: list[str] = []
    todo = deque(parts)
    links = steps = 0
    try:
        while todo:
            steps += 1
            if steps > MAX_STEPS:
                raise OSError(errno.ELOOP, "too many steps", "/".join(parts))
            part = todo.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if len(stack) == 1:
                    raise Outside("/".join(parts))
                os.close(stack.pop())
                names.pop()
                continue
            try:
                fd = os.open(part, DIR_FLAGS, dir_fd=stack[-1])
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, 0o755, dir_fd=stack[-1])
                    os.chmod(part, 0o755, dir_fd=stack[-1])  # whatever the umask
                    if owner is not None:
                        os.chown(part, *owner, dir_fd=stack[-1], follow_symlinks=False)
                except FileExistsError:
                    pass
                todo.appendleft(part)  # open it on the next step, whatever is there by then
                continue
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, "too many links", "/".join(parts)) from None
                todo.extendleft(reversed(_link(stack[-1], part)))
                continue
            stack.append(fd)
            names.append(part)
        return (stack.pop() if len(stack) > 1 else os.dup(root_fd)), names
    finally:
        for fd in stack[1:]:
            os.close(fd)


def locate(root_fd: int, parts: list[str], create: bool = False,
           owner: tuple[int, int] | None = None) -> tuple[int, str]:
    """The directory that holds the last component (a new descriptor) and that component's name, which
    is not followed: for making, replacing or removing it. `parts` must not be empty."""
    return open_dir(root_fd, parts[:-1], create, owner), parts[-1]


def open_file(root_fd: int, parts: list[str], flags: int = os.O_RDONLY) -> int:
    """A new descriptor of the regular file `parts` lead to, following links within the root (a
    directory: IsADirectoryError; a FIFO, socket or device: OSError)."""
    parts = list(parts)
    for _ in range(MAX_LINKS + 1):
        if not parts:
            raise IsADirectoryError(errno.EISDIR, "is a directory", "/")
        parent, where = _walk(root_fd, parts[:-1])
        name = parts[-1]
        try:
            try:
                fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                parts = parts_of_link(where, _link(parent, name))
                continue
        finally:
            os.close(parent)
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, "is a directory", "/".join(parts))
            raise OSError(errno.EINVAL, "not a regular file", "/".join(parts))
        return fd
    raise OSError(errno.ELOOP, "too many links", "/".join(parts))


def parts_of_link(base: list[str], target: list[str]) -> list[str]:
    """Where a relative link's `target` leads from the directory `base`, as components below the root."""
    return parts_of("/".join([*base, *target]))


def kind(root_fd: int, parts: list[str]) -> str:
    """"directory", "file" or what else `parts` lead to, links within the root followed ("missing" for
    nothing there, "link" for a link that leads out or nowhere)."""
    try:
        os.close(open_dir(root_fd, parts))
        return "directory"
    except (NotADirectoryError, FileNotFoundError, Outside, OSError):
        pass
    try:
        os.close(open_file(root_fd, parts))
        return "file"
    except FileNotFoundError:
        return "missing"
    except (Outside, OSError):
        return "link"


def entries(dir_fd: int) -> list[os.DirEntry[str]]:
    """The entries of a directory, sorted by name (scandir on a descriptor: nothing is followed)."""
    with os.scandir(dir_fd) as found:
        return sorted(found, key=lambda e: e.name)


def walk(dir_fd: int, prefix: tuple[str, ...] = (), depth: int = 0) -> Iterator[tuple[tuple[str, ...], os.stat_result]]:
    """Every entry below a directory, depth first, with its `lstat`; links are listed, not entered."""
    if depth > MAX_DEPTH:
        return
    for entry in entries(dir_fd):
        info = entry.stat(follow_symlinks=False)
        yield (*prefix, entry.name), info
        if stat.S_ISDIR(info.st_mode):
            try:
                child = os.open(entry.name, DIR_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue  # swapped for something else meanwhile
            try:
                yield from walk(child, (*prefix, entry.name), depth + 1)
            finally:
                os.close(child)


def remove_tree(parent_fd: int, name: str, depth: int = 0) -> None:
    """Remove the directory `name` and everything in it; links are removed, never followed."""
    if depth > MAX_DEPTH:
        raise OSError(errno.ELOOP, "too deep", name)
    fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    try:
        for entry in entries(fd):
            if entry.is_dir(follow_symlinks=False):
                remove_tree(fd, entry.name, depth + 1)
            else:
                os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


def write_new(dir_fd: int, name: str, data: bytes | BinaryIO, temp: str, mtime: float | None = None,
              mode: int = 0o644, owner: tuple[int, int] | None = None) -> None:
    """Write `name` in a directory whole (`data`: bytes, or a file to copy from): first to `temp`, made
    anew and never through a link, then renamed over whatever `name` was (a link is replaced, not
    followed), so the file is never seen half-written."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp, dir_fd=dir_fd)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    with os.fdopen(fd, "wb") as out:
        if isinstance(data, bytes):
            out.write(data)
        else:
            shutil.copyfileobj(data, out, COPY_CHUNK)
        os.fchmod(out.fileno(), mode)
        if owner is not None:
            os.fchown(out.fileno(), *owner)
    if mtime is not None:
        os.utime(temp, (mtime, mtime), dir_fd=dir_fd, follow_symlinks=False)
    os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def copy_tree(src_fd: int, dst_fd: int, temp: str, depth: int = 0, into: tuple[int, int] | None = None) -> None:
    """Copy a directory's contents into another: files by their bytes, links as links (never what they
    point to), directories recursively; FIFOs, sockets and devices are left out, and so is the
    destination where it lies inside the source."""
    if depth > MAX_DEPTH:
        raise OSError(errno.ELOOP, "too deep")
    if into is None:
        top = os.fstat(dst_fd)
        into = (top.st_dev, top.st_ino)
    for entry in entries(src_fd):
        info = entry.stat(follow_symlinks=False)
        if (info.st_dev, info.st_ino) == into:
            continue
        if stat.S_ISDIR(info.st_mode):
            with contextlib.suppress(FileExistsError):
                os.mkdir(entry.name, 0o755, dir_fd=dst_fd)
            src_child = os.open(entry.name, DIR_FLAGS, dir_fd=src_fd)
            try:
                dst_child = os.open(entry.name, DIR_FLAGS, dir_fd=dst_fd)
                try:
                    copy_tree(src_child, dst_child, temp, depth + 1, into)
                finally:
                    os.close(dst_child)
            finally:
                os.close(src_child)
        elif stat.S_ISLNK(info.st_mode):
            target = os.readlink(entry.name, dir_fd=src_fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=dst_fd)
            os.symlink(target, temp, dir_fd=dst_fd)
            os.replace(temp, entry.name, src_dir_fd=dst_fd, dst_dir_fd=dst_fd)
        elif stat.S_ISREG(info.st_mode):
            try:
                fd = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=src_fd)
            except OSError:
                continue  # swapped for a link or removed meanwhile
            with os.fdopen(fd, "rb") as src:
                if stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                    write_new(dst_fd, entry.name, src, temp, info.st_mtime)

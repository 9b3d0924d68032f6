"""Atomic file writes: a reader, or a process killed mid-write, sees the old file or the new one,
never a truncated mix.

:func:`atomic_path` hands out a temporary path in the target's folder; the caller writes the whole
file there. On success the file is flushed to disk (``fsync``), renamed over the target
(``os.replace``, atomic on POSIX and Windows) and the folder entry is synced. On an exception the
temporary file is removed. A temporary file left by a process that was killed (SIGKILL leaves no
chance to clean up; a killed process not yet reaped counts as gone) is removed by the next write to
the same target. The file gets the permissions of a new file under the umask (0644 under umask
022), whatever the writer created it with.

Every writer of results in the package (model weights, survey arrays, training checkpoints, scan
part files) goes through here.
"""
from __future__ import annotations

import contextlib
import glob
import os
import socket
from typing import Iterator

__all__ = ["atomic_path", "stale_temporaries", "pid_alive"]

_TAG = ".advrobust-tmp-"
_HOST = socket.gethostname()


def _temporary_name(target: str, pid: int) -> str:
    folder, base = os.path.split(target)
    stem, suffix = os.path.splitext(base)
    # The suffix is kept last: np.savez appends ".npz" to a name without it, and astropy and h5py
    # choose nothing by suffix but users' tools may.
    # The host is in the name: writers on several machines share folders (the survey scan), and a
    # pid says nothing about another machine's processes.
    return os.path.join(folder, f".{stem}{_TAG}{_HOST}-{pid}{suffix}")


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (``pid <= 0``: no). A zombie (killed, not yet
    reaped by its parent: a SIGKILLed writer whose launcher has not waited) does not run."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Linux: ``/proc/<pid>/stat`` says state Z (elsewhere: False)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] == b"Z"


def _default_mode() -> int:
    """``0o666`` less this process's umask (what ``open`` gives a new file; 0o644 under umask 022)."""
    umask = None
    try:
        with open("/proc/self/status") as handle:
            umask = next((int(line.split()[1], 8) for line in handle if line.startswith("Umask:")), None)
    except OSError:
        pass
    if umask is None:  # no /proc: read it by setting it (not thread-safe, hence the last resort)
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def stale_temporaries(target: str | os.PathLike) -> list[str]:
    """Temporary files of ``target`` left by writers of this machine that no longer run (killed
    mid-write); other machines' temporaries are left to them."""
    target = os.path.abspath(os.fspath(target))
    folder, base = os.path.split(target)
    stem, suffix = os.path.splitext(base)
    stale = []
    for candidate in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(stem)}{_TAG}*{glob.escape(suffix)}")):
        writer = os.path.basename(candidate)[len(f".{stem}{_TAG}"):len(os.path.basename(candidate)) - len(suffix)]
        host, _, pid_text = writer.rpartition("-")
        if host in ("", _HOST) and pid_text.isdigit() and not pid_alive(int(pid_text)):
            stale.append(candidate)  # a writer of this machine that no longer runs (another's: never)
    return sorted(stale)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: str) -> None:
    if os.name != "posix":  # folders cannot be opened for fsync on Windows
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[str]:
    """Context manager yielding a temporary path to write ``target``'s new content to.

    Args:
        target: the file to (over)write. Its folder must exist.

    Yields:
        A path in the same folder, ending with ``target``'s suffix, that does not exist yet.

    Raises:
        FileNotFoundError: ``target``'s folder does not exist.
        Whatever the body raises: the temporary file is removed and ``target`` is left untouched.

    Example:
        >>> with atomic_path("survey.npz") as tmp:  # doctest: +SKIP
        ...     np.savez(tmp, images=images)
    """
    target = os.path.abspath(os.fspath(target))
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{target}: folder {folder} does not exist")
    for stale in stale_temporaries(target):
        with contextlib.suppress(FileNotFoundError):
            os.remove(stale)
    tmp = _temporary_name(target, os.getpid())
    with contextlib.suppress(FileNotFoundError):
        os.remove(tmp)  # left by an earlier failed write of this same process
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise RuntimeError(f"{target}: nothing was written to the temporary file {tmp}")
        os.chmod(tmp, _default_mode())  # some writers (safetensors) create 0600 files
        _fsync_file(tmp)
        os.replace(tmp, target)
        _fsync_folder(folder)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise

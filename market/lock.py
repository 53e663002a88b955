"""One owner per run folder: an OS file lock held for the whole run or resume (POSIX ``flock``).

The lock lives on ``DIR/.lock``, which also records the holder's pid. The operating system
releases it when the holder exits, however it exits (``kill -9`` included), so a crashed run never
leaves a folder locked.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = ".lock"


class FolderLock:
    """An exclusive lock on a run folder, held from `acquire` until `release` or process exit."""

    def __init__(self, path: Path, descriptor: int) -> None:
        self.path = path
        self._descriptor: int | None = descriptor

    @classmethod
    def acquire(cls, folder: Path) -> FolderLock:
        """Lock ``folder``; `RunError` naming the holder's pid when another process has it.

        OSError when the lock file cannot be opened for writing (a read-only folder).
        """
        from market.runfolder import RunError

        path = Path(folder) / LOCK_FILE
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(descriptor)
            raise RunError(
                f"{folder} is in use by process {holder} (another admarket run or resume "
                "writes there); wait for it to finish or stop it"
            ) from None
        except BaseException:
            os.close(descriptor)
            raise
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
        return cls(path, descriptor)

    def release(self) -> None:
        if self._descriptor is not None:
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
            os.close(self._descriptor)
            self._descriptor = None


def holder(folder: Path) -> str | None:
    """The pid holding ``folder``'s lock, or None when no process writes there now."""
    try:
        descriptor = os.open(Path(folder) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(descriptor, 32, 0).decode("ascii", "replace").strip() or "unknown"
    finally:
        os.close(descriptor)  # closing releases a shared lock we got
    return None

"""Exclusive locks on open files, on Linux and macOS (``flock``) and on Windows (``msvcrt.locking``),
so that ``sarhad serve`` starts on a Windows laptop too. The system drops a lock when its file is closed
or its process dies, however it dies."""

from __future__ import annotations

import sys

if sys.platform == "win32":
    import msvcrt

    def try_lock(fd: int) -> bool:
        """Take the lock at once, or say that another holder has it."""
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def lock(fd: int) -> None:
        """Wait for the lock (LK_LOCK itself retries for 10 s before it gives up)."""
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:
                continue

else:
    import fcntl

    def try_lock(fd: int) -> bool:
        """Take the lock at once, or say that another holder has it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def lock(fd: int) -> None:
        """Wait for the lock: it passes to the next waiter the moment it is released."""
        fcntl.flock(fd, fcntl.LOCK_EX)

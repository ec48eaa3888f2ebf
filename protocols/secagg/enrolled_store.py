"""Where an enrolled client remembers which rounds it has answered.

Round seeds come from long-term keys, so the same (session, round) always gives the same
pairwise seeds. A server that could replay a round and get a second unmask answer (a client
said "survived" once and "dropped" the second time) would get both kinds of secret for one
client. So a client answers each request kind at most once per (session, round), and that
memory must outlive the process: a client restarted mid-round must not answer again.

:class:`MemoryStore` (the default) remembers for the life of the object;
:class:`FileStore` remembers on disk, atomically across processes (``O_CREAT | O_EXCL``:
of two processes claiming the same answer, exactly one wins).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from secagg.errors import ConfigError

__all__ = ["AnswerStore", "FileStore", "MemoryStore"]

_KINDS = ("upload", "unmask")


def _check(kind: str, round_id: int) -> None:
    if kind not in _KINDS:
        raise ConfigError(f"answer kind must be one of {_KINDS}, got {kind!r}")
    if not isinstance(round_id, int) or round_id < 0:
        raise ConfigError(f"round must be an integer >= 0, got {round_id!r}")


class AnswerStore(Protocol):
    """Remembers answers; :meth:`claim` is the only operation."""

    def claim(self, session: bytes, round_id: int, client: int, kind: str) -> bool:
        """Record that ``client`` answers ``kind`` in (session, round); False (and nothing
        recorded) if it already has."""
        ...


class MemoryStore:
    """An in-memory :class:`AnswerStore` (lost when the process ends)."""

    def __init__(self) -> None:
        self._seen: set[tuple[bytes, int, int, str]] = set()

    def claim(self, session: bytes, round_id: int, client: int, kind: str) -> bool:
        _check(kind, round_id)
        key = (bytes(session), round_id, client, kind)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


class FileStore:
    """An :class:`AnswerStore` in a directory: one empty file per answer, created atomically.

    Args:
        directory: created (mode 0700) if missing.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot use answer store {directory}: {exc}") from None

    def claim(self, session: bytes, round_id: int, client: int, kind: str) -> bool:
        _check(kind, round_id)
        path = self.directory / f"{client}-{bytes(session).hex()}-{round_id}-{kind}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        dfd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dfd)  # the name itself must survive a crash
        finally:
            os.close(dfd)
        return True

"""A file-backed :class:`protocols.policy.AnsweredRequests`: a client's memory of the
requests it answered, shared by every process of one node.

A client answers at most one key, one consistency and one unmask request per (session,
round). Drivers that rebuild a client core for every message (the Flower mod replays its
log into a fresh core) need that memory to outlive the core: this store keeps one small file
per answered request in a directory of the node's own, never one the server names.

A claim creates its file with ``O_CREAT | O_EXCL`` (atomic on POSIX, so two processes racing
on one request cannot both win) and writes the answer's digest into it. The same answer
again (a replayed log) is accepted; any other answer, or a file another process has created
but not finished writing, is refused (the safe side).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from secagg.errors import ConfigError
from secagg.kex import label

__all__ = ["FileAnsweredRequests"]


class FileAnsweredRequests:
    """:class:`protocols.policy.AnsweredRequests` in ``directory`` (created if missing).

    Raises:
        ConfigError: the directory cannot be created or is not a directory.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot use {directory} for answered requests: {exc}") from None
        if not self.directory.is_dir():
            raise ConfigError(f"{directory} is not a directory")

    def _path(self, session: bytes, round_id: int, kind: str) -> Path:
        name = hashlib.sha256(label(b"secagg/v1/answered", bytes(session),
                                    str(round_id).encode(), kind.encode())).hexdigest()
        return self.directory / name

    def claim(self, session: bytes, round_id: int, kind: str, answer: bytes) -> bool:
        path = self._path(session, round_id, kind)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            try:
                return path.read_bytes() == bytes(answer)
            except OSError:
                return False
        with os.fdopen(fd, "wb") as f:
            f.write(bytes(answer))
            f.flush()
            os.fsync(f.fileno())
        return True

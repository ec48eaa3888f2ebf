"""The client registry: long-term Ed25519 verify keys, the root of trust of ``--active``.

Enrolment happens out of band, before any round: each client generates a signing seed
(:func:`secagg.sign.generate`) and keeps it; its verify key goes into the registry that the
server and every client load. The file format is JSON::

    {"version": 1, "clients": {"0": "<64 hex chars>", "1": "...", ...}}

:func:`enroll` makes a registry and the matching seeds in one go, for simulations and tests;
:func:`enroll_files` writes them out for a deployment (``registry.json`` for everyone, one
``client-<id>.key`` per client, to be handed to that client's node alone), and
:func:`load_signing_key` reads a key file back. A key file is JSON, written with mode 0600::

    {"version": 1, "client": 3, "seed": "<64 hex chars>"}
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from secagg import sign
from secagg.errors import ConfigError
from secagg.rng import Csprng

__all__ = ["ClientRegistry", "enroll", "enroll_files", "load_signing_key", "save_signing_key"]


@dataclass(frozen=True)
class ClientRegistry:
    """Client id -> 32-byte Ed25519 verify key."""

    keys: Mapping[int, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for cid, vk in self.keys.items():
            if not isinstance(cid, int) or cid < 0:
                raise ConfigError(f"client ids must be integers >= 0, got {cid!r}")
            if len(vk) != sign.VERIFY_KEY_SIZE:
                raise ConfigError(f"verify key of client {cid} must be "
                                  f"{sign.VERIFY_KEY_SIZE} bytes, got {len(vk)}")

    def verify_key(self, cid: int) -> bytes:
        """The verify key of ``cid``; raises ConfigError if it is not enrolled."""
        try:
            return self.keys[cid]
        except KeyError:
            raise ConfigError(f"client {cid} is not enrolled in the registry") from None

    def covers(self, n: int) -> bool:
        """Whether clients 0..n-1 are all enrolled."""
        return all(u in self.keys for u in range(n))

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the registry's canonical content: what a client pins in its
        :class:`protocols.policy.ClientPolicy` so that no other registry is accepted."""
        h = hashlib.sha256(b"secagg/v1/registry")
        for cid, vk in sorted(self.keys.items()):
            h.update(cid.to_bytes(8, "big") + bytes(vk))
        return h.hexdigest()

    def save(self, path: str | Path) -> None:
        """Write the registry as JSON (public keys only)."""
        doc = {"version": 1, "clients": {str(k): v.hex() for k, v in sorted(self.keys.items())}}
        Path(path).write_text(json.dumps(doc, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ClientRegistry:
        """Read a registry file.

        Raises:
            ConfigError: unreadable JSON, a wrong version, bad ids or keys.
        """
        try:
            doc = json.loads(Path(path).read_text())
            if doc.get("version") != 1:
                raise ConfigError(f"registry version must be 1, got {doc.get('version')!r}")
            return cls({int(k): bytes.fromhex(v) for k, v in doc["clients"].items()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"cannot read client registry {path}: {exc}") from None


def enroll(n: int, rng: Csprng) -> tuple[ClientRegistry, dict[int, bytes]]:
    """Signing seeds for clients 0..n-1 and the registry of their verify keys."""
    seeds = {u: sign.generate(rng) for u in range(n)}
    return ClientRegistry({u: sign.verify_key(s) for u, s in seeds.items()}), seeds


def save_signing_key(path: str | Path, client: int, seed: bytes) -> None:
    """Write client ``client``'s signing seed to ``path`` (mode 0600, refusing to overwrite).

    .. warning:: the file is the client's long-term secret: give it to that node only.

    Raises:
        ConfigError: the file exists or cannot be written, or the seed has the wrong size.
    """
    if len(seed) != sign.SEED_SIZE:
        raise ConfigError(f"a signing seed is {sign.SEED_SIZE} bytes, got {len(seed)}")
    doc = json.dumps({"version": 1, "client": client, "seed": seed.hex()}) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write signing key {path}: {exc}") from None
    with os.fdopen(fd, "w") as f:
        f.write(doc)


def load_signing_key(path: str | Path, client: int | None = None) -> tuple[int, bytes]:
    """(client id, signing seed) from a key file written by :func:`save_signing_key`.

    Raises:
        ConfigError: unreadable or malformed, or for another client than ``client``.
    """
    try:
        doc = json.loads(Path(path).read_text())
        if doc.get("version") != 1:
            raise ConfigError(f"key file version must be 1, got {doc.get('version')!r}")
        cid, seed = int(doc["client"]), bytes.fromhex(doc["seed"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"cannot read signing key {path}: {exc}") from None
    if len(seed) != sign.SEED_SIZE:
        raise ConfigError(f"signing key {path} holds {len(seed)} bytes, not {sign.SEED_SIZE}")
    if client is not None and cid != client:
        raise ConfigError(f"signing key {path} is client {cid}'s, not client {client}'s")
    return cid, seed


def enroll_files(n: int, directory: str | Path, rng: Csprng) -> ClientRegistry:
    """Enrol clients 0..n-1 out of band: write ``registry.json`` and ``client-<id>.key`` files
    into ``directory`` (created if missing); returns the registry.

    Raises:
        ConfigError: a file already exists there, or the directory cannot be written.
    """
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {directory}: {exc}") from None
    if (out / "registry.json").exists():
        raise ConfigError(f"{out / 'registry.json'} exists; enrol into an empty directory")
    registry, seeds = enroll(n, rng)
    for u, seed in seeds.items():
        save_signing_key(out / f"client-{u}.key", u, seed)
    registry.save(out / "registry.json")
    return registry

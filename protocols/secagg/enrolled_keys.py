"""Enrolment: long-term client identities and the registry of their public keys.

Enrolment happens once, out of band, before any round (``secagg enroll``). Each client gets
an :class:`Identity`: a long-term X25519 secret (pairwise round seeds and share encryption
with every other enrolled client) and an Ed25519 signing seed (the active variant). The
:class:`EnrolledRegistry` lists every client's X25519 public key and Ed25519 verify key;
the server and every client load the same registry, never from each other.

Files (JSON; the key file is written with mode 0600)::

    registry:  {"version": 2, "clients": {"0": {"kex": "<64 hex>", "verify": "<64 hex>"}, ...}}
    key file:  {"version": 1, "kind": "secagg-enrolled-identity", "client": 0,
                "kex_secret": "<64 hex>", "signing_seed": "<64 hex>"}

.. warning:: a key file holds long-term secrets: whoever reads it can compute every pairwise
   round seed of that client, past and future (there is no forward secrecy; see SECURITY.md).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocols.secagg.enrolled_store import AnswerStore, MemoryStore
from protocols.secagg.registry import ClientRegistry
from secagg import sign
from secagg.errors import ConfigError
from secagg.kex import PUBLIC_KEY_SIZE, SECRET_KEY_SIZE, KeyPair, agree
from secagg.rng import Csprng

__all__ = ["EnrolledRegistry", "Identity", "enroll_clients"]

_KIND = "secagg-enrolled-identity"


@dataclass(frozen=True)
class EnrolledRegistry(ClientRegistry):
    """Client id -> Ed25519 verify key (``keys``, as :class:`ClientRegistry`) and
    client id -> long-term X25519 public key (``kex_keys``)."""

    kex_keys: Mapping[int, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ClientRegistry.__post_init__(self)
        if set(self.kex_keys) != set(self.keys):
            raise ConfigError("an enrolled registry needs both keys (kex and verify) of "
                              "every client it lists")
        for cid, pk in self.kex_keys.items():
            if len(pk) != PUBLIC_KEY_SIZE:
                raise ConfigError(f"X25519 key of client {cid} must be {PUBLIC_KEY_SIZE} "
                                  f"bytes, got {len(pk)}")
        if len(set(self.kex_keys.values())) != len(self.kex_keys):
            raise ConfigError("two clients of the registry share one X25519 key")

    def fingerprint(self) -> str:
        """SHA-256 (hex) of both keys of every client: what a node pins, so that a registry
        with another X25519 key (or verify key) for any client is told apart."""
        h = hashlib.sha256(b"secagg/v1/enrolled-registry")
        for cid in sorted(self.keys):
            h.update(cid.to_bytes(8, "big") + bytes(self.keys[cid]) + bytes(self.kex_keys[cid]))
        return h.hexdigest()

    def kex_key(self, cid: int) -> bytes:
        """The long-term X25519 public key of ``cid``; ConfigError if not enrolled."""
        try:
            return self.kex_keys[cid]
        except KeyError:
            raise ConfigError(f"client {cid} is not enrolled in the registry") from None

    def save(self, path: str | Path) -> None:
        """Write the registry as JSON (public keys only)."""
        doc = {"version": 2, "clients": {
            str(u): {"kex": self.kex_keys[u].hex(), "verify": self.keys[u].hex()}
            for u in sorted(self.keys)}}
        Path(path).write_text(json.dumps(doc, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> EnrolledRegistry:
        """Read a registry written by :meth:`save` (``secagg enroll``).

        Raises:
            ConfigError: unreadable, a wrong version (a version-1 registry has no X25519
                keys: re-enrol with ``secagg enroll``), bad ids or keys.
        """
        try:
            doc = json.loads(Path(path).read_text())
            if doc.get("version") != 2:
                raise ConfigError(f"enrolled registry version must be 2, got "
                                  f"{doc.get('version')!r}; write one with 'secagg enroll'")
            clients = doc["clients"]
            return cls({int(k): bytes.fromhex(v["verify"]) for k, v in clients.items()},
                       {int(k): bytes.fromhex(v["kex"]) for k, v in clients.items()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"cannot read enrolled registry {path}: {exc}") from None


class Identity:
    """One enrolled client's long-term secrets, with a cache of its Diffie-Hellman results.

    Args:
        client_id: the client's id in the registry.
        kex_secret: 32-byte X25519 secret.
        signing_seed: 32-byte Ed25519 seed (the active variant signs with it).
        answers: where the client remembers which (session, round) it has answered; an
            in-memory :class:`MemoryStore` by default (lives as long as this object). Use a
            :class:`~protocols.secagg.enrolled_store.FileStore` to remember across processes.

    ``repr`` never shows a secret.
    """

    def __init__(self, client_id: int, kex_secret: bytes, signing_seed: bytes,
                 answers: AnswerStore | None = None) -> None:
        if not isinstance(client_id, int) or client_id < 0:
            raise ConfigError(f"client id must be an integer >= 0, got {client_id!r}")
        if len(kex_secret) != SECRET_KEY_SIZE or len(signing_seed) != sign.SEED_SIZE:
            raise ConfigError(f"an identity needs a {SECRET_KEY_SIZE}-byte X25519 secret and "
                              f"a {sign.SEED_SIZE}-byte signing seed")
        self.client_id = client_id
        self._kex = KeyPair.from_secret(kex_secret)
        self._signing_seed = bytes(signing_seed)
        self.verify_key = sign.verify_key(self._signing_seed)
        self.answers: AnswerStore = answers if answers is not None else MemoryStore()
        self._dh: dict[bytes, bytes] = {}

    @property
    def kex_public(self) -> bytes:
        return self._kex.public

    @classmethod
    def generate(cls, client_id: int, rng: Csprng) -> Identity:
        """A fresh identity (enrolment)."""
        return cls(client_id, rng.bytes(SECRET_KEY_SIZE), sign.generate(rng))

    def agree(self, peer_public: bytes) -> bytes:
        """The X25519 shared secret with ``peer_public``, computed once and cached.

        Raises:
            ProtocolError: a low-order or malformed peer key.
        """
        shared = self._dh.get(peer_public)
        if shared is None:
            shared = agree(self._kex.secret, peer_public)
            self._dh[peer_public] = shared
        return shared

    @property
    def signing_key(self) -> bytes:
        """The 32-byte Ed25519 seed: what the per-round-setup protocols' active variant and
        the HE clients take as ``signing_key`` (the same enrolment serves every protocol)."""
        return self._signing_seed

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature with the long-term signing seed."""
        return sign.sign(self._signing_seed, message)

    def check_against(self, registry: EnrolledRegistry) -> None:
        """ConfigError unless the registry lists exactly this identity's public keys."""
        u = self.client_id
        if registry.kex_key(u) != self.kex_public or registry.verify_key(u) != self.verify_key:
            raise ConfigError(f"the identity does not match client {u}'s registry entry")

    def save(self, path: str | Path) -> None:
        """Write the key file with mode 0600 (refuses to overwrite an existing file)."""
        doc: dict[str, Any] = {"version": 1, "kind": _KIND, "client": self.client_id,
                               "kex_secret": self._kex.secret.hex(),
                               "signing_seed": self._signing_seed.hex()}
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ConfigError(f"key file {path} already exists; choose another --out") from None
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(doc) + "\n")

    @classmethod
    def load(cls, path: str | Path, answers: AnswerStore | None = None) -> Identity:
        """Read a key file written by :meth:`save`.

        Raises:
            ConfigError: unreadable, or not an enrolled identity.
        """
        try:
            doc = json.loads(Path(path).read_text())
            if doc.get("kind") != _KIND or doc.get("version") != 1:
                raise ConfigError(f"{path} is not a version-1 {_KIND} key file")
            return cls(int(doc["client"]), bytes.fromhex(doc["kex_secret"]),
                       bytes.fromhex(doc["signing_seed"]), answers)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"cannot read key file {path}: {exc}") from None

    def __repr__(self) -> str:
        return f"Identity(client={self.client_id}, kex={self.kex_public.hex()[:16]}...)"


def enroll_clients(n: int, rng: Csprng) -> tuple[EnrolledRegistry, dict[int, Identity]]:
    """Fresh identities for clients 0..n-1 and the registry of their public keys."""
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"enrol at least one client, got {n!r}")
    ids = {u: Identity.generate(u, rng) for u in range(n)}
    registry = EnrolledRegistry({u: i.verify_key for u, i in ids.items()},
                                {u: i.kex_public for u, i in ids.items()})
    return registry, ids

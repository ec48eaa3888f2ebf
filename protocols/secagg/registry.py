"""The client registry: long-term Ed25519 verify keys, the root of trust of ``--active``.

Enrolment happens out of band, before any round: each client generates a signing seed
(:func:`secagg.sign.generate`) and keeps it; its verify key goes into the registry that the
server and every client load. The file format is JSON::

    {"version": 1, "clients": {"0": "<64 hex chars>", "1": "...", ...}}

:func:`enroll` makes a registry and the matching seeds in one go, for simulations and tests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from secagg import sign
from secagg.errors import ConfigError
from secagg.rng import Csprng

__all__ = ["ClientRegistry", "enroll"]


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

"""What a client accepts, whatever the server says: its own security policy, and its memory
of the requests it has answered.

A server (or a Flower ``ServerApp``) sends every client the round's config. A client that
accepts any config can be handed t = 1, a cohort of one, no noise, or the server's own
registry of "clients". :class:`ClientPolicy` is owned by the client (built from its node's
own settings, never from the server) and every client core checks the config it is given
against it before it does anything; a weaker config raises :class:`PolicyError` naming the
setting. The checks are generic: a protocol without a threshold, graph or registry is checked
on what it has (allowed protocols, cohort, release floor, noise) and refused where the policy
requires what it cannot have (``require_active``).

:class:`AnsweredRequests` is the client's memory of what it answered: a client gives at most
one answer per (session, round, kind of request). A sans-IO core takes the store from its
driver; :class:`MemoryAnsweredRequests` (the default) lives as long as the core, and
:class:`fl.flower.replay.FileAnsweredRequests` survives processes (for the Flower mod, which
rebuilds its core from a log for every message).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from protocols.base import MIN_CONTRIBUTORS
from secagg.errors import ConfigError, PolicyError

__all__ = ["AnsweredRequests", "ClientPolicy", "MemoryAnsweredRequests"]


class AnsweredRequests(Protocol):
    """A client's record of the requests it has answered."""

    def claim(self, session: bytes, round_id: int, kind: str, answer: bytes) -> bool:
        """Record that the client answers the request ``kind`` of (session, round) with
        ``answer`` (a digest of what it sends). True if it had not answered that request
        before, or answered it with this very same answer (a driver that rebuilds the core
        and replays its log); False if it answered it differently: the caller refuses."""
        ...


class MemoryAnsweredRequests:
    """:class:`AnsweredRequests` in memory (lives as long as the object)."""

    def __init__(self) -> None:
        self._answers: dict[tuple[bytes, int, str], bytes] = {}

    def claim(self, session: bytes, round_id: int, kind: str, answer: bytes) -> bool:
        return self._answers.setdefault((bytes(session), round_id, kind), bytes(answer)) == answer


def _fingerprint(registry: Any) -> str | None:
    if registry is None:
        return None
    fp = getattr(registry, "fingerprint", None)
    return str(fp()) if callable(fp) else None


@dataclass(frozen=True)
class ClientPolicy:
    """The weakest round config a client accepts.

    Args:
        protocols: the protocol names it runs (None: any registered one).
        min_cohort: the smallest ``n_clients``.
        min_contributors: the smallest release floor (``max(min_clients, 2)``).
        min_threshold: the smallest Shamir threshold t (protocols with one).
        min_threshold_fraction: the smallest t as a fraction of the share holders of a
            secret (the neighbourhood k + 1; the cohort for the complete graph).
        require_active: only the active-adversary variant (signed keys, consistency round).
        min_corruption: the smallest corruption fraction the config may assume (it sets the
            active thresholds: a server that claims 0 lowers them).
        registry_fingerprint: the fingerprint (``ClientRegistry.fingerprint()``) of the
            client registry it trusts; a config carrying any other registry is refused.
        min_noise_multiplier: the smallest distributed-DP noise multiplier of what reaches a
            sum of ``min_contributors`` survivors, computed against the encoding's true
            sensitivity. Central noise does not count: the server adds it, and a client
            cannot check that it did.
        decryptor_key: the Ed25519 verify key (32 bytes) of the HE decryptor this client
            trusts. An HE config that names no decryptor key, or another one, is refused:
            without it the aggregator can run a decryptor of its own and read every upload
            (SECURITY.md, "Authenticity of the public context"). Protocols without a
            decryptor (masking) are not affected.

    Raises:
        ConfigError: a policy that is itself out of range.
    """

    protocols: tuple[str, ...] | None = None
    min_cohort: int = MIN_CONTRIBUTORS
    min_contributors: int = MIN_CONTRIBUTORS
    min_threshold: int = 1
    min_threshold_fraction: float = 0.0
    require_active: bool = False
    min_corruption: float = 0.0
    registry_fingerprint: str | None = None
    min_noise_multiplier: float = 0.0
    decryptor_key: bytes | None = None

    def __post_init__(self) -> None:
        for name in ("min_cohort", "min_contributors"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < MIN_CONTRIBUTORS:
                raise ConfigError(f"policy {name} must be an integer >= {MIN_CONTRIBUTORS}, got {v!r}")
        if not isinstance(self.min_threshold, int) or self.min_threshold < 1:
            raise ConfigError(f"policy min_threshold must be an integer >= 1, got {self.min_threshold!r}")
        for name in ("min_threshold_fraction", "min_corruption"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"policy {name} must be in [0, 1), got {v!r}")
        if not self.min_noise_multiplier >= 0.0:
            raise ConfigError(f"policy min_noise_multiplier must be >= 0, got "
                              f"{self.min_noise_multiplier!r}")
        if self.decryptor_key is not None and (not isinstance(self.decryptor_key, bytes)
                                               or len(self.decryptor_key) != 32):
            raise ConfigError("policy decryptor_key must be the decryptor's 32-byte Ed25519 "
                              f"verify key, got {self.decryptor_key!r}")

    def check(self, protocol: str, config: Any) -> None:
        """Refuse ``config`` of ``protocol`` if it is weaker than this policy.

        Raises:
            PolicyError: names the setting, the value offered and the one required.
        """
        if self.protocols is not None and protocol not in self.protocols:
            raise PolicyError(f"protocol {protocol!r} is not allowed by this client's policy "
                              f"(protocols={', '.join(self.protocols)})")
        if config.n_clients < self.min_cohort:
            raise PolicyError(f"n_clients={config.n_clients} is below the policy's "
                              f"min_cohort={self.min_cohort}")
        floor = config.release_floor
        if floor < self.min_contributors:
            raise PolicyError(f"min_clients={config.min_clients} releases sums of {floor} "
                              f"clients; the policy's min_contributors={self.min_contributors}")
        active = bool(getattr(config, "active", False))
        if self.require_active and not active:
            raise PolicyError(f"{protocol} config is not active; the policy has require_active")
        threshold = getattr(config, "threshold", None)
        if threshold is not None:
            holders = getattr(config, "degree", config.n_clients - 1) + 1
            need = max(self.min_threshold, math.ceil(self.min_threshold_fraction * holders))
            if threshold < need:
                raise PolicyError(
                    f"threshold={threshold} is below the policy's minimum {need} "
                    f"(min_threshold={self.min_threshold}, min_threshold_fraction="
                    f"{self.min_threshold_fraction:g} of {holders} share holders)")
        corruption = getattr(config, "corruption", None)
        if corruption is not None and corruption < self.min_corruption:
            raise PolicyError(f"corruption={corruption:g} is below the policy's "
                              f"min_corruption={self.min_corruption:g}")
        if self.registry_fingerprint is not None:
            got = _fingerprint(getattr(config, "registry", None))
            if got != self.registry_fingerprint:
                raise PolicyError(f"the config's registry (fingerprint {got}) is not the one "
                                  f"this client trusts (registry_fingerprint="
                                  f"{self.registry_fingerprint})")
        if self.decryptor_key is not None and hasattr(config, "decryptor_key"):
            got = config.decryptor_key
            if got != self.decryptor_key:
                raise PolicyError(
                    f"the config's decryptor_key ({'none' if got is None else bytes(got).hex()}) "
                    f"is not the decryptor this client trusts (policy decryptor_key="
                    f"{self.decryptor_key.hex()}): an aggregator with a decryptor of its own "
                    "could read every upload")
        if self.min_noise_multiplier > 0:
            self._check_noise(config, floor)

    def _check_noise(self, config: Any, floor: int) -> None:
        noise = getattr(config, "client_noise", None)
        if noise is None:
            raise PolicyError(f"the config adds no distributed noise; the policy's "
                              f"min_noise_multiplier={self.min_noise_multiplier:g} needs it "
                              "(central noise is the server's to add and cannot be checked)")
        event = noise.event_for(max(1, min(floor, noise.n_clients)), config.dim + 1)
        true_sensitivity = config.encoding.l2_sensitivity(config.dim)
        z = min(event.noise_multiplier, event.sigma / true_sensitivity)
        if z < self.min_noise_multiplier:
            raise PolicyError(f"the noise reaching a sum of {floor} clients has multiplier "
                              f"{z:.4g}; the policy's min_noise_multiplier="
                              f"{self.min_noise_multiplier:g}")

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], prefix: str = "policy-") -> ClientPolicy:
        """A policy from string-or-typed settings (e.g. a Flower node config), keys
        ``<prefix>protocols`` (comma-separated), ``<prefix>min-cohort``,
        ``<prefix>min-contributors``, ``<prefix>min-threshold``,
        ``<prefix>min-threshold-fraction``, ``<prefix>require-active``,
        ``<prefix>min-corruption``, ``<prefix>registry-fingerprint``,
        ``<prefix>min-noise-multiplier``, ``<prefix>decryptor-key`` (64 hex characters);
        absent keys keep the defaults.

        Raises:
            ConfigError: a value that does not parse (names the key).
        """
        kw: dict[str, Any] = {}
        casts: dict[str, Any] = {
            "min_cohort": int, "min_contributors": int, "min_threshold": int,
            "min_threshold_fraction": float, "min_corruption": float,
            "min_noise_multiplier": float, "registry_fingerprint": str,
        }
        for name, cast in casts.items():
            key = prefix + name.replace("_", "-")
            if key in settings:
                try:
                    kw[name] = cast(settings[key])
                except (TypeError, ValueError):
                    raise ConfigError(f"{key}={settings[key]!r} is not a {cast.__name__}") from None
        if prefix + "protocols" in settings:
            kw["protocols"] = tuple(p.strip() for p in str(settings[prefix + "protocols"]).split(",")
                                    if p.strip())
        key = prefix + "decryptor-key"
        if key in settings:
            try:
                kw["decryptor_key"] = bytes.fromhex(str(settings[key]))
            except ValueError:
                raise ConfigError(f"{key}={settings[key]!r} is not hex (the decryptor's "
                                  "verify key, 64 hex characters)") from None
        key = prefix + "require-active"
        if key in settings:
            v = settings[key]
            if isinstance(v, str):
                if v.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ConfigError(f"{key}={v!r} is not a boolean (true/false)")
                v = v.lower() in ("true", "1", "yes")
            kw["require_active"] = bool(v)
        return cls(**kw)

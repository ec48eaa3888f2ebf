"""ckks: CKKS homomorphic aggregation (TenSEAL) with a separate decryptor role.

Importing this package needs ``tenseal``; :mod:`protocols` registers it only when that
import succeeds. Theory of operation: :mod:`protocols.ckks.scheme`; parameters and the
worst-case error bound: :mod:`protocols.ckks.config`.
"""

from __future__ import annotations

from typing import ClassVar

from protocols.base import DECRYPTOR, Party, ProtocolSpec
from protocols.ckks.config import CkksConfig, make_config
from protocols.ckks.scheme import CkksScheme
from protocols.he import HeAggregator, HeClient, HeDecryptor, HeScheme, provision
from protocols.he.state import CLIENT_TRANSITIONS, SERVER_TRANSITIONS, Kind
from secagg.rng import Csprng

__all__ = ["SPEC", "CkksAggregator", "CkksClient", "CkksConfig", "CkksDecryptor", "CkksScheme",
           "helpers", "make_config"]

_SCHEME = CkksScheme()


class CkksClient(HeClient):
    """A ckks client (see :class:`protocols.he.HeClient`)."""

    SCHEME: ClassVar[HeScheme] = _SCHEME


class CkksAggregator(HeAggregator):
    """The ckks aggregator, at address SERVER (see :class:`protocols.he.HeAggregator`)."""

    SCHEME: ClassVar[HeScheme] = _SCHEME


class CkksDecryptor(HeDecryptor):
    """The ckks decryptor, at address DECRYPTOR (see :class:`protocols.he.HeDecryptor`)."""

    SCHEME: ClassVar[HeScheme] = _SCHEME


def helpers(config: CkksConfig, rng: Csprng) -> dict[int, Party]:
    """``{DECRYPTOR: decryptor}``. With ``config.decryptor_key`` set, build the decryptor
    yourself with its signing key: ``CkksDecryptor(config, rng, signing_key=...)``."""
    return {DECRYPTOR: CkksDecryptor(config, rng.spawn("decryptor"))}


SPEC = ProtocolSpec(
    name="ckks",
    summary="CKKS (TenSEAL) ciphertexts summed by the server, decrypted once by a separate "
            "decryptor",
    config_factory=make_config,
    client_table=lambda config: CLIENT_TRANSITIONS,
    server_table=lambda config: SERVER_TRANSITIONS,
    input_kind=Kind.INPUT_REQUEST,
    keywords=frozenset({"decryptor_key", "registry"}),
    client=CkksClient,
    server=CkksAggregator,
    helpers=helpers,
    provision=provision,
    releases_any_survivors=True,  # the decryptor decrypts whatever sum it is handed
    exact=False,
)

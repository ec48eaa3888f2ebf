"""paillier: packed Paillier aggregation (phe, gmpy2) with a separate decryptor role.

Importing this package needs ``phe`` and ``gmpy2``; :mod:`protocols` registers it only when
that import succeeds. Theory of operation: :mod:`protocols.paillier.scheme`; key size and packing:
:mod:`protocols.paillier.config`.
"""

from __future__ import annotations

from typing import ClassVar

from protocols.base import DECRYPTOR, Party, ProtocolSpec
from protocols.he import HeAggregator, HeClient, HeDecryptor, HeScheme, provision
from protocols.he.state import CLIENT_TRANSITIONS, SERVER_TRANSITIONS, Kind
from protocols.paillier.config import PaillierConfig, make_config
from protocols.paillier.scheme import PaillierScheme
from secagg.rng import Csprng

__all__ = ["SPEC", "PaillierAggregator", "PaillierClient", "PaillierConfig", "PaillierDecryptor",
           "PaillierScheme", "helpers", "make_config"]

_SCHEME = PaillierScheme()


class PaillierClient(HeClient):
    """A paillier client (see :class:`protocols.he.HeClient`)."""

    SCHEME: ClassVar[HeScheme] = _SCHEME


class PaillierAggregator(HeAggregator):
    """The paillier aggregator, at address SERVER (see :class:`protocols.he.HeAggregator`)."""

    SCHEME: ClassVar[HeScheme] = _SCHEME


class PaillierDecryptor(HeDecryptor):
    """The paillier decryptor, at address DECRYPTOR (see :class:`protocols.he.HeDecryptor`)."""

    SCHEME: ClassVar[HeScheme] = _SCHEME


def helpers(config: PaillierConfig, rng: Csprng) -> dict[int, Party]:
    """``{DECRYPTOR: decryptor}``. With ``config.decryptor_key`` set, build the decryptor
    yourself with its signing key: ``PaillierDecryptor(config, rng, signing_key=...)``."""
    return {DECRYPTOR: PaillierDecryptor(config, rng.spawn("decryptor"))}


SPEC = ProtocolSpec(
    name="paillier",
    summary="packed Paillier (phe) ciphertexts multiplied by the server, decrypted once by a "
            "separate decryptor; exact",
    config_factory=make_config,
    client_table=lambda config: CLIENT_TRANSITIONS,
    server_table=lambda config: SERVER_TRANSITIONS,
    input_kind=Kind.INPUT_REQUEST,
    keywords=frozenset({"decryptor_key", "registry"}),
    client=PaillierClient,
    server=PaillierAggregator,
    helpers=helpers,
    provision=provision,
    releases_any_survivors=True,  # the decryptor decrypts whatever sum it is handed
    exact=True,
)

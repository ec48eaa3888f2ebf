"""SecAgg (complete graph, Bonawitz et al. 2017) and SecAgg+ (sparse graph, Bell et al. 2020).

Both share one client, one server and one transition table (:mod:`._state`); they differ
only in the graph degree and threshold (:mod:`.config`).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

from protocols.base import ClientCore, GraphParams, ProtocolSpec, ServerCore
from protocols.secagg import _enrolled_state
from protocols.secagg._state import Kind, tables
from protocols.secagg.client import SecAggClient
from protocols.secagg.config import (
    SecAggConfig,
    active_min_threshold,
    derive_graph_parameters,
    make_config,
)
from protocols.secagg.enrolled_client import EnrolledClient
from protocols.secagg.enrolled_keys import EnrolledRegistry, Identity, enroll_clients
from protocols.secagg.enrolled_server import EnrolledServer
from protocols.secagg.registry import (
    ClientRegistry,
    enroll,
    enroll_files,
    load_signing_key,
    save_signing_key,
)
from protocols.secagg.server import SecAggServer
from secagg.rng import Csprng

#: make_config keywords (beyond the base ones) the masking protocols support
_KEYWORDS = frozenset({"threshold", "degree", "active", "registry", "corruption",
                       "dropout_tolerance", "client_noise", "enrolled"})

__all__ = ["SECAGG", "SECAGG_PLUS", "ClientRegistry", "EnrolledClient", "EnrolledRegistry",
           "EnrolledServer", "Identity", "SecAggClient", "SecAggConfig", "SecAggServer",
           "active_min_threshold", "derive_graph_parameters", "enroll", "enroll_clients",
           "enroll_files", "load_signing_key", "make_config", "provision", "save_signing_key"]


def provision(config: SecAggConfig, rng: Csprng) -> tuple[SecAggConfig, dict[int, dict[str, Any]]]:
    """For simulations of the active variant: enrol every client with a fresh signing key.

    A config that already has a registry (a real deployment) is returned unchanged; its
    clients bring their own keys.
    """
    if config.enrolled:  # long-term X25519 + signing keys for every client
        if config.registry is not None:
            return config, {}
        reg, ids = enroll_clients(config.n_clients, rng)
        return dataclasses.replace(config, registry=reg), {u: {"identity": i} for u, i in ids.items()}
    if not config.active or config.registry is not None:
        return config, {}
    registry, seeds = enroll(config.n_clients, rng)
    return (dataclasses.replace(config, registry=registry),
            {u: {"signing_key": s} for u, s in seeds.items()})

def _client(config: SecAggConfig, client_id: int, rng: Csprng, *, protocol: str,
            **kw: Any) -> ClientCore:
    """The enrolled client when the config says so, else the per-round-setup client."""
    if config.enrolled:
        return EnrolledClient(config, client_id, rng, protocol=protocol, **kw)
    return SecAggClient(config, client_id, rng, protocol=protocol, **kw)


def _tables(config: SecAggConfig) -> tuple[Any, Any]:
    """(client table, server table) of the config's mode and variant."""
    return (_enrolled_state.tables if config.enrolled else tables)(config.active)


def _server(config: SecAggConfig, rng: Csprng) -> ServerCore:
    return EnrolledServer(config, rng) if config.enrolled else SecAggServer(config, rng)


def _spec(name: str, summary: str, sparse: bool) -> ProtocolSpec:
    """The spec of ``secagg`` (complete graph) or ``secagg+`` (sparse): one client, one
    server and one table each, per-round setup or enrolled as the config says."""
    return ProtocolSpec(
        name=name,
        summary=summary,
        config_factory=partial(make_config, sparse=sparse),
        client=partial(_client, protocol=name),
        server=_server,
        client_table=lambda config: _tables(config)[0],
        server_table=lambda config: _tables(config)[1],
        input_kind=Kind.SHARE_FORWARD,
        keywords=_KEYWORDS,
        provision=provision,
        supports_distributed_dp=True,
        graph=lambda config: GraphParams(config.threshold, config.degree),
    )


SECAGG = _spec("secagg", "pairwise masks on the complete graph with Shamir dropout recovery "
               "(Bonawitz 2017)", sparse=False)
SECAGG_PLUS = _spec("secagg+", "pairwise masks on a random sparse graph of logarithmic degree "
                    "(Bell 2020)", sparse=True)

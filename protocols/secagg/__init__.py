"""SecAgg (complete graph, Bonawitz et al. 2017) and SecAgg+ (sparse graph, Bell et al. 2020).

Both share one client, one server and one transition table (:mod:`._state`); they differ
only in the graph degree and threshold (:mod:`.config`).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

from protocols.base import ClientCore, ProtocolSpec, ServerCore
from protocols.secagg._state import CLIENT_TRANSITIONS
from protocols.secagg.client import SecAggClient
from protocols.secagg.config import SecAggConfig, derive_graph_parameters, make_config
from protocols.secagg.enrolled_client import EnrolledClient
from protocols.secagg.enrolled_keys import EnrolledRegistry, Identity, enroll_clients
from protocols.secagg.enrolled_server import EnrolledServer
from protocols.secagg.registry import ClientRegistry, enroll
from protocols.secagg.server import SecAggServer
from secagg.rng import Csprng

_STAGES = tuple(kind.name for (_, kind) in CLIENT_TRANSITIONS)

__all__ = ["SECAGG", "SECAGG_PLUS", "ClientRegistry", "EnrolledClient", "EnrolledRegistry",
           "EnrolledServer", "Identity", "SecAggClient", "SecAggConfig", "SecAggServer",
           "derive_graph_parameters", "enroll", "enroll_clients", "make_config", "provision"]


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

def _client(config: SecAggConfig, client_id: int, rng: Csprng, **kw: Any) -> ClientCore:
    """The enrolled client when the config says so, else the per-round-setup client."""
    return (EnrolledClient if config.enrolled else SecAggClient)(config, client_id, rng, **kw)


def _server(config: SecAggConfig, rng: Csprng) -> ServerCore:
    return EnrolledServer(config, rng) if config.enrolled else SecAggServer(config, rng)


SECAGG = ProtocolSpec(
    name="secagg",
    summary="pairwise masks on the complete graph with Shamir dropout recovery (Bonawitz 2017)",
    make_config=partial(make_config, sparse=False),
    client=_client,
    server=_server,
    client_stages=_STAGES,
    provision=provision,
)
SECAGG_PLUS = ProtocolSpec(
    name="secagg+",
    summary="pairwise masks on a random sparse graph of logarithmic degree (Bell 2020)",
    make_config=partial(make_config, sparse=True),
    client=_client,
    server=_server,
    client_stages=_STAGES,
    provision=provision,
)

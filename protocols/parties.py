"""Who takes part in a round, and their generators: provision a round and build its server,
helpers and clients, with one label scheme for their generators (:func:`party_rng`):
``"enrolment"``, ``"server"``, ``"helpers"`` and ``f"client/{u}"`` under the round's
generator. Every driver builds its parties here: the in-process harness
(:class:`protocols.harness.Router`), and the Flower apps, whose clients run in other
processes (:func:`build_server_side` on the server, :func:`party_rng` on each node).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocols.base import SERVER, ClientCore, Party, ProtocolSpec, RoundConfig, ServerCore
from secagg.errors import UsageError
from secagg.rng import Csprng

__all__ = ["Parties", "build_parties", "build_server_side", "party_rng"]


def party_rng(rng: Csprng, role: str | int) -> Csprng:
    """The generator of one party of a round whose generator is ``rng``: ``role`` is
    ``"enrolment"``, ``"server"``, ``"helpers"`` or a client id (``f"client/{u}"``). Drivers
    that build parties elsewhere (another process) use this so every driver agrees."""
    if isinstance(role, int):
        if role < 0:
            raise UsageError(f"client ids are >= 0, got {role}; use 'server' or 'helpers'")
        return rng.spawn(f"client/{role}")
    if role not in ("enrolment", "server", "helpers"):
        raise UsageError(f"unknown role {role!r}; use 'enrolment', 'server', 'helpers' or a "
                         "client id")
    return rng.spawn(role)


@dataclass
class Parties:
    """Every role of one round, built by :func:`build_parties`.

    Attributes:
        config: the round's config after provisioning (e.g. with the active variant's
            client registry filled in).
        helpers: ``{address: role}`` (e.g. ``{DECRYPTOR: decryptor}``).
        clients: ``clients[u]`` is client ``u``.
    """

    spec: ProtocolSpec
    config: RoundConfig
    server: ServerCore
    helpers: dict[int, Party]
    clients: list[ClientCore]

    def party(self, address: int) -> Party:
        """The role at ``address``.

        Raises:
            UsageError: no role has that address.
        """
        if 0 <= address < len(self.clients):
            return self.clients[address]
        if address == SERVER:
            return self.server
        if address in self.helpers:
            return self.helpers[address]
        raise UsageError(f"no party at address {address}")


def build_server_side(spec: ProtocolSpec, config: RoundConfig, rng: Csprng, *,
                      helpers: Mapping[int, Party] | None = None,
                      server: ServerCore | None = None, provision: bool = True,
                      ) -> tuple[RoundConfig, ServerCore, dict[int, Party],
                                 dict[int, dict[str, Any]]]:
    """The server side of :func:`build_parties`, for drivers whose clients run elsewhere
    (another process or machine: :mod:`fl.flower`): provision (unless ``provision`` is
    False), then build the server and the helpers from the same party tree
    (:func:`party_rng`). Returns ``(config, server, helpers, credentials)``;
    ``credentials`` are what provisioning made up for the clients (a driver that cannot
    hand them out, because its clients are enrolled out of band, refuses a non-empty one).

    Raises:
        ConfigError: whatever the protocol's constructors refuse.
    """
    credentials: dict[int, dict[str, Any]] = {}
    if provision:
        config, made = spec.provision(config, party_rng(rng, "enrolment"))
        credentials = {u: dict(c) for u, c in made.items()}
    if server is None:
        server = spec.server(config, party_rng(rng, "server"))
    built = dict(spec.helpers(config, party_rng(rng, "helpers")) if helpers is None
                 else helpers)
    return config, server, built, credentials


def build_parties(spec: ProtocolSpec, config: RoundConfig, rng: Csprng,
                  client_kwargs: Mapping[str, Any] | None = None,
                  credentials: Mapping[int, Mapping[str, Any]] | None = None,
                  helpers: Mapping[int, Party] | None = None,
                  server: ServerCore | None = None) -> Parties:
    """Provision a round of ``spec`` and build all of its roles, each with its own child
    generator of ``rng`` (labels: :func:`party_rng`). ``client_kwargs`` go to every client's
    constructor (e.g. ``{"map": fl.engines.pool.process_map(2)}`` for the HE clients).
    ``credentials`` (client -> keyword arguments, e.g. enrolled identities loaded from
    ``secagg enroll``'s files) replace what ``spec.provision`` would make up for a
    simulation; the config then keeps the registry it was given. ``helpers`` (address ->
    role) are helper roles the caller built (e.g. a decryptor holding a signing key
    of its own; ``spec.helpers`` is then not called), ``server`` likewise (e.g. with a
    cohort of its own choosing).

    Raises:
        ConfigError: whatever the protocol's constructors refuse.
    """
    config, server, helpers, made = build_server_side(spec, config, rng, helpers=helpers,
                                                      server=server,
                                                      provision=credentials is None)
    credentials = made if credentials is None else credentials
    extra = dict(client_kwargs or {})
    clients = [spec.client(config, u, party_rng(rng, u), **credentials.get(u, {}), **extra)
               for u in range(config.n_clients)]
    return Parties(spec, config, server, helpers, clients)

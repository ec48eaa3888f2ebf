"""Test helpers. The round harness itself is public: :mod:`protocols.harness` (``Router``,
``Envelope``, ``random_inputs`` are re-exported here for the tests that import them from
this module); message comparison lives in :mod:`protocols.testing`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

import protocols
from protocols.base import Message
from protocols.harness import Envelope, Router, random_inputs
from protocols.parties import party_rng
from protocols.testing import assert_messages_equal, messages_equal, role_state
from secagg.rng import Csprng

__all__ = [
    "Envelope",
    "Router",
    "adversary_round",
    "assert_aborted_only_for_dropouts",
    "assert_messages_equal",
    "messages_equal",
    "random_inputs",
    "server_state",
]


#: the server's stage/state enum, whatever the protocol calls it (None if it has none)
server_state = role_state


def adversary_round(name: str = "secagg", n: int = 6, dim: int = 16, *, seed: object = "adv",
                    rng_seed: object | None = None, answered: Mapping[int, Any] | None = None,
                    drop_at: Mapping[int, Any] | None = None,
                    tamper: Callable[[Message], Message] | None = None,
                    **config_kw: Any) -> Router:
    """A round for the adversarial tests, not started: client ``u``'s input is
    ``full(dim, 0.01 * (u + 1))``; enrolment comes from ``seed`` and the roles' generators
    from ``rng_seed`` (default ``seed``), so two runs can share one enrolment (the same
    identities) and differ in everything else. ``answered``: client -> its answered-request
    store. The roles' generator is ``Csprng.from_seed(f"{rng_seed}/roles")`` (a test that
    rebuilds a client uses ``party_rng`` of it)."""
    spec = protocols.get(name)
    config = spec.make_config(n, dim, **config_kw)
    config, creds = spec.provision(config, party_rng(Csprng.from_seed(f"{seed}"), "enrolment"))
    stores = dict(answered or {})
    credentials = {u: {**creds.get(u, {}), **({"answered": stores[u]} if u in stores else {})}
                   for u in range(n)}
    inputs = [np.full(dim, 0.01 * (u + 1)) for u in range(n)]
    return Router(spec, config, roles_rng(seed if rng_seed is None else rng_seed), inputs,
                  credentials=credentials, drop_at=drop_at, tamper=tamper, start=False)


def roles_rng(seed: object) -> Csprng:
    """The generator :func:`adversary_round` builds the roles of run ``seed`` from."""
    return Csprng.from_seed(f"{seed}/roles")


def assert_aborted_only_for_dropouts(server: Any, errors: list[Exception]) -> None:
    """A masking server whose stage is ABORTED got there through a DropoutError (one of
    ``errors``, those the driver saw it raise) and releases no result."""
    from secagg.errors import DropoutError, UsageError

    if server.stage.name != "ABORTED":
        return
    assert any(isinstance(e, DropoutError) for e in errors), errors
    try:
        server.result()
    except UsageError:
        return
    raise AssertionError("an aborted round released a result")

"""Walk a protocol's transition tables: every state x every message kind (h2's state walk).

Two walks, both deterministic (no hypothesis needed):

- :func:`walk_table` is *pure*: for every state of a table's state enum and every member of
  the enums its kinds come from, :func:`protocols._machine.transition` either returns the
  table's next state or raises :class:`~secagg.errors.ProtocolError`; and the table is well
  formed (:func:`check_table`): one state enum, every state that has a way out is reachable
  from the first, nothing leaves an ``ABORTED`` state, and a client table is a chain, so its
  stages have one order.
- :func:`walk_client` drives real roles: for every stage i a client can be in (0..number of
  stages, the last being "done") and every stage message j, it replays a round until client 0
  has had i messages, then hands it the genuine j-th message. A client either moves on
  (``i == j``: it answers and is not aborted) or raises ProtocolError and aborts for good,
  sending nothing. Replays are deterministic (fixed seed and session), so the j-th message
  of the reference round is what the replay would have sent.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from protocols._machine import transition
from protocols.base import Message, ProtocolSpec, message_class
from protocols.harness import Router
from secagg.errors import ProtocolError
from secagg.rng import Csprng

__all__ = ["WalkResult", "check_table", "walk_client", "walk_spec_tables", "walk_table"]

Table = Mapping[tuple[Any, enum.Enum], Any]


@dataclass(frozen=True)
class WalkResult:
    """How many (state, kind) pairs were walked, and how many of them moved."""

    pairs: int
    moved: int


def _state_enum(table: Table) -> type[enum.Enum]:
    states = {type(s) for (s, _) in table} | {type(v) for v in table.values()}
    if len(states) != 1:
        raise AssertionError(f"a table's states come from one enum, got {sorted(map(str, states))}")
    cls = states.pop()
    if not issubclass(cls, enum.Enum):
        raise AssertionError(f"states must be enum members, got {cls}")
    return cls


def walk_table(table: Table, kinds: Iterable[type[enum.Enum]] | None = None) -> WalkResult:
    """Every (state, kind) pair through :func:`transition` (see the module docstring).

    Args:
        kinds: the enums whose members to feed (default: those the table's kinds come from).

    Raises:
        AssertionError: a pair that moved where the table does not say, or raised anything
            but ProtocolError, or a table pair that did not move.
    """
    states = _state_enum(table)
    enums = set(kinds) if kinds is not None else {type(k) for (_, k) in table}
    pairs = moved = 0
    for state in states:
        for kind_enum in enums:
            for kind in kind_enum:
                pairs += 1
                want = table.get((state, kind))
                try:
                    got = transition(table, state, kind)
                except ProtocolError:
                    if want is not None:
                        raise AssertionError(f"{state.name} x {kind.name} is in the table "
                                             f"but was refused") from None
                    continue
                if got is not want:
                    raise AssertionError(f"{state.name} x {kind.name} moved to {got}, the "
                                         f"table says {want}")
                moved += 1
    check_table(table)
    return WalkResult(pairs, moved)


def check_table(table: Table, *, chain: bool = False) -> None:
    """Structural checks of one table (see the module docstring).

    Args:
        chain: also require one way out of every state (a client table's stage order).

    Raises:
        AssertionError: the first problem found.
    """
    states = _state_enum(table)
    if not table:
        raise AssertionError("an empty transition table")
    out: dict[Any, list[Any]] = {}
    for (s, _), nxt in table.items():
        out.setdefault(s, []).append(nxt)
    aborted = getattr(states, "ABORTED", None)
    if aborted is not None and aborted in out:
        raise AssertionError("an ABORTED state must be final, but the table leaves it")
    start = next(iter(table))[0]
    seen, todo = {start}, [start]
    while todo:
        for nxt in out.get(todo.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    unreachable = set(out) - seen
    if unreachable:
        raise AssertionError(f"states {sorted(s.name for s in unreachable)} have transitions "
                             f"but cannot be reached from {start.name}")
    if chain:
        forks = {s.name: len(v) for s, v in out.items() if len(v) > 1}
        if forks:
            raise AssertionError(f"a client table must be a chain; {forks} have several ways "
                                 "out, so the stages have no single order")


def walk_spec_tables(spec: ProtocolSpec, config: Any) -> dict[str, WalkResult]:
    """Walk the client table (and the server table, if the spec declares one) of ``spec``
    under ``config``; every client kind must name a wire-registered message class."""
    client = spec.client_table(config)
    check_table(client, chain=True)
    for (_, kind) in client:
        message_class(kind)
    kinds = {type(k) for (_, k) in client}
    results = {"client": walk_table(client, kinds)}
    if spec.server_table is not None:
        server = spec.server_table(config)
        results["server"] = walk_table(server, kinds | {type(k) for (_, k) in server})
    return results


def walk_client(spec: ProtocolSpec, config_kw: Mapping[str, Any] | None = None, *,
                n: int = 4, dim: int = 3, seed: str = "walk", client: int = 0) -> int:
    """The role walk of one client (see the module docstring); returns the pairs walked.

    Raises:
        AssertionError: a pair the client handled wrongly (named).
    """
    kw = {"session": f"walk/{spec.name}".encode(), **(config_kw or {})}

    def fresh() -> Router:
        return Router(spec, spec.make_config(n, dim, **kw), Csprng.from_seed(seed))

    reference = fresh()
    reference.run()
    genuine: list[Message] = [m for m in reference.log if m.recipient == client]
    stages = reference.stages
    if [type(m) for m in genuine] != list(stages):
        raise AssertionError(f"client {client} got {[type(m).__name__ for m in genuine]} in "
                             f"an undisturbed round, its stages are "
                             f"{[c.__name__ for c in stages]}")
    pairs = 0
    for i in range(len(stages) + 1):
        for j, msg in enumerate(genuine):
            router = fresh()
            reached: Callable[[], bool] = lambda r=router, i=i: r.received[client] == i  # type: ignore[misc]  # noqa: E731
            router.run_until(reached)
            role = router.clients[client]
            before = len(router.sent.get(client, []))
            pairs += 1
            try:
                answer = router.send(msg, to=client)
            except ProtocolError:
                if i == j:
                    raise AssertionError(f"client refused its own stage-{i} message "
                                         f"{type(msg).__name__}") from None
                if not role.aborted:
                    raise AssertionError(f"client refused {type(msg).__name__} in stage {i} "
                                         "but did not abort") from None
                if len(router.sent.get(client, [])) != before:
                    raise AssertionError("a client that refused a message still sent one") from None
                continue
            if i != j:
                raise AssertionError(f"client in stage {i} accepted {type(msg).__name__}, the "
                                     f"message of stage {j}")
            if role.aborted or not answer:
                raise AssertionError(f"client did not answer its stage-{i} message")
    return pairs

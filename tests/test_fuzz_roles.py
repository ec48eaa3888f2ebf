"""Fuzz every role's ``receive`` with frames mutated from a real round (python-ecdsa style).

A real round of each protocol is recorded frame by frame. Each example replays the round up
to one frame, mutates that frame's bytes (recorded with ``note()``), and hands whatever still
decodes to its recipient. The only exceptions allowed to escape are SecAggError subclasses.

The ``ci`` profile runs a few hundred inputs; ``nightly`` runs 10^6 (HYPOTHESIS_PROFILE).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import protocols
from protocols.base import SERVER
from protocols.harness import Router
from secagg import wire
from secagg.errors import SecAggError
from secagg.rng import Csprng

_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
FUZZ_EXAMPLES = {"nightly": 1_000_000, "dev": 20}.get(_PROFILE, 150)
N, DIM = 4, 6
_FAST = ["plaintext", "secagg", "secagg+"]


@dataclass
class World:
    router: Router
    parties: dict[int, object]


def _world(name: str, seed: int = 3) -> World:
    spec = protocols.get(name)
    kw = {"active": True} if name == "secagg" else {}
    cfg = spec.make_config(N, DIM, **kw)
    inputs = [np.linspace(-0.1, 0.1, DIM) * (u + 1) for u in range(N)]
    router = Router(spec, cfg, Csprng.from_seed(seed), inputs, start=False, record=False)
    parties: dict[int, object] = {SERVER: router.server, **router.helpers,
                                  **dict(enumerate(router.clients))}
    return World(router, parties)


def _deliveries(name: str, stop: int | None = None):
    """Replay a round through the harness. Returns the recorded frames, or, with ``stop``,
    the world just before frame ``stop`` is delivered."""
    w = _world(name)
    router = w.router
    router.start()
    frames: list[tuple[int, bytes]] = []
    while True:
        while router.pending:
            env = router.pending[0]
            if stop is not None and len(frames) == stop:
                return w, env.recipient, env.frame
            frames.append((env.recipient, env.frame))
            router.deliver(0)
        if router.finished:
            return frames
        router.close()


_RECORDED: dict[str, list[tuple[int, bytes]]] = {}


def _recorded(name: str) -> list[tuple[int, bytes]]:
    if name not in _RECORDED:
        _RECORDED[name] = _deliveries(name)
    return _RECORDED[name]


@st.composite
def mutations(draw, frame: bytes) -> bytes:
    data = bytearray(frame)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            bit = draw(st.integers(0, 7))
            data[pos] ^= 1 << bit
            note(f"flip bit {bit} of byte {pos}")
        elif op == "set" and data:
            val = draw(st.integers(0, 255))
            data[pos] = val
            note(f"set byte {pos} = {val}")
        elif op == "insert":
            val = draw(st.binary(min_size=1, max_size=8))
            data[pos:pos] = val
            note(f"insert {val!r} at {pos}")
        elif op == "delete" and data:
            k = draw(st.integers(1, 8))
            del data[pos : pos + k]
            note(f"delete {k} bytes at {pos}")
        elif op == "truncate":
            del data[pos:]
            note(f"truncate at {pos}")
    return bytes(data)


@pytest.mark.parametrize("name", _FAST)
@settings(max_examples=FUZZ_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_only_secagg_errors_escape(name: str, data: st.DataObject) -> None:
    frames = _recorded(name)
    index = data.draw(st.integers(0, len(frames) - 1), label="frame index")
    w, recipient, frame = _deliveries(name, stop=index)
    bad = data.draw(mutations(frame), label="mutated frame")
    try:
        msg = wire.decode(bad)
    except SecAggError:
        return
    note(f"decoded {type(msg).__name__} for party {recipient}")
    party = w.parties.get(msg.recipient, w.parties[recipient])
    try:
        party.receive(msg)  # type: ignore[attr-defined]
    except SecAggError:
        pass


@pytest.mark.parametrize("name", _FAST)
def test_recorded_round_is_complete(name: str) -> None:
    """The fuzzer's base round itself is a valid, finished round."""
    frames = _recorded(name)
    assert len(frames) >= 2 * N
    w = _world(name)
    assert wire.decode(frames[0][1]).recipient == frames[0][0]
    del w
